"""The users and module-results parsers: nested records in XML and JSON, both XML routes, the envelope."""

from __future__ import annotations

import random

import msgspec
import pytest

from ispring_async import LearnerModuleResult, ParseError, ResponseFormat, UnsafeXMLError, User, UserField
from ispring_async._parse import ParseLimits, module_results_parser, users_parser
from ispring_async._parse._nested import USERS, NestedReferenceParser
from ispring_async._parse._xml import XmlListParser
from ispring_async.emulator import Emulator, EmulatorConfig
from ispring_async.emulator._config import XML_LAYOUTS
from ispring_async.emulator._render import Renderer
from tests._user_pages import (
    Style,
    expected_module_result,
    expected_user,
    module_result_fields,
    render_json,
    render_xml,
    user_fields,
)

BOUNDS = ParseLimits().bounds(page_size=None, markup_per_record=USERS.markup_per_record)


def _feed(parser: object, body: bytes, rnd: random.Random) -> None:
    """Feed ``body`` in random-sized chunks, so record and tag boundaries fall anywhere."""
    pos = 0
    while pos < len(body):
        step = rnd.choice([1, 7, 100, 4096, 40000, len(body)])
        parser.feed(body[pos : pos + step])  # type: ignore[attr-defined]
        pos += step


def _whole(parser: object, body: bytes) -> object:
    """Feed all of ``body`` and close: the page, or the error either step raises."""
    parser.feed(body)  # type: ignore[attr-defined]
    return parser.close()  # type: ignore[attr-defined]


def _users(seed: int, count: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    return [user_fields(rnd) for _ in range(count)]


STYLES = [
    pytest.param(lambda rnd: Style(), id="compact"),
    pytest.param(lambda rnd: Style(indent="  "), id="indented"),
    pytest.param(lambda rnd: Style(rnd, indent="\t", noise=0.15), id="noisy"),
    pytest.param(lambda rnd: Style(rnd, noise=0.6), id="very-noisy"),
]


@pytest.mark.parametrize("make_style", STYLES)
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(4)])
def test_users_xml_parse_to_the_records_built(make_style: object, seed: int) -> None:
    """A users page in any spelling parses to exactly the users it was built from, chunked anywhere."""
    rnd = random.Random(seed)
    records = _users(seed, 60)
    body = render_xml(records, container="userProfiles", item="userProfile", style=make_style(rnd))  # type: ignore[operator]
    parser = users_parser(ResponseFormat.XML, page="users p1")
    _feed(parser, body, rnd)
    page = parser.close()
    assert page.users == [expected_user(r) for r in records]
    assert page.next_page_token == "dG9rZW4"


@pytest.mark.parametrize("make_style", STYLES)
def test_users_reference_route_agrees(make_style: object) -> None:
    """The reference (handler) route reads a users page to the same users as the page was built from."""
    rnd = random.Random(11)
    records = _users(11, 40)
    body = render_xml(records, container="userProfiles", item="userProfile", style=make_style(rnd))  # type: ignore[operator]
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    _feed(reference, body, rnd)
    got, token = reference.close()
    assert got == [expected_user(r) for r in records]
    assert token == "dG9rZW4"


def test_users_compact_page_stays_on_the_fast_route() -> None:
    """A plain users page is rewritten as JSON run after run, never handed to the handler parser."""
    records = _users(3, 200)
    body = render_xml(records, container="userProfiles", item="userProfile", style=Style(indent="  "))
    parser = XmlListParser(USERS, page="p", bounds=BOUNDS)
    for start in range(0, len(body), 16384):
        parser.feed(body[start : start + 16384])
    assert parser.fast
    assert parser.fallback_runs == 0
    got, _ = parser.close()
    assert got == [expected_user(r) for r in records]


def test_users_json_parse_to_the_records_built() -> None:
    """A JSON users page (``fields`` as name/value objects) parses to the users it was built from."""
    records = _users(5, 50)
    parser = users_parser(ResponseFormat.JSON, page="p")
    parser.feed(render_json(records, container="userProfiles", token=None))
    page = parser.close()
    assert page.users == [expected_user(r) for r in records]
    assert page.next_page_token is None


def test_user_convenience_properties() -> None:
    """``login``, ``email``, names read the profile fields whatever their case; absent ones are None."""
    user = msgspec.convert(
        {
            "userId": "u1",
            "departmentId": "d1",
            "status": 1,
            "role": "learner",
            "roleId": "r1",
            "addedDate": "2024-01-01T00:00:00Z",
            "fields": [
                {"name": "LOGIN", "value": "jdoe"},
                {"name": "email", "value": "j@example.com"},
                {"name": "firstName", "value": "Jane"},
                {"name": "LAST_NAME", "value": ""},
            ],
        },
        User,
    )
    assert (user.login, user.email, user.first_name, user.last_name) == ("jdoe", "j@example.com", "Jane", "")
    assert user.full_name == "Jane"
    assert user.field("phone") is None
    assert user.identity == "u1"
    assert user.groups == () and user.subordination is None
    assert user.fields[0] == UserField(name="LOGIN", value="jdoe")


@pytest.mark.parametrize(
    ("snippet", "absent"),
    [
        pytest.param("<workLeaveStatus/>", "work_leave_status", id="empty-struct-absent"),
        pytest.param("<workLeaveStatus> </workLeaveStatus>", "work_leave_status", id="blank-struct-absent"),
        pytest.param("<lastLoginDate></lastLoginDate>", "last_login_date", id="empty-date-absent"),
        pytest.param("<groups/>", "groups", id="empty-list"),
    ],
)
def test_users_empty_elements(snippet: str, absent: str) -> None:
    """Empty optional structs and dates are absent, empty lists are empty, alike on both routes."""
    body = (
        "<response><userProfiles><userProfile><userId>u</userId><departmentId>d</departmentId>"
        "<status>1</status><role>learner</role><roleId>r</roleId><addedDate>2024-01-01T00:00:00Z</addedDate>"
        f"<fields><field><name>LOGIN</name><value/></field></fields>{snippet}"
        "</userProfile></userProfiles></response>"
    ).encode()
    fast = users_parser(ResponseFormat.XML, page="p")
    fast.feed(body)
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    reference.feed(body)
    users = fast.close().users
    assert users == reference.close()[0]
    (user,) = users
    assert getattr(user, absent) in (None, ())
    assert user.login == ""


def _one_user(inner: str) -> bytes:
    return (
        "<response><userProfiles><userProfile><userId>u</userId><departmentId>d</departmentId>"
        "<status>1</status><role>learner</role><roleId>r</roleId><addedDate>2024-01-01T00:00:00Z</addedDate>"
        f"<fields><field><name>LOGIN</name><value>x</value></field></fields>{inner}"
        "</userProfile></userProfiles></response>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(_one_user("<groups><id>a<b/></id></groups>"), "inside <id>", id="element-in-list-leaf"),
        pytest.param(
            _one_user("<subordination><subordinationType>x<y/></subordinationType></subordination>"),
            "inside <subordinationType>",
            id="element-in-struct-leaf",
        ),
        pytest.param(
            _one_user("<subordination><x/></subordination>"), "subordinationType", id="struct-missing-field"
        ),
        pytest.param(_one_user("<status>active</status>"), "status", id="bad-int"),
        pytest.param(
            _one_user(
                "<workLeaveStatus><workLeaveReason>a</workLeaveReason><startDate>no</startDate></workLeaveStatus>"
            ),
            "startDate",
            id="bad-date",
        ),
        pytest.param(
            _one_user("<userRoles><userRole><roleType>x</roleType></userRole></userRoles>"),
            "roleId",
            id="role-missing-id",
        ),
    ],
)
def test_users_bad_records_are_typed_errors_naming_the_record(body: bytes, message: str) -> None:
    """A bad nested value is a ``ParseError`` naming the field, on the hybrid and the reference route."""
    parser = users_parser(ResponseFormat.XML, page="users p7")
    with pytest.raises(ParseError, match=message) as caught:
        _whole(parser, body)
    assert "users p7" in str(caught.value)
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    with pytest.raises(ParseError, match=message):
        _whole(reference, body)


def test_users_more_records_than_asked_for_is_refused() -> None:
    """A users page holding more users than its ``pageSize`` is a ``ParseError``."""
    body = render_xml(_users(1, 11), container="userProfiles", item="userProfile")
    parser = users_parser(ResponseFormat.XML, page="p", page_size=10)
    with pytest.raises(ParseError, match="more than 10 records"):
        _whole(parser, body)
    parser_json = users_parser(ResponseFormat.JSON, page="p", page_size=10)
    parser_json.feed(render_json(_users(1, 11), container="userProfiles"))
    with pytest.raises(ParseError, match="more than 10 records"):
        parser_json.close()


def test_users_markup_bound_scales_with_the_shape() -> None:
    """Real users (many fields) pass the markup bound; a record padded with thousands of tags does not."""
    rnd = random.Random(2)
    heavy = [user_fields(rnd, extra_fields=20) for _ in range(100)]
    parser = users_parser(ResponseFormat.XML, page="p", page_size=100)
    parser.feed(render_xml(heavy, container="userProfiles", item="userProfile", style=Style(indent=" ")))
    assert len(parser.close().users) == 100
    padded = _one_user("<pad>" + "<x/>" * 60_000 + "</pad>")
    parser = users_parser(ResponseFormat.XML, page="p", page_size=100)
    with pytest.raises(ParseError, match="markup"):
        parser.feed(padded)


def test_users_deep_unknown_element_is_bounded() -> None:
    """An unknown element nested past ``max_depth`` inside a user is refused on both routes."""
    body = _one_user(
        "<subordination><subordinationType>m</subordinationType>"
        + "<a>" * 80
        + "</a>" * 80
        + "</subordination>"
    )
    parser = users_parser(ResponseFormat.XML, page="p")
    with pytest.raises(ParseError, match="nested deeper"):
        _whole(parser, body)


def test_users_dtd_refused() -> None:
    """A users page with a DTD is refused as unsafe before any record is read."""
    body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]>' + _one_user("")
    parser = users_parser(ResponseFormat.XML, page="p")
    with pytest.raises(UnsafeXMLError):
        _whole(parser, body)


@pytest.mark.parametrize(
    "fmt", [pytest.param(ResponseFormat.XML, id="xml"), pytest.param(ResponseFormat.JSON, id="json")]
)
def test_module_results_parse_to_the_records_built(fmt: ResponseFormat) -> None:
    """A module results page parses to exactly the records it was built from, in XML and JSON."""
    rnd = random.Random(9)
    records = [module_result_fields(rnd) for _ in range(300)]
    if fmt is ResponseFormat.XML:
        body = render_xml(
            records, container="results", item="result", style=Style(rnd, indent="  ", noise=0.05)
        )
    else:
        body = render_json(records, container="results")
    parser = module_results_parser(fmt, page="p")
    _feed(parser, body, rnd)
    page = parser.close()
    assert page.records == [expected_module_result(r) for r in records]
    assert page.next_page_token == "dG9rZW4"


def test_module_result_identity_separates_course_items() -> None:
    """Two course items of one enrollment are two rows; without an enrollment the user/course pair is used."""
    base = {
        "userId": "u",
        "courseId": "c",
        "moduleId": "m",
        "moduleTitle": "t",
        "accessDate": "2024-01-01T00:00:00Z",
        "completionStatus": "passed",
        "isOverdue": False,
    }
    a = msgspec.convert({**base, "courseItemId": "i1", "enrollmentId": "e"}, LearnerModuleResult)
    b = msgspec.convert({**base, "courseItemId": "i2", "enrollmentId": "e"}, LearnerModuleResult)
    c = msgspec.convert({**base, "courseItemId": "i1"}, LearnerModuleResult)
    assert (a.identity, b.identity, c.identity) == ("e/i1", "e/i2", "u/c/i1")


def test_module_results_missing_required_field_names_record() -> None:
    """A module result without ``courseItemId`` is a ``ParseError`` naming the record and the field."""
    rnd = random.Random(4)
    records = [module_result_fields(rnd) for _ in range(5)]
    del records[3]["courseItemId"]
    parser = module_results_parser(ResponseFormat.XML, page="p")
    with pytest.raises(ParseError, match=r"<result> #4 of the page") as caught:
        _whole(parser, render_xml(records, container="results", item="result"))
    assert "courseItemId" in str(caught.value)


_CUSTOM = "<customFields><field><name>region</name><value>EU</value></field><x><y>1</y></x></customFields>"


@pytest.mark.parametrize(
    ("inner", "outcome"),
    [
        pytest.param(_CUSTOM, "skipped", id="unknown-nested-in-record"),
        pytest.param(
            f"<subordination><subordinationType>m</subordinationType>{_CUSTOM}</subordination>",
            "skipped",
            id="unknown-nested-in-struct",
        ),
        pytest.param(f"<groups><id>g</id>{_CUSTOM}</groups>", "skipped", id="unknown-nested-in-list"),
        pytest.param(f"<role>{_CUSTOM}</role>", "error", id="unknown-nested-alone-in-text-field"),
        pytest.param(f"<role>learner{_CUSTOM}</role>", "error", id="unknown-nested-after-text-in-text-field"),
        pytest.param("<roleId><a><b>1</b></a></roleId>", "error", id="text-field-with-children"),
        pytest.param(
            "<meta><userId>evil</userId><x><y/></x></meta>", "skipped", id="known-names-inside-unknown"
        ),
        pytest.param("<a>" * 70 + "<b>1</b>" + "</a>" * 70, "error", id="unknown-past-max-depth"),
    ],
)
def test_unknown_nested_elements_are_skipped_only_where_the_reference_skips(inner: str, outcome: str) -> None:
    """Unknown elements with children are cut out of the JSON rewrite exactly where the handler route
    skips them; inside a text field, or past the depth bound, both routes refuse the page alike."""
    records = _users(21, 30)
    body = render_xml(records, container="userProfiles", item="userProfile", style=Style(indent=" "))
    # The record built by _one_user goes in as the page's first record, before the 30 generated ones.
    head = body.index(b"<userProfile>")
    extra = _one_user(inner)[len(b"<response><userProfiles>") : -len(b"</userProfiles></response>")]
    body = body[:head] + extra + body[head:]
    hybrid = XmlListParser(USERS, page="p", bounds=BOUNDS)
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    if outcome == "error":
        with pytest.raises(ParseError):
            _whole(hybrid, body)
        with pytest.raises(ParseError):
            _whole(reference, body)
        return
    got = _whole(hybrid, body)
    assert got == _whole(reference, body)
    assert hybrid.fallback_runs == 0
    assert isinstance(got, tuple)
    users: list[User] = got[0]
    assert users[0].user_id == "u"
    assert users[0].login == "x"
    assert users[1:] == [expected_user(r) for r in records]


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in XML_LAYOUTS])
def test_users_and_module_results_read_what_the_emulator_writes(name: str) -> None:
    """Every XML layout the emulator renders users and module results in parses, on the hybrid and
    the handler route alike, to the emulator's ground truth (built from its data, not its pages)."""
    emulator = Emulator(EmulatorConfig(results=400, seed=3, departments=6))
    ds, directory = emulator.dataset, emulator.directory
    renderer = Renderer(ds, overdue_words=False, layout=XML_LAYOUTS[name])
    users = list(range(len(ds.user_ids)))[:300]
    body = b"".join(renderer.users("xml", directory, users, "tok"))
    rnd = random.Random(name)
    parser = users_parser(ResponseFormat.XML, page="p")
    _feed(parser, body, rnd)
    page = parser.close()
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    reference.feed(body)
    assert (page.users, page.next_page_token) == reference.close()
    truth = {user.user_id: user for user in emulator.expected_users()}
    assert page.users == [truth[ds.user_ids[u]] for u in users]
    catalog = emulator.modules
    items = [(p, k) for p in range(150) for k in range(len(catalog.modules_of(p)))]
    body = b"".join(renderer.module_results("xml", catalog, items, None))
    parser_m = module_results_parser(ResponseFormat.XML, page="p")
    _feed(parser_m, body, rnd)
    modules = parser_m.close().records
    # The emulator's own record for each rendered item (what expected_module_results is made of).
    assert modules == [emulator._module_record(p, k) for p, k in items]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "inner",
    [
        pytest.param("<pad>" + "= " * 400_000 + "</pad>" + '<x a="1">t</x>', id="800k-equals-in-text"),
        pytest.param("<u><v/></u>" * 4000, id="4000-unknown-nested-siblings"),
        pytest.param("<u>" * 60 + "</u>" * 60 + "<u>" * 60 + "</u>" * 60, id="same-name-nesting"),
    ],
)
def test_users_hostile_shapes_parse_in_linear_time(inner: str) -> None:
    """Text full of '=', thousands of unknown nested siblings and same-name nesting go through the
    attribute stripper and the unknown cutter in linear time, to the reference route's outcome."""
    body = _one_user(inner)
    limits = ParseLimits(max_body_bytes=8 << 20)
    hybrid = users_parser(ResponseFormat.XML, page="p", limits=limits)
    reference = NestedReferenceParser(
        USERS, page="p", bounds=limits.bounds(page_size=None, markup_per_record=512)
    )

    def outcome(parser: object) -> object:
        try:
            result = _whole(parser, body)
        except ParseError as exc:
            return type(exc)
        return result.users if hasattr(result, "users") else result[0]  # type: ignore[index]

    assert outcome(hybrid) == outcome(reference)


def _users_with_fields(fields_xml: str, count: int = 3, indent: str = "") -> bytes:
    """``count`` users whose ``<fields>`` element is ``fields_xml`` (each user its own id)."""
    users = "".join(
        f"<userProfile>{indent}<userId>u{i}</userId>{indent}<departmentId>d</departmentId><status>1</status>"
        "<role>learner</role><roleId>r</roleId><addedDate>2024-01-01T00:00:00Z</addedDate>"
        f"{indent}{fields_xml}{indent}</userProfile>{indent}"
        for i in range(count)
    )
    return f"<response><userProfiles>{indent}{users}</userProfiles></response>".encode()


OBJECT_FORM = [
    pytest.param(
        "<fields><login>jdoe</login><email>j@x.org</email></fields>",
        (("login", "jdoe"), ("email", "j@x.org")),
        id="object-form",
    ),
    pytest.param(
        "<fields>\n  <login>jdoe</login>\n  <email/>\n</fields>",
        (("login", "jdoe"), ("email", "")),
        id="object-form-indented-empty-value",
    ),
    pytest.param(
        "<fields><field><name>LOGIN</name><value>a</value></field><email>e@x</email></fields>",
        (("LOGIN", "a"), ("email", "e@x")),
        id="mixed-pairs-then-object",
    ),
    pytest.param(
        "<fields><email>e@x</email><field><name>LOGIN</name><value>a</value></field></fields>",
        (("email", "e@x"), ("LOGIN", "a")),
        id="mixed-object-then-pairs",
    ),
]


@pytest.mark.parametrize("indent", [pytest.param("", id="compact"), pytest.param("\n ", id="indented")])
@pytest.mark.parametrize(("fields_xml", "pairs"), OBJECT_FORM)
def test_users_fields_in_the_openapi_object_form_are_not_lost(
    fields_xml: str, pairs: tuple[tuple[str, str], ...], indent: str
) -> None:
    """``<fields><login>…</login></fields>`` (the OpenAPI's UserProfileFields object) reads as the
    same name/value pairs on the hybrid and the reference route; it used to be skipped to ``()``."""
    body = _users_with_fields(fields_xml, indent=indent)
    hybrid = users_parser(ResponseFormat.XML, page="p")
    users = _whole(hybrid, body).users  # type: ignore[attr-defined]
    reference = NestedReferenceParser(USERS, page="p", bounds=BOUNDS)
    assert users == _whole(reference, body)[0]  # type: ignore[index]
    expected = tuple(UserField(name=n, value=v) for n, v in pairs)
    assert [u.fields for u in users] == [expected] * 3
    assert users[0].email == dict(pairs).get("email", dict(pairs).get("EMAIL"))


def test_users_object_form_child_holding_elements_is_skipped_as_unknown() -> None:
    """A non-item child of ``<fields>`` holding elements is an unknown element, skipped whole on both
    routes (never a partial value), the pairs around it kept."""
    body = _users_with_fields(
        "<fields><login>a<b/>c</login><field><name>EMAIL</name><value>e</value></field><x>1</x></fields>"
    )
    users = _whole(users_parser(ResponseFormat.XML, page="p"), body).users  # type: ignore[attr-defined]
    assert users == _whole(NestedReferenceParser(USERS, page="p", bounds=BOUNDS), body)[0]  # type: ignore[index]
    assert users[0].fields == (UserField(name="EMAIL", value="e"), UserField(name="x", value="1"))


def test_users_json_fields_in_the_object_form_read_as_pairs() -> None:
    """A JSON users page with ``"fields": {"login": …}`` reads as pairs; a wrong type elsewhere is still
    the strict decoder's ``ParseError``."""
    records = _users(9, 4)
    for record in records[::2]:
        record["fields"] = {f["name"]: f["value"] for f in record["fields"]}  # type: ignore[attr-defined]
    parser = users_parser(ResponseFormat.JSON, page="p")
    parser.feed(render_json(records, container="userProfiles", token=None))
    users = parser.close().users
    for record, user in zip(records, users, strict=True):
        fields = record["fields"]
        pairs = fields.items() if isinstance(fields, dict) else [(f["name"], f["value"]) for f in fields]  # type: ignore[attr-defined]
        assert user.fields == tuple(UserField(name=n, value=v) for n, v in pairs)
    records[1]["status"] = "active"
    parser = users_parser(ResponseFormat.JSON, page="p")
    parser.feed(render_json(records, container="userProfiles", token=None))
    with pytest.raises(ParseError, match="status"):
        parser.close()


@pytest.mark.parametrize(
    ("fields", "email"),
    [
        pytest.param([("EMAIL", "a@x"), ("email", "b@x")], "a@x", id="two-emails-first-wins"),
        pytest.param([("LOGIN", "l")], None, id="no-email"),
        pytest.param([("E_MAIL", "c@x")], "c@x", id="underscored-name"),
    ],
)
def test_user_email_with_two_or_no_email_fields(fields: list[tuple[str, str]], email: str | None) -> None:
    """Two EMAIL fields: the first one is the email (as the users table's column); none: ``None``."""
    pairs = "".join(f"<field><name>{n}</name><value>{v}</value></field>" for n, v in fields)
    body = _users_with_fields(f"<fields>{pairs}</fields>", count=1)
    (user,) = _whole(users_parser(ResponseFormat.XML, page="p"), body).users  # type: ignore[attr-defined]
    assert user.email == email
    assert len(user.fields) == len(fields)  # both kept in ``fields``


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("fields_xml", "message"),
    [
        pytest.param(
            "<fields>" + "<field><name>a</name><value>b</value></field>" * 100_000 + "</fields>",
            "markup",
            id="100k-fields-in-one-user",
        ),
        pytest.param("<fields>" + "<x>1</x>" * 300_000 + "</fields>", "markup", id="300k-object-form-fields"),
        pytest.param(
            "<fields><field><name>FIRST_NAME</name><value>" + "a" * (3 << 20) + "</value></field></fields>",
            "text longer",
            id="3MB-first-name",
        ),
        pytest.param(
            "<fields><login>" + "é" * (2 << 20) + "</login></fields>", "text longer", id="2M-char-login"
        ),
    ],
)
def test_users_hostile_fields_are_refused_in_bounded_time(fields_xml: str, message: str) -> None:
    """A user with 100k+ profile fields or a name of megabytes is a ``ParseError`` (markup or text
    bound; the text bound on the reference route too), never a record built from it."""
    body = _users_with_fields(fields_xml, count=1)
    limits = ParseLimits(max_body_bytes=16 << 20)
    with pytest.raises(ParseError, match=message):
        _whole(users_parser(ResponseFormat.XML, page="p", limits=limits), body)
    if message == "text longer":  # the markup bound is the page envelope's, which the hybrid applies
        bounds = limits.bounds(page_size=None, markup_per_record=USERS.markup_per_record)
        with pytest.raises(ParseError, match=message):
            _whole(NestedReferenceParser(USERS, page="p", bounds=bounds), body)

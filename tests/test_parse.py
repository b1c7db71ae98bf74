"""The sans-IO page parsers: exact records for any chunking, both XML routes agreeing, typed errors."""

from __future__ import annotations

import functools
import random
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ispring_async import (
    Department,
    LearnerResult,
    ParseError,
    ResponseFormat,
    UnexpectedContentError,
    UnsafeXMLError,
)
from ispring_async._parse import departments_parser, parse_error_body, results_parser
from ispring_async.emulator import Dataset, EmulatorConfig
from ispring_async.emulator._render import Renderer
from tests._helpers import both_routes
from tests._pages import expected, record_fields, render_page

DATA = Path(__file__).parent / "data"
HOSTILE = DATA / "hostile"
SEED = (DATA / "seed-sample-response.xml").read_bytes()


def parse(
    body: bytes | Iterable[bytes], fmt: ResponseFormat = ResponseFormat.XML
) -> tuple[list[LearnerResult], str | None]:
    parser = results_parser(fmt, page="test page")
    for chunk in [body] if isinstance(body, bytes) else body:
        parser.feed(chunk)
    page = parser.close()
    return page.records, page.next_page_token


def routes(body: bytes, chunk: int = 16384) -> tuple[object, object, bool]:
    """The outcome of the hybrid parser and of the reference route alone, and whether the fast route held."""
    return both_routes(body, chunk)


def page_of(n: int, seed: int = 1, **kwargs: object) -> tuple[bytes, list[LearnerResult]]:
    rnd = random.Random(seed)
    records = [record_fields(rnd) for _ in range(n)]
    return render_page(records, **kwargs), [expected(r) for r in records]  # type: ignore[arg-type]


# --- the seed and ordinary pages -----------------------------------------------------------------


def test_seed_sample_parses_to_its_three_records() -> None:
    """The user's sample response gives exactly its three records, with the values it shows."""
    records, token = parse(SEED)
    assert token is None
    assert [r.course_title for r in records] == ["Course 1", "Course 2", "Course 3"]
    first, second, third = records
    assert first.progress == 9.09 and first.time_spent == 10 and first.is_overdue is False
    assert first.access_date == datetime(2021, 7, 28, 21, 0, tzinfo=UTC)
    assert second.due_date == datetime(2021, 8, 3, 21, 0, tzinfo=UTC) and second.is_overdue is True
    assert second.progress is None and second.completion_status == "not_started"
    assert third.progress == 100.0 and third.is_overdue is False
    assert third.completion_date == datetime(2019, 7, 25, 9, 55, 37, tzinfo=UTC)
    assert third.enrollment_id == "296bdbd8-aec2-11e9-aee5-0a580af402ea"


def test_fast_route_handles_the_seed_layout() -> None:
    """The seed's layout stays on the fast route (the reason the parser is fast at all)."""
    body, want = page_of(300, seed=3)
    hybrid, reference, fast = routes(body)
    assert fast
    assert hybrid == reference
    assert hybrid == (want, "MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj")


@pytest.mark.parametrize("separator", [pytest.param("\n", id="newlines"), pytest.param("", id="compact")])
def test_varied_spellings_parse_to_the_same_records(separator: str) -> None:
    """Escaped or raw quotes, numeric references, Z or offsets, 1/true: all give the same values."""
    rnd = random.Random(7)
    records = [record_fields(rnd) for _ in range(200)]
    body = render_page(records, rnd=random.Random(8), separator=separator)
    assert parse(body) == ([expected(r) for r in records], "MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 40_000), max_size=12))
def test_any_split_into_chunks_gives_the_same_records(seed: int, cuts: list[int]) -> None:
    """However the body is cut into chunks, the page parses to the same records and token."""
    body, want = page_of(40, seed=seed, rnd=random.Random(seed))
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    records, token = parse(chunks)
    assert records == want
    assert token == "MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj"


@pytest.mark.parametrize(
    ("token_xml", "token"),
    [
        pytest.param("<nextPageToken>abc==</nextPageToken>", "abc==", id="token"),
        pytest.param("<nextPageToken></nextPageToken>", None, id="empty"),
        pytest.param("<nextPageToken/>", None, id="self-closing"),
        pytest.param("", None, id="absent"),
        pytest.param("<nextPageToken>a&amp;b</nextPageToken>", "a&b", id="escaped"),
        pytest.param("<totalCount>5</totalCount><nextPageToken>t</nextPageToken>", "t", id="unknown-sibling"),
    ],
)
def test_next_page_token_variants(token_xml: str, token: str | None) -> None:
    """The token is read after the records; an empty or absent one ends the chain."""
    body, want = page_of(3, token=None)
    body = body.replace(b"</results>\n", b"</results>\n" + token_xml.encode())
    assert parse(body) == (want, token)


def test_token_before_results_is_read_too() -> None:
    """A token placed before the records (not the documented layout) is still found."""
    body, want = page_of(3, token=None)
    body = body.replace(b"<response>\n", b"<response>\n<nextPageToken>early</nextPageToken>")
    assert parse(body) == (want, "early")


@pytest.mark.parametrize(
    "body", [b"<response><results/></response>", b"<response><results></results></response>"]
)
def test_empty_page_has_no_records(body: bytes) -> None:
    """An empty results element is an empty page, not an error."""
    assert parse(body) == ([], None)


# --- the two XML routes agree ---------------------------------------------------------------------

VARIANTS = [
    pytest.param(b"<userId>", b"<userId >", id="space-in-tag"),
    pytest.param(b"<userId>", b'<userId kind="uuid">', id="attribute"),
    pytest.param(b"<userId>", b"<userId kind='uuid'>", id="single-quoted-attribute"),
    pytest.param(b"<result>\n", b"<result>\n<!-- note -->", id="comment"),
    pytest.param(b"<courseTitle>", b"<courseTitle><![CDATA[x<y]]>", id="cdata"),
    pytest.param(b"<result>\n", b"<result>\n<?pi data?>", id="processing-instruction"),
    pytest.param(
        b"<result>\n", b"<result>\n<meta><courseTitle>hidden</courseTitle></meta>", id="nested-known-name"
    ),
    pytest.param(b"<result>\n", b"<result>\n<extra>1</extra><more><a>b</a></more>", id="unknown-elements"),
    pytest.param(
        b"</result>\n<result>", b"</result>\n<dueDate>2020-01-01T00:00:00Z</dueDate><result>", id="stray"
    ),
    pytest.param(b"</result>\n<result>", b"</result>\n<result><result>", id="nested-item"),
    pytest.param(b"<courseTitle>", b"<courseTitle/><courseTitle>", id="self-closing"),
    pytest.param(b"\n", b"\r\n", id="crlf"),
    pytest.param(b"\n<", b"\n    <", id="indented"),
    pytest.param(b"<result>\n", b"<result>\n<dueDate></dueDate>", id="empty-date"),
    pytest.param(b"<result>\n", b"<result>\n<sessionId></sessionId>", id="empty-text-field"),
    pytest.param(
        b"<result>\n", b"<result>\n<viewsCount>1</viewsCount><viewsCount>2</viewsCount>", id="duplicate"
    ),
    pytest.param(b"<result>\n", b"<result>\nloose text", id="mixed-content-in-record"),
    pytest.param(b"</result>\n<result>", b"</result>\nloose<result>", id="text-between-records"),
    pytest.param(b"<timeSpent>", b"<timeSpent>x", id="bad-value"),
    pytest.param(b"<courseTitle>", b"<courseTitle>&#60;&#x3e;&amp;lt;", id="references"),
]


@pytest.mark.parametrize(("old", "new"), VARIANTS)
def test_both_routes_agree_on_unusual_layouts(old: bytes, new: bytes) -> None:
    """Whatever the fast route accepts, it reads exactly as the reference route does."""
    body, _ = page_of(60, seed=5)
    mutated = body.replace(old, new, 7)
    hybrid, reference, _fast = routes(mutated, chunk=997)
    assert hybrid == reference


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 1000), data=st.data())
def test_random_mutations_agree_or_fail_typed(seed: int, data: st.DataObject) -> None:
    """Random byte edits of a valid page: both routes give the same result or a typed error."""
    body = bytearray(page_of(8, seed=seed)[0])
    alphabet = b"<>/&;=\"' \n\t!?abc\x00\xff\xc3"
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(alphabet)))
        if action == "replace":
            body[position] = byte
        elif action == "insert":
            body.insert(position, byte)
        else:
            del body[position]
    hybrid, reference, _fast = routes(bytes(body), chunk=211)
    # Only typed errors escape, and the routes agree (expat checks well-formedness for both).
    assert hybrid == reference or (isinstance(hybrid, type) and isinstance(reference, type))


def test_fast_route_only_used_for_valid_structure() -> None:
    """A nested element named like a field does not leak into the record."""
    body, want = page_of(2, seed=9)
    mutated = body.replace(b"<result>\n", b"<result>\n<meta><courseTitle>hidden</courseTitle></meta>", 1)
    records, _ = parse(mutated)
    assert records == want


# --- hostile and broken input ----------------------------------------------------------------------

HOSTILE_CASES = [
    ("billion-laughs.xml", UnsafeXMLError),
    ("quadratic-blowup.xml", UnsafeXMLError),
    ("external-entity-file.xml", UnsafeXMLError),
    ("external-entity-url.xml", UnsafeXMLError),
    ("external-dtd.xml", UnsafeXMLError),
    ("internal-dtd.xml", UnsafeXMLError),
    ("parameter-entity.xml", UnsafeXMLError),
    ("truncated.xml", ParseError),
    ("malformed-tags.xml", ParseError),
    ("invalid-utf8.xml", ParseError),
    ("wrong-encoding-declaration.xml", ParseError),
    ("html-page.xml", UnexpectedContentError),
    ("html-no-doctype.xml", UnexpectedContentError),
    ("missing-required-fields.xml", ParseError),
    ("wrong-types.xml", ParseError),
    ("naive-date.xml", ParseError),
    ("error-body-200.xml", UnexpectedContentError),
    ("no-results-element.xml", ParseError),
    ("wrong-root.xml", ParseError),
    ("element-inside-field.xml", ParseError),
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize(("name", "error"), [pytest.param(n, e, id=n) for n, e in HOSTILE_CASES])
@pytest.mark.parametrize("chunk", [pytest.param(64, id="small-chunks"), pytest.param(1 << 20, id="whole")])
def test_hostile_corpus_gives_typed_errors(name: str, error: type[Exception], chunk: int) -> None:
    """Each file of the hostile corpus ends in its typed error, never a crash or an empty page."""
    body = (HOSTILE / name).read_bytes()
    with pytest.raises(error):
        parse([body[i : i + chunk] for i in range(0, len(body), chunk)])


def test_unsafe_xml_is_not_retryable_but_truncation_is() -> None:
    """Broken syntax may be fixed by a new attempt; a refused DTD or a bad value may not."""
    with pytest.raises(ParseError) as truncated:
        parse((HOSTILE / "truncated.xml").read_bytes())
    assert truncated.value.retryable
    for name in ("billion-laughs.xml", "wrong-types.xml"):
        with pytest.raises(ParseError) as refused:
            parse((HOSTILE / name).read_bytes())
        assert not refused.value.retryable


def test_wrong_type_error_names_page_record_and_field() -> None:
    """A bad value says which page, which record and which field."""
    with pytest.raises(ParseError) as info:
        parse((HOSTILE / "wrong-types.xml").read_bytes())
    message = str(info.value)
    assert "test page" in message and "#1" in message and "timeSpent" in message


def _huge_text_node(size: int) -> Iterator[bytes]:
    yield b'<?xml version="1.0" encoding="UTF-8"?><response><results><result><courseTitle>'
    block = b"A" * 65536
    for _ in range(size // len(block)):
        yield block
    yield b"</courseTitle></result></results></response>"


@pytest.mark.timeout(10)
def test_huge_text_node_fails_fast_with_bounded_memory() -> None:
    """A 100 MB text node is refused after a few MB, without buffering the body."""
    tracemalloc.start()
    try:
        with pytest.raises(ParseError, match="longer than"):
            parse(_huge_text_node(100 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20


@pytest.mark.timeout(10)
def test_deep_nesting_is_refused() -> None:
    """Twenty thousand nested elements end in a ParseError, not a hang or a stack overflow."""
    depth = 20_000
    chunks = [
        b"<response><results><result><x>",
        b"<a>" * depth,
        b"</a>" * depth,
        b"</x></result></results></response>",
    ]
    with pytest.raises(ParseError, match="nested deeper"):
        parse(chunks)


def test_thousands_of_unknown_elements_are_ignored() -> None:
    """Unknown elements, however many, are skipped and the known fields still read."""
    body, want = page_of(3, seed=11)
    noise = b"".join(b"<x%d>v</x%d>" % (i, i) for i in range(5000))
    records, _ = parse(body.replace(b"<result>\n", b"<result>\n" + noise))
    assert records == want


def test_unknown_completion_status_is_kept() -> None:
    """A status the vendor adds later does not abort the export."""
    body = SEED.replace(b"in_progress", b"archived_by_admin")
    records, _ = parse(body)
    assert records[0].completion_status == "archived_by_admin"


def test_too_many_records_in_one_page_is_refused() -> None:
    """A page claiming more records than any real page can hold is refused (memory bound)."""
    from ispring_async._parse import ParseLimits

    body, _ = page_of(30)
    parser = results_parser(ResponseFormat.XML, page="p", limits=ParseLimits(max_records=10))

    def run() -> None:
        parser.feed(body)
        parser.close()

    with pytest.raises(ParseError, match="more than 10"):
        run()


# --- JSON -----------------------------------------------------------------------------------------


def _json_page(records: list[LearnerResult], token: str | None) -> bytes:
    return msgspec.json.encode({"results": records, "nextPageToken": token})


def test_json_page_decodes_to_the_same_structs() -> None:
    """JSON mode gives the same records as XML for the same data."""
    _, want = page_of(50, seed=2)
    json_body = _json_page(want, "t")
    assert parse([json_body[:100], json_body[100:]], ResponseFormat.JSON) == (want, "t")


@pytest.mark.parametrize(
    ("body", "error", "retryable"),
    [
        pytest.param(b'{"results": [', ParseError, True, id="truncated"),
        pytest.param(b'{"nextPageToken": "x"}', ParseError, False, id="no-results"),
        pytest.param(b'{"results": [{"userId": 1}]}', ParseError, False, id="wrong-type"),
        pytest.param(b"<!DOCTYPE html><html></html>", UnexpectedContentError, False, id="html"),
    ],
)
def test_json_errors_are_typed(body: bytes, error: type[ParseError], retryable: bool) -> None:
    """Broken JSON is retryable; well-formed but wrong JSON and HTML are not."""
    with pytest.raises(error) as info:
        parse(body, ResponseFormat.JSON)
    assert getattr(info.value, "retryable", False) is retryable


def test_json_error_says_where() -> None:
    """A wrong JSON value is located by its path."""
    with pytest.raises(ParseError, match=r"\$\.results\[0\]"):
        parse(b'{"results": [{"userId": 1}]}', ResponseFormat.JSON)


# --- departments and error bodies -------------------------------------------------------------------

DEPARTMENTS_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<response><departments>
<department><departmentId>d1</departmentId><name>Root &amp; Co</name><code>R</code></department>
<department><departmentId>d2</departmentId><name>Sales</name><parentDepartmentId>d1</parentDepartmentId></department>
</departments><nextPageToken>n</nextPageToken></response>"""


@pytest.mark.parametrize("fmt", [ResponseFormat.XML, ResponseFormat.JSON])
def test_departments_page(fmt: ResponseFormat) -> None:
    """Departments parse with their parent links, in either format."""
    want = [
        Department(department_id="d1", name="Root & Co", code="R"),
        Department(department_id="d2", name="Sales", parent_department_id="d1"),
    ]
    body = (
        DEPARTMENTS_XML
        if fmt is ResponseFormat.XML
        else msgspec.json.encode({"departments": want, "nextPageToken": "n"})
    )
    parser = departments_parser(fmt, page="departments")
    parser.feed(body)
    page = parser.close()
    assert page.departments == want
    assert page.next_page_token == "n"


@pytest.mark.parametrize(
    ("body", "want"),
    [
        pytest.param(b'{"code": 400, "message": "Bad pageSize"}', (400, "Bad pageSize"), id="json"),
        pytest.param(
            b"<response><code>403</code><message>No &amp; never</message></response>",
            (403, "No & never"),
            id="xml",
        ),
        pytest.param(b"<html>oops</html>", (None, None), id="html"),
        pytest.param(b"\xff\xfe garbage", (None, None), id="garbage"),
        pytest.param(b'{"code": "E12"}', (None, None), id="non-numeric-code"),
    ],
)
def test_parse_error_body(body: bytes, want: tuple[int | None, str | None]) -> None:
    """The API's code and message come out of either error format; anything else gives nothing."""
    assert parse_error_body(body) == want


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 50),
    start=st.integers(0, 1500),
    size=st.integers(0, 300),
    words=st.booleans(),
    fmt=st.sampled_from([ResponseFormat.XML, ResponseFormat.JSON]),
    cuts=st.lists(st.integers(0, 200_000), max_size=10),
)
def test_any_emulator_page_parses_back_to_its_records(
    seed: int, start: int, size: int, words: bool, fmt: ResponseFormat, cuts: list[int]
) -> None:
    """Whatever page the emulator renders, in any chunking, parses back to exactly the rows it holds."""
    dataset = _dataset(seed)
    positions = list(range(start, min(start + size, len(dataset))))
    body = b"".join(Renderer(dataset, overdue_words=words).results(fmt.value, positions, "next"))
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert parse(chunks, fmt) == ([dataset.record(p) for p in positions], "next")


@functools.cache
def _dataset(seed: int) -> Dataset:
    return Dataset(EmulatorConfig(results=2000, seed=seed))

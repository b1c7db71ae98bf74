"""The emulator behaves like the iSpring Learn API of ispring-api.md, over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import msgspec
import pytest
from defusedxml import ElementTree as SafeET

from ispring_async._models import CompletionStatus, LearnerResult
from ispring_async.emulator import (
    Dataset,
    Emulator,
    EmulatorConfig,
    decode_page_token,
    encode_page_token,
    running_emulator,
)
from tests._emulator_http import (
    EVERY_STATUS,
    Params,
    export,
    fetch_token,
    get,
    parse_xml_page,
    query,
    record_from_fields,
    schema,
    token_form,
    validate,
)

# The seed's field order; sessionId is documented by the seed but absent from the OpenAPI schema.
FIELD_ORDER = [
    *("userId", "courseId", "courseTitle", "sessionId", "enrollmentId", "accessDate", "dueDate"),
    *("expirationDate", "completionDate", "duration", "timeSpent", "completionStatus", "progress"),
    *("awardedScore", "passingScore", "isOverdue", "viewsCount"),
]
SAMPLE_URL = (
    "/learners/results?userIds[]=85077abc-2639-11ea-8e3f-0a580af40c09&courseIds[]=f0e7400a-ca31-11e9-b6fc-"
    "0a580af40a22&accessDate[startDate]=2019-12-24T21:00:00Z&accessDate[endDate]=2020-12-30T03:00:00Z&due"
    "Date[startDate]=2019-08-30T03:00:00Z&dueDate[endDate]=2019-12-30T03:00:00Z&completionDate[startDate]="
    "2019-08-30T03:00:00Z&completionDate[endDate]=2019-12-30T03:00:00Z&completionStatus=failed&department"
    "Ids[]=f0b2d3c0-aded-11e9-bfe6-0a580af40906&userStatuses[]=1&pageSize=33&pageToken=MmEzZTBiMjAtYmNmYi0x"
    "MWU5LTk2ODUtMGE1ODBhZjQwOTVj"
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session (not the library's client)."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """A 3000-row dataset shared by read-only tests (no mutations)."""
    return Dataset(EmulatorConfig(results=3000, seed=11, departments=12, department_depth=4))


@pytest.fixture
async def emu(dataset: Dataset) -> AsyncIterator[Emulator]:
    """A running emulator serving the shared dataset."""
    async with running_emulator(dataset.config, dataset=dataset) as emulator:
        yield emulator


# -- token endpoint -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_endpoint_issues_bearer_token_matching_schema(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """POST /api/v3/token with client credentials answers the schema's TokenResponse, 1800 s by default."""
    async with session.post(emu.base_url + "/api/v3/token", data=token_form(emu)) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document = await response.json()
    validate(document, "token-response.json")
    assert document["expires_in"] == 1800
    assert document["token_type"] == "bearer"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param(
            {"client_secret": "emulator-secret", "grant_type": "client_credentials"}, 400, id="no-id"
        ),
        pytest.param(
            {"client_id": "emulator-client", "grant_type": "client_credentials"}, 400, id="no-secret"
        ),
        pytest.param(
            {"client_id": "emulator-client", "client_secret": "emulator-secret"}, 400, id="no-grant"
        ),
        pytest.param(
            {"client_id": "emulator-client", "client_secret": "emulator-secret", "grant_type": "password"},
            400,
            id="wrong-grant",
        ),
        pytest.param(
            {"client_id": "emulator-client", "client_secret": "wrong", "grant_type": "client_credentials"},
            401,
            id="wrong-secret",
        ),
        pytest.param(
            {"client_id": "someone", "client_secret": "emulator-secret", "grant_type": "client_credentials"},
            401,
            id="unknown-client",
        ),
    ],
)
async def test_token_endpoint_refuses_bad_requests_and_credentials(
    emu: Emulator, session: aiohttp.ClientSession, form: dict[str, str], status: int
) -> None:
    """Missing fields or a wrong grant type answer 400, wrong credentials 401, with the API's error body."""
    async with session.post(emu.base_url + "/api/v3/token", data=form) as response:
        assert response.status == status
        document = await response.json()
    validate(document, "error-response.json")
    assert document["code"] == status
    assert "emulator-secret" not in document["message"]


@pytest.mark.anyio
async def test_token_lifetime_is_configurable_and_enforced(session: aiohttp.ClientSession) -> None:
    """``token_lifetime`` is announced as expires_in and a token is refused once it has passed."""
    async with running_emulator(EmulatorConfig(results=50, token_lifetime=60)) as emu:
        emu.freeze_clock()
        form = {
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "grant_type": "client_credentials",
        }
        async with session.post(emu.base_url + "/api/v3/token", data=form) as response:
            document = await response.json()
        assert document["expires_in"] == 60
        token = document["access_token"]
        emu.advance_clock(59)
        assert (await get(session, emu, "/learners/results?pageSize=1", token=token))[0] == 200
        emu.advance_clock(1)
        assert (await get(session, emu, "/learners/results?pageSize=1", token=token))[0] == 401


# -- authentication ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("bare", [pytest.param(False, id="bearer"), pytest.param(True, id="bare-token")])
async def test_bearer_and_bare_tokens_are_accepted(
    emu: Emulator, session: aiohttp.ClientSession, bare: bool
) -> None:
    """``Authorization: Bearer <token>`` and the bare token both authenticate."""
    token = await fetch_token(session, emu)
    status, _, _ = await get(session, emu, "/learners/results?pageSize=1", token=token, bare=bare)
    assert status == 200


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize(
    "case", [pytest.param("missing", id="missing"), pytest.param("unknown", id="unknown"), "expired"]
)
async def test_missing_unknown_or_expired_token_is_401(
    emu: Emulator, session: aiohttp.ClientSession, case: str, fmt: str
) -> None:
    """Requests without a valid token answer 401 with the error body in the requested format."""
    headers = {"Accept": "application/json"} if fmt == "json" else {}
    if case == "unknown":
        headers["Authorization"] = "Bearer not-a-token"
    elif case == "expired":
        emu.freeze_clock()
        headers["Authorization"] = "Bearer " + emu.issue_token()
        emu.advance_clock(1800)
    async with session.get(emu.base_url + "/learners/results", headers=headers) as response:
        assert response.status == 401
        body = await response.read()
    if fmt == "json":
        document = json.loads(body)
        validate(document, "error-response.json")
        assert document["code"] == 401
    else:
        root = SafeET.fromstring(body)
        assert root.tag == "response"
        assert root.findtext("code") == "401"
        assert root.findtext("message")


# -- results: format, paging, ground truth --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_full_export_equals_ground_truth(
    emu: Emulator, session: aiohttp.ClientSession, fmt: str
) -> None:
    """Paging the default query to the end yields exactly expected_results, in order, without repeats."""
    exported = await export(session, emu, [], page_size=137, fmt=fmt)
    expected = emu.expected_results([])
    assert exported == expected
    assert len({record.identity for record in exported}) == len(exported)
    assert 0 < len(expected) < len(emu.dataset)


@pytest.mark.anyio
async def test_xml_page_layout_matches_the_seed(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """XML: declaration, <response><results><result>…, the seed's element names and order, token last."""
    status, headers, body = await get(
        session, emu, "/learners/results?" + query([*EVERY_STATUS, ("pageSize", "400")])
    )
    assert status == 200
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert headers.get("Transfer-Encoding") == "chunked"
    page = parse_xml_page(body)
    assert len(page.fields) == 400
    assert page.token
    properties = schema("learners-results-response.json")["$defs"]["LearnerResult"]["properties"]
    for fields in page.fields:
        names = list(fields)
        assert set(names) <= set(properties) | {"sessionId"}
        assert names == sorted(names, key=FIELD_ORDER.index)
        assert fields["isOverdue"] in {"0", "1"}
        for name in ("accessDate", "dueDate", "expirationDate", "completionDate"):
            if name in fields:
                assert datetime.fromisoformat(fields[name]).utcoffset() is not None
    assert {"0", "1"} <= {fields["isOverdue"] for fields in page.fields}
    assert {"100"} <= {fields.get("progress") for fields in page.fields}
    assert any("." in fields.get("progress", "") for fields in page.fields)


@pytest.mark.anyio
async def test_json_page_matches_schema(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """JSON pages validate against LearnersResultsResponse and carry isOverdue as booleans."""
    status, headers, body = await get(
        session, emu, "/learners/results?" + query([*EVERY_STATUS, ("pageSize", "300")]), fmt="json"
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    document = json.loads(body)
    validate(document, "learners-results-response.json")
    assert len(document["results"]) == 300
    assert {item["isOverdue"] for item in document["results"]} == {True, False}


@pytest.mark.anyio
async def test_page_token_is_base64_of_a_uuid_and_stays_valid(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A page token is base64 of the last row's key (a UUID); the same token gives the same page again."""
    _, _, first = await get(session, emu, "/learners/results?pageSize=10")
    token = parse_xml_page(first).token
    assert token
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert len(decoded) == 36
    assert encode_page_token(decode_page_token(token)) == token
    _, _, again = await get(session, emu, "/learners/results?pageSize=10&pageToken=" + token)
    _, _, once_more = await get(session, emu, "/learners/results?pageSize=10&pageToken=" + token)
    assert again == once_more
    assert parse_xml_page(again).fields[0] != parse_xml_page(first).fields[0]


@pytest.mark.anyio
async def test_page_size_defaults_to_and_is_clamped_at_the_maximum(session: aiohttp.ClientSession) -> None:
    """Without pageSize a page holds max_page_size rows; a larger pageSize is clamped to it."""
    async with running_emulator(EmulatorConfig(results=400, max_page_size=40)) as emu:
        for suffix in ("", "?pageSize=1000"):
            _, _, body = await get(session, emu, "/learners/results" + suffix)
            assert len(parse_xml_page(body).fields) == 40


@pytest.mark.anyio
async def test_last_page_has_no_token(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """By default the last page carries no nextPageToken element (JSON: no key)."""
    params = [("userIds[]", emu.expected_results([])[0].user_id)]
    total = len(emu.expected_results(params))
    _, _, body = await get(session, emu, f"/learners/results?{query(params)}&pageSize={total}")
    page = parse_xml_page(body)
    assert len(page.fields) == total
    assert not page.token_present
    _, _, body = await get(session, emu, f"/learners/results?{query(params)}&pageSize={total}", fmt="json")
    assert "nextPageToken" not in json.loads(body)
    assert len(json.loads(body)["results"]) == total


# -- results: filters -----------------------------------------------------------------------------------


def _attributes(ds: Dataset) -> tuple[Callable[[str], int], Callable[[str], int]]:
    """Lookups of a user's status and department index (a LearnerResult carries neither)."""
    return (lambda uid: ds.user_status[ds.user_index[uid]]), (lambda uid: ds.user_dept[ds.user_index[uid]])


def _filter_cases(ds: Dataset) -> list[tuple[str, Params, Callable[[LearnerResult], bool]]]:
    """(name, wire params, independent predicate over records of every user status)."""
    status_of, dept_of = _attributes(ds)
    every = ds_records(ds)
    users = sorted({r.user_id for r in every})[:3]
    courses = sorted({r.course_id for r in every})[:2]
    enrollments = [r.enrollment_id for r in every[::97] if r.enrollment_id][:5]
    departments = [ds.department_ids[2], ds.department_ids[5]]
    dept_indexes = {ds.department_index[d] for d in departments}
    lo, hi = datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 6, 30, 23, 59, 59, tzinfo=UTC)

    def between(value: datetime | None, start: datetime | None, end: datetime | None) -> bool:
        return value is not None and (start is None or value >= start) and (end is None or value <= end)

    def active(r: LearnerResult) -> bool:
        return status_of(r.user_id) == 1

    return [
        ("default-active-only", [], active),
        ("every-status", EVERY_STATUS, lambda r: True),
        ("blocked-only", [("userStatuses[]", "3")], lambda r: status_of(r.user_id) == 3),
        ("users", [("userIds[]", u) for u in users], lambda r: active(r) and r.user_id in users),
        (
            "courses-and-statuses",
            [("courseIds[]", c) for c in courses]
            + [("completionStatuses[]", "failed"), ("completionStatuses[]", "passed"), *EVERY_STATUS],
            lambda r: r.course_id in courses and r.completion_status in {"failed", "passed"},
        ),
        (
            "departments",
            [("departmentIds[]", d) for d in departments],
            lambda r: active(r) and dept_of(r.user_id) in dept_indexes,
        ),
        (
            "enrollments",
            [("enrollmentIds[]", e) for e in enrollments] + EVERY_STATUS,
            lambda r: r.enrollment_id in enrollments,
        ),
        (
            "access-range",
            [
                ("accessDate[startDate]", "2019-01-01T00:00:00Z"),
                ("accessDate[endDate]", "2020-06-30T23:59:59Z"),
            ],
            lambda r: active(r) and between(r.access_date, lo, hi),
        ),
        (
            "access-start-only-with-offset",
            [("accessDate[startDate]", "2024-01-01T03:00:00+03:00")],
            lambda r: active(r) and between(r.access_date, datetime(2024, 1, 1, tzinfo=UTC), None),
        ),
        (
            "due-end-only",
            [("dueDate[endDate]", "2018-12-31T23:59:59Z")],
            lambda r: active(r) and between(r.due_date, None, datetime(2018, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ),
        (
            "completion-range-and-department",
            [
                ("completionDate[startDate]", "2019-01-01T00:00:00Z"),
                ("completionDate[endDate]", "2020-06-30T23:59:59Z"),
                ("departmentIds[]", departments[0]),
                *EVERY_STATUS,
            ],
            lambda r: (
                between(r.completion_date, lo, hi)
                and dept_of(r.user_id) == ds.department_index[departments[0]]
            ),
        ),
        (
            "unknown-user-matches-nothing",
            [("userIds[]", "00000000-0000-0000-0000-000000000000")],
            lambda r: False,
        ),
    ]


def ds_records(ds: Dataset) -> list[LearnerResult]:
    """Every record of a dataset, in position order."""
    return [ds.record(pos) for pos in range(len(ds))]


FILTER_NAMES = [
    case[0] for case in _filter_cases(Dataset(EmulatorConfig(results=60, seed=11, departments=12)))
]


@pytest.mark.anyio
@pytest.mark.parametrize("name", FILTER_NAMES)
async def test_filters_select_what_the_api_documents(
    emu: Emulator, session: aiohttp.ClientSession, name: str
) -> None:
    """AND across parameters, OR within a list, active users by default, inclusive one- or two-sided dates."""
    cases = {case[0]: case for case in _filter_cases(emu.dataset)}
    _, params, predicate = cases[name]
    expected = emu.expected_results(params)
    assert expected == [r for r in ds_records(emu.dataset) if predicate(r)]
    assert await export(session, emu, params, page_size=53) == expected
    if name not in ("every-status", "unknown-user-matches-nothing"):
        assert 0 < len(expected) < len(emu.dataset)


@pytest.mark.anyio
async def test_date_bounds_are_inclusive(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A range whose start and end are one row's exact accessDate returns that row."""
    row = emu.expected_results([])[7]
    instant = row.access_date.isoformat()
    params = [("accessDate[startDate]", instant), ("accessDate[endDate]", instant)]
    exported = await export(session, emu, params, page_size=10)
    assert row in exported
    assert all(r.access_date == row.access_date for r in exported)


@pytest.mark.anyio
async def test_seed_sample_request_is_accepted_and_filtered(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """The seed's exact sample URL answers 200 with the planted row matching all its filters."""
    status, _, body = await get(session, emu, SAMPLE_URL)
    assert status == 200, body
    page = parse_xml_page(body)
    assert [fields["userId"] for fields in page.fields] == ["85077abc-2639-11ea-8e3f-0a580af40c09"]
    (fields,) = page.fields
    assert fields["courseId"] == "f0e7400a-ca31-11e9-b6fc-0a580af40a22"
    assert fields["completionStatus"] == "failed"
    assert fields["courseTitle"] == "Course 1"
    assert not page.token_present
    pairs = [part.partition("=") for part in SAMPLE_URL.split("?", 1)[1].split("&")]
    assert [record_from_fields(fields)] == emu.expected_results([(name, value) for name, _, value in pairs])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param("userIds[]=42", "userIds", id="non-uuid-user"),
        pytest.param("departmentIds[]=", "departmentIds", id="empty-department"),
        pytest.param("completionStatuses[]=done", "completionStatuses", id="unknown-status"),
        pytest.param("userStatuses[]=2", "userStatuses", id="user-status-2"),
        pytest.param("accessDate[startDate]=yesterday", "accessDate", id="bad-date"),
        pytest.param(
            "dueDate[startDate]=2020-01-01T00:00:00Z&dueDate[endDate]=2019-01-01T00:00:00Z",
            "dueDate",
            id="start-after-end",
        ),
        pytest.param("accessDate[startDate]=2020-01-01T00:00:00 03:00", "%2B", id="unencoded-plus"),
        pytest.param("pageSize=0", "pageSize", id="page-size-zero"),
        pytest.param("pageSize=ten", "pageSize", id="page-size-text"),
        pytest.param("pageToken=%%%garbage", "pageToken", id="garbage-token"),
        pytest.param(
            "pageToken=" + base64.b64encode(b"not a uuid at all").decode(), "pageToken", id="foreign-token"
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_invalid_parameters_answer_400_with_code_and_message(
    emu: Emulator, session: aiohttp.ClientSession, params: str, fragment: str, fmt: str
) -> None:
    """Invalid input is a 400 whose body (in the requested format) has code and message."""
    status, _, body = await get(session, emu, "/learners/results?" + params.replace(" ", "%20"), fmt=fmt)
    assert status == 400
    if fmt == "json":
        document = json.loads(body)
        validate(document, "error-response.json")
        code, message = document["code"], document["message"]
    else:
        root = SafeET.fromstring(body)
        code, message = int(root.findtext("code") or 0), root.findtext("message") or ""
    assert code == 400
    assert fragment in message


# -- the unknowns' variants ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("lenient", "expected_users"), [(False, 1), (True, 2)], ids=["last-wins", "lenient"])
async def test_bare_repeated_list_parameters(
    session: aiohttp.ClientSession, lenient: bool, expected_users: int
) -> None:
    """Bare ``userIds=a&userIds=b``: the last value wins, unless lenient_lists collects both."""
    async with running_emulator(EmulatorConfig(results=300, lenient_lists=lenient)) as emu:
        users = sorted({r.user_id for r in emu.expected_results([])})[:2]
        params = [("userIds", users[0]), ("userIds", users[1])]
        exported = await export(session, emu, params, page_size=100)
        assert exported == emu.expected_results(params)
        assert len({r.user_id for r in exported}) == expected_users
        assert users[1] in {r.user_id for r in exported}


@pytest.mark.anyio
@pytest.mark.parametrize("subtree", [False, True], ids=["exact", "subtree"])
async def test_department_filter_with_and_without_subdepartments(
    session: aiohttp.ClientSession, subtree: bool
) -> None:
    """departmentIds matches the exact department, or its whole subtree with subdepartment_matching."""
    config = EmulatorConfig(results=600, departments=8, department_depth=3, subdepartment_matching=subtree)
    async with running_emulator(config) as emu:
        ds = emu.dataset
        root = ds.department_ids[0]
        exported = await export(session, emu, [("departmentIds[]", root), *EVERY_STATUS], page_size=200)
        departments = {ds.user_dept[ds.user_index[r.user_id]] for r in exported}
        assert departments == (set(range(8)) if subtree else {0})
        assert exported == emu.expected_results([("departmentIds[]", root), *EVERY_STATUS])


@pytest.mark.anyio
async def test_overdue_as_words_in_xml(session: aiohttp.ClientSession) -> None:
    """overdue_style='words' writes isOverdue as true/false in XML."""
    async with running_emulator(EmulatorConfig(results=200, overdue_style="words")) as emu:
        _, _, body = await get(session, emu, "/learners/results")
        page = parse_xml_page(body)
        assert {fields["isOverdue"] for fields in page.fields} == {"true", "false"}
        assert [record_from_fields(f) for f in page.fields] == emu.expected_results([])


@pytest.mark.anyio
async def test_empty_last_token_variant(session: aiohttp.ClientSession) -> None:
    """empty_last_token sends <nextPageToken/> (JSON "") on the last page of results and departments."""
    async with running_emulator(EmulatorConfig(results=30, empty_last_token=True)) as emu:
        _, _, body = await get(session, emu, "/learners/results")
        page = parse_xml_page(body)
        assert page.token_present
        assert page.token == ""
        _, _, body = await get(session, emu, "/learners/results", fmt="json")
        assert json.loads(body)["nextPageToken"] == ""
        _, _, body = await get(session, emu, "/departments", fmt="json")
        assert json.loads(body)["nextPageToken"] == ""


@pytest.mark.anyio
async def test_one_sided_ranges_can_be_rejected(session: aiohttp.ClientSession) -> None:
    """one_sided_ranges=False answers 400 to a range with one bound; both bounds are still served."""
    async with running_emulator(EmulatorConfig(results=50, one_sided_ranges=False)) as emu:
        start = "accessDate[startDate]=2020-01-01T00:00:00Z"
        end = "accessDate[endDate]=2030-01-01T00:00:00Z"
        for query in (start, end, "dueDate[endDate]=2030-01-01T00:00:00Z"):
            status, _, body = await get(session, emu, f"/learners/results?{query}", fmt="json")
            assert status == 400
            assert "both startDate and endDate are required" in json.loads(body)["message"]
        status, _, _ = await get(session, emu, f"/learners/results?{start}&{end}")
        assert status == 200


# -- departments ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_departments_are_paged_and_form_the_configured_tree(
    emu: Emulator, session: aiohttp.ClientSession, fmt: str
) -> None:
    """/departments pages through every department; parentDepartmentId rebuilds a tree of the set depth."""
    found: list[dict[str, str]] = []
    token = ""
    while True:
        status, _, body = await get(session, emu, f"/departments?pageSize=5&pageToken={token}", fmt=fmt)
        assert status == 200
        if fmt == "json":
            document = json.loads(body)
            validate(document, "departments-page.json")
            found += [{k: v for k, v in d.items() if isinstance(v, str)} for d in document["departments"]]
            token = document.get("nextPageToken", "")
        else:
            root = SafeET.fromstring(body)
            assert next(child.tag for child in root) == "departments"
            for element in root.find("departments") or []:
                assert element.tag == "department"
                assert element.find("subordination/subordinationType") is not None
                found.append({child.tag: child.text or "" for child in element if len(child) == 0})
            token = root.findtext("nextPageToken") or ""
        if not token:
            break
    assert [d["departmentId"] for d in found] == [d.department_id for d in emu.departments()]
    assert [d.get("parentDepartmentId") for d in found] == [d.parent_department_id for d in emu.departments()]
    parents = {d["departmentId"]: d.get("parentDepartmentId") for d in found}
    roots = [dept for dept, parent in parents.items() if parent is None]
    assert len(roots) == 1

    def depth(dept: str) -> int:
        parent = parents[dept]
        return 1 if parent is None else 1 + depth(parent)

    assert max(depth(d) for d in parents) == emu.config.department_depth
    assert any("&" in d["name"] for d in found)


# -- dataset --------------------------------------------------------------------------------------------


def test_dataset_has_realistic_mixes(dataset: Dataset) -> None:
    """Exactly `results` rows, all statuses, blocked users, absent optionals, odd titles, years of dates."""
    records = ds_records(dataset)
    assert len(records) == dataset.config.results
    assert {r.completion_status for r in records} == {s.value for s in CompletionStatus}
    assert {1, 3, 5} == set(dataset.user_status)
    for attribute in (
        "enrollment_id",
        "session_id",
        "due_date",
        "completion_date",
        "duration",
        "progress",
        "views_count",
    ):
        values = [getattr(r, attribute) for r in records]
        assert None in values
        assert any(value is not None for value in values)
    titles = {r.course_title for r in records}
    assert any("&" in t for t in titles)
    assert any("<" in t for t in titles)
    assert any(not t.isascii() for t in titles)
    years = {r.access_date.year for r in records}
    assert len(years) >= 6
    assert len({(r.user_id, r.course_id) for r in records}) == len(records)


def test_dataset_is_a_function_of_the_seed() -> None:
    """The same config builds the same rows; another seed builds different ones."""
    first = ds_records(Dataset(EmulatorConfig(results=500, seed=3)))
    assert first == ds_records(Dataset(EmulatorConfig(results=500, seed=3)))
    assert first != ds_records(Dataset(EmulatorConfig(results=500, seed=4)))


def test_ground_truth_file_round_trips(dataset: Dataset, tmp_path: Path) -> None:
    """write_expected_results writes expected_results as JSONL with the API's field names."""
    emu = Emulator(dataset.config, dataset=dataset)
    path = tmp_path / "truth.jsonl"
    count = emu.write_expected_results(EVERY_STATUS, path)
    lines = path.read_bytes().splitlines()
    assert count == len(lines) == len(emu.dataset)
    assert b'"userId"' in lines[0]
    decoded = [msgspec.json.decode(line, type=LearnerResult) for line in lines]
    assert decoded == emu.expected_results(EVERY_STATUS)


def test_expected_results_rejects_invalid_parameters(dataset: Dataset) -> None:
    """Ground truth for an invalid query raises ValueError with the API's message."""
    emu = Emulator(dataset.config, dataset=dataset)
    with pytest.raises(ValueError, match="userStatuses"):
        emu.expected_results([("userStatuses[]", "9")])


# -- running it ------------------------------------------------------------------------------------------


def test_cli_prints_base_url_and_serves_until_sigterm(tmp_path: Path) -> None:
    """``python -m ispring_async.emulator`` prints URL and credentials, writes the three ground truths,
    stops on SIGTERM."""
    truth, modules, users = (tmp_path / f"{name}.jsonl" for name in ("truth", "modules", "users"))
    env = {**os.environ, "ISPRING_CLIENT_SECRET": "from-the-environment"}
    command = [sys.executable, "-m", "ispring_async.emulator", "--port", "0", "--results", "120"]
    command += ["--ground-truth-modules", str(modules), "--ground-truth-users", str(users)]
    process = subprocess.Popen(
        [*command, "--ground-truth", str(truth)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        while len(lines) < 3:
            line = process.stdout.readline()
            assert line, "the emulator exited early"
            if line.startswith("ISPRING_"):
                key, value = line.strip().split("=", 1)
                lines[key] = value
        assert lines["ISPRING_BASE_URL"].startswith("http://127.0.0.1:")
        assert "from-the-environment" not in lines["ISPRING_CLIENT_SECRET"]
        import urllib.parse
        import urllib.request

        form = urllib.parse.urlencode(
            {
                "client_id": "emulator-client",
                "client_secret": "from-the-environment",
                "grant_type": "client_credentials",
            }
        ).encode()
        with urllib.request.urlopen(
            lines["ISPRING_BASE_URL"] + "/api/v3/token", data=form, timeout=10
        ) as reply:
            assert json.load(reply)["token_type"] == "bearer"
        assert len(truth.read_bytes().splitlines()) == 120
        same = Emulator(EmulatorConfig(results=120))
        assert len(modules.read_bytes().splitlines()) == len(same.expected_module_results(EVERY_STATUS))
        assert len(users.read_bytes().splitlines()) == len(same.expected_users())
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert returncode == 0


def test_pytest_fixture_serves_an_emulator(ispring_emulator: Emulator) -> None:
    """The plugin's ispring_emulator fixture serves from a thread, usable from sync code."""
    import urllib.request

    request = urllib.request.Request(
        ispring_emulator.base_url + "/learners/results?pageSize=5",
        headers={"Authorization": "Bearer " + ispring_emulator.issue_token(), "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        document = json.load(reply)
    assert [record_from_fields(item) for item in document["results"]] == ispring_emulator.expected_results(
        []
    )[:5]
    assert ispring_emulator.stats.requests["results"] == 1


def test_cli_options_build_the_config() -> None:
    """Every CLI switch lands in EmulatorConfig/Faults; --script takes ENDPOINT:N=FAULT."""
    from ispring_async.emulator import Fault
    from ispring_async.emulator._cli import build_config, parser

    argv = ["--results", "10", "--subdepartment-matching", "--overdue-style", "words", "--empty-last-token"]
    argv += [
        "--lenient-lists",
        "--reject-one-sided-ranges",
        "--script",
        "results:3=reset",
        "--script",
        "token:1=500",
        "--server-error",
        "0.25",
    ]
    argv += [
        "--rate-limit",
        "5",
        "--token-expire-after",
        "30",
        "--inserts-per-request",
        "2",
        "--latency",
        "0.1",
    ]
    config = build_config(parser().parse_args(argv))
    assert (config.results, config.subdepartment_matching, config.overdue_style) == (10, True, "words")
    assert config.empty_last_token
    assert config.lenient_lists
    assert not config.one_sided_ranges
    faults = config.faults
    assert faults.script == {("results", 3): Fault.RESET, ("token", 1): Fault.SERVER_ERROR}
    assert (faults.server_error, faults.rate_limit, faults.token_expire_after) == (0.25, 5, 30)
    assert (faults.inserts_per_request, faults.latency) == (2, 0.1)
    with pytest.raises(SystemExit):
        parser().parse_args(["--script", "results=reset"])

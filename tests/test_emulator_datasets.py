"""The emulator's module results (``/learners/modules/results``) and users (``/users/v2``): consistent
with its results, indexed pages equal to a full scan, the vendor's JSON schemas, faults and 400s."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import msgspec
import pytest
from defusedxml import ElementTree as SafeET

from ispring_async._models import LearnerModuleResult, User
from ispring_async.emulator import (
    Emulator,
    EmulatorConfig,
    Fault,
    Faults,
    XmlLayout,
    encode_page_token,
    running_emulator,
)
from ispring_async.emulator._config import XML_LAYOUTS
from ispring_async.emulator._dataset import Dataset
from ispring_async.emulator._modules import MAX_MODULES, ModuleCatalog
from ispring_async.emulator._query import (
    QueryError,
    decode_module_page_token,
    encode_module_page_token,
    parse_module_results,
    parse_users,
    select_all_modules,
    select_all_users,
    select_module_page,
    select_users_page,
)
from ispring_async.emulator._render import Renderer
from ispring_async.emulator._users import UserDirectory

SCHEMAS = Path(__file__).parent / "schemas"
Params = list[tuple[str, str]]
EVERY_STATUS: Params = [("userStatuses[]", "1"), ("userStatuses[]", "3"), ("userStatuses[]", "5")]


def _users_schema() -> dict[str, Any]:
    """``UsersPageV2`` with the two places where the emulator follows the issue, not the OpenAPI.

    ``fields`` are name/value pairs (the OpenAPI's ``UserProfileFields`` is an object), and a user who
    never signed in has no ``lastLoginDate`` (the OpenAPI marks it required).
    """
    document: dict[str, Any] = json.loads((SCHEMAS / "users-page-v2.json").read_text(encoding="utf-8"))
    user = document["$defs"]["UserV2"]
    user["required"] = [name for name in user["required"] if name != "lastLoginDate"]
    user["properties"]["fields"] = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
        },
    }
    return document


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """A small dataset whose date indexes span many blocks."""
    return Dataset(EmulatorConfig(results=1500, seed=5, departments=12), index_block=64)


def _pages_modules(
    ds: Dataset, catalog: ModuleCatalog, params: Params, size: int, token: str = ""
) -> list[tuple[int, int]]:
    """Walk every page of a module query from ``token`` on, as a client would."""
    found: list[tuple[int, int]] = []
    for _ in range(10_000):
        query = parse_module_results([*params, ("pageSize", str(size)), ("pageToken", token)])
        page, more = select_module_page(ds, catalog, query, subtree=False)
        found.extend(page)
        if not more:
            return found
        token = encode_module_page_token(ds.key(page[-1][0]), page[-1][1])
    raise AssertionError("pagination did not end")


def _module_cases(ds: Dataset, catalog: ModuleCatalog) -> list[Params]:
    rng = random.Random(3)
    users = rng.sample(ds.user_ids, 5)
    modules = rng.sample(catalog.module_ids, 6)
    items = rng.sample(catalog.course_item_ids, 4)
    return [
        [],
        EVERY_STATUS,
        [("userIds[]", u) for u in users],
        [("courseIds[]", ds.course_ids[1]), ("courseIds[]", ds.course_ids[2])],
        [("departmentIds[]", ds.department_ids[3])],
        [("moduleIds[]", m) for m in modules],
        [("courseItemIds[]", i) for i in items],
        [("moduleIds[]", modules[0]), ("courseItemIds[]", items[0])],
        [("completionStatuses[]", "passed"), ("completionStatuses[]", "failed")],
        [("accessDate[startDate]", "2019-01-01T00:00:00Z"), ("accessDate[endDate]", "2020-06-30T23:59:59Z")],
        [
            ("completionDate[startDate]", "2021-01-01T00:00:00Z"),
            ("completionDate[endDate]", "2022-01-01T00:00:00Z"),
        ],
        [("dueDate[startDate]", "2018-01-01T00:00:00Z"), *EVERY_STATUS],
        [("enrollmentIds[]", ds.enrollment_id(p)) for p in range(0, 1500, 97) if ds.r_flags[p] & 1],
    ]


def test_module_catalog_is_consistent_with_results(dataset: Dataset) -> None:
    """Each course has 1..MAX_MODULES modules; module results are every module of every enrollment."""
    catalog = ModuleCatalog(dataset)
    assert all(1 <= len(own) <= MAX_MODULES for own in catalog.course_modules)
    assert len(set(catalog.module_ids)) == len(catalog.module_ids)
    every = select_all_modules(dataset, catalog, parse_module_results(EVERY_STATUS), subtree=False)
    assert len(every) == catalog.count() > len(dataset)
    assert len(set(every)) == len(every)
    for pos, k in every[::37]:
        values = catalog.values(pos, k)
        assert values.access >= dataset.r_access[pos]
        assert values.completion == 0 or values.completion > values.access


def test_module_catalog_is_deterministic_and_leaves_results_alone() -> None:
    """The same config draws the same modules; the result rows are those of a dataset without them."""
    config = EmulatorConfig(results=400, seed=9)
    first, second = Dataset(config), Dataset(config)
    a, b = ModuleCatalog(first), ModuleCatalog(second)
    assert a.module_ids == b.module_ids and a.module_titles == b.module_titles
    assert [a.values(p, 0) for p in range(400)] == [b.values(p, 0) for p in range(400)]
    assert [first.record(p) for p in range(400)] == [Dataset(config).record(p) for p in range(400)]


def test_module_pages_equal_the_full_scan(dataset: Dataset) -> None:
    """Indexed module pages, walked by token at several sizes, equal the every-row scan for each filter."""
    catalog = ModuleCatalog(dataset)
    for params in _module_cases(dataset, catalog):
        expected = select_all_modules(dataset, catalog, parse_module_results(params), subtree=False)
        for size in (1, 7, 1000):
            assert _pages_modules(dataset, catalog, params, size) == expected, (params, size)


def test_module_pages_survive_inserts_between_pages() -> None:
    """Enrollments inserted between two pages appear after the token, and nothing already paged repeats."""
    ds = Dataset(EmulatorConfig(results=300, seed=4))
    catalog = ModuleCatalog(ds)
    query = parse_module_results([*EVERY_STATUS, ("pageSize", "50")])
    first, more = select_module_page(ds, catalog, query, subtree=False)
    assert more
    rng = random.Random(1)
    for _ in range(20):
        ds.insert(rng)
    token = encode_module_page_token(ds.key(first[-1][0]), first[-1][1])
    rest = _pages_modules(ds, catalog, EVERY_STATUS, 50, token)
    assert first + rest == select_all_modules(ds, catalog, parse_module_results(EVERY_STATUS), subtree=False)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty-is-first-page"),
        pytest.param("bm90LWEtdG9rZW4", id="not-a-uuid"),
        pytest.param("MDE0Njk3NjMtODIyMC01MWE0LWYxNmQtNzY4Zjk1MTcwNTM0", id="results-token-without-module"),
        pytest.param("%%%", id="not-base64"),
    ],
)
def test_module_page_tokens_are_validated(token: str) -> None:
    """Only a module token (uuid.k) continues a module query; a results token or junk is a 400."""
    if not token:
        assert parse_module_results([("pageToken", token)]).after is None
        return
    with pytest.raises(QueryError, match="pageToken"):
        decode_module_page_token(token)


def test_users_cover_every_user_of_the_results(dataset: Dataset) -> None:
    """Every user holding a result has one profile, in its department, whatever the status."""
    directory = UserDirectory(dataset)
    every = select_all_users(dataset, directory, parse_users([]), subtree=False)
    assert sorted(every) == list(range(len(dataset.user_ids)))
    assert {dataset.r_user[p] for p in range(len(dataset))} <= set(every)
    logins = [values[0] for values in directory.field_values]
    assert len(set(logins)) == len(logins)


def test_users_pages_equal_the_full_scan(dataset: Dataset) -> None:
    """Users pages walked by token equal the full scan, for each filter list and their combination."""
    directory = UserDirectory(dataset)
    rng = random.Random(2)
    picked = rng.sample(range(len(dataset.user_ids)), 6)
    cases: list[Params] = [
        [],
        [("departments[]", dataset.department_ids[2]), ("departments[]", dataset.department_ids[5])],
        [("userIds[]", dataset.user_ids[u]) for u in picked],
        [("logins[]", directory.field_values[u][0]) for u in picked[:3]],
        [("emails[]", directory.field_values[u][1]) for u in picked[3:]],
        [("groups[]", directory.group_ids[0]), ("groups[]", directory.group_ids[7])],
        [("groups[]", directory.group_ids[1]), ("departments[]", dataset.department_ids[4])],
        [("logins[]", "nobody")],
    ]
    for params in cases:
        expected = select_all_users(dataset, directory, parse_users(params), subtree=False)
        for size in (1, 5, 1000):
            found: list[int] = []
            after: str | None = None
            while True:
                query = parse_users(
                    [*params, ("pageSize", str(size)), *([("pageToken", after)] if after else [])]
                )
                page, more = select_users_page(dataset, directory, query, subtree=False)
                found.extend(page)
                if not more:
                    break
                after = encode_page_token(int(dataset.user_ids[page[-1]].replace("-", ""), 16))
            assert found == expected, (params, size)
    assert select_all_users(dataset, directory, parse_users(cases[-1]), subtree=False) == []


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in XML_LAYOUTS])
def test_every_xml_layout_renders_well_formed_pages(dataset: Dataset, name: str) -> None:
    """Module and users pages are well-formed XML with one record element per item in every layout."""
    catalog, directory = ModuleCatalog(dataset), UserDirectory(dataset)
    renderer = Renderer(dataset, overdue_words=False, layout=XML_LAYOUTS[name])
    items = [(p, k) for p in range(40) for k in range(len(catalog.modules_of(p)))]
    body = b"".join(renderer.module_results("xml", catalog, items, "tok"))
    root = SafeET.fromstring(body)
    assert len(root.findall("./results/result")) == len(items)
    assert root.findtext("nextPageToken") == "tok"
    users = list(range(30))
    root = SafeET.fromstring(b"".join(renderer.users("xml", directory, users, None)))
    profiles = root.findall("./userProfiles/userProfile")
    assert len(profiles) == len(users)
    assert [p.findtext("userId") for p in profiles] == [dataset.user_ids[u] for u in users]
    assert [len(p.findall("./fields/field")) for p in profiles] == [4] * len(users)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator answering unknown ids with 400."""
    async with running_emulator(EmulatorConfig(results=600, seed=3, unknown_ids="400")) as emu:
        yield emu


async def _get(emu: Emulator, path: str, params: Params, *, json_format: bool = True) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    if json_format:
        headers["Accept"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.base_url + path, params=params, headers=headers) as response,
    ):
        return response.status, await response.read()


@pytest.mark.anyio
async def test_json_pages_validate_against_the_vendor_schemas(emulator: Emulator) -> None:
    """JSON module results and users pages validate against the OpenAPI schemas (users: two deviations)."""
    checker = jsonschema.FormatChecker()
    status, body = await _get(emulator, "/learners/modules/results", [*EVERY_STATUS, ("pageSize", "300")])
    assert status == 200
    jsonschema.validate(
        json.loads(body), _schema("learners-modules-results-response.json"), format_checker=checker
    )
    status, body = await _get(emulator, "/users/v2", [("pageSize", "300")])
    assert status == 200
    jsonschema.validate(json.loads(body), _users_schema(), format_checker=checker)


@pytest.mark.anyio
async def test_json_pages_decode_to_the_ground_truth(emulator: Emulator) -> None:
    """One JSON page of each endpoint decodes (msgspec, no library parser) to the ground truth records."""
    params: Params = [*EVERY_STATUS, ("courseIds[]", emulator.dataset.course_ids[0])]
    status, body = await _get(emulator, "/learners/modules/results", params)
    records = msgspec.json.decode(body, type=dict[str, list[LearnerModuleResult]])["results"]
    assert status == 200 and records == emulator.expected_module_results(params) != []
    status, body = await _get(emulator, "/users/v2", [("pageSize", "1000")])
    users = msgspec.json.decode(body, type=dict[str, list[User]])["userProfiles"]
    assert status == 200 and users == emulator.expected_users() != []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "name", "noun"),
    [
        pytest.param("/learners/modules/results", "moduleIds[]", "module IDs", id="module-ids"),
        pytest.param("/learners/modules/results", "courseItemIds[]", "course item IDs", id="course-item-ids"),
        pytest.param("/learners/modules/results", "userIds[]", "user IDs", id="module-results-user-ids"),
        pytest.param("/users/v2", "userIds[]", "user IDs", id="users-user-ids"),
        pytest.param("/users/v2", "departments[]", "department IDs", id="users-departments"),
        pytest.param("/users/v2", "groups[]", "group IDs", id="users-groups"),
    ],
)
async def test_unknown_ids_answer_400_naming_the_list(
    emulator: Emulator, path: str, name: str, noun: str
) -> None:
    """Under unknown_ids="400" one unknown id in a list fails the request, naming the list, not the id."""
    unknown = "00000000-0000-1000-8000-000000000000"
    status, body = await _get(emulator, path, [(name, unknown)])
    assert status == 400
    assert json.loads(body) == {"code": 400, "message": f"One or more invalid {noun}"}
    assert unknown not in body.decode()
    assert emulator.stats.faults["unknown_ids"] == 1
    with pytest.raises(QueryError, match=noun):
        (emulator.expected_module_results if path.startswith("/learners") else emulator.expected_users)(
            [(name, unknown)]
        )


@pytest.mark.anyio
async def test_scripted_faults_hit_the_new_endpoints() -> None:
    """Faults.script names module_results and users like any endpoint; the path prefix applies to both."""
    faults = Faults(script={("module_results", 1): Fault.SERVER_ERROR, ("users", 2): Fault.RATE_LIMITED})
    async with running_emulator(EmulatorConfig(results=100, faults=faults, path_prefix="/api/v2")) as emu:
        assert emu.base_url.endswith("/api/v2")
        assert (await _get(emu, "/learners/modules/results", []))[0] == 500
        assert (await _get(emu, "/learners/modules/results", []))[0] == 200
        assert (await _get(emu, "/users/v2", [], json_format=False))[0] == 200
        assert (await _get(emu, "/users/v2", []))[0] == 429
        assert emu.stats.requests["module_results"] == 2 and emu.stats.requests["users"] == 2


def test_ground_truth_jsonl_matches_the_python_ground_truth(tmp_path: Path) -> None:
    """write_expected_* write the same records as expected_*, one JSON line each, in API names."""
    emu = Emulator(EmulatorConfig(results=200, seed=8, xml_layout=XmlLayout()))
    path = tmp_path / "modules.jsonl"
    assert emu.write_expected_module_results(EVERY_STATUS, path) == len(
        emu.expected_module_results(EVERY_STATUS)
    )
    lines = path.read_bytes().splitlines()
    assert [
        msgspec.json.decode(line, type=LearnerModuleResult) for line in lines
    ] == emu.expected_module_results(EVERY_STATUS)
    assert b'"moduleTitle"' in lines[0]
    path = tmp_path / "users.jsonl"
    assert emu.write_expected_users([], path) == len(emu.expected_users())
    decoded = [msgspec.json.decode(line, type=User) for line in path.read_bytes().splitlines()]
    assert decoded == emu.expected_users()

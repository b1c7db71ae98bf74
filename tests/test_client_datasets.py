"""Module results, users and departments through the client, over real HTTP against the emulator.

Each export is compared with the emulator's ground truth (``expected_module_results``,
``expected_users``) record for record: nothing lost, nothing duplicated, in XML and JSON, with and
without a fan-out, under seeded faults; then the filters, unknown ids, resume from a page token, and
the streams' lifetime.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from ispring_async import (
    BadRequestError,
    Client,
    ConfigurationError,
    DateRange,
    LearnerModuleResult,
    ModuleResultsQuery,
    Stream,
    User,
    UsersQuery,
)
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, running_emulator
from tests._helpers import drain, no_wait

pytestmark = pytest.mark.anyio
NO_WAIT = no_wait(12)
EVERYONE = [1, 3, 5]
UNKNOWN = "00000000-0000-1000-8000-000000000000"
# Well over 10% of requests fail, in every way a retry can mend (a 200 HTML page is a wrong base URL,
# not retried): seeded, so every run meets the same faults.
FAULTS = Faults(
    seed=14,
    rate_limited=0.02,
    retry_after=0.0,
    server_error=0.03,
    bad_gateway=0.02,
    reset=0.03,
    truncate=0.03,
    malformed=0.03,
    script={("module_results", 2): Fault.EXPIRE_TOKEN, ("users", 2): Fault.EXPIRE_TOKEN},
)
BODY_FAULTS = ("429", "500", "502", "reset", "truncate", "malformed")


@contextlib.asynccontextmanager
async def serving(
    config: EmulatorConfig, *, response_format: str = "json", page_size: int = 50, **options: Any
) -> AsyncIterator[tuple[Emulator, Client]]:
    """An emulator and a zero-wait client pointed at it."""
    async with (
        running_emulator(config) as emu,
        Client(
            emu.base_url,
            client_id=emu.client_id,
            client_secret=emu.client_secret,
            retry=NO_WAIT,
            response_format=response_format,
            page_size=page_size,
            **options,
        ) as client,
    ):
        yield emu, client


def assert_exact(got: Sequence[LearnerModuleResult] | Sequence[User], truth: Sequence[Any]) -> None:
    """The same records, each once: compared as multisets by identity, then value for value."""
    ids = collections.Counter(record.identity for record in got)
    assert [i for i, n in ids.items() if n > 1] == []
    assert len(got) == len(truth)
    by_id = {record.identity: record for record in truth}
    assert len(by_id) == len(truth), "ground truth identities are unique"
    assert all(by_id.get(record.identity) == record for record in got)


@pytest.mark.parametrize("response_format", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
@pytest.mark.parametrize(
    "split", [pytest.param(s, id=s) for s in ("none", "adaptive", "window", "department", "combined")]
)
async def test_module_results_equal_ground_truth_under_faults(response_format: str, split: str) -> None:
    """Every module result of the account, each once and exactly as the emulator holds it, whatever the
    split and format, while more than one request in ten fails."""
    config = EmulatorConfig(results=1200, seed=21, departments=8, faults=FAULTS)
    async with serving(config, response_format=response_format) as (emu, client):
        query = ModuleResultsQuery(user_statuses=EVERYONE)
        got = await drain(client.learner_module_results(query, split=split, concurrency=4))
        truth = emu.expected_module_results(query.to_params())
        injected = sum(emu.stats.faults[kind] for kind in BODY_FAULTS)
    assert len(truth) > 2 * 1200  # several modules per enrollment
    assert_exact(got, truth)
    assert injected >= 0.1 * emu.stats.requests["module_results"]


@pytest.mark.parametrize(
    "make_query",
    [
        pytest.param(
            lambda emu: ModuleResultsQuery(module_ids=emu.modules.module_ids[:7], user_statuses=EVERYONE),
            id="module-ids",
        ),
        pytest.param(
            lambda emu: ModuleResultsQuery(course_item_ids=emu.modules.course_item_ids[3:9]),
            id="course-item-ids",
        ),
        pytest.param(
            lambda emu: ModuleResultsQuery(
                completion_statuses=["passed", "failed"],
                access_date=DateRange(
                    start=datetime(2019, 1, 1, tzinfo=UTC), end=datetime(2021, 1, 1, tzinfo=UTC)
                ),
                user_statuses=EVERYONE,
            ),
            id="statuses-and-access-window",
        ),
        pytest.param(
            lambda emu: ModuleResultsQuery(
                course_ids=emu.dataset.course_ids[:2], department_ids=emu.dataset.department_ids[1:4]
            ),
            id="courses-and-departments",
        ),
    ],
)
async def test_module_results_filters_fan_out_exactly(make_query: Any) -> None:
    """A filtered module query fanned out by date windows equals the emulator's answer to it unsplit."""
    async with serving(EmulatorConfig(results=1500, seed=4, departments=10)) as (emu, client):
        query = make_query(emu)
        truth = emu.expected_module_results(query.to_params())
        got = await drain(client.learner_module_results(query, split="adaptive", concurrency=4))
    assert truth, "the filter selects something"
    assert_exact(got, truth)


@pytest.mark.parametrize("response_format", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
@pytest.mark.parametrize("split", [pytest.param(s, id=s) for s in ("none", "adaptive", "department")])
async def test_users_equal_ground_truth_under_faults(response_format: str, split: str) -> None:
    """Every user (every status) once, nested fields and all, whatever the split and format, under faults."""
    config = EmulatorConfig(results=3000, seed=22, departments=12, faults=FAULTS)
    async with serving(config, response_format=response_format) as (emu, client):
        got = await drain(client.users(split=split, concurrency=4))
        truth = emu.expected_users()
        requests = emu.stats.requests
    assert {u.status for u in truth} == {1, 3, 5}
    assert_exact(got, truth)
    assert all(u.login and u.email and u.first_name and u.last_name for u in got)
    if split != "none":
        # One chain per department (plus the first page for adaptive): the split did happen.
        assert requests["departments"] >= 1 and requests["users"] >= 12


async def test_users_by_default_are_one_chain_that_never_asks_departments() -> None:
    """``client.users()`` reads one chain: exact whatever ``/departments`` lists (a split would miss the
    users of a department it leaves out)."""
    config = EmulatorConfig(results=3000, seed=22, departments=12)
    async with serving(config, page_size=100) as (emu, client):
        got = await drain(client.users())
        truth = emu.expected_users()
        requests = emu.stats.requests
    assert_exact(got, truth)
    assert requests["departments"] == 0
    assert requests["users"] == -(-len(truth) // 100)


async def test_users_split_by_overlapping_departments_delivers_each_once() -> None:
    """With sub-department matching a user matches several department chains, and still comes once."""
    config = EmulatorConfig(results=2000, seed=5, departments=15, subdepartment_matching=True)
    async with serving(config) as (emu, client):
        got = await drain(client.users(split="department", concurrency=4))
        truth = emu.expected_users()
    assert_exact(got, truth)


async def test_users_filters() -> None:
    """Department, id, login, email and group filters reach the API and select what the emulator says."""
    async with serving(EmulatorConfig(results=1500, seed=6)) as (emu, client):
        directory, ds = emu.directory, emu.dataset
        logins = [values[0] for values in directory.field_values[:5]]
        queries = [
            UsersQuery(department_ids=ds.department_ids[2:5]),
            UsersQuery(user_ids=ds.user_ids[10:20]),
            UsersQuery(logins=logins),
            UsersQuery(emails=[values[1] for values in directory.field_values[7:9]]),
            UsersQuery(group_ids=directory.group_ids[:2], department_ids=ds.department_ids[:20]),
        ]
        for query in queries:
            truth = emu.expected_users(query.to_params())
            assert truth, query
            for split in ("none", "adaptive"):
                assert_exact(await drain(client.users(query, split=split)), truth)
        by_login = await drain(client.users(UsersQuery(logins=logins), split="none"))
        assert sorted(u.login or "" for u in by_login) == sorted(logins)


@pytest.mark.parametrize(
    ("endpoint", "make_query", "parameter"),
    [
        pytest.param(
            "module_results",
            lambda emu: ModuleResultsQuery(module_ids=[*emu.modules.module_ids[:3], UNKNOWN]),
            "moduleIds[]",
            id="module-ids",
        ),
        pytest.param(
            "module_results",
            lambda emu: ModuleResultsQuery(course_item_ids=[UNKNOWN, *emu.modules.course_item_ids[:4]]),
            "courseItemIds[]",
            id="course-item-ids",
        ),
        pytest.param(
            "users",
            lambda emu: UsersQuery(user_ids=[*emu.dataset.user_ids[:6], UNKNOWN]),
            "userIds[]",
            id="user-ids",
        ),
        pytest.param(
            "users",
            lambda emu: UsersQuery(group_ids=[UNKNOWN, *emu.directory.group_ids[:2]]),
            "groups[]",
            id="groups",
        ),
        pytest.param(
            "users",
            lambda emu: UsersQuery(department_ids=[UNKNOWN, *emu.dataset.department_ids[:3]]),
            "departments[]",
            id="departments",
        ),
    ],
)
async def test_unknown_ids_raise_or_are_skipped(endpoint: str, make_query: Any, parameter: str) -> None:
    """Under unknown_ids="400" one unknown id raises BadRequestError naming the list; with
    skip_unknown_ids it is found, left out and reported, and every row of the known ids arrives."""
    config = EmulatorConfig(results=800, seed=7, unknown_ids="400")
    for skip in (False, True):
        async with serving(config, skip_unknown_ids=skip) as (emu, client):
            query = make_query(emu)
            known = dataclasses.replace(
                query,
                **{field: [i for i in getattr(query, field) if i != UNKNOWN] for field in _id_fields(query)},
            )
            stream: Stream[LearnerModuleResult] | Stream[User] = (
                client.learner_module_results(query, split="none")
                if endpoint == "module_results"
                else client.users(query, split="none")
            )
            if not skip:
                with pytest.raises(BadRequestError, match=parameter.replace("[]", r"\[\]")):
                    await drain(stream)
                continue
            got: list[Any] = await drain(stream)
            truth = (
                emu.expected_module_results(known.to_params())
                if endpoint == "module_results"
                else emu.expected_users(known.to_params())
            )
            assert truth
            assert_exact(got, truth)
            assert client.skipped_ids == {parameter: (UNKNOWN,)}


def _id_fields(query: ModuleResultsQuery | UsersQuery) -> list[str]:
    names = ("module_ids", "course_item_ids", "user_ids", "group_ids", "department_ids")
    return [name for name in names if getattr(query, name, None) is not None]


async def test_module_result_pages_resume_from_a_saved_token() -> None:
    """A chain stopped after two pages and resumed from its last token ends exactly at the ground truth."""
    async with serving(EmulatorConfig(results=600, seed=8), page_size=40) as (emu, client):
        query = ModuleResultsQuery(user_statuses=EVERYONE)
        first: list[LearnerModuleResult] = []
        token = None
        async with contextlib.aclosing(client.module_result_pages(query)) as pages:
            async for page in pages:
                first.extend(page.records)
                token = page.next_page_token
                if len(first) >= 80:
                    break
        assert token
        rest = [r async for page in client.module_result_pages(query, token) for r in page.records]
        truth = emu.expected_module_results(query.to_params())
    assert first + rest == truth


async def test_streams_refuse_iteration_outside_their_block() -> None:
    """users(), learner_module_results() and departments() are iterated inside async with, or refuse
    before sending any request."""
    async with serving(EmulatorConfig(results=100)) as (emu, client):
        for stream in (client.users(), client.learner_module_results(), client.departments()):
            with pytest.raises(RuntimeError, match="async with"):
                await anext(stream)
        assert emu.stats.requests["users"] == emu.stats.requests["module_results"] == 0
        assert emu.stats.requests["departments"] == 0
        async with client.departments() as departments:
            assert [d async for d in departments] == emu.departments()


async def test_stopping_early_leaves_nothing_running() -> None:
    """Leaving a fanned-out module stream after one record cancels its chains before async with returns."""
    from tests._helpers import client_tasks

    async with serving(EmulatorConfig(results=2000, faults=Faults(latency=0.01))) as (_, client):
        async with client.learner_module_results(concurrency=6) as modules:
            async for _ in modules:
                break
        assert client_tasks() == set()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: ModuleResultsQuery(module_ids=["not-a-uuid"]), "module_ids", id="module-id"),
        pytest.param(lambda: ModuleResultsQuery(course_item_ids=[]), "empty", id="empty-items"),
        pytest.param(
            lambda: ModuleResultsQuery(user_ids="85077abc-2639-11ea-8e3f-0a580af40c09"), "list", id="str"
        ),
        pytest.param(lambda: UsersQuery(group_ids=["x"]), "group_ids", id="group-id"),
        pytest.param(lambda: UsersQuery(logins=[""]), "logins", id="empty-login"),
        pytest.param(lambda: UsersQuery(emails="a@b.c"), "list", id="email-str"),
        pytest.param(lambda: UsersQuery(page_size=0), "page_size", id="page-size"),
    ],
)
def test_queries_validate_before_any_request(make: Any, message: str) -> None:
    """Bad filters are ConfigurationErrors naming the query type and field, raised at construction."""
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_query_parameters() -> None:
    """Module lists follow the shared filters and precede pageSize; users' lists use the API's names."""
    module = "0c6a62f4-2f52-11ea-8e3f-0a580af40c09"
    assert ModuleResultsQuery(
        course_item_ids=[module], module_ids=[module], user_statuses=[1], page_size=9
    ).to_params() == [
        ("userStatuses[]", "1"),
        ("moduleIds[]", module),
        ("courseItemIds[]", module),
        ("pageSize", "9"),
    ]
    assert UsersQuery(group_ids=[module], department_ids=[module], logins=["a", "a"]).to_params() == [
        ("departments[]", module),
        ("logins[]", "a"),
        ("groups[]", module),
    ]


async def test_wrong_query_types_are_refused() -> None:
    """A ResultsQuery is not a module or users query: the mistake is a ConfigurationError, not 400s."""
    from ispring_async import ResultsQuery

    async with serving(EmulatorConfig(results=50)) as (_, client):
        with pytest.raises(ConfigurationError, match="ModuleResultsQuery"):
            client.learner_module_results(ResultsQuery())  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="UsersQuery"):
            client.users(ResultsQuery())  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="no dates"):
            client.users(split="window")


@pytest.mark.parametrize(
    ("fresh_token", "message"),
    [
        pytest.param(True, "pages in a row were empty or repeated", id="same-page-new-tokens"),
        pytest.param(False, "already followed", id="same-token-again"),
    ],
)
async def test_users_chain_stops_on_a_server_that_pages_forever(fresh_token: bool, message: str) -> None:
    """A users server repeating one page (with fresh tokens, or the same token) ends in PaginationError
    within MAX_STALE_PAGES requests: the stale-page guards read users pages too."""
    from aiohttp import web

    from ispring_async import PaginationError
    from ispring_async.emulator._render import Renderer
    from tests._servers import serve

    emu = Emulator(EmulatorConfig(results=40, seed=2))
    renderer = Renderer(emu.dataset, overdue_words=False)
    calls = 0

    async def users(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        token = f"t{calls}" if fresh_token else "same"
        body = b"".join(renderer.users("json", emu.directory, [0, 1, 2], token))
        return web.Response(body=body, content_type="application/json")

    async with (
        serve({"/users/v2": users}) as server,
        Client(server.base_url, token="static", retry=NO_WAIT, response_format="json") as client,
    ):
        with pytest.raises(PaginationError, match=message):
            await drain(client.users(split="none"))
    # Stopped in bounded time: the guard trips by the MAX_STALE_PAGES-th repeat, not at the page cap.
    assert calls <= 21

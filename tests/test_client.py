"""Client end to end: the wire format, pagination, exactly-once delivery, resume, faults, event loops.

Scripted servers (tests/_servers.py) pin exact requests and single faults; the emulator is the ground
truth for whole exports (many pages, filters, seeded faults, token expiry).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import anyio
import pytest
import uvloop
from aiohttp import web

from ispring_async import (
    Client,
    CompletionStatus,
    ConfigurationError,
    DateRange,
    LearnerResult,
    PaginationError,
    ResponseFormat,
    ResultsQuery,
    RetryEvent,
    UnexpectedContentError,
    UserStatus,
)
from ispring_async.emulator import EmulatorConfig, Fault, Faults, running_emulator
from tests._helpers import (
    C1,
    D1,
    E1,
    SEED_TOKEN,
    U1,
    U2,
    client_tasks,
    drain,
    no_wait,
    seed_params,
    seed_query,
    utc,
)
from tests._servers import PagedResults, Server, partial_then, results_body, serve

PATH = "/learners/results"
NO_WAIT = no_wait(6)
ALL_USERS = [UserStatus.ACTIVE, UserStatus.BLOCKED, UserStatus.TERMINATED]


def client_for(url: str, **options: Any) -> Client:
    """A Client with a static token and zero-wait retries."""
    options.setdefault("retry", NO_WAIT)
    return Client(url, token="static-token", **options)


async def export(client: Client, query: ResultsQuery | None = None) -> list[LearnerResult]:
    """Every record of ``query``, from one chain (API order, exact request counts)."""
    return await drain(client.learner_results(query, split="none"))


# -- the wire ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_seed_sample_request_on_the_wire() -> None:
    """The seed's sample request reaches the server as documented (up to order and bracket escaping)."""
    async with serve({PATH: PagedResults(0)}) as server, client_for(server.base_url) as client:
        pages = [page async for page in client.result_pages(seed_query(), page_token=SEED_TOKEN)]
    assert len(pages) == 1
    (seen,) = server.hits(PATH)
    expected = seed_params() + Counter([("pageToken", SEED_TOKEN)])
    assert Counter(seen.query) == expected
    # On the wire: '[' ']' percent-encoded (PHP decodes both forms), ':' and the token left as they are.
    assert Counter(parse_qsl(seen.raw_query)) == expected
    assert "+" not in seen.raw_query
    assert seen.authorization == "Bearer static-token"
    assert seen.method == "GET"


@pytest.mark.anyio
async def test_every_filter_round_trips_through_the_server() -> None:
    """Every filter arrives as the server-side parse of exactly ``to_params()`` plus the client's pageSize."""
    query = ResultsQuery(
        enrollment_ids=[E1],
        user_ids=[U1, U2],
        course_ids=[C1],
        department_ids=[D1],
        completion_statuses=list(CompletionStatus),
        user_statuses=ALL_USERS,
        access_date=DateRange(start=utc(2020, 1, 1)),
        due_date=DateRange(end=utc(2021, 6, 30, 23, 59, 59)),
        completion_date=DateRange(start=utc(2019, 1, 1), end=utc(2022, 1, 1)),
    )
    async with serve({PATH: PagedResults(0)}) as server, client_for(server.base_url, page_size=250) as client:
        await export(client, query)
    (seen,) = server.hits(PATH)
    assert seen.query == [*query.to_params(), ("pageSize", "250")]


# -- pagination and exactly-once ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fmt", [pytest.param(ResponseFormat.XML, id="xml"), pytest.param(ResponseFormat.JSON, id="json")]
)
async def test_many_pages_every_record_once(fmt: ResponseFormat) -> None:
    """Pagination follows tokens across many pages and yields every record once, in order."""
    async with (
        serve({PATH: PagedResults(95)}) as server,
        client_for(server.base_url, response_format=fmt) as client,
    ):
        records = await export(client, ResultsQuery(page_size=10))
    assert [r.time_spent for r in records] == list(range(95))
    assert len(server.hits(PATH)) == 10


@pytest.mark.anyio
async def test_page_failing_part_way_is_refetched_whole() -> None:
    """A page whose body breaks part-way is fetched again whole: no record lost, none repeated."""
    pages = PagedResults(50)
    calls = 0
    holder: dict[str, Server] = {}

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls in (3, 4):  # page 3 breaks twice: once reset, once cut short
            indices, token = pages.page(request)
            body = results_body(indices, token)
            if calls == 3:
                return await partial_then(
                    request, body, ctype="application/xml", mode="reset", server=holder["s"]
                )
            return web.Response(body=body[: len(body) * 2 // 3], content_type="application/xml")
        return await pages(request)

    events: list[RetryEvent] = []
    async with serve({PATH: flaky}) as server, client_for(server.base_url) as client:
        holder["s"] = server
        seen_pages = [
            p async for p in client.result_pages(ResultsQuery(page_size=10), on_retry=events.append)
        ]
    records = [r for page in seen_pages for r in page.records]
    assert [r.time_spent for r in records] == list(range(50))
    assert [(e.cause, e.page) for e in events] == [
        ("truncated", "GET /learners/results page 3"),
        ("truncated", "GET /learners/results page 3"),
    ]


@pytest.mark.anyio
async def test_resume_from_saved_token() -> None:
    """Stopping after a page and resuming from its next_page_token delivers exactly the rest."""
    async with serve({PATH: PagedResults(45)}) as server, client_for(server.base_url) as client:
        query = ResultsQuery(page_size=10)
        first: list[LearnerResult] = []
        saved = None
        async for page in client.result_pages(query):
            first += page.records
            saved = page.next_page_token
            if len(first) == 20:
                break
        rest = [
            r
            for page in [p async for p in client.result_pages(query, page_token=saved)]
            for r in page.records
        ]
    assert [r.time_spent for r in first + rest] == list(range(45))


@pytest.mark.anyio
async def test_repeating_token_from_server_is_a_pagination_error() -> None:
    """A server that keeps returning the same token makes the export fail, not loop."""

    async def stuck(request: web.Request) -> web.StreamResponse:
        return web.Response(body=results_body(range(3), "same"), content_type="application/xml")

    async with serve({PATH: stuck}) as server, client_for(server.base_url) as client:
        with pytest.raises(PaginationError):
            await export(client)
    assert len(server.hits(PATH)) == 2


# -- the Client object -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "exactly one", id="no-credentials"),
        pytest.param({"token": "t", "client_id": "i", "client_secret": "s"}, "exactly one", id="both"),
        pytest.param({"client_id": "i"}, "both be given", id="id-without-secret"),
        pytest.param({"token": ""}, "empty", id="empty-token"),
        pytest.param({"token": "t", "page_size": 0}, "page_size", id="page-size"),
        pytest.param({"token": "t", "response_format": "yaml"}, "response_format", id="format"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], message: str) -> None:
    """Bad options raise ConfigurationError before anything is opened."""
    with pytest.raises(ConfigurationError, match=message):
        Client("https://api-learn.ispringlearn.com", **kwargs)


def test_plain_http_refused_for_remote_hosts() -> None:
    """http:// to a non-loopback host is refused unless allow_insecure_http=True."""
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        Client("http://api-learn.ispringlearn.com", token="t")
    assert Client("http://api-learn.ispringlearn.com", token="t", allow_insecure_http=True).base_url


def test_repr_hides_secrets() -> None:
    """The repr shows the base URL and never the secret or the token."""
    shown = repr(Client("https://x.example", client_id="the-id", client_secret="s3cr3t")) + repr(
        Client("https://x.example", token="tok-abc")
    )
    assert "https://x.example" in shown
    assert "s3cr3t" not in shown
    assert "tok-abc" not in shown


@pytest.mark.anyio
async def test_use_outside_context_is_a_clear_error() -> None:
    """Iterating before ``async with`` or after it raises RuntimeError saying how to use the client."""
    client = Client("https://x.example", token="t")
    with pytest.raises(RuntimeError, match="async with"):
        client.learner_results()
    async with serve({PATH: PagedResults(1)}) as server:
        async with client_for(server.base_url) as opened:
            assert len(await export(opened)) == 1
        with pytest.raises(RuntimeError, match="closed"):
            opened.result_pages()
        with pytest.raises(RuntimeError, match="opened once"):
            await opened.__aenter__()


# -- event loops -------------------------------------------------------------------------------------


async def count_records() -> int:
    """Start a server and export 25 records from it, in whatever loop is running."""
    async with serve({PATH: PagedResults(25)}) as server, client_for(server.base_url) as client:
        return len(await export(client, ResultsQuery(page_size=7)))


def run_asyncio(main: Callable[[], Awaitable[int]]) -> int:
    return asyncio.run(main())  # type: ignore[arg-type]


def run_uvloop(main: Callable[[], Awaitable[int]]) -> int:
    return uvloop.run(main())  # type: ignore[arg-type]


def run_anyio(main: Callable[[], Awaitable[int]]) -> int:
    return anyio.run(main, backend="asyncio")


def run_anyio_uvloop(main: Callable[[], Awaitable[int]]) -> int:
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


@pytest.mark.parametrize(
    "runner",
    [
        pytest.param(run_asyncio, id="asyncio.run"),
        pytest.param(run_uvloop, id="uvloop.run"),
        pytest.param(run_anyio, id="anyio"),
        pytest.param(run_anyio_uvloop, id="anyio-uvloop"),
    ],
)
def test_runs_under_each_event_loop(runner: Callable[[Callable[[], Awaitable[int]]], int]) -> None:
    """The client works under asyncio.run, uvloop, and inside an anyio application on asyncio."""
    assert runner(count_records) == 25


# -- against the emulator (ground truth) -------------------------------------------------------------


def emulator_client(emu: Any, **options: Any) -> Client:
    """A client-credentials Client for a running emulator."""
    options.setdefault("retry", NO_WAIT)
    return Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret, **options)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fmt", [pytest.param(ResponseFormat.XML, id="xml"), pytest.param(ResponseFormat.JSON, id="json")]
)
async def test_emulator_many_pages_equal_ground_truth(fmt: ResponseFormat) -> None:
    """Small pages across a whole dataset give exactly the emulator's ground truth, in order."""
    query = ResultsQuery(user_statuses=ALL_USERS, page_size=37)
    async with running_emulator(EmulatorConfig(results=1500, seed=3)) as emu:
        async with emulator_client(emu, response_format=fmt) as client:
            records = await export(client, query)
        assert records == emu.expected_results(query.to_params())
        assert emu.stats.requests["results"] == -(-1500 // 37)
        assert emu.stats.requests["token"] == 1


@pytest.mark.anyio
async def test_emulator_filters_equal_ground_truth() -> None:
    """A query using every kind of filter returns exactly the emulator's ground truth for it."""
    async with running_emulator(EmulatorConfig(results=3000, seed=5)) as emu:
        everything = emu.expected_results([("userStatuses[]", "1"), ("userStatuses[]", "3")])
        sample = everything[::40]
        dates = sorted(r.access_date for r in everything)
        query = ResultsQuery(
            user_ids=[r.user_id for r in sample],
            course_ids=sorted({r.course_id for r in sample}),
            completion_statuses=["in_progress", "complete", "passed", "not_started", "failed"],
            user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED],
            access_date=DateRange(start=dates[len(dates) // 10], end=dates[-1] - timedelta(days=1)),
            page_size=25,
        )
        async with emulator_client(emu) as client:
            records = await export(client, query)
        expected = emu.expected_results(query.to_params())
        # 75 user ids and their courses are more than a request holds: batched, and the batches'
        # chains run at once (the fan-out), so the rows are the query's but not in the API's order.
        assert len(query.batches()) > 1
        assert sorted(r.identity for r in records) == sorted(r.identity for r in expected)
        assert {r.identity: r for r in records} == {r.identity: r for r in expected}
        assert 0 < len(expected) < len(everything)


@pytest.mark.anyio
async def test_emulator_seeded_faults_still_give_ground_truth() -> None:
    """With every retryable fault injected from a seed, the export still equals ground truth exactly."""
    faults = Faults(
        seed=11,
        rate_limited=0.05,
        server_error=0.05,
        bad_gateway=0.05,
        unavailable=0.05,
        reset=0.05,
        truncate=0.05,
        malformed=0.05,
        retry_after=0,
    )
    query = ResultsQuery(user_statuses=ALL_USERS, page_size=50)
    events: list[RetryEvent] = []
    async with running_emulator(EmulatorConfig(results=2000, seed=2, faults=faults)) as emu:
        async with emulator_client(emu, retry=no_wait(10)) as client:
            records = [r async for p in client.result_pages(query, on_retry=events.append) for r in p.records]
        assert records == emu.expected_results(query.to_params())
        assert sum(emu.stats.faults.values()) == len(events) > 0
    assert {e.cause for e in events} >= {"429", "5xx", "truncated"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "options", "cause"),
    [
        pytest.param(Fault.RATE_LIMITED, {}, "429", id="429-seconds"),
        pytest.param(Fault.RATE_LIMITED, {"retry_after_style": "http-date"}, "429", id="429-http-date"),
        pytest.param(Fault.SERVER_ERROR, {}, "5xx", id="500"),
        pytest.param(Fault.BAD_GATEWAY, {}, "5xx", id="502-html"),
        pytest.param(Fault.UNAVAILABLE, {}, "5xx", id="503"),
        pytest.param(Fault.RESET, {}, "truncated", id="reset-mid-body"),
        pytest.param(Fault.TRUNCATE, {}, "truncated", id="truncate-content-length"),
        pytest.param(Fault.TRUNCATE, {"truncate_style": "chunked"}, "truncated", id="truncate-chunked"),
        pytest.param(Fault.MALFORMED, {}, "parse", id="malformed"),
    ],
)
async def test_emulator_each_retryable_fault(fault: Fault, options: dict[str, Any], cause: str) -> None:
    """Each fault on page 2 is retried once with the expected cause and the export equals ground truth."""
    faults = Faults(script={("results", 2): fault}, **options)
    query = ResultsQuery(user_statuses=ALL_USERS, page_size=100)
    events: list[RetryEvent] = []
    async with running_emulator(EmulatorConfig(results=400, seed=6, faults=faults)) as emu:
        async with emulator_client(emu) as client:
            records = [r async for p in client.result_pages(query, on_retry=events.append) for r in p.records]
        assert records == emu.expected_results(query.to_params())
    assert [(e.cause, e.page) for e in events] == [(cause, "GET /learners/results page 2")]


@pytest.mark.anyio
async def test_emulator_token_expiring_mid_export_is_refreshed() -> None:
    """Tokens that expire between pages (short lifetime on the server's clock) are refreshed via 401."""
    query = ResultsQuery(user_statuses=ALL_USERS, page_size=100)
    events: list[RetryEvent] = []
    async with running_emulator(EmulatorConfig(results=500, seed=4, token_lifetime=60)) as emu:
        emu.freeze_clock()
        async with emulator_client(emu) as client:
            records = []
            async for page in client.result_pages(query, on_retry=events.append):
                records += page.records
                emu.advance_clock(61)  # the token expires before the next page
        assert records == emu.expected_results(query.to_params())
        assert emu.stats.requests["token"] == 5
    assert [e.cause for e in events] == ["401-refresh"] * 4


@pytest.mark.anyio
async def test_emulator_scripted_401_and_html() -> None:
    """A revoked token is refreshed once; an HTML 200 raises UnexpectedContentError naming the URL."""
    faults = Faults(script={("results", 2): Fault.EXPIRE_TOKEN, ("results", 4): Fault.HTML})
    async with running_emulator(EmulatorConfig(results=300, seed=4, faults=faults)) as emu:
        async with emulator_client(emu) as client:
            with pytest.raises(UnexpectedContentError, match=emu.base_url + PATH):
                await export(client, ResultsQuery(page_size=100))
        assert emu.stats.requests["token"] == 2


@pytest.mark.anyio
async def test_emulator_departments_across_pages() -> None:
    """departments() walks every page of /departments and returns the emulator's departments."""
    async with running_emulator(EmulatorConfig(results=10, departments=40)) as emu:
        async with emulator_client(emu, page_size=7) as client, client.departments() as stream:
            departments = [d async for d in stream]
        assert departments == emu.departments()
        assert emu.stats.requests["departments"] == 6


@pytest.mark.anyio
async def test_learner_results_fans_out_and_closes_cleanly_when_left_early() -> None:
    """The default fan-out equals ground truth; leaving its ``async with`` early cancels every chain."""
    query = ResultsQuery(user_statuses=ALL_USERS, page_size=50)
    async with running_emulator(EmulatorConfig(results=1500, seed=4)) as emu:
        truth = sorted(r.identity for r in emu.expected_results(query.to_params()))
        async with Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret) as client:
            got = [r.identity for r in await drain(client.learner_results(query, concurrency=4))]
            assert sorted(got) == truth
            async with client.learner_results(query, split="window", concurrency=4) as results:
                first = await anext(results)
            assert first.identity in set(truth)
            assert not client_tasks()  # the block's exit waited for every chain: none is left
            assert len(await drain(client.learner_results(query, split="none"))) == len(truth)


@pytest.mark.anyio
async def test_a_request_that_outlives_its_refreshed_token_refreshes_again() -> None:
    """401, refresh, a 500, then 401 again for the new token: refreshed once more and the page arrives."""
    script = {
        ("results", 1): Fault.EXPIRE_TOKEN,
        ("results", 2): Fault.SERVER_ERROR,
        ("results", 3): Fault.EXPIRE_TOKEN,
    }
    config = EmulatorConfig(results=30, seed=2, faults=Faults(script=script))
    async with running_emulator(config) as emu:
        client = Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret, retry=NO_WAIT)
        async with client:
            records = await drain(client.learner_results(ResultsQuery(user_statuses=ALL_USERS), split="none"))
        assert len(records) == len(emu.expected_results(ResultsQuery(user_statuses=ALL_USERS).to_params()))
        assert emu.stats.requests["token"] == 3


@pytest.mark.anyio
async def test_a_small_on_demand_query_costs_one_request() -> None:
    """The default adaptive fan-out starts from one chain: a query that fits a page is one request."""
    async with running_emulator(EmulatorConfig(results=3000, seed=6)) as emu:
        query = ResultsQuery(user_ids=[emu.dataset.user_ids[7]], user_statuses=ALL_USERS)
        expected = emu.expected_results(query.to_params())
        async with Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret) as client:
            got = await drain(client.learner_results(query))
        assert sorted(r.identity for r in got) == sorted(r.identity for r in expected)
        assert len(expected) > 0
        assert emu.stats.requests["results"] == 1


@pytest.mark.anyio
async def test_the_library_asks_for_the_same_users_as_the_export_command() -> None:
    """With no query the library exports active and blocked users' rows, as the CLI does, none others."""
    from ispring_async._app.cli import export_parser, resolve_settings

    namespace = export_parser().parse_args(["--base-url", "http://127.0.0.1:9", "--output", "o.jsonl"])
    settings = resolve_settings(vars(namespace), {"ISPRING_TOKEN": "t"})[0]
    assert settings.query.user_statuses == ResultsQuery().user_statuses
    async with running_emulator(
        EmulatorConfig(results=800, seed=31, blocked_user_share=0.3, terminated_user_share=0.2)
    ) as emu:
        async with Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret) as client:
            got = await drain(client.learner_results(concurrency=3))
        statuses = {u: emu.dataset.user_status[i] for i, u in enumerate(emu.dataset.user_ids)}
        expected = emu.expected_results([("userStatuses[]", "1"), ("userStatuses[]", "3")])
        everyone = emu.expected_results([("userStatuses[]", s) for s in ("1", "3", "5")])
    assert sorted(r.identity for r in got) == sorted(r.identity for r in expected)
    assert {statuses[r.user_id] for r in got} == {1, 3}
    assert len(everyone) > len(got)

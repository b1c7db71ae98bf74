"""The fan-out: a split export equals the unsplit ground truth, each record once.

Unit tests first, against ``tests/_memory.py``'s in-memory page source: every server behaviour the
notes allow for date bounds, backpressure and cancellation ordered by events, bounded dedupe memory,
resume from the state alone. Then end to end against the emulator over real HTTP (refusing one-sided
ranges): every export is compared with ``emu.expected_results(query.to_params())`` as a set, and
checked for duplicates, for each split strategy, with sub-department matching on and off, with rows
exactly on window boundaries, with empty departments, with injected faults, across a resume, and when
the consumer stops early or a partition fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aiohttp import web

from ispring_async import (
    Client,
    ConfigurationError,
    DateRange,
    PartitionError,
    ResultsQuery,
    UnexpectedContentError,
)
from ispring_async._dedupe import WindowError
from ispring_async._fanout import (
    Batch,
    FanOut,
    FanOutOptions,
    PageSource,
    PartitionProgress,
    Split,
    fan_out_results,
)
from ispring_async._plan import Partition, epoch_seconds
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, running_emulator
from tests._helpers import assert_exactly_once, client_tasks, no_wait
from tests._memory import MemorySource, Row, make_rows

NO_WAIT = no_wait(12)
pytestmark = pytest.mark.anyio
EVERYONE = [1, 3, 5]
QUERY = ResultsQuery(
    user_statuses=[1, 3],
    completion_statuses=["not_started", "in_progress", "complete", "passed", "failed", "declined"],
    page_size=40,
)


@contextlib.asynccontextmanager
async def emulator_and_client(
    config: EmulatorConfig, response_format: str = "json"
) -> AsyncIterator[tuple[Emulator, Client]]:
    """A running emulator that refuses one-sided date ranges (as the vendor's OpenAPI has it) and a
    client (JSON unless told) with zero-wait retries pointed at it."""
    async with (
        running_emulator(dataclasses.replace(config, one_sided_ranges=False)) as emu,
        Client(
            emu.base_url,
            client_id=emu.client_id,
            client_secret=emu.client_secret,
            retry=NO_WAIT,
            response_format=response_format,
        ) as client,
    ):
        yield emu, client


async def collect(fanout: FanOut, *, stop_after: int | None = None) -> list[str]:
    """Identities of every record the fan-out yields (optionally stopping after some batches)."""
    got: list[str] = []
    async with fanout.run() as batches:
        count = 0
        async for batch in batches:
            got.extend(record.identity for record in batch.records)
            count += 1
            if stop_after is not None and count >= stop_after:
                break
    return got


def truth(emu: Emulator, query: ResultsQuery) -> set[str]:
    """The emulator's ground truth for a query, as identities."""
    return {record.identity for record in emu.expected_results(query.to_params())}


# -- in memory --------------------------------------------------------------------------------------


async def stop_and_resume(
    source: PageSource,
    query: ResultsQuery,
    options: FanOutOptions,
    stop: Callable[[FanOut], bool] | None,
    *,
    with_seen: bool = False,
) -> tuple[list[str], list[str], FanOut, FanOut | None]:
    """Run until ``stop(fanout)`` after a batch (or to the end), then resume from the last state(),
    with ``seen`` = what came before if asked: the identities before and after, and both fan-outs."""
    first = FanOut(source, query, options)
    before: list[str] = []
    saved = first.state()
    async with first.run() as batches:
        async for batch in batches:
            before.extend(record.identity for record in batch.records)
            saved = first.state()
            if stop is not None and stop(first):
                break
    if stop is None:
        return before, [], first, None
    second = FanOut(source, query, options, resume_state=saved, seen=before if with_seen else ())
    return before, await collect(second), first, second


@pytest.mark.parametrize("order", ["key", "date", "reverse-date"])
@pytest.mark.parametrize(
    ("display", "subsecond"),
    [
        pytest.param("truncate", False, id="whole-seconds"),
        pytest.param("exact", True, id="subsecond-shown"),
        pytest.param("truncate", True, id="subsecond-truncated"),
        pytest.param("round", True, id="subsecond-rounded"),
    ],
)
@pytest.mark.parametrize("end", ["inclusive", "exclusive", "second"])
@pytest.mark.parametrize("stop_after", [pytest.param(None, id="whole"), pytest.param(7, id="resumed")])
async def test_adaptive_plan_is_exact_for_every_server_behaviour(
    end: str, display: str, subsecond: bool, order: str, stop_after: int | None
) -> None:
    """Any end-bound semantics, date precision and page order the notes allow: each row exactly once,
    also across a resume from the state alone, and both bounds on every windowed request."""
    rows = make_rows(3000, seed=hash((end, display, order)) % 1000, subsecond=subsecond)
    source = MemorySource(rows, end=end, display=display, order=order, page_size=50)  # type: ignore[arg-type]
    stop = None if stop_after is None else (lambda fanout: fanout.stats.pages >= stop_after)
    before, after, first, _ = await stop_and_resume(
        source, ResultsQuery(), FanOutOptions(concurrency=4, min_window=1), stop
    )
    assert_exactly_once(before + after, source.truth())
    assert first.stats.splits >= 1


async def test_requests_stay_near_the_unsplit_chain() -> None:
    """With pages ordered by key (a sample of the dates), requests are within 1.1x the unsplit pages."""
    rows = make_rows(20000, seed=3, subsecond=False)
    source = MemorySource(rows, page_size=100)
    fanout = FanOut(source, ResultsQuery(), FanOutOptions(concurrency=8))
    got = await collect(fanout)
    assert_exactly_once(got, source.truth())
    unsplit = -(-len(rows) // 100)
    assert fanout.stats.requests == source.requests <= 1.1 * unsplit
    assert fanout.stats.partitions_total >= 16  # more windows than chains: a short tail


async def test_a_bulk_instant_bigger_than_a_page_costs_one_split() -> None:
    """Rows all on one instant: one split fences it, the export is exact, requests stay near unsplit."""
    others = [Row(key=10_000 + r.key, when=r.when) for r in make_rows(40, seed=2, subsecond=False)]
    rows = [Row(key=key, when=T_BULK) for key in range(1000)] + others
    source = MemorySource(rows, page_size=100)  # by key: the first page is all bulk
    fanout = FanOut(source, ResultsQuery(), FanOutOptions(concurrency=4))
    assert_exactly_once(await collect(fanout), source.truth())
    assert fanout.stats.splits == 1
    assert fanout.stats.partitions_total == 3
    assert fanout.stats.requests <= 11 + 1 + 3  # unsplit pages, the kept page, the fence's neighbours


async def test_small_query_costs_one_request() -> None:
    """A query of one page is one request, sent as written."""
    source = MemorySource(make_rows(80, seed=1, subsecond=False), page_size=100)
    fanout = FanOut(source, ResultsQuery(), FanOutOptions(concurrency=8))
    assert_exactly_once(await collect(fanout), source.truth())
    assert source.requests == fanout.stats.requests == 1
    assert fanout.stats.splits == 0


@pytest.mark.parametrize("size", [pytest.param(4000, id="4k"), pytest.param(40000, id="40k")])
async def test_dedupe_memory_does_not_grow_with_the_export(size: int) -> None:
    """The duplicate filter holds at most a few pages of identities, whatever the export's size."""
    source = MemorySource(make_rows(size, seed=4, subsecond=True), page_size=100)
    fanout = FanOut(source, ResultsQuery(), FanOutOptions(concurrency=4))
    got: list[str] = []
    peak = 0
    async with fanout.run() as batches:
        async for batch in batches:
            got.extend(record.identity for record in batch.records)
            peak = max(peak, fanout.stats.identities_held)
    assert_exactly_once(got, source.truth())
    # A kept first page (100) plus rows within a second of a boundary; never the export (4k-40k).
    assert peak <= 3 * 100
    assert fanout.stats.identities_held == 0


async def test_server_ignoring_the_window_is_an_error_not_duplicates() -> None:
    """A server that ignores accessDate makes windows return foreign rows: PartitionError, not a mess."""
    source = MemorySource(make_rows(1000, seed=5, subsecond=False), ignore_dates=True, page_size=50)
    with pytest.raises(PartitionError) as caught:
        await collect(FanOut(source, ResultsQuery(), FanOutOptions(concurrency=4)))
    assert isinstance(caught.value.__cause__, WindowError)
    assert "accessDate" in str(caught.value)
    assert source.open_chains == 0


T_BULK = datetime(2021, 9, 1, 9, tzinfo=UTC).timestamp()
SPAN = ResultsQuery(
    access_date=DateRange(start=datetime(2017, 1, 1, tzinfo=UTC), end=datetime(2025, 1, 1, tzinfo=UTC))
)


async def test_slow_consumer_makes_producers_wait() -> None:
    """While the consumer holds a batch, exactly buffer + concurrency more pages are fetched."""
    source = MemorySource(make_rows(3000, seed=6, subsecond=False), page_size=10)
    options = FanOutOptions(split=Split.WINDOW, windows=4, concurrency=3, buffer=2)
    fanout = FanOut(source, SPAN, options)
    got: list[str] = []
    async with fanout.run() as batches:
        async for batch in batches:
            if not got:
                await anyio.wait_all_tasks_blocked()  # every producer is stuck on a full stream
                assert source.requests == fanout.stats.requests
                assert fanout.stats.requests == fanout.stats.pages + options.buffer + options.concurrency
            got.extend(record.identity for record in batch.records)
    assert_exactly_once(got, source.truth())
    with pytest.raises(ZeroDivisionError):  # the consumer's own error comes out as itself
        await consume_badly(FanOut(source, SPAN, options))


async def consume_badly(fanout: FanOut) -> None:
    """A consumer that fails on its first batch."""
    async with fanout.run() as batches:
        async for _ in batches:
            raise ZeroDivisionError


async def test_leaving_early_cancels_requests_in_flight() -> None:
    """Leaving the block while requests wait on the server cancels them and closes every chain."""
    source = MemorySource(make_rows(3000, seed=7, subsecond=False), page_size=10)
    fanout = FanOut(source, SPAN, FanOutOptions(split=Split.WINDOW, windows=6, concurrency=3))
    async with fanout.run() as batches:
        first = await anext(batches)
        source.hold = anyio.Event()  # from now on every request hangs until cancelled
        source.requested = anyio.Event()
        await source.requested.wait()
        assert first.records
    assert source.open_chains == 0
    assert not client_tasks()
    assert fanout.stats.partitions_done < fanout.stats.partitions_total


async def test_a_failing_chain_cancels_the_others() -> None:
    """An error in one chain cancels chains blocked in requests and comes out as PartitionError."""
    rows = make_rows(2000, seed=8, subsecond=False)

    class Failing(MemorySource):
        async def result_pages(
            self, query: ResultsQuery, page_token: str | None = None, *, on_retry: object = None
        ) -> Any:
            if query.access_date is not None and self.requests >= 5:
                raise UnexpectedContentError("an HTML page")
            async for page in super().result_pages(query, page_token):
                yield page

    failing = Failing(rows, page_size=10)
    with pytest.raises(PartitionError) as caught:
        await collect(FanOut(failing, SPAN, FanOutOptions(split=Split.WINDOW, windows=6, concurrency=3)))
    assert isinstance(caught.value.__cause__, UnexpectedContentError)
    assert failing.open_chains == 0


# -- end to end on the emulator -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exclusive_end", [pytest.param(False, id="inclusive-end"), pytest.param(True, id="exclusive-end")]
)
@pytest.mark.parametrize(
    "subtree", [pytest.param(False, id="exact-dept"), pytest.param(True, id="subtree-dept")]
)
@pytest.mark.parametrize("split", [pytest.param(s, id=s.value) for s in Split])
async def test_split_export_equals_ground_truth(split: Split, subtree: bool, exclusive_end: bool) -> None:
    """Every strategy yields exactly the unsplit rows, filters kept, under either department semantics
    and either end-bound semantics, against a server that refuses one-sided ranges."""
    config = EmulatorConfig(
        results=1200,
        seed=2,
        departments=12,
        department_depth=3,
        subdepartment_matching=subtree,
        exclusive_end=exclusive_end,
    )
    async with emulator_and_client(config) as (emu, client):
        fanout = FanOut(client, QUERY, FanOutOptions(split=split, concurrency=4, windows=4))
        got = await collect(fanout)
        assert_exactly_once(got, truth(emu, QUERY))
        stats = fanout.stats
        assert stats.records == len(got)
        assert stats.partitions_done == stats.partitions_total >= 1
        if split in (Split.DEPARTMENT, Split.COMBINED) and subtree:
            assert stats.duplicates_removed > 0  # parents returned their subtrees: the dedupe earned its keep


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("whole_seconds", "exclusive_end"),
    [
        pytest.param(True, False, id="end-minus-1s"),
        pytest.param(False, False, id="inclusive-dedupe"),
        pytest.param(False, True, id="exclusive-end"),
    ],
)
async def test_rows_exactly_on_window_boundaries(whole_seconds: bool, exclusive_end: bool) -> None:
    """Rows dated exactly on a window boundary are yielded once, by [a, b-1s] windows or by dedupe."""
    start, end = datetime(2020, 3, 1, 21, tzinfo=UTC), datetime(2020, 3, 17, 21, tzinfo=UTC)
    query = ResultsQuery(user_statuses=EVERYONE, access_date=DateRange(start=start, end=end), page_size=25)
    config = EmulatorConfig(results=20000, seed=5, exclusive_end=exclusive_end)
    async with emulator_and_client(config) as (emu, client):
        expected = emu.expected_results(query.to_params())
        options = FanOutOptions(split=Split.WINDOW, windows=16, concurrency=4, whole_seconds=whole_seconds)
        fanout = FanOut(client, query, options)
        got = await collect(fanout)
    boundaries = {epoch_seconds(start) + day * 86400 for day in range(17)}
    on_boundary = [r for r in expected if epoch_seconds(r.access_date) in boundaries]
    assert len(on_boundary) > 16  # the test is meaningful: most days have rows at 21:00:00Z
    assert_exactly_once(got, {r.identity for r in expected})
    inner = [
        r
        for r in on_boundary
        if epoch_seconds(r.access_date) not in (epoch_seconds(start), epoch_seconds(end))
    ]
    assert fanout.stats.duplicates_removed == (0 if whole_seconds or exclusive_end else len(inner))


@pytest.mark.anyio
async def test_empty_department_finishes_after_one_page() -> None:
    """A department with no rows costs one empty page, reports done, and changes nothing."""
    config = EmulatorConfig(results=150, seed=3, departments=30)
    query = ResultsQuery(user_statuses=EVERYONE, page_size=20)
    events: list[PartitionProgress] = []
    async with emulator_and_client(config) as (emu, client):
        empty = [d.department_id for d in emu.departments() if not emu.expected_results(
            [*query.to_params(), ("departmentIds[]", d.department_id)])]  # fmt: skip
        assert empty, "the dataset must have an empty department for this test"
        fanout = FanOut(
            client, query, FanOutOptions(split=Split.DEPARTMENT, concurrency=3), on_progress=events.append
        )
        got = await collect(fanout)
        assert_exactly_once(got, truth(emu, query))
    final = {event.key: event for event in events if event.done}
    for department in empty:
        assert final[f"dept={department}"] == PartitionProgress(
            key=f"dept={department}", pages=1, records=0, retries=0, done=True
        )
    assert sum(event.records for event in final.values()) == len(got)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "split", [pytest.param(Split.ADAPTIVE, id="adaptive"), pytest.param(Split.COMBINED, id="combined")]
)
async def test_faults_are_retried_and_counted(split: Split) -> None:
    """Seeded 429/5xx/resets/truncations (XML bodies) are retried per chain; the export equals the truth."""
    faults = Faults(seed=11, rate_limited=0.05, server_error=0.08, reset=0.05, truncate=0.05, retry_after=0)
    config = EmulatorConfig(results=1000, seed=4, departments=6, subdepartment_matching=True, faults=faults)
    events: list[PartitionProgress] = []
    async with emulator_and_client(config, "xml") as (emu, client):
        fanout = FanOut(
            client, QUERY, FanOutOptions(split=split, concurrency=4, windows=3), on_progress=events.append
        )
        got = await collect(fanout)
        assert_exactly_once(got, truth(emu, QUERY))
    retries = fanout.stats.retries_by_cause
    assert sum(retries.values()) >= 5
    assert set(retries) <= {"429", "5xx", "reset", "truncated", "timeout", "parse", "401-refresh"}
    by_partition = sum(event.retries for event in events if event.done)
    if split is Split.ADAPTIVE:  # no planning requests: every retry belongs to a partition
        assert by_partition == sum(retries.values())
    else:
        assert 0 < by_partition <= sum(retries.values())


@pytest.mark.anyio
async def test_adaptive_with_subtree_matching_stays_bounded() -> None:
    """Adaptive never multiplies work by the department tree: at most 2x the unsplit requests + planning."""
    config = EmulatorConfig(
        results=3000, seed=6, departments=40, department_depth=4, subdepartment_matching=True
    )
    query = ResultsQuery(user_statuses=EVERYONE, page_size=50)
    async with emulator_and_client(config) as (emu, client):
        expected = truth(emu, query)
        unsplit = -(-len(expected) // 50)
        before = emu.stats.requests["results"]
        options = FanOutOptions(concurrency=8)
        fanout = FanOut(client, query, options)
        got = await collect(fanout)
        sent = emu.stats.requests["results"] - before
    assert_exactly_once(got, expected)
    assert fanout.stats.splits > 0
    # Only kept first pages (fetched again by their children) and rows at shared boundaries repeat.
    boundaries = {p.start for p in _plan_keys(fanout) if p.start is not None}
    near = sum(1 for r in emu.expected_results(query.to_params())
               if any(abs(epoch_seconds(r.access_date) - b) <= 1 for b in boundaries))  # fmt: skip
    # Refetched kept pages are counted apart from the server's duplicates (the summary's figure).
    assert fanout.stats.refetched <= 50 * fanout.stats.splits
    assert fanout.stats.refetched > 0
    assert fanout.stats.duplicates_removed <= near
    assert sent == fanout.stats.requests <= unsplit + fanout.stats.splits + fanout.stats.partitions_total


@pytest.mark.anyio
async def test_early_exit_cancels_everything_and_the_client_still_works() -> None:
    """Breaking out after one batch leaves no task behind; the same client then exports correctly."""
    config = EmulatorConfig(results=2000, seed=7, faults=Faults(latency=0.002))
    async with emulator_and_client(config) as (emu, client):
        fanout = FanOut(client, QUERY, FanOutOptions(split=Split.WINDOW, concurrency=4, windows=8))
        got = await collect(fanout, stop_after=1)
        assert got
        assert fanout.stats.partitions_done < fanout.stats.partitions_total  # it did stop early
        assert not client_tasks()
        async with client.learner_results(QUERY) as results:
            again = [record.identity async for record in results]
        assert_exactly_once(again, truth(emu, QUERY))


@pytest.mark.anyio
async def test_failing_partition_raises_partition_error_naming_it() -> None:
    """A non-retryable failure cancels every chain and raises PartitionError naming partition and cause."""
    start, end = datetime(2017, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    query = ResultsQuery(user_statuses=EVERYONE, access_date=DateRange(start=start, end=end), page_size=500)
    # One worker: the second results request is the second window's first page, so the key is known.
    config = EmulatorConfig(results=600, seed=8, faults=Faults(script={("results", 2): Fault.HTML}))
    async with emulator_and_client(config) as (_, client):
        fanout = FanOut(client, query, FanOutOptions(split=Split.WINDOW, windows=4, concurrency=1))
        with pytest.raises(PartitionError) as caught:
            await collect(fanout)
        assert not client_tasks()
    width = (epoch_seconds(end) + 1 - epoch_seconds(start)) // 4
    second = Partition(
        windowed=True, start=epoch_seconds(start) + width, end=epoch_seconds(start) + 2 * width
    )
    assert caught.value.partition == second.key
    assert second.key in str(caught.value)
    assert isinstance(caught.value.__cause__, UnexpectedContentError)


@pytest.mark.anyio
@pytest.mark.parametrize("with_seen", [pytest.param(True, id="seen"), pytest.param(False, id="state-only")])
@pytest.mark.parametrize("stop_after", [pytest.param(1, id="after-1"), pytest.param(9, id="after-9")])
async def test_resume_from_state_yields_every_record_exactly_once(stop_after: int, with_seen: bool) -> None:
    """Stopping mid-run and resuming from the last state() yields the rest, no record twice, with or
    without ``seen``: the state carries the bounded duplicate filter of a window split."""
    config = EmulatorConfig(results=2500, seed=9, subdepartment_matching=True)
    query = ResultsQuery(user_statuses=EVERYONE, page_size=30)
    async with emulator_and_client(config) as (emu, client):
        before, after, first, second = await stop_and_resume(
            client,
            query,
            FanOutOptions(concurrency=4),
            lambda fanout: fanout.stats.pages >= stop_after and fanout.stats.splits > 0,
            with_seen=with_seen,
        )
        assert first.stats.splits > 0  # the state had to capture adaptive splits
        assert second is not None
        assert before and after
        assert not set(before) & set(after)
        assert_exactly_once(before + after, truth(emu, query))
        # A finished run's state resumes to nothing at all.
        done = FanOut(client, query, resume_state=second.state(), seen=before + after)
        assert await collect(done) == []
        assert done.stats.requests == 0


@pytest.mark.anyio
async def test_state_for_another_query_or_garbage_is_refused() -> None:
    """A state is only accepted for the query it was made for, and must be a fan-out state."""
    async with emulator_and_client(EmulatorConfig(results=10)) as (_, client):
        state = FanOut(client, QUERY).state()
        with pytest.raises(ConfigurationError, match="different query"):
            FanOut(client, dataclasses.replace(QUERY, user_statuses=[1]), resume_state=state)
        with pytest.raises(ConfigurationError):
            FanOut(client, QUERY, resume_state=b'{"version": 99}')
        # pageSize changes neither the rows nor the tokens: a resume may change it.
        FanOut(client, dataclasses.replace(QUERY, page_size=7), resume_state=state)
        assert b"emulator-secret" not in state


@pytest.mark.anyio
async def test_requests_in_flight_never_exceed_concurrency() -> None:
    """The limit bounds HTTP requests in flight across all chains, and the fan-out reaches it."""
    in_flight = peak = 0

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    emu = Emulator(
        EmulatorConfig(results=1500, seed=12, faults=Faults(latency=0.005), one_sided_ranges=False)
    )
    emu.app.middlewares.append(count)
    await emu.start()
    try:
        async with Client(
            emu.base_url, token=emu.issue_token(), retry=NO_WAIT, response_format="json"
        ) as client:
            query = ResultsQuery(user_statuses=EVERYONE, page_size=20)
            got = await collect(
                FanOut(client, query, FanOutOptions(split=Split.WINDOW, windows=12, concurrency=3))
            )
            assert_exactly_once(got, truth(emu, query))
    finally:
        await emu.close()
    assert peak == 3


@pytest.mark.anyio
async def test_rate_limit_spaces_requests() -> None:
    """A shared rate limit of R requests/s makes N requests take at least (N - 1) / R seconds."""
    query = ResultsQuery(user_statuses=EVERYONE, page_size=100)
    async with emulator_and_client(EmulatorConfig(results=700, seed=13)) as (emu, client):
        fanout = FanOut(
            client, query, FanOutOptions(split=Split.WINDOW, windows=4, concurrency=4, rate_limit=100.0)
        )
        started = time.monotonic()
        got = await collect(fanout)
        elapsed = time.monotonic() - started
        assert_exactly_once(got, truth(emu, query))
    assert fanout.stats.requests >= 8
    assert elapsed >= (fanout.stats.requests - 1) / 100.0


@pytest.mark.anyio
async def test_fan_out_results_yields_records() -> None:
    """The one-call form yields every record once."""
    query = ResultsQuery(user_statuses=EVERYONE, page_size=50)
    async with emulator_and_client(EmulatorConfig(results=400, seed=14)) as (emu, client):
        async with fan_out_results(client, query, FanOutOptions(concurrency=3)) as records:
            got = [record.identity async for record in records]
        assert_exactly_once(got, truth(emu, query))


@pytest.mark.anyio
async def test_batches_carry_their_partition() -> None:
    """Each batch names the partition its page came from, one of the plan's partitions."""
    async with emulator_and_client(EmulatorConfig(results=300, seed=15)) as (_, client):
        fanout = FanOut(client, QUERY, FanOutOptions(split=Split.WINDOW, windows=3, concurrency=2))
        seen: list[Batch] = []
        async with fanout.run() as batches:
            seen.extend([batch async for batch in batches])
        assert {b.partition for b in seen} <= {p.key for p in _plan_keys(fanout)}
        with pytest.raises(RuntimeError, match="runs once"):
            async with fanout.run():
                pass


def _plan_keys(fanout: FanOut) -> list[Partition]:
    """The partitions recorded in a fan-out's state."""
    import msgspec

    state = msgspec.json.decode(fanout.state())
    return [msgspec.convert(chain["partition"], Partition) for chain in state["chains"]]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"split": "sideways"}, id="split"),
        pytest.param({"concurrency": 0}, id="concurrency"),
        pytest.param({"concurrency": True}, id="concurrency-bool"),
        pytest.param({"rate_limit": 0}, id="rate-limit"),
        pytest.param({"earliest": datetime(2000, 1, 1)}, id="naive-earliest"),
        pytest.param({"min_window": 0.5}, id="min-window"),
        pytest.param({"buffer": -1}, id="buffer"),
        pytest.param({"windows": 0}, id="windows"),
        pytest.param({"max_partitions": 0}, id="max-partitions"),
        pytest.param({"departments_per_partition": 0}, id="departments-per-partition"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    """Every option is validated when FanOutOptions is built."""
    with pytest.raises(ConfigurationError):
        FanOutOptions(**options)


def test_split_accepts_its_value() -> None:
    """``split`` takes the strategy's name as a string (for settings files and the command line)."""
    options = FanOutOptions(split="window")  # type: ignore[arg-type]
    assert options.split is Split.WINDOW


def test_a_state_of_the_previous_format_is_refused_saying_why() -> None:
    """A version-2 checkpoint (first pages dropped, one-sided windows) is refused with a clear error."""
    old = (
        b'{"version":2,"query":[],"planner":{"split":"adaptive","earliest":0,"now":1,"windows":1,'
        b'"min_window":60,"departments_per_partition":1,"whole_seconds":false},"chains":null}'
    )
    source = MemorySource([])
    with pytest.raises(ConfigurationError, match=r"version 2 is not 3.*start a fresh export"):
        FanOut(source, ResultsQuery(), resume_state=old)
    with pytest.raises(ConfigurationError, match="not a fan-out state"):
        FanOut(source, ResultsQuery(), resume_state=b"\x00garbage")


async def test_resuming_a_department_split_without_seen_is_refused() -> None:
    """Department partitions may overlap and their exact set is not saved: resume needs seen=."""
    source = MemorySource(make_rows(500, seed=9, subsecond=False), page_size=20)
    options = FanOutOptions(split=Split.DEPARTMENT, concurrency=2)
    before, after, _, _ = await stop_and_resume(
        source, ResultsQuery(), options, lambda fanout: fanout.stats.pages >= 3, with_seen=True
    )
    # The memory source ignores departments: every partition returns every row, all but once dropped.
    assert_exactly_once(before + after, source.truth())
    fanout = FanOut(source, ResultsQuery(), options)
    async with fanout.run() as batches:
        await anext(batches)
        saved = fanout.state()
    with pytest.raises(ConfigurationError, match="needs seen="):
        FanOut(source, ResultsQuery(), options, resume_state=saved)
    FanOut(source, ResultsQuery(), options, resume_state=saved, seen=[])  # given, even if empty


@pytest.mark.parametrize("module", ["_plan", "_dedupe", "_checkpoint", "_fanout"])
def test_the_fan_out_does_not_import_the_client(module: str) -> None:
    """The fan-out's modules sit below Client: they import neither it nor aiohttp (pages come from a
    PageSource)."""
    import ast
    import importlib

    source = importlib.import_module(f"ispring_async.{module}").__file__
    assert source is not None
    with open(source, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "ispring_async._client" not in imported
    assert not {name for name in imported if name and name.split(".")[0] == "aiohttp"}


async def test_ready_batches_go_under_one_checkpoint_that_resumes_exactly() -> None:
    """``ready()`` hands over the pages already buffered without waiting; ``state()`` then covers them all."""
    source = MemorySource(make_rows(3000, seed=9, subsecond=False), page_size=50)
    options = FanOutOptions(split=Split.WINDOW, windows=4, concurrency=4, buffer=8)
    first = FanOut(source, ResultsQuery(), options)
    got: list[str] = []
    async with first.run() as batches:
        batch = await anext(batches)
        got.extend(r.identity for r in batch.records)
        # Every chain is now blocked on the full buffer (in memory: nothing else can move).
        await anyio.wait_all_tasks_blocked()
        ready = batches.ready(100)
        assert 4 <= len(ready) <= 8 + 4  # the buffer, and pages handed over by the producers
        got.extend(r.identity for b in ready for r in b.records)
        state = first.state()
        assert batches.ready(0) == []
    rest = FanOut(source, ResultsQuery(), options, resume_state=state)
    got += await collect(rest)
    assert_exactly_once(got, source.truth())

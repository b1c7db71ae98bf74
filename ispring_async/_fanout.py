"""The fan-out: many independent page chains at once, merged into one deduplicated stream of batches.

A page chain is strictly sequential (the next token sits at the end of the current page), so one chain
moves at most ``pageSize`` records per round trip. Throughput comes from running many chains: the
query is split into partitions (``_plan.py``), each partition is a chain, and at most
``concurrency`` requests are in flight across all of them. Pages come from a ``PageSource`` (the
``Client`` is one), so this module never touches HTTP; its options and reports are in
``_fanout_options.py``.

Data flow inside ``FanOut.run()``, all in one anyio task group::

    plan (_plan.py) ─► work queue ─► workers (one chain at a time each; requests bounded by a
                        ▲    │        CapacityLimiter and an optional shared RateLimiter)
                        └────┘ splits (ADAPTIVE)   │  one page per item, bounded stream (backpressure)
                                                   ▼
                     consumer: dedupe (_dedupe.py) → bookkeeping → Batch; state() (_checkpoint.py)

Adaptive planning: the query starts as one chain, so a query of one page costs one request. A fresh
partition whose first page has a next token is cut at the quantiles of that page's ``accessDate``s
(the page is ordered by enrollment, so it samples the dates) into up to ``max_partitions`` windows —
twice the concurrency by default, so the chains still running at the end are short. The page itself
is delivered, not dropped: its children fetch their windows from the start and drop what it already
delivered. Later a fresh partition splits only while fewer chains than ``concurrency`` are left,
into just enough pieces to fill the idle workers.

Exactly once: a partition's page token in ``state()`` advances only when the consumer receives its
page, and a split takes effect when the consumer receives the split page (it travels with its
children, which are queued after it), so ``state()`` always describes exactly what was yielded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import anyio
import msgspec

from ispring_async import _checkpoint
from ispring_async._dedupe import Dedupe, Group, Scope, epoch_of
from ispring_async._exceptions import ConfigurationError, ParseError, PartitionError, printable
from ispring_async._fanout_options import (
    DEFAULT_EARLIEST,
    DEFAULT_OPTIONS,
    Batch,
    FanOutOptions,
    FanOutStats,
    PartitionProgress,
)
from ispring_async._models import DepartmentsPage, LearnerResult, ResultsPage
from ispring_async._plan import Partition, Planner, Split, epoch_seconds
from ispring_async._query import ResultsQuery
from ispring_async._ratelimit import RateLimiter
from ispring_async._stream import Stream, each
from ispring_async._transport import OnRetry, RetryEvent

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "DEFAULT_EARLIEST",
    "Batch",
    "BatchStream",
    "FanOut",
    "FanOutOptions",
    "FanOutStats",
    "PageSource",
    "PartitionProgress",
    "Split",
    "fan_out_batches",
    "fan_out_results",
]

# A later split (workers idle near the end) cuts into at least four: each split costs its kept page
# fetched again by the children, so fewer, wider splits cost fewer requests than repeated halving.
_SPLIT_WAYS = 4


class PageSource(Protocol):
    """Where a fan-out gets its pages: ``Client`` in production, anything with these two methods in tests.

    Each method returns an async generator of whole pages of one chain, starting after ``page_token``
    (the first page when ``None``), calling ``on_retry`` for every retried attempt. The fan-out
    closes a generator it stops reading.
    """

    def result_pages(
        self, query: ResultsQuery, page_token: str | None = None, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[ResultsPage, None]:
        """Pages of ``GET /learners/results`` for ``query``."""
        ...

    def department_pages(
        self, page_token: str | None = None, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[DepartmentsPage, None]:
        """Pages of ``GET /departments``."""
        ...


ChainPages = Callable[..., AsyncGenerator[ResultsPage, None]]
"""``pages(query, page_token, *, on_retry=...)``: one chain's pages, ``PageSource.result_pages``'s shape.

Another endpoint's chains (``/learners/modules/results``, ``/users/v2``) come through this: their
pages have ``records`` and ``next_page_token``, and their records an ``identity`` (and, for date
splits, an ``accessDate``), which is all the fan-out reads of a page.
"""


def _department_id(value: str) -> str:
    # The ids become departmentIds[] filters, which take UUIDs only: another shape is the server's
    # malformed data (exit 4), not the caller's usage, so it must not surface as a ConfigurationError.
    try:
        ResultsQuery(department_ids=[value])
    except ConfigurationError:
        raise ParseError(
            f"GET /departments returned a department id that is not a UUID: {printable(repr(value[:100]))}",
            page="GET /departments",
        ) from None
    return value


@dataclasses.dataclass(eq=False)
class _Chain:
    """A partition and its consumer-side bookkeeping (``token``: the next page after what was handed over)."""

    partition: Partition
    key: str
    token: str | None = None
    done: bool = False
    pages: int = 0
    records: int = 0
    retries: int = 0
    # Set by the consumer when the chain enters the plan (its dedupe scope); ``None`` once done.
    scope: Scope | None = None


# A page on its way to the consumer, with the children it is split into (empty: not split).
_Delivery = tuple[_Chain, ResultsPage, tuple[_Chain, ...]]


def _shared_edges(partitions: Sequence[Partition]) -> list[tuple[bool, bool]]:
    """For each partition: whether its start, and its end, is a boundary shared with a neighbour."""
    starts = {(p.batch, p.departments, p.start) for p in partitions if p.windowed and p.start is not None}
    ends = {(p.batch, p.departments, p.end) for p in partitions if p.windowed and p.end is not None}
    return [
        (
            p.windowed and p.start is not None and (p.batch, p.departments, p.start) in ends,
            p.windowed and p.end is not None and (p.batch, p.departments, p.end) in starts,
        )
        for p in partitions
    ]


class FanOut:
    """Run a query as many concurrent page chains and merge them into one stream of new records.

    ::

        fanout = FanOut(client, query, FanOutOptions(concurrency=8))
        async with fanout.run() as batches:
            async for batch in batches:
                sink.write(batch.records)
                sink.checkpoint(fanout.state())    # covers exactly the batches received so far

    ``source`` is a ``PageSource``: a ``Client``, or any object with its two page methods. Resume with
    ``FanOut(client, query, options, resume_state=saved)``: the plan, every partition's position and
    the duplicate filter's bounded part come from the state. Department splits keep an exact set of
    identities that is not saved; resuming one that has delivered anything needs
    ``seen=identities_written`` (refused without it, rather than yielding duplicates). Leaving the
    ``async with`` early cancels every request in flight; an error in a chain cancels the rest and
    raises ``PartitionError`` naming the partition, with the cause as ``__cause__``. A ``FanOut``
    runs once.
    """

    def __init__(
        self,
        source: PageSource,
        query: ResultsQuery | None = None,
        options: FanOutOptions = DEFAULT_OPTIONS,
        *,
        resume_state: bytes | None = None,
        seen: Iterable[str] | None = None,
        on_progress: Callable[[PartitionProgress], None] | None = None,
        pages: ChainPages | None = None,
    ) -> None:
        self._source = source
        # Where each chain's pages come from: results by default, another endpoint's when given.
        self._chain_pages: ChainPages = pages if pages is not None else source.result_pages
        self._query = query if query is not None else ResultsQuery()
        self._options = options
        self._on_progress = on_progress
        self._dedupe = Dedupe(seen or ())
        self._seen_given = seen is not None
        self._chains: dict[str, _Chain] | None = None
        self._max_partitions = options.max_partitions or 2 * options.concurrency
        self._pages = self._records = self._duplicates = self._requests = self._splits = self._done = 0
        self._retries: collections.Counter[str] = collections.Counter()
        self._failure: Exception | None = None
        self._scope: anyio.CancelScope | None = None
        self._rate = RateLimiter(options.rate_limit) if options.rate_limit is not None else None
        # Chains queued or running, as the producers see them (the consumer may lag behind).
        self._outstanding = 0
        self._ran = False
        self._fixed: tuple[list[tuple[str, str]], _checkpoint.PlannerState] | None = None
        if resume_state is None:
            earliest = options.earliest or DEFAULT_EARLIEST
            self._planner = Planner(
                query=self._query,
                split=options.split,
                earliest=epoch_seconds(earliest),
                now=epoch_seconds(datetime.now(UTC)) + 1,
                windows=options.windows or (1 if options.split is Split.ADAPTIVE else options.concurrency),
                min_window=math.ceil(options.min_window),
                departments_per_partition=options.departments_per_partition,
                whole_seconds=options.whole_seconds,
            )
        else:
            self._planner = self._restore(resume_state)

    def __repr__(self) -> str:
        return f"FanOut(split={self._planner.split.value!r}, concurrency={self._options.concurrency})"

    # -- checkpoints ----------------------------------------------------------------------------------

    def _restore(self, data: bytes) -> Planner:
        state = _checkpoint.decode(data, self._query)
        if not self._seen_given and _checkpoint.needs_seen(data):
            raise ConfigurationError(
                "resuming a department split needs seen= (the identities already written): its "
                "partitions may overlap and the state does not hold what they delivered"
            )
        if state.chains is not None:
            groups: dict[int, Group] = {}
            chains = []
            for saved in state.chains:
                chain = _Chain(saved.partition, saved.partition.key, token=saved.token, done=saved.done)
                if not saved.done:
                    group = None
                    if saved.group is not None:
                        group = groups.setdefault(saved.group, Group())
                    chain.scope = self._dedupe.open(
                        saved.partition.start,
                        saved.partition.end,
                        left=saved.left,
                        right=saved.right,
                        kept=dict(saved.kept),
                        group=group,
                    )
                chains.append(chain)
            self._chains = {chain.key: chain for chain in chains}
            self._done = sum(chain.done for chain in chains)
            for instant, ids in state.boundaries:
                self._dedupe.boundary(instant).ids.update(ids)
        return Planner(query=self._query, **msgspec.structs.asdict(state.planner))

    def state(self) -> bytes:
        """A checkpoint covering exactly the batches yielded so far (msgspec JSON, versioned).

        It holds the query's parameters, the plan (splits included), each partition's next page token
        or ``done`` and the bounded part of the duplicate filter (see ``_checkpoint.py``); page tokens
        are opaque cursors, not credentials, and nothing else secret is in it. Before ``run()`` has
        planned, the state just says to start fresh.
        """
        chains = None
        boundaries: list[tuple[int, list[str]]] = []
        if self._chains is not None:
            groups: dict[int, int] = {}
            chains = []
            for chain in self._chains.values():
                scope = chain.scope
                if scope is None:
                    chains.append(_checkpoint.ChainState(chain.partition, chain.token, chain.done))
                    continue
                group = None if scope.group is None else groups.setdefault(id(scope.group), len(groups))
                chains.append(
                    _checkpoint.ChainState(
                        chain.partition,
                        chain.token,
                        chain.done,
                        left=scope.left is not None,
                        right=scope.right is not None,
                        kept=list(scope.kept.items()),
                        group=group,
                    )
                )
            boundaries = self._dedupe.boundaries()
        if self._fixed is None:
            # Taken once: the state is written after every page.
            self._fixed = (
                _checkpoint.query_fingerprint(self._query),
                msgspec.convert(self._planner, _checkpoint.PlannerState, from_attributes=True),
            )
        fingerprint, planner = self._fixed
        return _checkpoint.encode(
            _checkpoint.State(
                version=_checkpoint.STATE_VERSION,
                query=fingerprint,
                planner=planner,
                chains=chains,
                boundaries=boundaries,
            )
        )

    @property
    def stats(self) -> FanOutStats:
        """A snapshot of the counters."""
        chains = self._chains or {}
        return FanOutStats(
            pages=self._pages,
            records=self._records,
            duplicates_removed=self._duplicates,
            retries_by_cause=dict(self._retries),
            partitions_total=len(chains),
            partitions_done=self._done,
            requests=self._requests,
            splits=self._splits,
            identities_held=self._held(),
            refetched=self._dedupe.refetched,
            # Only a Client skips unknown ids (see _unknown_ids); an in-memory source has none.
            skipped_ids=dict(getattr(self._source, "skipped_ids", {})),
        )

    def _held(self) -> int:
        held = self._dedupe.remembered
        groups = {}
        for chain in (self._chains or {}).values():
            if chain.scope is not None:
                held += len(chain.scope.kept)
                if chain.scope.group is not None:
                    groups[id(chain.scope.group)] = len(chain.scope.group.ids)
        return held + sum(groups.values())

    # -- running ----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncGenerator[BatchStream, None]:
        """Plan, start the chains and yield the merged stream of batches (see the class docstring)."""
        if self._ran:
            raise RuntimeError("a FanOut runs once; resume with a new FanOut(resume_state=fanout.state())")
        self._ran = True
        send, receive = anyio.create_memory_object_stream[_Delivery](self._options.buffer)
        with receive:
            body_error: Exception | None = None
            async with anyio.create_task_group() as tg:
                # A failure cancels the producers only, never the caller's code in the block: the
                # consumer then sees the failure from ``async for`` (its send ends close as they unwind),
                # and its own awaits (cleanup, writes) are not cancelled by a scope it did not open.
                self._scope = anyio.CancelScope()
                tg.start_soon(self._produce_until_failure, self._scope, send)
                try:
                    yield BatchStream(self, receive)
                except Exception as exc:
                    # Raised again below, outside the task group, so it is not wrapped in a group.
                    body_error = exc
                finally:
                    # The consumer left (done, early, or by an error): nothing may outlive the block.
                    tg.cancel_scope.cancel()
        if body_error is not None:
            raise body_error
        if self._failure is not None:
            raise self._failure

    def _fail(self, exc: Exception, chain: _Chain | None) -> None:
        if self._failure is None:
            if chain is None:
                self._failure = exc
            else:
                error = PartitionError(
                    f"partition {chain.key} failed: {type(exc).__name__}: {exc}", partition=chain.key
                )
                error.__cause__ = exc
                self._failure = error
        assert self._scope is not None
        self._scope.cancel()

    def _plan(self, partitions: list[Partition]) -> dict[str, _Chain]:
        """Chains for the starting partitions, each with its dedupe scope."""
        # Department partitions may overlap (sub-department matching), and so may id batches holding
        # different departments: one exact group for all.
        planner = self._planner
        overlap = planner.split in (Split.DEPARTMENT, Split.COMBINED) or planner.batches_overlap
        group = Group() if overlap else None
        chains = {}
        for partition, (left, right) in zip(partitions, _shared_edges(partitions), strict=True):
            chain = _Chain(partition, partition.key)
            chain.scope = self._dedupe.open(
                partition.start, partition.end, left=left, right=right, group=group
            )
            chains[chain.key] = chain
        return chains

    async def _produce_until_failure(
        self, scope: anyio.CancelScope, send: MemoryObjectSendStream[_Delivery]
    ) -> None:
        with scope, send:
            await self._produce(send)

    async def _produce(self, send: MemoryObjectSendStream[_Delivery]) -> None:
        options = self._options
        with send:
            if self._chains is None:
                try:
                    departments = await self._list_departments() if self._planner.needs_departments else None
                except Exception as exc:
                    self._fail(exc, None)
                    return
                self._chains = self._plan(self._planner.initial(departments))
            pending = [c for c in self._chains.values() if not c.done]
            self._outstanding = len(pending)
            work_send, work_receive = anyio.create_memory_object_stream[_Chain](math.inf)
            for chain in pending:
                work_send.send_nowait(chain)
            if not pending:
                work_send.close()
            limiter = anyio.CapacityLimiter(options.concurrency)
            rate = self._rate
            # Closed here too: a cancelled run never reaches the worker that would close it.
            with work_send, work_receive:
                async with anyio.create_task_group() as tg:
                    for _ in range(options.concurrency):
                        tg.start_soon(
                            self._work, work_send, work_receive.clone(), send.clone(), limiter, rate
                        )

    async def _work(
        self,
        work_send: MemoryObjectSendStream[_Chain],
        work_receive: MemoryObjectReceiveStream[_Chain],
        out: MemoryObjectSendStream[_Delivery],
        limiter: anyio.CapacityLimiter,
        rate: RateLimiter | None,
    ) -> None:
        with work_receive, out:
            async for chain in work_receive:
                try:
                    children = await self._run_chain(chain, out, limiter, rate)
                except Exception as exc:
                    self._fail(exc, chain)
                    return
                for child in children:
                    self._outstanding += 1
                    work_send.send_nowait(child)
                self._outstanding -= 1
                if self._outstanding == 0:
                    work_send.close()

    async def _request(
        self,
        pages: AsyncGenerator[ResultsPage, None],
        limiter: anyio.CapacityLimiter,
        rate: RateLimiter | None,
    ) -> ResultsPage:
        # The limit bounds requests, not chains: a chain waiting on the consumer holds no slot.
        async with limiter:
            if rate is not None:
                await rate.acquire()
            self._requests += 1
            return await anext(pages)

    async def _run_chain(
        self,
        chain: _Chain,
        out: MemoryObjectSendStream[_Delivery],
        limiter: anyio.CapacityLimiter,
        rate: RateLimiter | None,
    ) -> tuple[_Chain, ...]:
        """Follow one partition's pages into ``out``; return its children if its first page split it."""
        fresh = chain.token is None and self._planner.split is Split.ADAPTIVE
        query = self._planner.query_for(chain.partition)
        on_retry = functools.partial(self._retried, chain)
        pages = self._chain_pages(query, chain.token, on_retry=on_retry)
        async with contextlib.aclosing(pages):
            while True:
                page = await self._request(pages, limiter, rate)
                children: tuple[_Chain, ...] = ()
                if fresh and page.next_page_token:
                    children = self._split(chain, page)
                fresh = False
                # The children are queued only once their parent's page is in the stream, so the
                # consumer always sees a split before any page of the children.
                await out.send((chain, page, children))
                if children or not page.next_page_token:
                    return children

    def _split(self, chain: _Chain, page: ResultsPage) -> tuple[_Chain, ...]:
        """The children of a fresh partition whose first page shows more, if the plan wants any."""
        live = self._outstanding
        concurrency = self._options.concurrency
        if self._splits == 0:
            # The first split of the run goes straight to every window the plan allows.
            ways = self._max_partitions - live + 1
        elif live < concurrency:
            # Later, only to give idle workers a chain (each split costs a page fetched twice).
            ways = max(_SPLIT_WAYS, concurrency - live + 1)
            ways = min(ways, self._max_partitions - live + 1)
        else:
            return ()
        if ways < 2:
            return ()
        dates = [epoch_of(record) for record in page.records]
        parts = self._planner.split_further(chain.partition, ways, dates)
        if not parts:
            return ()
        self._splits += 1
        return tuple(_Chain(p, p.key) for p in parts)

    async def _list_departments(self) -> list[str]:
        # Planning is one chain before any other starts: only the rate limit applies.
        rate = self._rate
        pages = self._source.department_pages(on_retry=self._retried_planning)
        ids: list[str] = []
        async with contextlib.aclosing(pages):
            while True:
                if rate is not None:
                    await rate.acquire()
                self._requests += 1
                page = await anext(pages)
                ids.extend(_department_id(d.department_id) for d in page.departments)
                if not page.next_page_token:
                    return ids

    def _retried(self, chain: _Chain, event: RetryEvent) -> None:
        chain.retries += 1
        self._retries[event.cause] += 1
        self._progress(chain)

    def _retried_planning(self, event: RetryEvent) -> None:
        self._retries[event.cause] += 1

    def _progress(self, chain: _Chain, split_into: tuple[str, ...] = ()) -> None:
        if self._on_progress is not None:
            self._on_progress(
                PartitionProgress(
                    key=chain.key,
                    pages=chain.pages,
                    records=chain.records,
                    retries=chain.retries,
                    done=chain.done,
                    split_into=split_into,
                )
            )

    # -- the consumer's side ----------------------------------------------------------------------------

    def _deliver(self, chain: _Chain, page: ResultsPage, children: tuple[_Chain, ...]) -> Batch | None:
        """Dedupe a received page and advance its partition; the batch of new records, if any."""
        scope = chain.scope
        assert scope is not None, "a page of a partition that is not in the plan"
        records = page.records
        dedupe = self._dedupe
        refetched = dedupe.refetched
        fresh = dedupe.admit(scope, records)
        chain.pages += 1
        chain.records += len(fresh)
        if children:
            self._adopt(chain, records, children)
        else:
            chain.token = page.next_page_token or None
            if chain.token is None:
                chain.done = True
                self._done += 1
                self._dedupe.close(scope)
                chain.scope = None
            self._progress(chain)
        self._pages += 1
        self._records += len(fresh)
        # A kept first page fetched again by the split's children is not a duplicate the server sent.
        self._duplicates += len(records) - len(fresh) - (dedupe.refetched - refetched)
        return Batch(partition=chain.key, records=fresh) if fresh else None

    def _adopt(self, parent: _Chain, page: list[LearnerResult], children: tuple[_Chain, ...]) -> None:
        """Replace ``parent`` by its ``children`` in the plan, giving each its dedupe scope."""
        chains = self._chains
        assert chains is not None
        assert parent.scope is not None
        windows = [(child.partition.start, child.partition.end) for child in children]
        spread = len(set(windows)) == 1
        # Children spreading a department list over one window may overlap: an exact group for them;
        # window children of a grouped parent stay in its group (they overlap its other chains).
        group = parent.scope.group or (Group() if spread else None)
        scopes = self._dedupe.split(parent.scope, page, windows, group=group)
        for child, scope in zip(children, scopes, strict=True):
            child.scope = scope
        parent.scope = None
        replaced: dict[str, _Chain] = {}
        for key, existing in chains.items():
            if key == parent.key:
                replaced.update((child.key, child) for child in children)
            else:
                replaced[key] = existing
        self._chains = replaced
        parent.done = True
        self._progress(parent, split_into=tuple(child.key for child in children))


class BatchStream:
    """The consumer's iterator: receives pages, dedupes them, and skips pages with nothing new."""

    def __init__(self, fanout: FanOut, receive: MemoryObjectReceiveStream[_Delivery]) -> None:
        self._fanout = fanout
        self._receive = receive

    def __aiter__(self) -> BatchStream:
        return self

    def ready(self, limit: int) -> list[Batch]:
        """Up to ``limit`` more batches whose pages have arrived already, without waiting.

        A consumer that commits what it received (a sink writing, then checkpointing ``state()``) can
        take these with the batch it has, and write them all under one checkpoint: fewer fsyncs when
        it lags behind the chains, and ``state()`` still covers exactly what it took. A page whose
        dedupe fails ends the list; the next ``__anext__`` raises that failure.
        """
        fanout = self._fanout
        taken: list[Batch] = []
        while len(taken) < limit and fanout._failure is None:
            try:
                chain, page, children = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            try:
                batch = fanout._deliver(chain, page, children)
            except Exception as exc:
                fanout._fail(exc, chain)
                break
            if batch is not None:
                taken.append(batch)
        return taken

    async def __anext__(self) -> Batch:
        fanout = self._fanout
        while True:
            if fanout._failure is not None:
                raise fanout._failure
            try:
                chain, page, children = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if fanout._failure is None:
                    raise StopAsyncIteration from None
                # The producers failed and closed their ends: raised at the loop's top, outside this
                # handler, so the end of the stream is not the failure's __context__.
                continue
            try:
                batch = fanout._deliver(chain, page, children)
            except Exception as exc:
                fanout._fail(exc, chain)
                failure = fanout._failure
                assert failure is not None
                raise failure from failure.__cause__
            if batch is not None:
                return batch


def fan_out_results(
    source: PageSource,
    query: ResultsQuery | None = None,
    options: FanOutOptions = DEFAULT_OPTIONS,
) -> Stream[LearnerResult]:
    """Every record of ``query``, once each, fetched by a fan-out (the library's one-call form).

    Like ``Client.learner_results`` it is iterated inside its ``async with`` block, whose exit cancels
    every request in flight (see ``ispring_async._stream``):

    >>> async with fan_out_results(client, query, FanOutOptions(concurrency=16)) as records:
    ...     async for record in records:
    ...         ...
    """
    return Stream(functools.partial(fan_out_batches, source, query, options), what="fan_out_results(...)")


@contextlib.asynccontextmanager
async def fan_out_batches(
    source: PageSource,
    query: ResultsQuery | None = None,
    options: FanOutOptions = DEFAULT_OPTIONS,
    *,
    pages: ChainPages | None = None,
    seen: Iterable[str] | None = None,
) -> AsyncGenerator[AsyncIterator[list[LearnerResult]], None]:
    """The new records of each delivered page, as lists, while the block lasts (what
    ``Client.learner_results`` opens).

    ``pages`` runs another endpoint's chains (see ``ChainPages``); ``seen`` are identities already
    delivered, left out wherever they come again.
    """
    async with FanOut(source, query, options, pages=pages, seen=seen).run() as batches:
        yield each(batches, _records_of)


def _records_of(batch: Batch) -> list[LearnerResult]:
    return batch.records

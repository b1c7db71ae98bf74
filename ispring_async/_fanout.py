"""The fan-out: many independent page chains at once, merged into one deduplicated stream of batches.

A page chain is strictly sequential (the next token sits at the end of the current page), so one chain
moves at most ``pageSize`` records per round trip. Throughput comes from running many chains: the
query is split into partitions (``_plan.py``), each partition is a chain, and at most
``concurrency`` requests are in flight across all of them.

Data flow inside ``FanOut.run()``, all in one anyio task group::

    planner ─► work queue ─► workers (one chain at a time each, requests bounded by a CapacityLimiter
               ▲    │                 and an optional shared RateLimiter)
               └────┘ splits (ADAPTIVE)     │  one page per item, bounded stream (backpressure)
                                            ▼
                                  consumer: dedupe → checkpoint bookkeeping → Batch

Exactly once: a partition's page token in ``state()`` advances only when the consumer receives its
page, and a partition is split only before it has delivered anything (its first page is dropped and
its children fetch their windows from the start), so ``state()`` always describes exactly what was
yielded. Records are deduplicated by row identity (``enrollmentId``, else ``userId/courseId``) in an
exact ``set`` of those strings: it keeps the string the parser already made alive, 85 bytes for a
36-character UUID plus its set slot, measured at about 120 bytes per record (119 MB for a million
identities). No lossy hash: two rows are merged only when their identities are equal.

Adaptive splitting drops a partition's first page when it splits (``FanOutStats.splits`` counts them)
and cuts into at most four children while fewer than ``max_partitions`` partitions are unfinished,
which kept requests within 1.2-1.5x of the unsplit count in measurements.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import msgspec

from ispring_async._exceptions import ConfigurationError, ParseError, PartitionError, printable
from ispring_async._models import LearnerResult, ResultsPage
from ispring_async._plan import Partition, Planner, Split, epoch_seconds
from ispring_async._query import ResultsQuery, check_instant
from ispring_async._ratelimit import RateLimiter
from ispring_async._transport import RetryEvent

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ispring_async._client import Client

__all__ = [
    "DEFAULT_EARLIEST",
    "Batch",
    "FanOut",
    "FanOutOptions",
    "FanOutStats",
    "PartitionProgress",
    "Split",
    "fan_out_results",
]

DEFAULT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Where date windows start when the query's ``accessDate`` has no start (the first window stays open
below it, so older rows are still exported; they are just not split further)."""

STATE_VERSION = 2
# Cutting a long window in four rather than two halves the pages fetched only to be split (measured).
_SPLIT_WAYS = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class FanOutOptions:
    """How a fan-out splits and runs a query. Every option is validated here.

    >>> FanOutOptions(split="window", concurrency=16, rate_limit=20.0)
    """

    split: Split = Split.ADAPTIVE
    """How the query is split (``Split`` or its value)."""
    concurrency: int = 8
    """At most this many requests in flight across all chains (about 8 hide 50 ms of latency)."""
    rate_limit: float | None = None
    """At most this many requests per second across all chains (``None``: no client-side limit)."""
    earliest: datetime | None = None
    """Lower bound for cutting date windows when the query has no ``accessDate`` start
    (``None``: ``DEFAULT_EARLIEST``, 2000-01-01Z). Must be timezone-aware."""
    windows: int | None = None
    """Windows of ``WINDOW``/``COMBINED`` (``None``: ``concurrency``), and the starting windows of
    ``ADAPTIVE`` (``None``: one, so a small on-demand query costs one request; a long one splits as
    soon as its first page shows a next token)."""
    min_window: float = 60.0
    """Seconds: no window is cut narrower (dates have whole seconds; at least 1)."""
    max_partitions: int | None = None
    """``ADAPTIVE`` stops splitting while this many partitions are unfinished, which bounds the pages
    fetched only to be split (``None``: ``2 * concurrency``)."""
    departments_per_partition: int = 1
    """Department ids per request (``departmentIds[]``) for ``DEPARTMENT``/``COMBINED``."""
    buffer: int = 8
    """Pages buffered between the chains and the consumer; a slower consumer makes producers wait, so
    at most ``buffer + concurrency`` pages are held in memory."""
    whole_seconds: bool = False
    """``False`` (the default) sends window ``[a, b)`` as ``[a, b]``: neighbours share the instant
    ``b``, and dedupe drops the rows both return. That stays exact whether the API's end bound is
    inclusive or exclusive and whatever precision it stores dates with, which nobody outside iSpring
    knows. ``True`` sends ``[a, b - 1 s]``: no overlap, exact only if the end bound is inclusive and
    every stored date has whole seconds, as every date the API sends does."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "split", Split(self.split))
        except ValueError:
            allowed = ", ".join(s.value for s in Split)
            raise ConfigurationError(
                f"FanOutOptions.split must be one of {allowed}, got {self.split!r}"
            ) from None
        for name in ("concurrency", "departments_per_partition"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"FanOutOptions.{name} must be an int >= 1, got {value!r}")
        for name in ("windows", "max_partitions"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"FanOutOptions.{name} must be an int >= 1 or None, got {value!r}")
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 0:
            raise ConfigurationError(f"FanOutOptions.buffer must be an int >= 0, got {self.buffer!r}")
        if self.rate_limit is not None and not (
            isinstance(self.rate_limit, int | float) and self.rate_limit > 0
        ):
            raise ConfigurationError(f"FanOutOptions.rate_limit must be > 0 or None, got {self.rate_limit!r}")
        if not isinstance(self.min_window, int | float) or not self.min_window >= 1:
            raise ConfigurationError(f"FanOutOptions.min_window must be >= 1 second, got {self.min_window!r}")
        if self.earliest is not None:
            check_instant(self.earliest, "FanOutOptions.earliest")  # aware, and inside the calendar


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PartitionProgress:
    """A partition's counters, passed to ``on_progress`` whenever they change.

    ``pages`` and ``records`` count what was handed to the consumer (records after dedupe); ``retries``
    counts retried attempts. A partition split into smaller ones ends ``done`` with ``split_into``
    naming its children (its one fetched page was dropped; the children fetch it again).
    """

    key: str
    pages: int
    records: int
    retries: int
    done: bool
    split_into: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Batch:
    """One page's worth of new records (already deduplicated), in delivery order."""

    partition: str
    records: list[LearnerResult]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FanOutStats:
    """Counters of a fan-out so far.

    ``pages``/``records`` were handed to the consumer; ``requests`` counts page requests sent (first
    attempts, planning and pages dropped by splits included; retries are in ``retries_by_cause``).
    ``partitions_total`` counts the plan's current partitions (split ones replaced by their children).
    """

    pages: int
    records: int
    duplicates_removed: int
    retries_by_cause: dict[str, int]
    partitions_total: int
    partitions_done: int
    requests: int
    splits: int
    skipped_ids: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Ids the client left out as unknown to the account (``skip_unknown_ids=True``), by parameter."""


class _PlannerState(msgspec.Struct, forbid_unknown_fields=True):
    """The planner's settings (everything but the query, which the state pins by its parameters)."""

    split: Split
    earliest: int
    now: int
    windows: int
    min_window: int
    departments_per_partition: int
    whole_seconds: bool


class _ChainState(msgspec.Struct, forbid_unknown_fields=True):
    partition: Partition
    token: str | None
    done: bool


class _State(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    query: list[tuple[str, str]]
    planner: _PlannerState
    chains: list[_ChainState] | None


_encode_state = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(_State).decode


def _query_fingerprint(query: ResultsQuery) -> list[tuple[str, str]]:
    # pageSize changes neither the rows nor the keyset tokens, so a resume may use another one.
    return [(name, value) for name, value in query.to_params() if name != "pageSize"]


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


_Delivery = tuple[_Chain, ResultsPage]


class FanOut:
    """Run a query as many concurrent page chains and merge them into one stream of new records.

    ::

        fanout = FanOut(client, query, FanOutOptions(concurrency=8))
        async with fanout.run() as batches:
            async for batch in batches:
                sink.write(batch.records)
                sink.checkpoint(fanout.state())    # covers exactly the batches received so far

    Resume with ``FanOut(client, query, options, resume_state=saved, seen=identities_written)``: the
    plan and every partition's position come from the state, and ``seen`` keeps rows already written
    from being yielded again. Leaving the ``async with`` early cancels every request in flight; an error
    in a chain cancels the rest and raises ``PartitionError`` naming the partition, with the cause as
    ``__cause__``. A ``FanOut`` runs once.
    """

    def __init__(
        self,
        client: Client,
        query: ResultsQuery | None = None,
        options: FanOutOptions = FanOutOptions(),
        *,
        resume_state: bytes | None = None,
        seen: Iterable[str] = (),
        on_progress: Callable[[PartitionProgress], None] | None = None,
    ) -> None:
        self._client = client
        self._query = query if query is not None else ResultsQuery()
        self._options = options
        self._on_progress = on_progress
        self._seen: set[str] = set(seen)
        self._chains: dict[str, _Chain] | None = None
        self._max_partitions = options.max_partitions or 2 * options.concurrency
        self._pages = self._records = self._duplicates = self._requests = self._splits = self._done = 0
        self._retries: collections.Counter[str] = collections.Counter()
        self._failure: Exception | None = None
        self._scope: anyio.CancelScope | None = None
        self._rate = RateLimiter(options.rate_limit) if options.rate_limit is not None else None
        self._outstanding = 0
        self._ran = False
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
        try:
            state = _decode_state(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigurationError(f"not a fan-out state this version can resume: {exc}") from None
        if state.version != STATE_VERSION:
            raise ConfigurationError(f"fan-out state version {state.version} is not {STATE_VERSION}")
        if [tuple(pair) for pair in state.query] != _query_fingerprint(self._query):
            raise ConfigurationError("the saved fan-out state is for a different query; start a fresh export")
        if state.chains is not None:
            chains = [_Chain(c.partition, c.partition.key, token=c.token, done=c.done) for c in state.chains]
            self._chains = {chain.key: chain for chain in chains}
            self._done = sum(chain.done for chain in chains)
        return Planner(query=self._query, **msgspec.structs.asdict(state.planner))

    def state(self) -> bytes:
        """A checkpoint covering exactly the batches yielded so far (msgspec JSON, versioned).

        It holds the query's parameters, the plan (splits included) and each partition's next page
        token or ``done``; page tokens are opaque cursors, not credentials, and nothing else secret is
        in it. Before ``run()`` has planned, the state just says to start fresh.
        """
        chains = None
        if self._chains is not None:
            chains = [_ChainState(c.partition, c.token, c.done) for c in self._chains.values()]
        return _encode_state(
            _State(
                version=STATE_VERSION,
                query=_query_fingerprint(self._query),
                planner=msgspec.convert(self._planner, _PlannerState, from_attributes=True),
                chains=chains,
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
            skipped_ids=self._client.skipped_ids,
        )

    # -- running ----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncGenerator[AsyncIterator[Batch], None]:
        """Plan, start the chains and yield the merged stream of batches (see the class docstring)."""
        if self._ran:
            raise RuntimeError("a FanOut runs once; resume with a new FanOut(resume_state=fanout.state())")
        self._ran = True
        send, receive = anyio.create_memory_object_stream[_Delivery](self._options.buffer)
        with receive:
            body_error: Exception | GeneratorExit | None = None
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._produce, send)
                try:
                    yield _Batches(self, receive)
                except (Exception, GeneratorExit) as exc:
                    # Raised again below, outside the task group, so it is not wrapped in a group.
                    # GeneratorExit is how an async generator around this block (fan_out_results,
                    # Client.learner_results) is closed early; it too must come out as itself.
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

    async def _produce(self, send: MemoryObjectSendStream[_Delivery]) -> None:
        options = self._options
        with send:
            if self._chains is None:
                try:
                    departments = await self._list_departments() if self._planner.needs_departments else None
                except Exception as exc:
                    self._fail(exc, None)
                    return
                partitions = self._planner.initial(departments)
                self._chains = {p.key: _Chain(p, p.key) for p in partitions}
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
    ) -> list[_Chain]:
        """Follow one partition's pages into ``out``; return its children instead if it splits."""
        fresh = chain.token is None
        query = self._planner.query_for(chain.partition)
        on_retry = functools.partial(self._retried, chain)
        pages = self._client.result_pages(query, chain.token, on_retry=on_retry)
        async with contextlib.aclosing(pages):
            while True:
                page = await self._request(pages, limiter, rate)
                if fresh and page.next_page_token:
                    children = self._split(chain)
                    if children:
                        return children
                fresh = False
                await out.send((chain, page))
                if not page.next_page_token:
                    return []

    def _split(self, chain: _Chain) -> list[_Chain]:
        """Replace a partition that delivered nothing by its children, if the plan allows it."""
        chains = self._chains
        assert chains is not None
        unfinished = len(chains) - self._done
        room = self._max_partitions - unfinished
        # Enough children to give every idle worker a chain at once (the first split of a long query
        # goes straight to ``concurrency`` windows), at least _SPLIT_WAYS, within max_partitions.
        ways = max(_SPLIT_WAYS, self._options.concurrency - unfinished + 1)
        parts = self._planner.split_further(chain.partition, min(ways, room + 1))
        if not parts:
            return []
        children = [_Chain(p, p.key) for p in parts]
        replaced: dict[str, _Chain] = {}
        for key, existing in chains.items():
            if key == chain.key:
                replaced.update((child.key, child) for child in children)
            else:
                replaced[key] = existing
        self._chains = replaced
        self._splits += 1
        if self._on_progress is not None:
            self._on_progress(
                PartitionProgress(
                    key=chain.key,
                    pages=0,
                    records=0,
                    retries=chain.retries,
                    done=True,
                    split_into=tuple(child.key for child in children),
                )
            )
        return children

    async def _list_departments(self) -> list[str]:
        # Planning is one chain before any other starts: only the rate limit applies.
        rate = self._rate
        pages = self._client.department_pages(on_retry=self._retried_planning)
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

    def _progress(self, chain: _Chain) -> None:
        if self._on_progress is not None:
            self._on_progress(
                PartitionProgress(
                    key=chain.key,
                    pages=chain.pages,
                    records=chain.records,
                    retries=chain.retries,
                    done=chain.done,
                )
            )

    # -- the consumer's side ----------------------------------------------------------------------------

    def _deliver(self, chain: _Chain, page: ResultsPage) -> Batch | None:
        """Dedupe a received page and advance its partition; the batch of new records, if any."""
        records = page.records
        seen = self._seen
        before = len(seen)
        ids = [r.enrollment_id or f"{r.user_id}/{r.course_id}" for r in records]
        # The common case costs two C-level set operations per page; the loop runs only on duplicates.
        if seen.isdisjoint(ids):
            seen.update(ids)
            fresh = records if len(seen) - before == len(ids) else _first_of_each(records, ids, set())
        else:
            fresh = _first_of_each(records, ids, seen)
        chain.pages += 1
        chain.records += len(fresh)
        chain.token = page.next_page_token or None
        if chain.token is None:
            chain.done = True
            self._done += 1
        self._pages += 1
        self._records += len(fresh)
        self._duplicates += len(records) - len(fresh)
        self._progress(chain)
        return Batch(partition=chain.key, records=fresh) if fresh else None


def _first_of_each(records: Sequence[LearnerResult], ids: list[str], seen: set[str]) -> list[LearnerResult]:
    fresh = []
    add = seen.add
    for record, identity in zip(records, ids, strict=True):
        if identity not in seen:
            add(identity)
            fresh.append(record)
    return fresh


class _Batches:
    """The consumer's iterator: receives pages, dedupes them, and skips pages with nothing new."""

    def __init__(self, fanout: FanOut, receive: MemoryObjectReceiveStream[_Delivery]) -> None:
        self._fanout = fanout
        self._receive = receive

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> Batch:
        fanout = self._fanout
        while True:
            if fanout._failure is not None:
                raise fanout._failure
            try:
                chain, page = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if fanout._failure is not None:
                    raise fanout._failure from None
                raise StopAsyncIteration from None
            batch = fanout._deliver(chain, page)
            if batch is not None:
                return batch


async def fan_out_results(
    client: Client,
    query: ResultsQuery | None = None,
    options: FanOutOptions = FanOutOptions(),
) -> AsyncGenerator[LearnerResult, None]:
    """Every record of ``query``, once each, fetched by a fan-out (the library's one-call form).

    It runs a task group between its yields, so a caller that may stop early must close it in the task
    that iterates it: ``async with contextlib.aclosing(fan_out_results(...)) as records:``. Closing it
    cancels every request in flight.

    >>> async for record in fan_out_results(client, query, FanOutOptions(concurrency=16)):
    ...     ...
    """
    async with FanOut(client, query, options).run() as batches:
        async for batch in batches:
            for record in batch.records:
                yield record

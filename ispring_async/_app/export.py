"""The nightly pull: settings → ``Client`` → ``FanOut`` (or a page chain) → sink, a checkpoint per page.

An export holds one or more datasets (``--include``: results, departments, ...), run one after the
other in :data:`~ispring_async.sinks.DATASETS` order into one sink. Every batch is written and
checkpointed together with the run's state in one worker-thread call, so the sink's durable output and
the resume state always describe the same records. The run's state is one :class:`RunState` for all
datasets: the datasets done, and the resume point of the one in progress (``FanOut.state()`` for
results, the next page token for a page chain). SIGINT/SIGTERM cancel the export between two such
calls (a call in progress finishes first), the sink is aborted (its checkpoint stays) and
:class:`Interrupted` is raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import signal
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread
import msgspec

from ispring_async._app.progress import (
    Clock,
    ProgressMode,
    ProgressReporter,
    Snapshot,
    format_duration,
    render_retries,
)
from ispring_async._checkpoint import needs_seen
from ispring_async._client import Client
from ispring_async._config import ResponseFormat, RetryPolicy
from ispring_async._dedupe import IdentitySet
from ispring_async._exceptions import (
    AuthenticationError,
    ConfigurationError,
    PartitionError,
    PermissionDeniedError,
    printable,
)
from ispring_async._fanout import FanOut, FanOutOptions, PartitionProgress
from ispring_async._paginate import DEFAULT_MAX_PAGES
from ispring_async._query import ModuleResultsQuery, ResultsQuery, UsersQuery
from ispring_async._transport import RetryEvent
from ispring_async.sinks import (
    DEPARTMENTS,
    MODULE_RESULTS,
    RESULTS,
    USERS,
    Dataset,
    Sink,
    SinkError,
    open_sink,
    select_datasets,
)

__all__ = [
    "ExitCode",
    "ExportSettings",
    "ExportSummary",
    "Interrupted",
    "RunState",
    "exit_code_for",
    "run_export",
]

logger = logging.getLogger("ispring_async.export")


class ExitCode(enum.IntEnum):
    """The exit status of ``ispring-async export``."""

    OK = 0
    USAGE = 2
    """Bad options, config file or filters; a ``--resume`` whose checkpoint has other filters."""
    AUTH = 3
    """The API refused the credentials (401) or the account may not read results (403)."""
    API = 4
    """Any other API or network failure, after retries."""
    OUTPUT = 5
    """The output cannot be written, resumed or published, or another export is writing it."""
    SIGINT = 130
    """Interrupted by Ctrl-C (128 + SIGINT, as shells report it); the checkpoint is kept."""
    SIGTERM = 143
    """Stopped by SIGTERM (128 + SIGTERM); the checkpoint is kept."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportSettings:
    """Everything one export needs, resolved from the command line, environment and config file.

    Give either ``client_id`` and ``client_secret``, or ``token``; neither is ever shown in a repr.
    """

    base_url: str
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    allow_insecure_http: bool = False
    token_url: str | None = None
    skip_unknown_ids: bool = False
    query: ResultsQuery = dataclasses.field(default_factory=ResultsQuery)
    fanout: FanOutOptions = dataclasses.field(default_factory=FanOutOptions)
    page_size: int = 1000
    response_format: ResponseFormat = ResponseFormat.XML
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    max_pages_per_chain: int = DEFAULT_MAX_PAGES
    parse_workers: int = 0
    """``Client(parse_workers=)``; the command resolves ``--parse-workers auto`` to a number."""
    output: Path
    format: str | None = None
    resume: bool = False
    include: tuple[str, ...] = ("results",)
    """Dataset names (``--include``); their order does not matter."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportSummary:
    """What an export did (also what an interrupted one did before it stopped)."""

    output: Path
    format: str
    records: int
    """Records in the output, including those kept from an interrupted run."""
    new_records: int
    """Records this run wrote."""
    kept_records: int
    """Records kept from the interrupted run this one resumed (0 for a fresh run)."""
    duplicates_removed: int
    pages: int
    requests: int
    partitions_done: int
    partitions_total: int
    retries_by_cause: dict[str, int]
    elapsed: float
    complete: bool
    skipped_ids: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Ids left out as unknown to the account (``--skip-unknown-ids``), by parameter."""
    datasets: dict[str, int] = dataclasses.field(default_factory=dict)
    """Records in the output by dataset (kept ones included), in the order they were exported."""

    @property
    def rate(self) -> float:
        """Records written per second by this run."""
        return self.new_records / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        """The human-readable summary printed at the end of a run."""
        head = "export complete" if self.complete else "export stopped"
        resumed = f" (+{self.kept_records:,} kept from the interrupted run)" if self.kept_records else ""
        return [
            f"{head}: {self.records:,} records in {self.output} ({self.format})",
            f"  written this run:   {self.new_records:,}{resumed}",
            f"  duplicates removed: {self.duplicates_removed:,}",
            f"  pages:              {self.pages:,} ({self.requests:,} requests, "
            f"partitions {self.partitions_done}/{self.partitions_total})",
            f"  retries:            {render_retries(self.retries_by_cause)}",
            f"  time:               {format_duration(self.elapsed)} ({self.rate:,.0f} records/s)",
            *(
                f"  {name + ':':<19} {count:,}"
                for name, count in self.datasets.items()
                if len(self.datasets) > 1 or name != RESULTS.name
            ),
            *(
                f"  skipped unknown:    {name} {len(ids)}: {', '.join(ids)}"
                for name, ids in self.skipped_ids.items()
            ),
        ]


class Interrupted(Exception):  # noqa: N818 - it is an outcome, not a failure
    """The export stopped on SIGINT or SIGTERM; the checkpoint is kept for ``--resume``."""

    def __init__(self, signum: int, summary: ExportSummary) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.summary = summary

    @property
    def exit_code(self) -> ExitCode:
        """130 for SIGINT, 143 for SIGTERM."""
        return ExitCode.SIGTERM if self.signum == signal.SIGTERM else ExitCode.SIGINT


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an export that failed with ``exc``."""
    cause = root_cause(exc)
    if isinstance(cause, AuthenticationError | PermissionDeniedError):
        return ExitCode.AUTH
    if isinstance(cause, ConfigurationError):
        return ExitCode.USAGE
    if isinstance(cause, SinkError | OSError):
        return ExitCode.OUTPUT
    return ExitCode.API


def root_cause(exc: BaseException) -> BaseException:
    """The error that decides the outcome: a lone exception out of a group, a partition's cause."""
    while True:
        if isinstance(exc, BaseExceptionGroup):
            # The first error is the one that cancelled the rest; later ones are usually its echoes.
            exc = exc.exceptions[0]
        elif isinstance(exc, PartitionError) and exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            return exc


def describe_error(exc: BaseException) -> str:
    """A one-line message for ``exc`` (library messages never hold secrets), control characters escaped.

    Every message is escaped again here, whatever raised it: this is what reaches the terminal.
    """
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, BaseExceptionGroup):
            current = current.exceptions[0]
            continue
        text = str(current) or type(current).__name__
        # A partition's message already quotes its cause's; only the cause's notes are new.
        if not any(text in part for part in parts):
            parts.append(text)
        parts.extend(getattr(current, "__notes__", ()))
        current = current.__cause__ if isinstance(current, PartitionError) else None
    return printable("; ".join(str(part) for part in parts))


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """What the checkpoint of an export holds: one state for all of its datasets."""

    version: int = 1
    include: list[str]
    """The run's datasets, in the order they run: a resume must ask for the same."""
    done: list[str] = []
    """Datasets exported whole (their last batch is in the sink)."""
    current: bytes | None = None
    """The resume point of the first dataset not done (``None``: it has not started)."""


class _ChainState(msgspec.Struct, frozen=True, kw_only=True):
    # A dataset read as one page chain: the token of the next page, or the chain ended.
    token: str | None = None
    ended: bool = False


_run_state = msgspec.json.Decoder(RunState)
_chain_state = msgspec.json.Decoder(_ChainState)


class _Run:
    """The state one export shares between its pump, its progress display and its summary."""

    def __init__(self, settings: ExportSettings, sink: Sink, client: Client) -> None:
        self.settings = settings
        self.sink = sink
        self.client = client
        self.clock = Clock()
        self.kept = 0
        self.fanouts: list[FanOut] = []
        """The fan-outs of this run so far (results, module results), for their counters."""
        # Counters of the datasets read as page chains (results' are the fan-out's).
        self.chain_pages = 0
        self.chain_duplicates = 0
        self.chain_retries: dict[str, int] = {}

    def retried(self, event: RetryEvent) -> None:
        self.chain_retries[event.cause] = self.chain_retries.get(event.cause, 0) + 1

    def _totals(self) -> dict[str, int]:
        totals = {
            "pages": self.chain_pages,
            "requests": self.chain_pages,
            "duplicates": self.chain_duplicates,
        }
        totals.update(done=0, total=0)
        totals["requests"] += sum(self.chain_retries.values())
        for fanout in self.fanouts:
            stats = fanout.stats
            totals["pages"] += stats.pages
            totals["requests"] += stats.requests
            totals["duplicates"] += stats.duplicates_removed
            totals["done"] += stats.partitions_done
            totals["total"] += stats.partitions_total
        return totals

    def retries(self) -> dict[str, int]:
        retries = dict(self.chain_retries)
        for fanout in self.fanouts:
            for cause, count in fanout.stats.retries_by_cause.items():
                retries[cause] = retries.get(cause, 0) + count
        return retries

    def snapshot(self) -> Snapshot:
        totals = self._totals()
        written = self.sink.records_written
        return Snapshot(
            records=written,
            new_records=written - self.kept,
            pages=totals["pages"],
            partitions_done=totals["done"],
            partitions_total=totals["total"],
            retries=sum(self.retries().values()),
            elapsed=self.clock(),
        )

    def summary(self, *, complete: bool) -> ExportSummary:
        totals = self._totals()
        written = self.sink.records_written
        return ExportSummary(
            output=self.sink.path,
            format=self.sink.format,
            records=written,
            new_records=written - self.kept,
            kept_records=self.kept,
            duplicates_removed=totals["duplicates"],
            pages=totals["pages"],
            requests=totals["requests"],
            partitions_done=totals["done"],
            partitions_total=totals["total"],
            retries_by_cause=self.retries(),
            elapsed=self.clock(),
            complete=complete,
            skipped_ids=self.client.skipped_ids,
            datasets=self.sink.counts(),
        )


async def run_export(
    settings: ExportSettings,
    *,
    progress: ProgressMode = ProgressMode.AUTO,
    progress_interval: float = 10.0,
    stream: TextIO | None = None,
) -> ExportSummary:
    """Run one export to completion and publish its output; return what it did.

    Raises :class:`Interrupted` on SIGINT/SIGTERM (when run in the main thread), and the library's
    errors otherwise (:func:`exit_code_for` maps them to exit codes). The output is published only
    on success; in every other case the sink keeps its last checkpoint for ``resume=True``.
    """
    stream = sys.stderr if stream is None else stream
    datasets = select_datasets(settings.include)
    # Made before any request: an unknown format or a missing pyarrow fails at once.
    sink = open_sink(settings.output, format=settings.format, datasets=datasets)
    client = Client(
        settings.base_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        token=settings.token,
        retry=settings.retry,
        page_size=settings.page_size,
        response_format=settings.response_format,
        allow_insecure_http=settings.allow_insecure_http,
        token_url=settings.token_url,
        skip_unknown_ids=settings.skip_unknown_ids,
        max_pages_per_chain=settings.max_pages_per_chain,
        parse_workers=settings.parse_workers,
    )
    run = _Run(settings, sink, client)
    reporter = ProgressReporter(run.snapshot, mode=progress, stream=stream, interval=progress_interval)
    signals: list[int] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(sink)
        saved = await anyio.to_thread.run_sync(lambda: sink.open(resume=settings.resume))
        state = RunState(include=[d.name for d in datasets])
        if saved is not None and _older(saved):
            # A checkpoint of a version before datasets (an SQLite run interrupted across an upgrade):
            # starting afresh is always correct, as for any checkpoint that cannot be resumed.
            logger.warning(
                "cannot resume the export to %s: its checkpoint was written by an older version; "
                "starting afresh",
                sink.path,
            )
            sink.abort()
            run.sink = sink = open_sink(settings.output, format=settings.format, datasets=datasets)
            stack.enter_context(sink)
            saved = await anyio.to_thread.run_sync(lambda: sink.open(resume=False))
        if saved is not None:
            state = _resumed_state(saved, state.include, sink.path)
            run.kept = sink.records_written
            logger.info("resuming the export to %s: %d records kept", sink.path, run.kept)
        elif settings.resume:
            logger.info("nothing to resume for %s: starting a fresh export", sink.path)
        async with client:
            logger.info(
                "exporting %s from %s to %s (%s, split %s, concurrency %d)",
                ", ".join(state.include),
                client.base_url.rstrip("/"),
                sink.path,
                sink.format,
                settings.fanout.split,
                settings.fanout.concurrency,
            )
            try:
                async with anyio.create_task_group() as tg:
                    if threading.current_thread() is threading.main_thread():
                        tg.start_soon(_watch_signals, tg.cancel_scope, signals)
                    tg.start_soon(reporter.run)
                    await _export_datasets(run, datasets, state)
                    tg.cancel_scope.cancel()
            finally:
                reporter.clear()
        if signals:
            sink.abort()
            raise Interrupted(signals[0], run.summary(complete=False))
        await anyio.to_thread.run_sync(sink.finish)
    return run.summary(complete=True)


def _older(saved: bytes) -> bool:
    try:
        _run_state.decode(saved)
    except msgspec.DecodeError:
        return True
    return False


def _resumed_state(saved: bytes, include: list[str], path: Path) -> RunState:
    """The checkpoint's state, if it is an export of the same datasets (else :exc:`ConfigurationError`)."""
    state = _run_state.decode(saved)
    if state.include != include:
        kept = ",".join(printable(name) for name in state.include)
        raise ConfigurationError(
            f"cannot resume the export to {path}: the interrupted export covers the datasets {kept}, not "
            f"{','.join(include)}; rerun with --include {kept}, or without --resume to start afresh"
        )
    return state


async def _export_datasets(run: _Run, datasets: Sequence[Dataset], state: RunState) -> None:
    """Each dataset not done yet, in order; a checkpoint marks each one done."""
    for dataset in datasets:
        if dataset.name in state.done:
            continue
        seen: Iterable[str] | None = None
        chained = dataset in (USERS, DEPARTMENTS)
        if state.current is not None and (chained or needs_seen(state.current)):
            # Rows of this dataset kept from the interrupted run: the duplicate filter starts with them.
            # A fan-out's state is exact on its own except for a department split's (overlapping
            # chains), so only that one reads them back: loading every identity written would make a
            # resume's memory grow with the export. An IdentitySet keeps 20k in memory, the rest on disk.
            seen = await anyio.to_thread.run_sync(_identities, run.sink, dataset.name)
        logger.info("exporting %s", dataset.name)
        if dataset is RESULTS:
            await _export_fanout(run, dataset, state, seen, run.settings.query, run.client.result_pages)
        elif dataset is MODULE_RESULTS:
            # The results' filters, on each module result's own status and dates; split the same way.
            query = ModuleResultsQuery(**_fields(run.settings.query))
            await _export_fanout(run, dataset, state, seen, query, run.client.module_result_pages)
        elif dataset is USERS:
            # Reference data for joins: every user of the account (the endpoint has no status filter),
            # as one chain checkpointed by page token. (Client.users' department fan-out has no resume
            # state; a users list is short next to results, a page of 1000 users per request.)
            await _export_chain(
                run,
                dataset,
                state,
                seen,
                lambda token: run.client.user_pages(UsersQuery(), token, on_retry=run.retried),
                lambda page: page.users,
            )
        elif dataset is DEPARTMENTS:
            await _export_chain(
                run,
                dataset,
                state,
                seen,
                lambda token: run.client.department_pages(token, on_retry=run.retried),
                lambda page: page.departments,
            )
        else:  # pragma: no cover - every dataset of DATASETS has its branch above
            raise AssertionError(dataset.name)
        state = RunState(include=state.include, done=[*state.done, dataset.name])
        await _commit(run.sink, [], dataset, state)


def _fields(query: ResultsQuery) -> dict[str, Any]:
    return {field.name: getattr(query, field.name) for field in dataclasses.fields(ResultsQuery)}


async def _export_fanout(
    run: _Run,
    dataset: Dataset,
    state: RunState,
    seen: Iterable[str] | None,
    query: ResultsQuery,
    pages: Callable[..., AsyncGenerator[Any, None]],
) -> None:
    """A dataset read by the fan-out (results, module results), checkpointed with its state per batch."""
    try:
        fanout = FanOut(
            run.client,
            query,
            run.settings.fanout,
            resume_state=state.current,
            seen=seen,
            on_progress=_log_partition,
            pages=pages,
        )
    except ConfigurationError as exc:
        if state.current is None:
            raise
        raise ConfigurationError(
            f"cannot resume the export to {run.sink.path} ({exc}): rerun with the filters of the "
            "interrupted export, or without --resume to start afresh"
        ) from None
    run.fanouts.append(fanout)
    async with fanout.run() as batches:
        async for batch in batches:
            # Pages that arrived while the last commit ran go with this one, under one checkpoint:
            # when fsync is slow (a loaded disk) the sink catches up instead of paying two fsyncs a
            # page; the chains never wait longer than for one commit, as before.
            group = [batch.records, *(b.records for b in batches.ready(_GROUP_COMMIT - 1))]
            # The state is taken before anything else can happen: it covers exactly these batches.
            current = fanout.state()
            await _commit(run.sink, group, dataset, msgspec.structs.replace(state, current=current))


async def _export_chain(
    run: _Run,
    dataset: Dataset,
    state: RunState,
    seen: Iterable[str] | None,
    pages_after: Callable[[str | None], AsyncGenerator[Any, None]],
    records_of: Callable[[Any], list[Any]],
) -> None:
    """A dataset read as one chain of pages, checkpointed with the next page's token after each page."""
    chain = _ChainState() if state.current is None else _chain_state.decode(state.current)
    if chain.ended:
        return  # the last page is in the sink; only the mark "done" was missing
    # The API may repeat a record on a later page (rows change while it pages): each goes out once.
    # A set of identities is enough here: these lists are per account (users, departments), not per
    # enrollment.
    identities = set(seen or ())
    identity = dataset.identity
    async with contextlib.aclosing(pages_after(chain.token)) as pages:
        async for page in pages:
            run.chain_pages += 1
            records = []
            for record in records_of(page):
                key = identity(record)
                if key in identities:
                    run.chain_duplicates += 1
                    continue
                identities.add(key)
                records.append(record)
            token = page.next_page_token or None
            current = msgspec.json.encode(_ChainState(token=token, ended=token is None))
            await _commit(run.sink, [records], dataset, msgspec.structs.replace(state, current=current))


def _identities(sink: Sink, dataset: str) -> IdentitySet:
    return IdentitySet(sink.identities(dataset))


# Pages committed under one checkpoint at most: what the fan-out's stream buffers (8 by default).
_GROUP_COMMIT = 8


async def _commit(sink: Sink, groups: list[list[Any]], dataset: Dataset, state: RunState) -> None:
    encoded = msgspec.json.encode(state)
    # One thread call for both, so a cancellation lands before or after the pair, never between a
    # write and the checkpoint that covers it (and never on two sink calls at once).
    await anyio.to_thread.run_sync(_write_and_checkpoint, sink, groups, dataset.name, encoded)


def _write_and_checkpoint(sink: Sink, groups: list[list[Any]], dataset: str, state: bytes) -> None:
    for records in groups:
        if records:
            sink.write(records, dataset)
    sink.checkpoint(state)


async def _watch_signals(scope: anyio.CancelScope, received: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            logger.warning("%s received: stopping after the current page", signal.Signals(signum).name)
            scope.cancel()
            return


def _log_partition(progress: PartitionProgress) -> None:
    if progress.done:
        logger.debug(
            "partition %s done: %d pages, %d records, %d retries",
            progress.key,
            progress.pages,
            progress.records,
            progress.retries,
        )

"""The nightly pull: settings → ``Client`` → ``FanOut`` → sink, with a checkpoint after every page.

Every batch the fan-out yields is written and checkpointed together with ``FanOut.state()`` in one
worker-thread call, so the sink's durable output and the resume state always describe the same
records. SIGINT/SIGTERM cancel the fan-out between two such calls (a call in progress finishes
first), the sink is aborted (its checkpoint stays) and :class:`Interrupted` is raised.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

import anyio
import anyio.to_thread

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
from ispring_async._models import LearnerResult
from ispring_async._paginate import DEFAULT_MAX_PAGES
from ispring_async._query import ResultsQuery
from ispring_async.sinks import Sink, SinkError, open_sink

__all__ = ["ExitCode", "ExportSettings", "ExportSummary", "Interrupted", "exit_code_for", "run_export"]

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
    output: Path
    format: str | None = None
    resume: bool = False


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


class _Run:
    """The state one export shares between its pump, its progress display and its summary."""

    def __init__(self, settings: ExportSettings, sink: Sink, client: Client) -> None:
        self.settings = settings
        self.sink = sink
        self.client = client
        self.clock = Clock()
        self.kept = 0
        self.fanout: FanOut | None = None

    def snapshot(self) -> Snapshot:
        stats = self.fanout.stats if self.fanout is not None else None
        written = self.sink.records_written
        return Snapshot(
            records=written,
            new_records=written - self.kept,
            pages=stats.pages if stats else 0,
            partitions_done=stats.partitions_done if stats else 0,
            partitions_total=stats.partitions_total if stats else 0,
            retries=sum(stats.retries_by_cause.values()) if stats else 0,
            elapsed=self.clock(),
        )

    def summary(self, *, complete: bool) -> ExportSummary:
        stats = self.fanout.stats if self.fanout is not None else None
        written = self.sink.records_written
        return ExportSummary(
            output=self.sink.path,
            format=self.sink.format,
            records=written,
            new_records=written - self.kept,
            kept_records=self.kept,
            duplicates_removed=stats.duplicates_removed if stats else 0,
            pages=stats.pages if stats else 0,
            requests=stats.requests if stats else 0,
            partitions_done=stats.partitions_done if stats else 0,
            partitions_total=stats.partitions_total if stats else 0,
            retries_by_cause=dict(stats.retries_by_cause) if stats else {},
            elapsed=self.clock(),
            complete=complete,
            skipped_ids=self.client.skipped_ids,
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
    # Made before any request: an unknown format or a missing pyarrow fails at once.
    sink = open_sink(settings.output, format=settings.format)
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
    )
    run = _Run(settings, sink, client)
    reporter = ProgressReporter(run.snapshot, mode=progress, stream=stream, interval=progress_interval)
    signals: list[int] = []
    with sink:
        saved = await anyio.to_thread.run_sync(lambda: sink.open(resume=settings.resume))
        seen: IdentitySet | None = None
        if saved is not None:
            # Only a department split's state lacks what its chains delivered; any other is exact on
            # its own, and loading every identity written would make a resume's memory grow with it.
            # Read into an IdentitySet (bounded memory, on disk beyond 20k), off the event loop.
            if needs_seen(saved):
                seen = await anyio.to_thread.run_sync(lambda: IdentitySet(sink.identities()))
            run.kept = sink.records_written
            logger.info("resuming the export to %s: %d records kept", sink.path, run.kept)
        elif settings.resume:
            logger.info("nothing to resume for %s: starting a fresh export", sink.path)
        async with client:
            try:
                run.fanout = fanout = FanOut(
                    client,
                    settings.query,
                    settings.fanout,
                    resume_state=saved,
                    seen=seen,
                    on_progress=_log_partition,
                )
            except ConfigurationError as exc:
                if saved is None:
                    raise
                raise ConfigurationError(
                    f"cannot resume the export to {sink.path} ({exc}): rerun with the filters of the "
                    "interrupted export, or without --resume to start afresh"
                ) from None
            logger.info(
                "exporting %s/learners/results to %s (%s, split %s, concurrency %d)",
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
                    await _pump(fanout, sink)
                    tg.cancel_scope.cancel()
            finally:
                reporter.clear()
        if signals:
            sink.abort()
            raise Interrupted(signals[0], run.summary(complete=False))
        await anyio.to_thread.run_sync(sink.finish)
    return run.summary(complete=True)


# Pages committed under one checkpoint at most: what the fan-out's stream buffers (8 by default).
_GROUP_COMMIT = 8


async def _pump(fanout: FanOut, sink: Sink) -> None:
    async with fanout.run() as batches:
        async for batch in batches:
            # Pages that arrived while the last commit ran go with this one, under one checkpoint:
            # when fsync is slow (a loaded disk) the sink catches up instead of paying two fsyncs a
            # page; the chains never wait longer than for one commit, as before.
            group = [batch, *batches.ready(_GROUP_COMMIT - 1)]
            # The state is taken before anything else can happen: it covers exactly these batches.
            state = fanout.state()
            # One thread call for all, so a cancellation lands before or after the group, never
            # between a write and the checkpoint that covers it (and never on two sink calls at once).
            await anyio.to_thread.run_sync(_commit, sink, [b.records for b in group], state)


def _commit(sink: Sink, groups: list[list[LearnerResult]], state: bytes) -> None:
    for records in groups:
        if records:
            sink.write(records)
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

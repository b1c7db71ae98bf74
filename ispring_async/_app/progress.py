"""What an export shows while it runs: a live line on a terminal, plain log lines elsewhere.

Rendering is pure (:func:`render_line`); :class:`ProgressReporter` only decides when and where to
draw. Nothing shown ever includes a credential: a snapshot holds counts and times only.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import TextIO

import anyio

from ispring_async._exceptions import printable

__all__ = [
    "Clock",
    "PrintableFormatter",
    "ProgressLogHandler",
    "ProgressMode",
    "ProgressReporter",
    "Snapshot",
    "format_duration",
    "render_line",
    "render_retries",
]

logger = logging.getLogger("ispring_async.export")

LIVE_REFRESH = 0.25
"""Seconds between two redraws of the live line (about 4 per second: smooth, yet cheap)."""


class ProgressMode(enum.StrEnum):
    """How progress is shown: ``auto`` picks ``live`` on a terminal and ``log`` otherwise."""

    AUTO = "auto"
    LIVE = "live"
    LOG = "log"
    OFF = "off"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The counters of a running export at one instant."""

    records: int
    """Records in the output, including those kept from an interrupted run."""
    new_records: int
    """Records written by this run (what the rate is computed from)."""
    pages: int
    partitions_done: int
    partitions_total: int
    retries: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Records written per second by this run."""
        return self.new_records / self.elapsed if self.elapsed > 0 else 0.0


def format_duration(seconds: float) -> str:
    """``73.4`` → ``'1:13'``; ``4000`` → ``'1:06:40'``; under a minute with tenths (``'9.5s'``)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_line(snapshot: Snapshot) -> str:
    """One line describing ``snapshot``.

    >>> render_line(Snapshot(records=12345, new_records=12345, pages=13, partitions_done=3,
    ...                      partitions_total=8, retries=2, elapsed=2.5))
    '12,345 records · 13 pages · partitions 3/8 · 4,938 rec/s · 2 retries · 2.5s'
    """
    total = str(snapshot.partitions_total) if snapshot.partitions_total else "?"
    return (
        f"{snapshot.records:,} records · {snapshot.pages:,} pages · "
        f"partitions {snapshot.partitions_done}/{total} · {snapshot.rate:,.0f} rec/s · "
        f"{snapshot.retries:,} retries · {format_duration(snapshot.elapsed)}"
    )


def render_retries(by_cause: Mapping[str, int]) -> str:
    """``{'500': 2, 'reset': 1}`` → ``'3 (500: 2, reset: 1)'``; nothing → ``'0'``."""
    total = sum(by_cause.values())
    if not total:
        return "0"
    parts = ", ".join(f"{cause}: {count}" for cause, count in sorted(by_cause.items()) if count)
    return f"{total} ({parts})"


class ProgressReporter:
    """Shows ``snapshot()`` periodically until cancelled: redrawn in place, or logged every ``interval``.

    >>> reporter = ProgressReporter(snapshot, mode=ProgressMode.AUTO, stream=sys.stderr, interval=10)
    >>> tg.start_soon(reporter.run)  # cancel the task group's scope to stop; then reporter.clear()
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        mode: ProgressMode,
        stream: TextIO,
        interval: float,
    ) -> None:
        if mode is ProgressMode.AUTO:
            mode = ProgressMode.LIVE if _is_terminal(stream) else ProgressMode.LOG
        self.mode = mode
        self._snapshot = snapshot
        self._stream = stream
        self._interval = interval
        self._drawn = 0  # width of the live line on screen, to blank it out

    async def run(self) -> None:
        """Draw until cancelled."""
        if self.mode is ProgressMode.OFF:
            return
        if self.mode is ProgressMode.LIVE:
            _live.append(self)
            try:
                while True:
                    self.draw()
                    await anyio.sleep(LIVE_REFRESH)
            finally:
                _live.remove(self)
        else:
            while True:
                await anyio.sleep(self._interval)
                logger.info("progress: %s", render_line(self._snapshot()))

    def draw(self) -> None:
        """Redraw the live line now."""
        line = render_line(self._snapshot())
        # \r and padding rather than terminal escapes: works on every terminal and in `script` logs.
        padding = " " * max(0, self._drawn - len(line))
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
        self._drawn = len(line)

    def break_line(self) -> None:
        """Move below the live line (it is redrawn on the next line at the next refresh)."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0

    def clear(self) -> None:
        """Draw the final state of the live line and end it, so what follows starts on a fresh line."""
        if self.mode is ProgressMode.LIVE and self._drawn:
            self.draw()
            self.break_line()


_live: list[ProgressReporter] = []  # the live line on screen, if any (at most one per process)


class PrintableFormatter(logging.Formatter):
    """Formats a log line with its message escaped by :func:`printable`.

    Messages interpolate what servers sent (an error message, a header); escaped, they cannot move the
    cursor, retitle the window or start a forged line. A traceback below the message keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.message = printable(record.message)
        return super().formatMessage(escaped)


class ProgressLogHandler(logging.StreamHandler[TextIO]):
    """A stream handler that first ends a live progress line, so log lines never land inside it."""

    def emit(self, record: logging.LogRecord) -> None:
        for reporter in _live:
            reporter.break_line()
        super().emit(record)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Clock:
    """Seconds since the export started (monotonic)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._start

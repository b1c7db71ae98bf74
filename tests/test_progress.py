"""The progress display (``_app/progress.py``): the live line, log lines, durations and retry causes."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ispring_async._app.progress import (
    ProgressMode,
    ProgressReporter,
    Snapshot,
    format_duration,
    render_line,
    render_retries,
)

# -- the progress display ------------------------------------------------------------------------------


def snapshot(**changes: Any) -> Snapshot:
    """A snapshot with round numbers."""
    values: dict[str, Any] = {
        "records": 12_345,
        "new_records": 10_000,
        "pages": 13,
        "partitions_done": 3,
        "partitions_total": 8,
        "retries": 2,
        "elapsed": 4.0,
    }
    return Snapshot(**{**values, **changes})


def test_render_line_shows_every_counter() -> None:
    """The live line shows records, pages, partitions done/total, the rate, retries and elapsed time."""
    assert render_line(snapshot()) == (
        "12,345 records · 13 pages · partitions 3/8 · 2,500 rec/s · 2 retries · 4.0s"
    )
    assert "partitions 0/?" in render_line(snapshot(partitions_done=0, partitions_total=0, elapsed=0))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(9.54, "9.5s", id="seconds"),
        pytest.param(73.4, "1:13", id="minutes"),
        pytest.param(4000, "1:06:40", id="hours"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations read as a person would write them."""
    assert format_duration(seconds) == text


def test_render_retries_by_cause() -> None:
    """Retries are totalled and broken down by cause, sorted."""
    assert render_retries({}) == "0"
    assert render_retries({"reset": 1, "5xx": 2, "429": 0}) == "3 (5xx: 2, reset: 1)"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_picks_live_on_a_terminal_and_log_elsewhere() -> None:
    """``auto`` draws a live line on a terminal and logs plain lines when output is redirected."""
    assert ProgressReporter(snapshot, mode=ProgressMode.AUTO, stream=_Terminal(), interval=1).mode is (
        ProgressMode.LIVE
    )
    assert ProgressReporter(snapshot, mode=ProgressMode.AUTO, stream=io.StringIO(), interval=1).mode is (
        ProgressMode.LOG
    )


def test_live_line_is_redrawn_in_place_and_ended_cleanly() -> None:
    """The live line is redrawn after a carriage return, padded over a longer one, and ended by clear()."""
    stream = _Terminal()
    current = [snapshot(records=1_000_000)]
    reporter = ProgressReporter(lambda: current[0], mode=ProgressMode.LIVE, stream=stream, interval=1)
    reporter.draw()
    first = stream.getvalue()
    current[0] = snapshot(records=5)
    reporter.draw()
    second = stream.getvalue()[len(first) :]
    assert first.startswith("\r1,000,000 records")
    assert second.startswith("\r5 records")
    assert len(second) == len(first)  # padded over the longer line
    reporter.clear()
    assert stream.getvalue().endswith("\n")

"""Scenario 4 — sinks: records/s each sink writes, a checkpoint after every 1000-record page, as an export
does; ``finish`` (publishing the output) is inside the clock. Sinks are interleaved in rounds.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _data
from benchmarks._common import summarize
from ispring_async._models import LearnerResult
from ispring_async.sinks import open_sink

__all__ = ["SINKS", "run"]

SINKS = ("jsonl", "csv", "parquet", "sqlite")
PAGE = 1000


def _write(path: Path, records: list[LearnerResult]) -> float:
    gc.collect()
    start = time.perf_counter()
    with open_sink(path) as sink:
        sink.open(resume=False)
        for first in range(0, len(records), PAGE):
            sink.write(records[first : first + PAGE])
            sink.checkpoint(b'{"page": %d}' % first)
        sink.finish()
    return time.perf_counter() - start


def run(*, records: int, rounds: int) -> dict[str, Any]:
    """Write ``records`` records through every sink, ``rounds`` interleaved rounds."""
    data = _data.records(records)
    rates: dict[str, list[float]] = {name: [] for name in SINKS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="ispring-bench-") as tmp:
        for r in range(rounds):
            order = SINKS[r % len(SINKS) :] + SINKS[: r % len(SINKS)]
            for name in order:
                path = Path(tmp) / f"{name}-{r}.{name}"
                rates[name].append(records / _write(path, data))
                sizes[name] = path.stat().st_size
                path.unlink()
    return {
        "records": records,
        "page": PAGE,
        "rounds": rounds,
        "sinks": {
            name: {"records_per_s": summarize(rates[name]), "bytes": sizes[name], "raw": rates[name]}
            for name in SINKS
        },
    }

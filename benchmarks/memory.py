"""Scenario 3 — memory: peak RSS of ``ispring-async export`` writing N records to JSONL.

Each export is its own process. Its peak is the ``VmHWM`` it reads from ``/proc/self/status`` as it
exits (a two-line wrapper around the command's ``main``), not ``ru_maxrss``: Linux carries a parent's
high-water mark into its children, so theirs would never read below the runner's own size. The
emulator serves with no latency from another process; every user status is asked for, so the export
holds exactly N records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import child_env, summarize
from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, emulator_process

__all__ = ["SPLITS", "run"]

# Runs ``ispring-async <argv>`` and writes the process's peak RSS (bytes) to $BENCH_PEAK_FILE at exit.
_WRAPPER = """
import atexit, os, sys

def _peak():
    with open("/proc/self/status", encoding="ascii") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_PEAK_FILE"], "w", encoding="ascii") as out:
        out.write(str(peak))

atexit.register(_peak)
if sys.argv[1:]:
    from ispring_async._app.cli import main
    sys.exit(main(sys.argv[1:]))
import ispring_async._app.cli, ispring_async._app.export, ispring_async.sinks
"""


def _measured(args: list[str], timeout: float) -> tuple[int, float, str]:
    """Run the wrapper with ``args``: its peak RSS, its wall time and its output (stdout + stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        env = child_env(
            {
                **os.environ,
                "ISPRING_CLIENT_ID": CLIENT_ID,
                "ISPRING_CLIENT_SECRET": CLIENT_SECRET,
                "BENCH_PEAK_FILE": str(peak_file),
            }
        )
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - start
        output = completed.stdout + completed.stderr
        if completed.returncode != 0 or not peak_file.exists():
            raise RuntimeError(
                f"{' '.join(args[:1]) or 'import'} failed ({completed.returncode}):\n{output[-3000:]}"
            )
        return int(peak_file.read_text()), seconds, output


SPLITS = ("adaptive", "window", "department", "combined", "none")
"""Every split mode: each dedupes differently (department groups hold identities, windows do not)."""


def _export(base_url: str, output: Path, timeout: float, split: str = "adaptive") -> dict[str, Any]:
    args = ["export", "--base-url", base_url, "--output", str(output), "--quiet", "--progress", "off"]
    args += ["--user-status", "1", "--user-status", "3", "--user-status", "5", "--split", split]
    peak, seconds, _ = _measured(args, timeout)
    with output.open("rb") as f:
        lines = sum(1 for _ in f)
    return {"records": lines, "seconds": seconds, "peak_rss_bytes": peak}


def _baseline() -> int:
    """Peak RSS of a process that only imports the exporter: what an export of nothing would cost."""
    peak, _, _ = _measured([], 120)
    return peak


def run(
    *, sizes: tuple[int, ...], repeats: int, timeout: float = 1800.0, splits: tuple[str, ...] = ("adaptive",)
) -> dict[str, Any]:
    """Export each size ``repeats`` times per split mode; peak RSS and wall time (process start
    included) per size. ``sizes`` is the first split's (the default, adaptive); ``by_split`` has all."""
    by_split: dict[str, dict[str, Any]] = {split: {} for split in splits}
    raw: list[dict[str, Any]] = []
    baseline = [_baseline() / 2**20 for _ in range(repeats)]
    for size in sizes:
        with emulator_process(results=size, latency=0.0) as emu, tempfile.TemporaryDirectory() as tmp:
            for split in splits:
                runs = []
                for repeat in range(repeats):
                    output = Path(tmp) / f"export-{repeat}.jsonl"
                    result = _export(emu.base_url, output, timeout, split)
                    output.unlink()
                    if result["records"] != size:
                        raise RuntimeError(
                            f"the {split} export wrote {result['records']} records, expected {size}"
                        )
                    runs.append(result)
                    raw.append({"size": size, "split": split, "repeat": repeat, **result})
                by_split[split][str(size)] = {
                    "records": size,
                    "peak_rss_mib": summarize([r["peak_rss_bytes"] / 2**20 for r in runs]),
                    "records_per_s": summarize([r["records"] / r["seconds"] for r in runs]),
                }
    growth = {}
    for split, results in by_split.items():
        peaks = [results[str(size)]["peak_rss_mib"]["median"] for size in sorted(sizes)]
        growth[split] = peaks[-1] / peaks[0]
    return {
        "exporter": f"ispring-async export (concurrency 8, XML; split {splits[0]} in the table)",
        "baseline_rss_mib": summarize(baseline),
        "sizes": by_split[splits[0]],
        "by_split": by_split,
        # Flat memory means this stays near 1 (target: <= 1.2 from 100k to 1M records).
        "peak_growth_largest_vs_smallest": growth[splits[0]],
        "peak_growth_by_split": growth,
        "raw": raw,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.memory --sizes 100000 1000000``: print the peaks and their growth."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="peak RSS of ispring-async export by size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS), help="split modes")
    args = parser.parse_args(argv)
    result = run(sizes=tuple(args.sizes), repeats=args.repeats, splits=tuple(args.split))
    result.pop("raw")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

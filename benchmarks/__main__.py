"""``python -m benchmarks [--quick] [--only parse,e2e,memory,sinks] [--out benchmarks/results]``.

Runs the scenarios, writes ``<out>/<scenario>.json`` (raw runs, summaries, machine), then rebuilds
``<out>/report.md`` and the plots from every scenario file in ``<out>``. ``--quick`` is a first look in
under two minutes; the default is the full run (about 10-20 minutes). ``--tiny`` exists for the smoke
test: it checks that everything runs, and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import e2e, memory, parse, report, sinks
from benchmarks._common import read_result, write_result

SCENARIOS = ("parse", "e2e", "memory", "sinks")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

# Per mode: parse (rounds, seconds per timing, document records, document repeats), e2e grid,
# memory (sizes, repeats), sinks (records, rounds).
_MODES: dict[str, dict[str, Any]] = {
    "full": {
        "parse": (15, 0.2, 100_000, 3),
        "e2e": e2e.FULL,
        "memory": ((100_000, 1_000_000), 3),
        "sinks": (100_000, 5),
    },
    "quick": {
        "parse": (5, 0.05, 100_000, 1),
        "e2e": e2e.QUICK,
        "memory": ((100_000,), 1),
        "sinks": (20_000, 3),
    },
    "tiny": {
        "parse": (1, 0.001, 2_000, 1),
        "e2e": e2e.Grid(
            latencies_ms=(0,),
            concurrency=(2,),
            repeats=1,
            target_seconds=0.05,
            dataset=6_000,
            max_records=2_000,
        ),
        "memory": ((2_000,), 1),
        "sinks": (2_000, 1),
    },
}


def _scenarios(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SCENARIOS)} (got {text!r})")
    return chosen


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a first look, under two minutes")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes (figures meaningless)")
    p.add_argument("--only", type=_scenarios, default=list(SCENARIOS), help="comma-separated scenarios")
    p.add_argument(
        "--split",
        choices=("department", "window", "adaptive", "none"),
        default=e2e.DEFAULT_SPLIT,
        help=f"how our client splits the export in the e2e scenario (default {e2e.DEFAULT_SPLIT})",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    return p


def _ceiling(out: Path, results: dict[str, Any]) -> float:
    """Our XML parser's records/s: from this run's parse scenario, an earlier one in ``out``, or measured."""
    found = results.get("parse") or read_result(out, "parse")
    if found is not None:
        return float(found["approaches"]["ours-xml"]["records_per_s"]["median"])
    measured = parse.page_rounds(rounds=3, target_seconds=0.05)
    return float(measured["approaches"]["ours-xml"]["records_per_s"]["median"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios and write the results, the report and the plots."""
    args = _parser().parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    settings = _MODES[mode]
    out: Path = args.out
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in SCENARIOS:
        if name not in args.only:
            continue
        print(f"[{time.perf_counter() - started:6.1f} s] {name} ({mode})", flush=True)
        if name == "parse":
            rounds, seconds, document, repeats = settings["parse"]
            scenario = parse.run(rounds=rounds, target_seconds=seconds, document=document, repeats=repeats)
            results[name] = {"mode": mode, **scenario}
        elif name == "e2e":
            ceiling = _ceiling(out, results)
            grid = msgspec.structs.replace(settings["e2e"], split=args.split)
            results[name] = {"mode": mode, **e2e.run(grid=grid, ceiling=ceiling)}
        elif name == "memory":
            sizes, repeats = settings["memory"]
            results[name] = {"mode": mode, **memory.run(sizes=sizes, repeats=repeats)}
        else:
            records, rounds = settings["sinks"]
            results[name] = {"mode": mode, **sinks.run(records=records, rounds=rounds)}
        write_result(out, name, results[name])
    report_path = report.write_report(out)
    report.plot_parse(out)
    report.plot_e2e(out)
    print(f"[{time.perf_counter() - started:6.1f} s] done: {report_path}", flush=True)
    for name, data in results.items():
        for target in data.get("targets", []):
            verdict = "pass" if target["pass"] else "FAIL"
            measured = f"{target['ratio']['median']:.2f}x" if "ratio" in target else ""
            print(f"  {name}: {target['name']}: {measured} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

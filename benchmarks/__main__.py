"""``python -m benchmarks [--quick] [--only parse,e2e,memory,sinks,complete,peers] [--out DIR]``.

Runs the scenarios (all but ``peers`` unless ``--only`` names it: ``make bench-peers`` does), writes
``<out>/<scenario>.json`` (raw runs, summaries, machine), then rebuilds ``<out>/report.md`` (and
``peers.md``) and the plots from every scenario file in ``<out>``. ``--quick`` is a first look in under
two minutes; the default is the full run (about 45 minutes, 25 of them complete exports;
``make bench-peers`` 20-40 more). ``--tiny`` exists for the smoke test: it checks that everything
runs, and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import complete, e2e, memory, parse, peers, report, sinks
from benchmarks._common import read_result, write_result

SCENARIOS = ("parse", "e2e", "memory", "sinks", "complete", "peers")
DEFAULT_SCENARIOS = ("parse", "e2e", "memory", "sinks", "complete")
"""The peers need their own virtualenvs (``make bench-peers``), so they run only when asked for."""
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

# Per mode: parse (rounds, seconds per timing, document records, document repeats), e2e grid,
# memory (sizes, repeats), sinks (records, rounds), complete grid, peers (latencies, rounds, dataset).
_MODES: dict[str, dict[str, Any]] = {
    "full": {
        "parse": (15, 0.2, 100_000, 3),
        "e2e": e2e.FULL,
        "memory": ((100_000, 1_000_000), 3),
        "sinks": (100_000, 5),
        "complete": complete.FULL,
        "peers": ((0, 50), 3, 200_000),
    },
    "quick": {
        "parse": (5, 0.05, 100_000, 1),
        "e2e": e2e.QUICK,
        "memory": ((100_000,), 1),
        "sinks": (20_000, 3),
        "complete": complete.QUICK,
        "peers": ((0, 50), 1, 20_000),
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
        "complete": complete.Grid(latencies_ms=(0, "20~200"), concurrency=(2,), rounds=1, dataset=3_000),
        "peers": ((0,), 1, 3_000),
    },
}


def _scenarios(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SCENARIOS)} (got {text!r})")
    return chosen


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers (got {text!r})")
    return values


def _latencies(text: str) -> tuple[int | str, ...]:
    """Fixed milliseconds, or ``median~p99`` milliseconds for a lognormal latency: ``0,50,100~1000``."""
    values: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        median, sep, p99 = part.partition("~")
        if not median.isdigit() or (sep and not (p99.isdigit() and int(p99) > int(median))):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated milliseconds or median~p99 with p99 > median (got {text!r})"
            )
        values.append(part if sep else int(median))
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one latency (got {text!r})")
    return tuple(values)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a first look, under two minutes")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes (figures meaningless)")
    p.add_argument(
        "--only",
        type=_scenarios,
        default=list(DEFAULT_SCENARIOS),
        help=f"comma-separated scenarios (default {','.join(DEFAULT_SCENARIOS)})",
    )
    p.add_argument(
        "--latencies",
        type=_latencies,
        help="complete and peers: emulator latencies, ms, or median~p99 ms lognormal (e.g. 0,50,100~1000)",
    )
    p.add_argument("--concurrency", type=_numbers, help="complete: concurrency levels (e.g. 1,8,32)")
    p.add_argument("--rounds", type=int, help="complete and peers: interleaved rounds")
    p.add_argument(
        "--results", type=int, help="complete and peers: emulator dataset size (default 200000; quick 20000)"
    )
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
            # Every split mode in a full run (each dedupes its own way); the default alone otherwise.
            splits = memory.SPLITS if mode == "full" else ("adaptive",)
            results[name] = {"mode": mode, **memory.run(sizes=sizes, repeats=repeats, splits=splits)}
        elif name == "sinks":
            records, rounds = settings["sinks"]
            results[name] = {"mode": mode, **sinks.run(records=records, rounds=rounds)}
        elif name == "complete":
            grid = settings["complete"]
            changes = {
                key: value
                for key, value in (
                    ("latencies_ms", args.latencies),
                    ("concurrency", args.concurrency),
                    ("rounds", args.rounds),
                    ("dataset", args.results),
                )
                if value is not None
            }
            results[name] = {"mode": mode, **complete.run(grid=msgspec.structs.replace(grid, **changes))}
        else:
            latencies, rounds, dataset = settings["peers"]
            results[name] = {
                "mode": mode,
                **peers.run(
                    latencies_ms=args.latencies or latencies,
                    rounds=args.rounds or rounds,
                    dataset=args.results or dataset,
                ),
            }
        write_result(out, name, results[name])
    report_path = report.write_report(out)
    report.write_peers(out)
    report.plot_parse(out)
    report.plot_e2e(out)
    print(f"[{time.perf_counter() - started:6.1f} s] done: {report_path}", flush=True)
    for name, data in results.items():
        for target in data.get("targets", []):
            verdict = "pass" if target["pass"] else "FAIL"
            measured = f"{target['ratio']['median']:.2f}" if "ratio" in target else ""
            print(f"  {name}: {target['name']}: {measured} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Module results and users through the client: one chain against the fan-out, same run, same server.

``python -m benchmarks.datasets [--results N] [--latency S] [--repeats R] [--concurrency C]
[--datasets module-results,users]``

One emulator process (its own interpreter) serves a dataset of ``--results`` result rows, so about
three times as many module results and a tenth as many users, every request delayed by
``--latency``. For each dataset the client exports everything, ``--repeats`` times per split, the
splits interleaved so load drifts hit them alike; the clock covers the whole stream (planning,
``/departments``, every page). Prints medians, min/max and each split's ratio to ``none`` (the
baseline: one chain, what a loop over ``nextPageToken`` does), and checks each export's count
against the first so a fast wrong answer cannot win.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from benchmarks._common import summarize
from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, emulator_process
from ispring_async import Client, LearnerModuleResult, ModuleResultsQuery, Stream, User

SPLITS = {"module-results": ("none", "adaptive", "department"), "users": ("none", "adaptive", "department")}


async def _export(base_url: str, dataset: str, split: str, concurrency: int) -> tuple[int, float]:
    async with Client(
        base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, allow_insecure_http=True
    ) as client:
        stream: Stream[User] | Stream[LearnerModuleResult]
        if dataset == "users":
            stream = client.users(split=split, concurrency=concurrency)
        else:
            query = ModuleResultsQuery(user_statuses=[1, 3, 5])
            stream = client.learner_module_results(query, split=split, concurrency=concurrency)
        # The token is fetched before the clock starts, as the e2e benchmark does.
        async with client.departments() as departments:
            async for _ in departments:
                break
        start = time.perf_counter()
        count = 0
        async with stream as records:
            async for _ in records:
                count += 1
        return count, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.datasets", description=__doc__)
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request (default 0.02)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--datasets",
        default=",".join(SPLITS),
        help=f"comma-separated, of {', '.join(SPLITS)} (default: both)",
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"results={args.results:,} latency={args.latency * 1000:.0f} ms concurrency={args.concurrency}")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    with emulator_process(results=args.results, latency=args.latency) as emu:
        for dataset in args.datasets.split(","):
            splits = SPLITS[dataset]
            times: dict[str, list[float]] = {split: [] for split in splits}
            counts: set[int] = set()
            for _ in range(args.repeats):
                for split in splits:
                    count, seconds = asyncio.run(_export(emu.base_url, dataset, split, args.concurrency))
                    counts.add(count)
                    times[split].append(seconds)
            if len(counts) != 1:
                raise SystemExit(f"{dataset}: the splits disagree on the record count: {sorted(counts)}")
            (count,) = counts
            base = summarize(times["none"])["median"]
            print(f"\n{dataset}: {count:,} records")
            print("| split | median s | min s | max s | records/s | speed-up vs none |")
            print("|---|---:|---:|---:|---:|---:|")
            for split in splits:
                s = summarize(times[split])
                print(
                    f"| {split} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | "
                    f"{count / s['median']:,.0f} | {base / s['median']:.2f}x |"
                )
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

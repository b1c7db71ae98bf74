"""Scenario 2 — end to end: a client process pulling 1000-record pages from the emulator in another process.

For each latency one emulator process serves a fixed dataset; every client run is a fresh process that
fetches until it has ``records`` records and prints ``{"records", "seconds"}``. The clock starts once the
client holds a token (both clients fetch one) and stops at the last record, so a run measures the
export itself: planning, every page, parsing into structs.

Clients:

* ``ours`` — ``FanOut`` with the library's default ``adaptive`` split (``accessDate`` windows, which the
  emulator serves from its date index) and ``concurrency`` chains, XML or JSON.
* ``naive`` — what one writes without this library: ``requests.Session`` + ``ElementTree.fromstring``
  + one ``msgspec.convert`` per page, following ``nextPageToken`` one page after another.

The run length scales with the throughput expected (``min(ceiling, C * 1000 / latency)``), so every cell
lasts about ``target_seconds`` whatever its speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import msgspec
import psutil

from benchmarks._common import Summary, run_child, summarize
from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, emulator_process
from ispring_async._models import LearnerResult

__all__ = ["Grid", "run"]

PAGE = 1000
FORMATS = ("xml", "json")
DEFAULT_SPLIT = "adaptive"
# The dataset's access dates start in 2017: windows (if ``--split window``) are cut from there.
_EARLIEST = datetime(2017, 1, 1, tzinfo=UTC)
_ALL_USERS = ("1", "3", "5")


class Grid(msgspec.Struct, frozen=True, kw_only=True):
    """What one e2e run covers."""

    latencies_ms: tuple[int, ...]
    concurrency: tuple[int, ...]
    repeats: int
    target_seconds: float
    dataset: int
    max_records: int
    split: str = DEFAULT_SPLIT


FULL = Grid(
    latencies_ms=(0, 20, 50, 100),
    concurrency=(1, 2, 4, 8, 16, 32),
    repeats=3,
    target_seconds=2.0,
    dataset=400_000,
    max_records=240_000,
)
QUICK = Grid(
    latencies_ms=(0, 50),
    concurrency=(1, 8, 32),
    repeats=2,
    target_seconds=0.8,
    dataset=400_000,
    max_records=100_000,
)


def expected_rate(ceiling: float, concurrency: int, latency_ms: int) -> float:
    """The target line: the parse ceiling, or what ``concurrency`` chains can fetch in one round trip."""
    if latency_ms <= 0:
        return ceiling
    return min(ceiling, concurrency * PAGE * 1000 / latency_ms)


def _records_for(grid: Grid, ceiling: float, concurrency: int, latency_ms: int) -> int:
    pages = math.ceil(expected_rate(ceiling, concurrency, latency_ms) * grid.target_seconds / PAGE)
    # At least a few round trips per chain, so ramp-up does not dominate a short run.
    pages = max(pages, 4 * concurrency, 10)
    return min(pages * PAGE, grid.max_records)


def run(*, grid: Grid, ceiling: float, timeout: float = 600.0) -> dict[str, Any]:
    """Every cell of ``grid``; ``ceiling`` is our XML parser's records/s from the parse scenario."""
    cells: list[tuple[str, str, int]] = [("naive", "xml", 1)]
    cells += [("ours", fmt, c) for c in grid.concurrency for fmt in FORMATS]
    raw: list[dict[str, Any]] = []
    for latency in grid.latencies_ms:
        with emulator_process(results=grid.dataset, latency=latency / 1000) as emu:
            server = psutil.Process(emu.pid)
            for repeat in range(grid.repeats):
                # Rotate the order each repeat: a slow moment of the shared machine hits every cell alike.
                shift = repeat * len(cells) // max(grid.repeats, 1)
                for client, fmt, concurrency in cells[shift:] + cells[:shift]:
                    limit = _records_for(grid, ceiling, concurrency, latency)
                    args = [
                        "--child",
                        client,
                        "--base-url",
                        emu.base_url,
                        "--format",
                        fmt,
                        "--concurrency",
                        str(concurrency),
                        "--records",
                        str(limit),
                        "--split",
                        grid.split,
                    ]
                    before = server.cpu_times()
                    result = run_child("benchmarks.e2e", args, timeout=timeout)
                    after = server.cpu_times()
                    # The server's CPU over the whole child run (start-up requests included): the
                    # emulator shares the machine, and a busy emulator caps what any client gets.
                    server_cpu = after.user + after.system - before.user - before.system
                    raw.append(
                        {
                            "latency_ms": latency,
                            "client": client,
                            "format": fmt,
                            "concurrency": concurrency,
                            "repeat": repeat,
                            **result,
                            "emulator_cpu_seconds": server_cpu,
                        }
                    )
    return {"grid": msgspec.to_builtins(grid), "ceiling": ceiling, **_summarize(raw, grid, ceiling)}


def _summarize(raw: list[dict[str, Any]], grid: Grid, ceiling: float) -> dict[str, Any]:
    cells: dict[str, dict[str, Any]] = {}
    for run_ in raw:
        key = f"{run_['client']}-{run_['format']}-c{run_['concurrency']}-l{run_['latency_ms']}"
        cell = cells.setdefault(
            key,
            {
                "client": run_["client"],
                "format": run_["format"],
                "concurrency": run_["concurrency"],
                "latency_ms": run_["latency_ms"],
                "rates": [],
                "client_cpu": [],
                "emulator_cpu": [],
                "by_repeat": {},
            },
        )
        rate = run_["records"] / run_["seconds"]
        cell["rates"].append(rate)
        cell["client_cpu"].append(run_["cpu_seconds"] / run_["seconds"])
        cell["emulator_cpu"].append(run_["emulator_cpu_seconds"] / run_["seconds"])
        cell["by_repeat"][run_["repeat"]] = rate
    summary: list[dict[str, Any]] = []
    for cell in cells.values():
        entry: dict[str, Any] = {k: cell[k] for k in ("client", "format", "concurrency", "latency_ms")}
        entry["records_per_s"] = summarize(cell["rates"])
        # Busy share of one core while the client ran; the emulator's includes the child's start-up.
        entry["client_cpu_share"] = summarize(cell["client_cpu"])
        entry["emulator_cpu_share"] = summarize(cell["emulator_cpu"])
        if cell["client"] == "ours":
            line = expected_rate(ceiling, cell["concurrency"], cell["latency_ms"])
            naive = cells[f"naive-xml-c1-l{cell['latency_ms']}"]["by_repeat"]
            # Pairwise within a repeat: each ours-run against the naive run of the same repeat.
            vs_naive = [rate / naive[r] for r, rate in cell["by_repeat"].items() if r in naive]
            vs_line: Summary = summarize([rate / line for rate in cell["rates"]])
            entry.update(
                target_line=line,
                vs_target_line=vs_line,
                target_line_pass=vs_line["median"] >= 0.8,
                vs_naive=summarize(vs_naive),
            )
        summary.append(entry)
    targets = []
    anchor = [
        e
        for e in summary
        if e["client"] == "ours" and e["format"] == "xml" and e["latency_ms"] == 50 and e["concurrency"] == 8
    ]
    if anchor:
        ratio = anchor[0]["vs_naive"]
        targets.append(
            {
                "name": "XML, 50 ms, concurrency 8 vs naive",
                "min": 6.0,
                "ratio": ratio,
                "pass": ratio["median"] >= 6,
            }
        )
    line_cells = [e for e in summary if e["client"] == "ours" and e["format"] == "xml"]
    targets.append(
        {
            "name": "XML >= 0.8x min(parse ceiling, C x 1000 / latency), every cell",
            "min": 0.8,
            "cells_passing": sum(e["target_line_pass"] for e in line_cells),
            "cells": len(line_cells),
            "pass": all(e["target_line_pass"] for e in line_cells),
        }
    )
    return {"cells": summary, "targets": targets, "raw": raw}


# -- the clients, each run in its own process --------------------------------------------------------


async def _ours(base_url: str, fmt: str, concurrency: int, records: int, split: str) -> dict[str, Any]:
    from ispring_async import Client, ResultsQuery
    from ispring_async._fanout import FanOut, FanOutOptions

    query = ResultsQuery(user_statuses=[int(s) for s in _ALL_USERS])
    options = FanOutOptions(split=split, concurrency=concurrency, earliest=_EARLIEST)  # type: ignore[arg-type]
    async with Client(
        base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, response_format=fmt
    ) as client:
        # Fetch the token first, as the naive client does, so the clock measures the export alone.
        async with contextlib.aclosing(client.result_pages(ResultsQuery(page_size=1))) as warm_up:
            async for _ in warm_up:
                break
        count = 0
        start, cpu = time.perf_counter(), time.process_time()
        fanout = FanOut(client, query, options)
        async with fanout.run() as batches:
            async for batch in batches:
                count += len(batch.records)
                if count >= records:
                    break
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        stats = fanout.stats
    return {"records": count, "seconds": seconds, "cpu_seconds": cpu, "requests": stats.requests}


def _naive(base_url: str, records: int) -> dict[str, Any]:
    import requests

    with requests.Session() as session:
        reply = session.post(
            f"{base_url}/api/v3/token",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"},
            timeout=60,
        )
        reply.raise_for_status()
        session.headers["Authorization"] = reply.json()["access_token"]
        params: list[tuple[str, str]] = [("pageSize", str(PAGE))]
        params += [("userStatuses[]", s) for s in _ALL_USERS]
        results: list[LearnerResult] = []
        token: str | None = None
        requests_sent = 0
        start, cpu = time.perf_counter(), time.process_time()
        while len(results) < records:
            page_params = params if token is None else [*params, ("pageToken", token)]
            reply = session.get(f"{base_url}/learners/results", params=page_params, timeout=60)
            reply.raise_for_status()
            requests_sent += 1
            root = ET.fromstring(reply.content)
            rows = [{field.tag: field.text for field in result} for result in root.iter("result")]
            results += msgspec.convert(rows, list[LearnerResult], strict=False)
            token = root.findtext("nextPageToken")
            if not token:
                break
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"records": len(results), "seconds": seconds, "cpu_seconds": cpu, "requests": requests_sent}


def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description="e2e-scenario client process (used by the runner)")
    p.add_argument("--child", choices=("ours", "naive"), required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--format", choices=FORMATS, default="xml")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--split", default=DEFAULT_SPLIT)
    args = p.parse_args(argv)
    if args.child == "naive":
        result = _naive(args.base_url, args.records)
    else:
        result = asyncio.run(_ours(args.base_url, args.format, args.concurrency, args.records, args.split))
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])

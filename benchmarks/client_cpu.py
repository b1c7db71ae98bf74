"""Client CPU per record, end to end, against the parser's own CPU on the same pages.

Run: ``.venv/bin/python -m benchmarks.client_cpu [--results N] [--rounds R] [--format xml|json]``

The emulator serves from its own process (no latency). In each round, interleaved:

- ``parser``: the pages of the unsplit query, fetched once beforehand as bytes, fed to
  ``results_parser`` in 64 KiB chunks (what the transport does): the parser's CPU alone;
- ``library``: ``Client.learner_results(query, concurrency=8)`` consumed to the end in this process;
- ``cli``: ``ispring-async export`` to JSONL in a child process (its user + system CPU).

It also prints the page requests of one default fan-out against the unsplit chain's pages.

CPU is ``time.process_time`` (or the child's rusage); each figure is CPU seconds / records, medians
over rounds, and the ratios to the parser are taken within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks._common import child_env
from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, emulator_process
from ispring_async import Client, FanOut, FanOutOptions, ResponseFormat, ResultsQuery
from ispring_async._parse import results_parser

__all__ = ["main"]

_STATUSES = [1, 3]


async def _fetch_pages(base_url: str, fmt: ResponseFormat) -> list[bytes]:
    """Every page of the unsplit query as raw bytes (token from the emulator's credentials)."""
    async with aiohttp.ClientSession() as session:
        form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"}
        async with session.post(f"{base_url}/api/v3/token", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        if fmt is ResponseFormat.JSON:
            headers["Accept"] = "application/json"
        params = ResultsQuery(user_statuses=_STATUSES, page_size=1000).to_params()
        pages: list[bytes] = []
        token_param: list[tuple[str, str]] = []
        while True:
            async with session.get(
                f"{base_url}/learners/results", params=params + token_param, headers=headers
            ) as response:
                body = await response.read()
            pages.append(body)
            parser = results_parser(fmt, page="bench")
            parser.feed(body)
            next_token = parser.close().next_page_token
            if not next_token:
                return pages
            token_param = [("pageToken", next_token)]


def _parser_cpu(pages: list[bytes], fmt: ResponseFormat) -> tuple[float, int]:
    chunk = 65536
    records = 0
    started = time.process_time()
    for body in pages:
        parser = results_parser(fmt, page="bench")
        for offset in range(0, len(body), chunk):
            parser.feed(body[offset : offset + chunk])
        records += len(parser.close().records)
    return time.process_time() - started, records


async def _library(base_url: str, fmt: ResponseFormat) -> tuple[float, int]:
    query = ResultsQuery(user_statuses=_STATUSES)
    started = time.process_time()
    records = 0
    async with (
        Client(base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, response_format=fmt) as client,
        client.learner_results(query, concurrency=8) as results,
    ):
        async for _ in results:
            records += 1
    return time.process_time() - started, records


async def _requests(base_url: str, fmt: ResponseFormat) -> int:
    """Page requests of one default fan-out of the query (what ``learner_results`` runs)."""
    async with Client(
        base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, response_format=fmt
    ) as client:
        fanout = FanOut(client, ResultsQuery(user_statuses=_STATUSES), FanOutOptions(concurrency=8))
        async with fanout.run() as batches:
            async for _ in batches:
                pass
        return fanout.stats.requests


def _cli(base_url: str, fmt: ResponseFormat) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "out.jsonl"
        credentials = {"ISPRING_CLIENT_ID": CLIENT_ID, "ISPRING_CLIENT_SECRET": CLIENT_SECRET}
        env = child_env({**os.environ, **credentials})
        args = ["export", "--base-url", base_url, "--output", str(output), "--quiet", "--progress", "off"]
        args += ["--response-format", fmt.value]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "ispring_async", *args], env=env, check=True, capture_output=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        with output.open("rb") as f:
            records = sum(1 for _ in f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, records


def _startup() -> float:
    """CPU of a child that only imports the command (subtracted from the CLI's figure)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import ispring_async._app.cli"], env=child_env(), check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    """Print µs of client CPU per record for the parser, the library and the CLI, and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", default="xml", choices=["xml", "json"])
    args = parser.parse_args(argv)
    fmt = ResponseFormat(args.format)
    rows: dict[str, list[float]] = {"parser": [], "library": [], "cli": [], "cli-startup": []}
    ratios: dict[str, list[float]] = {"library": [], "cli": []}
    with emulator_process(results=args.results, latency=0.0) as emu:
        pages = asyncio.run(_fetch_pages(emu.base_url, fmt))
        requests = asyncio.run(_requests(emu.base_url, fmt))
        for _ in range(args.rounds):
            cpu, n = _parser_cpu(pages, fmt)
            base = cpu / n * 1e6
            rows["parser"].append(base)
            cpu, n_lib = asyncio.run(_library(emu.base_url, fmt))
            assert n_lib == n, (n_lib, n)
            rows["library"].append(cpu / n * 1e6)
            start_cpu = _startup()
            cpu, n_cli = _cli(emu.base_url, fmt)
            assert n_cli == n, (n_cli, n)
            rows["cli"].append(cpu / n * 1e6)
            rows["cli-startup"].append((cpu - start_cpu) / n * 1e6)
            ratios["library"].append(rows["library"][-1] / base)
            ratios["cli"].append(rows["cli-startup"][-1] / base)
    print(f"{fmt.value}, {n} records, {args.rounds} rounds, medians (µs of client CPU per record):")
    for name, values in rows.items():
        low, high = min(values), max(values)
        print(f"  {name:12s} {statistics.median(values):6.2f}  (min {low:.2f}, max {high:.2f})")
    for name, values in ratios.items():
        label = "cli minus start-up" if name == "cli" else name
        print(f"  {label} / parser: {statistics.median(values):.2f}x")
    print(f"  requests: {requests} for {len(pages)} unsplit pages ({requests / len(pages):.3f}x)")


if __name__ == "__main__":
    main()

"""Scenario 5 — complete exports: what a user waits for, from process start to the published file.

For each latency one emulator process (``benchmarks._emulator.counting_emulator``) serves the dataset.
A latency is fixed milliseconds (``50``) or a lognormal distribution given as ``median~p99`` in
milliseconds (``100~1000``: what ``make run`` uses, and closer to a real service than any fixed value).
Every tool then runs as a fresh process, measured by ``benchmarks/_launch.py`` from spawn to exit:

* ``cli-<fmt>-c<C>`` — ``ispring-async export --output FILE.jsonl --concurrency C --response-format fmt``
  (its defaults otherwise: adaptive split, userStatuses 1 and 3);
* ``lib-<fmt>-c<C>`` — ``Client.learner_results`` consumed to the end, records written as JSONL
  (``benchmarks.complete_client lib``);
* ``naive-<fmt>`` — requests + ElementTree (or ``reply.json()``), one page after another
  (``benchmarks.complete_client naive``);
* the peers (``benchmarks.peers``), each in its own virtualenv, in the ``peers`` scenario.

Per run: wall seconds, records/s, requests per record (``/learners/results`` requests the emulator
counted during the run, so every tool is counted alike), client CPU per record (user + system of the
client process and everything it waited for) and its peak RSS. Every tool's output is checked against
the emulator's ground truth: the exact set of identities, none missing, none extra, none twice. Rounds
interleave the tools in a rotated order; figures are medians, ratios are taken pairwise within a round.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks._common import Summary, child_env, summarize
from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, CountingEmulator, counting_emulator
from ispring_async._config import ResponseFormat
from ispring_async._parse_pool import default_parse_workers

__all__ = [
    "CORES",
    "FULL",
    "QUICK",
    "USER_STATUSES",
    "Grid",
    "Identity",
    "IncompleteExportError",
    "Latency",
    "Tool",
    "check_complete",
    "describe_latency",
    "entry_label",
    "floors",
    "identity",
    "jsonl_identities",
    "latency_label",
    "latency_parts",
    "ours_tools",
    "run",
    "run_rounds",
    "startup_cpu",
    "summarize_runs",
    "targets",
    "versus",
]

USER_STATUSES = (("userStatuses[]", "1"), ("userStatuses[]", "3"))
"""The query every tool exports: active and blocked users (195,867 of 200k results at seed 1)."""

_LAUNCH = Path(__file__).resolve().parent / "_launch.py"


Latency = int | str
"""Fixed milliseconds, or ``"median~p99"`` milliseconds of a lognormal latency."""


def latency_parts(latency: Latency) -> tuple[int, int | None]:
    """``(median ms, p99 ms)`` of a latency; ``p99`` is ``None`` for a fixed one."""
    if isinstance(latency, int):
        return latency, None
    median, sep, p99 = latency.partition("~")
    if not sep:
        return int(median), None
    return int(median), int(p99)


def latency_label(latency: Latency) -> str:
    """A latency's key in results files: ``"50"``, or ``"100~1000"`` for a lognormal one."""
    median, p99 = latency_parts(latency)
    return str(median) if p99 is None else f"{median}~{p99}"


def describe_latency(latency: Latency) -> str:
    """``"50 ms"``, or ``"lognormal, median 100 ms, p99 1000 ms"``."""
    median, p99 = latency_parts(latency)
    return f"{median} ms" if p99 is None else f"lognormal, median {median} ms, p99 {p99} ms"


def entry_label(entry: dict[str, Any]) -> str:
    """The latency label of a raw run or a cell (files written before lognormal cells have only ms)."""
    label = entry.get("latency")
    return str(entry["latency_ms"]) if label is None else str(label)


class Grid(msgspec.Struct, frozen=True, kw_only=True):
    """What one complete-export run covers."""

    latencies_ms: tuple[Latency, ...]
    concurrency: tuple[int, ...]
    formats: tuple[str, ...] = ("xml", "json")
    interfaces: tuple[str, ...] = ("cli", "lib")
    rounds: int
    dataset: int


FULL = Grid(latencies_ms=(0, 20, 50, 100, "100~1000"), concurrency=(1, 8, 32), rounds=3, dataset=200_000)
QUICK = Grid(
    latencies_ms=(0, 50, "100~1000"), concurrency=(8,), rounds=1, dataset=20_000, interfaces=("cli",)
)


class IncompleteExportError(Exception):
    """A tool's output is not exactly the ground truth (records missing, extra or written twice)."""


class Tool(msgspec.Struct, frozen=True, kw_only=True):
    """One way to export: a command to launch and how to read back the identities it wrote.

    ``command(base_url, workdir)`` gives argv; ``identities(workdir, stdout)`` reads what the run
    produced (a file in ``workdir``, or its stdout). ``env`` is added to the child's environment.
    ``rounds`` caps the rounds it takes part in (a tool minutes slower than the rest, whose median no
    target needs, runs once).
    """

    name: str
    kind: str  # "cli", "lib", "naive" or "peer"
    format: str
    concurrency: int | None
    command: Callable[[str, Path], list[str]]
    identities: Callable[[Path, Path], Iterable[str]]
    env: dict[str, str] = {}
    rounds: int | None = None
    processes: int = 1
    """Processes the tool's CPU work is spread over (ours with parse workers: one more each)."""


class Identity(msgspec.Struct):
    """The fields of a record that make its identity, under the API's names (the rest is skipped)."""

    enrollmentId: str | None = None
    userId: str | None = None
    courseId: str | None = None


def identity(row: Identity) -> str:
    """The API's identity of a row: ``enrollmentId`` when present, else ``userId/courseId``."""
    return row.enrollmentId or f"{row.userId}/{row.courseId}"


def jsonl_identities(path: Path) -> Iterator[str]:
    """The identity of every record in a JSONL file with the API's field names (blank lines skipped).

    No file at all is an ``IncompleteExportError``: the tool published no output.
    """
    if not path.exists():
        raise IncompleteExportError(f"no output was published at {path}")
    decoder = msgspec.json.Decoder(Identity)
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield identity(decoder.decode(line))


def check_complete(identities: Iterable[str], truth: set[str]) -> dict[str, int]:
    """Counts of a tool's output against the ground truth; ``IncompleteExportError`` unless it is exact.

    Exact means: every identity of ``truth`` present, nothing else, nothing twice.
    """
    counts = collections.Counter(identities)
    seen = set(counts)
    missing = len(truth - seen)
    extra = len(seen - truth)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    found = {"records": sum(counts.values()), "missing": missing, "extra": extra, "duplicates": duplicates}
    if missing or extra or duplicates:
        raise IncompleteExportError(
            f"{found['records']} records written for {len(truth)} expected: "
            f"{missing} missing, {extra} not in the ground truth, {duplicates} written twice"
        )
    return found


def _output(workdir: Path, _: Path) -> Iterator[str]:
    return jsonl_identities(workdir / "out.jsonl")


def _cli_tool(fmt: str, concurrency: int, parse_workers: int | None = None) -> Tool:
    script = str(Path(sys.executable).with_name("ispring-async"))

    def command(base_url: str, workdir: Path) -> list[str]:
        return [
            script,
            "export",
            "--base-url",
            base_url,
            "--output",
            str(workdir / "out.jsonl"),
            "--concurrency",
            str(concurrency),
            "--response-format",
            fmt,
            "--quiet",
            "--progress",
            "off",
            *([] if parse_workers is None else ["--parse-workers", str(parse_workers)]),
        ]

    name = f"cli-{fmt}-c{concurrency}" + ("" if parse_workers is None else f"-w{parse_workers}")
    if parse_workers is None:  # the command's own default, on this machine
        parse_workers = default_parse_workers(ResponseFormat(fmt))
    return Tool(
        name=name,
        kind="cli",
        format=fmt,
        concurrency=concurrency,
        command=command,
        identities=_output,
        processes=1 + parse_workers,
    )


def _client_tool(kind: str, fmt: str, concurrency: int | None, parse_workers: int = 0) -> Tool:
    def command(base_url: str, workdir: Path) -> list[str]:
        args = [sys.executable, "-m", "benchmarks.complete_client", kind, "--base-url", base_url]
        args += ["--format", fmt, "--output", str(workdir / "out.jsonl")]
        args += ["--parse-workers", str(parse_workers)] if parse_workers else []
        return args + ([] if concurrency is None else ["--concurrency", str(concurrency)])

    name = f"{kind}-{fmt}" + ("" if concurrency is None else f"-c{concurrency}")
    name += f"-w{parse_workers}" if parse_workers else ""
    return Tool(
        name=name,
        kind=kind,
        format=fmt,
        concurrency=concurrency,
        command=command,
        identities=_output,
        processes=1 + parse_workers,
    )


def ours_tools(
    *, formats: Sequence[str], concurrency: Sequence[int], interfaces: Sequence[str] = ("cli", "lib")
) -> list[Tool]:
    """The naive baselines (one per format) and ours through each interface, format and concurrency.

    ``cli-*`` runs the command's defaults (``--parse-workers auto``: in-process where the C pass is
    built), ``cli-xml-*-w1`` with one worker beside it (``-w0`` in the command's process, where
    ``auto`` takes a worker); ``lib-*`` the library's (``parse_workers=0``), ``lib-xml-*-w1`` with
    ``Client(parse_workers=1)``. JSON is never offloaded.
    """
    tools = [_client_tool("naive", fmt, None) for fmt in formats]
    # The command's default against the other choice, so the run shows what ``auto`` chose.
    other = 0 if default_parse_workers(ResponseFormat.XML) else 1
    for c in concurrency:
        for fmt in formats:
            if "cli" in interfaces:
                tools.append(_cli_tool(fmt, c))
                if fmt == "xml":
                    tools.append(_cli_tool(fmt, c, parse_workers=other))
            if "lib" in interfaces:
                tools.append(_client_tool("lib", fmt, c))
                if fmt == "xml":
                    tools.append(_client_tool("lib", fmt, c, parse_workers=1))
    return tools


def _launch(tool: Tool, emulator: CountingEmulator, workdir: Path, timeout: float) -> dict[str, Any]:
    """One run of ``tool`` in a fresh process: its measurements and the requests the emulator saw."""
    result, stdout, stderr = workdir / "launch.json", workdir / "stdout", workdir / "stderr"
    env = child_env()
    env.update(ISPRING_CLIENT_ID=CLIENT_ID, ISPRING_CLIENT_SECRET=CLIENT_SECRET, **tool.env)
    env.update(BENCH_STDOUT=str(stdout), BENCH_STDERR=str(stderr))
    before, server_before = emulator.requests(), emulator.cpu_seconds()
    # The launcher runs from its file path with nothing imported: see its docstring for why.
    command = [sys.executable, str(_LAUNCH), str(result), "--", *tool.command(emulator.base_url, workdir)]
    # Its own process group, so a run past ``timeout`` is killed with every process it started.
    launcher = subprocess.Popen(command, env=env, cwd=workdir, start_new_session=True)
    try:
        status = launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        raise TimeoutError(f"{tool.name} did not finish within {timeout:.0f} s; killed") from None
    if status != 0:
        raise RuntimeError(f"the launcher failed ({status}) running {tool.name}")
    after, server_after = emulator.requests(), emulator.cpu_seconds()
    measured: dict[str, Any] = json.loads(result.read_text(encoding="ascii"))
    if measured["returncode"] != 0:
        tail = stderr.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{tool.name} exited with status {measured['returncode']}:\n{tail}")
    measured["requests"] = after.get("results", 0) - before.get("results", 0)
    measured["token_requests"] = after.get("token", 0) - before.get("token", 0)
    measured["other_requests"] = sum(after.values()) - sum(before.values()) - measured["requests"]
    measured["other_requests"] -= measured["token_requests"]
    measured["server_cpu_seconds"] = server_after - server_before
    return measured


def run_rounds(
    tools: Sequence[Tool],
    *,
    latencies_ms: Sequence[Latency],
    rounds: int,
    dataset: int,
    timeout: float = 1800.0,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, Any]:
    """Every tool ``rounds`` times at each latency, interleaved, each run checked against the truth."""
    raw: list[dict[str, Any]] = []
    truth_sizes: dict[str, int] = {}
    startup = {kind: startup_cpu(kind) for kind in {tool.kind for tool in tools}}
    for latency in latencies_ms:
        median, p99 = latency_parts(latency)
        label = latency_label(latency)
        if p99 is None:
            emulating = counting_emulator(results=dataset, latency=median / 1000)
        else:
            emulating = counting_emulator(
                results=dataset, latency=0.0, latency_median=median / 1000, latency_p99=p99 / 1000
            )
        with emulating as emulator:
            truth = set(emulator.truth(USER_STATUSES))
            truth_sizes[label] = len(truth)
            for round_ in range(rounds):
                # Rotate the order each round: a slow moment of the shared machine hits every tool alike.
                shift = round_ * len(tools) // max(rounds, 1)
                for tool in [*tools[shift:], *tools[:shift]]:
                    if tool.rounds is not None and round_ >= tool.rounds:
                        continue
                    with tempfile.TemporaryDirectory(prefix=f"bench-{tool.name}-") as tmp:
                        workdir = Path(tmp)
                        measured = _launch(tool, emulator, workdir, timeout)
                        found = check_complete(tool.identities(workdir, workdir / "stdout"), truth)
                    entry = {
                        "latency_ms": median,
                        "latency": label,
                        "tool": tool.name,
                        "round": round_,
                        "startup_cpu_seconds": startup[tool.kind],
                        **measured,
                        **found,
                    }
                    raw.append(entry)
                    log(
                        f"    {label:>8} ms  {tool.name:<16} {measured['seconds']:7.2f} s  "
                        f"{found['records'] / measured['seconds']:>9,.0f} rec/s  "
                        f"{measured['requests']:>4} requests  "
                        f"CPU {measured['cpu_user_seconds'] + measured['cpu_system_seconds']:5.2f} s "
                        f"+ emulator {measured['server_cpu_seconds']:4.2f} s  exact"
                    )
    tools_info = {
        t.name: {"kind": t.kind, "format": t.format, "concurrency": t.concurrency, "processes": t.processes}
        for t in tools
    }
    return {"truth_records": truth_sizes, "tools": tools_info, **summarize_runs(raw, tools_info), "raw": raw}


def summarize_runs(raw: list[dict[str, Any]], tools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per latency and tool: medians (min–max) of every measure, and ratios to naive within a round."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for entry in raw:
        by_cell[entry_label(entry), entry["tool"]].append(entry)
    cells: list[dict[str, Any]] = []
    for (label, name), runs in by_cell.items():
        info = tools[name]
        naive = {r["round"]: r["seconds"] for r in by_cell.get((label, f"naive-{info['format']}"), [])}
        unsplit = {r["round"]: r["requests"] for r in by_cell.get((label, f"naive-{info['format']}"), [])}
        median, p99 = latency_parts(label)
        cell: dict[str, Any] = {"latency_ms": median, "latency": label, "latency_p99_ms": p99, "tool": name}
        cell.update(info)
        cell["seconds"] = summarize([r["seconds"] for r in runs])
        cell["records_per_s"] = summarize([r["records"] / r["seconds"] for r in runs])
        cell["requests_per_record"] = summarize([r["requests"] / r["records"] for r in runs])
        cell["requests"] = summarize([float(r["requests"]) for r in runs])
        cpu = [(r["cpu_user_seconds"] + r["cpu_system_seconds"]) / r["records"] * 1e6 for r in runs]
        cell["cpu_us_per_record"] = summarize(cpu)
        cell["peak_rss_mib"] = summarize([r["peak_rss_bytes"] / 2**20 for r in runs])
        if all("server_cpu_seconds" in r for r in runs):  # files written before it was measured lack it
            cell["server_cpu_seconds"] = summarize([r["server_cpu_seconds"] for r in runs])
            for name_, _ in _FLOORS:
                cell[f"{name_}_floor_seconds"] = summarize([floors(r, info)[name_] for r in runs])
        if all("peak_tree_rss_bytes" in r for r in runs):
            # The client and its parse workers together (ru_maxrss is the largest one process's).
            cell["peak_tree_rss_mib"] = summarize([r["peak_tree_rss_bytes"] / 2**20 for r in runs])
        # Pairwise within a round: the naive run of the same round and format (the same moment of
        # the shared machine). The naive client is the unsplit chain, so its requests are its pages.
        vs_naive = [naive[r["round"]] / r["seconds"] for r in runs if r["round"] in naive]
        if vs_naive and info["kind"] != "naive":
            cell["vs_naive"] = summarize(vs_naive)
            cell["requests_vs_unsplit"] = summarize(
                [r["requests"] / unsplit[r["round"]] for r in runs if r["round"] in unsplit]
            )
            if "server_cpu_seconds" in cell:
                for ceiling, names in _CEILINGS.items():
                    cell[ceiling] = summarize(
                        [
                            naive[r["round"]] / max(floors(r, info)[n] for n in names)
                            for r in runs
                            if r["round"] in naive
                        ]
                    )
        cells.append(cell)
    cells.sort(key=lambda c: (c["latency_ms"], c["latency_p99_ms"] or 0, list(tools).index(c["tool"])))
    return {"cells": cells}


CORES = len(os.sched_getaffinity(0))
"""The cores the client and the emulator share in these runs."""


_FLOORS = (
    ("one_core", "the client's CPU on one core (per process, for a client in several)"),
    ("machine", "the client's CPU plus the emulator's during the run, spread over every core"),
    ("latency", "the client's start-up CPU, then its requests C at a time, each the median latency"),
)
"""The least wall time a run allows, each for one reason (``floors``)."""

_CEILINGS = {
    "ceiling_vs_naive": ("machine", "latency"),
    "one_process_ceiling_vs_naive": ("one_core", "latency"),
}
"""The naive wall time over the larger of these floors: the speed-up within reach of a client that
costs this much CPU, scheduled perfectly over every core (``ceiling``) or in one process."""


def floors(run: dict[str, Any], tool: dict[str, Any]) -> dict[str, float]:
    """The least wall time a run's work allows on this machine, by what bounds it (``_FLOORS``).

    ``machine``: no client doing that much CPU work (with the emulator's on the same cores) can finish
    sooner, however it schedules it; ``one_core``: nor can one doing it in one process; ``latency``:
    nor one that waits the latency for each request, ``concurrency`` at a time, after starting up.
    """
    client = float(run["cpu_user_seconds"] + run["cpu_system_seconds"])
    # A client spread over processes (parse workers) can at best split its CPU evenly among them.
    one = client / min(tool.get("processes", 1), CORES)
    waits = float(run["requests"]) / (tool["concurrency"] or 1) * float(run["latency_ms"]) / 1000
    return {
        "one_core": one,
        "machine": (client + float(run["server_cpu_seconds"])) / CORES,
        "latency": float(run.get("startup_cpu_seconds", 0.0)) + waits,
    }


def startup_cpu(kind: str, repeats: int = 3) -> float:
    """CPU seconds (median of ``repeats`` fresh processes) to start our ``cli`` or ``lib`` client:
    the interpreter and the imports, before any request; ``0`` for other tools."""
    module = {"cli": "ispring_async._app.cli", "lib": "ispring_async"}.get(kind)
    if module is None:
        return 0.0
    spent = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=child_env())
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return sorted(spent)[len(spent) // 2]


def versus(raw: list[dict[str, Any]], tool: str, baseline: str, latency: Latency) -> Summary | None:
    """``baseline``'s wall time over ``tool``'s, pairwise within each round at ``latency``."""
    label = latency_label(latency)
    mine = {r["round"]: r["seconds"] for r in raw if r["tool"] == tool and entry_label(r) == label}
    theirs = {r["round"]: r["seconds"] for r in raw if r["tool"] == baseline and entry_label(r) == label}
    ratios = [theirs[k] / mine[k] for k in mine if k in theirs]
    return summarize(ratios) if ratios else None


def targets(data: dict[str, Any], peers: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Issue 11's targets (complete export, XML, C=8, same run), for the CLI and the library alike."""
    found: list[dict[str, Any]] = []
    raw = data["raw"]
    for kind in ("cli", "lib"):
        xml, js = f"{kind}-xml-c8", f"{kind}-json-c8"
        for tool, baseline, latency, minimum in (
            (xml, "naive-xml", 50, 8.0),
            (xml, "naive-xml", 0, 2.5),
            (js, "naive-json", 50, 10.0),
        ):
            ratio = versus(raw, tool, baseline, latency)
            if ratio is not None:
                target = _target(f"{tool} vs {baseline}, {latency} ms", ratio, minimum, at_least=True)
                for cell in data["cells"]:
                    same = cell["tool"] == tool and entry_label(cell) == latency_label(latency)
                    if same and "ceiling_vs_naive" in cell:
                        target["ceiling"] = cell["ceiling_vs_naive"]
                        target["one_process_ceiling"] = cell["one_process_ceiling_vs_naive"]
                found.append(target)
        for cell in data["cells"]:
            if cell["tool"] == xml and "requests_vs_unsplit" in cell:
                name = f"{xml} requests / unsplit chain's pages, {describe_latency(entry_label(cell))}"
                found.append(_target(name, cell["requests_vs_unsplit"], 1.1, at_least=False))
        if peers is not None:
            ratio = versus(peers["raw"], xml, "dlt-extract", 50)
            if ratio is not None:
                found.append(_target(f"{xml} vs dlt rest_api extract, 50 ms (peers run)", ratio, 8.0, True))
    return found


def _target(name: str, ratio: Summary, bound: float, at_least: bool) -> dict[str, Any]:
    ok = ratio["median"] >= bound if at_least else ratio["median"] <= bound
    return {"name": name, "ratio": ratio, "min" if at_least else "max": bound, "pass": ok}


def run(*, grid: Grid, timeout: float = 1800.0) -> dict[str, Any]:
    """The complete-export scenario over ``grid``."""
    tools = ours_tools(formats=grid.formats, concurrency=grid.concurrency, interfaces=grid.interfaces)
    data = run_rounds(
        tools, latencies_ms=grid.latencies_ms, rounds=grid.rounds, dataset=grid.dataset, timeout=timeout
    )
    return {"grid": msgspec.to_builtins(grid), **data, "targets": targets(data)}

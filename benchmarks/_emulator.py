"""The emulator as a separate process, as a benchmark needs it: its own interpreter, its own core.

``emulator_process`` is the library's ``serve_in_process``. ``counting_emulator`` runs the same
emulator (same arguments, same ``Emulator`` class) from ``python -m benchmarks._emulator``, which adds
two read-only routes a benchmark needs from a server in another process: ``GET /_bench/stats`` (the
emulator's own request and response counters, so requests per record come from the server's side for
every tool, peers included) and ``GET /_bench/truth?<query>`` (the identity of every record the query
holds, one per line: the ground truth each tool's output is checked against).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from benchmarks._common import child_env
from ispring_async.emulator import EmulatorProcess, serve_in_process
from ispring_async.emulator._process import stop

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CountingEmulator",
    "EmulatorProcess",
    "counting_emulator",
    "emulator_process",
]

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"


def _args(
    results: int,
    latency: float,
    extra: Sequence[str] = (),
    *,
    latency_median: float = 0.0,
    latency_p99: float = 0.0,
) -> list[str]:
    lognormal = ["--latency-median", str(latency_median), "--latency-p99", str(latency_p99)]
    return [
        "--results",
        str(results),
        "--latency",
        str(latency),
        *(lognormal if latency_median else []),
        "--client-id",
        CLIENT_ID,
        "--uvloop",
        *extra,
    ]


@contextlib.contextmanager
def emulator_process(*, results: int, latency: float) -> Iterator[EmulatorProcess]:
    """The emulator on a free loopback port in its own process, serving the benchmark's client."""
    with serve_in_process(_args(results, latency), client_secret=CLIENT_SECRET, env=child_env()) as emulator:
        yield emulator


@dataclasses.dataclass(frozen=True)
class CountingEmulator:
    """A running emulator process that also answers the benchmark's stats and ground-truth routes."""

    base_url: str
    pid: int

    def requests(self) -> dict[str, int]:
        """Requests the emulator has counted so far, by endpoint (``token``, ``results``, ...)."""
        counts: dict[str, int] = self._stats()["requests"]
        return counts

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used so far: what serving costs the machine."""
        return float(self._stats()["cpu_seconds"])

    def _stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/_bench/stats", timeout=60) as reply:
            stats: dict[str, Any] = json.loads(reply.read())
        return stats

    def truth(self, params: Sequence[tuple[str, str]]) -> list[str]:
        """The identities of every record ``params`` selects, in API order (the emulator as oracle)."""
        query = urllib.parse.urlencode(list(params))
        with urllib.request.urlopen(f"{self.base_url}/_bench/truth?{query}", timeout=300) as reply:
            body = reply.read().decode("utf-8")
        return body.split("\n") if body else []


@contextlib.contextmanager
def counting_emulator(
    *,
    results: int,
    latency: float,
    extra: Sequence[str] = (),
    latency_median: float = 0.0,
    latency_p99: float = 0.0,
) -> Iterator[CountingEmulator]:
    """``python -m benchmarks._emulator`` on a free loopback port; stopped (SIGTERM, then SIGKILL) on exit.

    ``latency`` is fixed seconds per request; ``latency_median`` / ``latency_p99`` (seconds) add the
    emulator's lognormal latency (``Faults.latency_median``), drawn per request from its fault seed.

    The secret travels in the child's environment, never its argv; stderr goes to a file that is
    shown if the server fails to start.
    """
    env = child_env()
    env["ISPRING_CLIENT_SECRET"] = CLIENT_SECRET
    args = _args(results, latency, extra, latency_median=latency_median, latency_p99=latency_p99)
    command = [sys.executable, "-m", "benchmarks._emulator", "--port", "0", *args]
    with (
        tempfile.TemporaryFile(mode="w+") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env) as process,
    ):
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("ISPRING_BASE_URL="):
                    yield CountingEmulator(base_url=line.strip().partition("=")[2], pid=process.pid)
                    break
            else:
                stderr.seek(0)
                raise RuntimeError(
                    f"the emulator exited ({process.wait()}) before serving:\n{stderr.read()[-3000:]}"
                )
        finally:
            # Leaving the Popen block closes its stdout; SIGKILL if SIGTERM is not enough.
            stop(process)


async def _serve(argv: Sequence[str]) -> None:
    from aiohttp import web

    from ispring_async.emulator import Emulator
    from ispring_async.emulator._cli import build_config, parser

    args = parser().parse_args(list(argv))
    emulator = Emulator(build_config(args))
    # Every tool meets the same server: the rows' bytes cached before the first one starts.
    emulator.warm_cache()

    async def stats(_: web.Request) -> web.Response:
        # process_time: the emulator's own CPU (its threads included), so a run's share of the
        # machine's work is known beside the client's.
        stats = {"requests": dict(emulator.stats.requests), "cpu_seconds": time.process_time()}
        return web.json_response(stats)

    async def truth(request: web.Request) -> web.Response:
        records = emulator.expected_results(list(request.query.items()))
        return web.Response(text="\n".join(r.identity for r in records))

    emulator.app.router.add_get("/_bench/stats", stats)
    emulator.app.router.add_get("/_bench/truth", truth)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    base_url = await emulator.start(host="127.0.0.1", port=args.port)
    print(f"ISPRING_BASE_URL={base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_serve(sys.argv[1:]))

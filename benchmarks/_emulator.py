"""The emulator as a separate process, as a benchmark needs it: its own interpreter, its own core."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from benchmarks._common import child_env
from ispring_async.emulator import EmulatorProcess, serve_in_process

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "EmulatorProcess", "emulator_process"]

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"


@contextlib.contextmanager
def emulator_process(*, results: int, latency: float) -> Iterator[EmulatorProcess]:
    """The emulator on a free loopback port in its own process, serving the benchmark's client."""
    args = ["--results", str(results), "--latency", str(latency), "--client-id", CLIENT_ID, "--uvloop"]
    with serve_in_process(args, client_secret=CLIENT_SECRET, env=child_env()) as emulator:
        yield emulator

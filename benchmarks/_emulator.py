"""The emulator as a separate process, as a benchmark needs it: its own interpreter, its own core."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from benchmarks._common import child_env

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "EmulatorProcess", "emulator_process"]

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"


@dataclass(frozen=True)
class EmulatorProcess:
    """A running emulator: where it listens and its process id."""

    base_url: str
    pid: int


@contextlib.contextmanager
def emulator_process(*, results: int, latency: float, timeout: float = 120.0) -> Iterator[EmulatorProcess]:
    """Start ``python -m ispring_async.emulator`` on a free loopback port; stop it (SIGTERM) on exit."""
    env = child_env({**os.environ, "ISPRING_CLIENT_SECRET": CLIENT_SECRET})
    command = [
        sys.executable,
        "-m",
        "ispring_async.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--results",
        str(results),
        "--latency",
        str(latency),
        "--client-id",
        CLIENT_ID,
        "--uvloop",
    ]
    # stderr goes to a file: a pipe nobody reads could fill up and stall the server mid-benchmark.
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            base_url = _wait_for_url(proc, timeout, stderr)
            yield EmulatorProcess(base_url=base_url, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _wait_for_url(proc: subprocess.Popen[str], timeout: float, stderr: IO[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    # The emulator prints KEY=value lines once it listens; the dataset is built before that.
    for line in proc.stdout:
        if line.startswith("ISPRING_BASE_URL="):
            return line.split("=", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    proc.kill()
    proc.wait()
    stderr.seek(0)
    raise RuntimeError(f"the emulator did not start:\n{stderr.read()[-3000:]}")

"""The emulator in a child process: its own interpreter and core, as a real API server would be."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import TextIO

__all__ = ["EmulatorProcess", "serve_in_process", "stop"]


@dataclasses.dataclass(frozen=True)
class EmulatorProcess:
    """A running child-process emulator: where it listens and its process id."""

    base_url: str
    pid: int


@contextlib.contextmanager
def serve_in_process(
    args: Sequence[str] = (),
    *,
    client_secret: str | None = None,
    env: Mapping[str, str] | None = None,
    echo: TextIO | None = None,
) -> Iterator[EmulatorProcess]:
    """Run ``python -m ispring_async.emulator --port 0 ARGS``; stop it (SIGTERM, then SIGKILL) on exit.

    ``client_secret`` travels in the child's environment, never its argv. ``echo`` receives the lines
    the emulator prints on start-up (base URL and credentials). Its stderr goes to a file, not a pipe
    nobody reads (which could fill up and stall the server), and is shown if it fails to start.

    >>> with serve_in_process(["--results", "100000", "--latency", "0.02"]) as emu:
    ...     ...  # point a client at emu.base_url
    """
    child_env = dict(os.environ if env is None else env)
    if client_secret is not None:
        child_env["ISPRING_CLIENT_SECRET"] = client_secret
    command = [sys.executable, "-m", "ispring_async.emulator", "--host", "127.0.0.1", "--port", "0", *args]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own module, arguments as a list
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env
        )
        try:
            assert process.stdout is not None
            # The emulator prints KEY=value lines once it listens (the dataset is built before that).
            for line in process.stdout:
                if echo is not None:
                    print(line.rstrip(), file=echo)
                if line.startswith("ISPRING_BASE_URL="):
                    yield EmulatorProcess(base_url=line.strip().partition("=")[2], pid=process.pid)
                    break
            else:
                stderr.seek(0)
                status = process.wait()
                tail = stderr.read()[-3000:]
                raise RuntimeError(f"the emulator exited with status {status} before serving:\n{tail}")
        finally:
            stop(process)
            if process.stdout is not None:
                process.stdout.close()


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM the emulator's process and reap it; SIGKILL if it has not ended within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""What every scenario shares: summaries of repeated runs, the machine description, result files,
and running a benchmark step in a fresh interpreter.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "REPO",
    "Summary",
    "child_env",
    "machine",
    "memory_status",
    "read_result",
    "reset_peak_rss",
    "run_child",
    "summarize",
    "write_result",
]

Summary = dict[str, float]
"""``{"median": ..., "min": ..., "max": ..., "runs": n}``."""

_PACKAGES = ("ispring-async", "msgspec", "aiohttp", "lxml", "xmltodict", "defusedxml", "requests", "pyarrow")


def summarize(values: Sequence[float]) -> Summary:
    """Median, min and max of repeated measurements (the figure and its spread)."""
    if not values:
        raise ValueError("no measurements to summarize")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": float(len(values)),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine and software a result was measured on (absolute figures only mean something with it)."""
    import pyexpat

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity) if affinity is not None else os.cpu_count(),
        "load_average_at_start": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "libexpat": pyexpat.EXPAT_VERSION,
        "packages": {name: _version(name) for name in _PACKAGES},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_result(out: Path, scenario: str, data: dict[str, Any]) -> Path:
    """``out/<scenario>.json`` with the machine description added."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{scenario}.json"
    document = {"scenario": scenario, "machine": machine(), **data}
    path.write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    return path


def read_result(out: Path, scenario: str) -> dict[str, Any] | None:
    """A scenario's results from an earlier (or this) run, or ``None``."""
    path = out / f"{scenario}.json"
    if not path.exists():
        return None
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def memory_status(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in bytes, from ``/proc/self/status``.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark over ``fork`` + ``exec`` into the
    child's, so a child's ``ru_maxrss`` is never below the size of the runner that started it.
    """
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Restart ``VmHWM`` from the current RSS (Linux >= 4.0); ``False`` if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


REPO = Path(__file__).resolve().parent.parent
"""The repository root: children import ``benchmarks`` from it whatever the current directory."""


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_child(module: str, args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m module args`` in a fresh interpreter and return the JSON of its last stdout line.

    A fresh process per measurement: no warm caches, no memory high-water mark left by another run.
    """
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{module} {' '.join(args)} printed nothing:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])

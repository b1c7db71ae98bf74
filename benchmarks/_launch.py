"""Measure one complete run of a command, from process start to exit: ``python _launch.py RESULT -- CMD...``.

Run as a script (not ``-m``) so this process imports almost nothing: it stays small, and what Linux
carries over ``fork`` + ``exec`` into a child's peak RSS (the parent's own size) stays below any
Python client's real peak. It spawns the command, waits for it, and writes to RESULT one JSON object:
wall seconds, the user and system CPU of the command and everything it waited for
(``getrusage(RUSAGE_CHILDREN)``), the largest peak RSS among them (``ru_maxrss``), the peak of their
*summed* RSS (the command and every process under it, e.g. parse workers: sampled from ``/proc`` every
20 ms, so a peak shorter than that can be missed) and the exit status.
The command's stdout and stderr go to the files named by ``BENCH_STDOUT`` / ``BENCH_STDERR``.
"""

import json
import os
import resource
import subprocess
import sys
import time


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process under it (0 for one that is gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", "rb") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def main(argv: list[str]) -> int:
    """Run ``argv[2:]`` (after ``RESULT --``), write its measurements to ``argv[0]``; 0 unless misused."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python _launch.py RESULT -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    result, command = argv[0], argv[2:]
    with (
        open(os.environ.get("BENCH_STDOUT", os.devnull), "wb") as out,
        open(os.environ.get("BENCH_STDERR", os.devnull), "wb") as err,
    ):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        tree_peak = 0
        while (returncode := process.poll()) is None:
            tree_peak = max(tree_peak, _tree_rss(process.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = {
        "seconds": seconds,
        "cpu_user_seconds": usage.ru_utime,
        "cpu_system_seconds": usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "peak_tree_rss_bytes": max(tree_peak, usage.ru_maxrss * 1024),
        "returncode": returncode,
    }
    with open(result, "w", encoding="ascii") as f:
        json.dump(measured, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

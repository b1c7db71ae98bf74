"""``make run``: the nightly export end to end against the built-in emulator, with no credentials.

Starts ``ispring-async emulator`` in a child process on a free 127.0.0.1 port (a realistic dataset,
and a realistic latency: lognormal per request, median 100 ms, 99th percentile 1 s, since the real
API is remote and uneven and integrations set 120-300 s timeouts), runs the real
``ispring-async export`` into an SQLite file with the live display, then prints a summary queried
from that database. Rerunning it updates the same rows in place (the SQLite sink upserts by
identity)::

    python -m ispring_async._app.demo [--results 200000] [--output out/results.sqlite]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from ispring_async._app.cli import main as cli_main
from ispring_async.emulator import serve_in_process

__all__ = ["main"]


def summarize(path: Path) -> list[str]:
    """The lines describing the latest complete export in the SQLite file ``path``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        run = db.execute(
            "SELECT run_id, started_at, finished_at, records FROM export_runs "
            "WHERE status = 'complete' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if run is None:
            return [f"{path}: no complete export"]
        run_id, started, finished, records = run
        total = db.execute("SELECT count(*) FROM learner_results").fetchone()[0]
        by_status = db.execute(
            'SELECT "completionStatus", count(*) FROM learner_results WHERE run_id = ? '
            "GROUP BY 1 ORDER BY 2 DESC",
            (run_id,),
        ).fetchall()
        overdue, users, courses = db.execute(
            'SELECT sum("isOverdue"), count(DISTINCT "userId"), count(DISTINCT "courseId") '
            "FROM learner_results WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        runs = db.execute("SELECT count(*) FROM export_runs WHERE status = 'complete'").fetchone()[0]
    finally:
        db.close()
    lines = [
        f"{path}: run {run_id} complete ({started} .. {finished}), {records:,} records; "
        f"{total:,} rows in learner_results after {runs} complete run(s)",
        f"  {users:,} learners, {courses:,} courses, {overdue or 0:,} overdue",
        "  results by completion status:",
    ]
    width = max((len(status) for status, _ in by_status), default=0)
    lines += [
        f"    {status:<{width}}  {count:>9,}  {count / max(records, 1):6.1%}" for status, count in by_status
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the export's exit status."""
    p = argparse.ArgumentParser(prog="python -m ispring_async._app.demo", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=int, default=200_000, help="rows in the emulated account")
    p.add_argument("--latency-median", type=float, default=0.1, help="median seconds per request")
    p.add_argument("--latency-p99", type=float, default=1.0, help="99th percentile seconds per request")
    p.add_argument("--output", type=Path, default=Path("out/results.sqlite"))
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    # A throwaway secret for the throwaway server: nothing to configure, nothing to leak.
    secret = secrets.token_urlsafe(24)
    emulator_args = ["--results", str(args.results), "--latency-median", str(args.latency_median)]
    emulator_args += ["--latency-p99", str(args.latency_p99), "--fault-seed", "1"]
    with serve_in_process(emulator_args, client_secret=secret, echo=sys.stderr) as emulator:
        base_url = emulator.base_url
        os.environ["ISPRING_CLIENT_ID"] = "emulator-client"
        os.environ["ISPRING_CLIENT_SECRET"] = secret
        command = [
            "export", "--base-url", base_url, "--output", str(args.output),
            "--concurrency", str(args.concurrency), "--resume",
        ]  # fmt: skip
        print(f"$ ispring-async {' '.join(command)}", file=sys.stderr, flush=True)
        status = cli_main(command)
    if status == 0:
        print()
        for line in summarize(args.output):
            print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())

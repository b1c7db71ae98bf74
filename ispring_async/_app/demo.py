"""``make run``: the nightly export end to end against the built-in emulator, with no credentials.

Starts ``ispring-async emulator`` in a child process on a free 127.0.0.1 port (a realistic dataset,
and a realistic latency: lognormal per request, median 100 ms, 99th percentile 1 s, since the real
API is remote and uneven and integrations set 120-300 s timeouts), runs the real
``ispring-async export`` of every dataset (departments, users, results, module results) into one
SQLite file with the live display, then prints the report a person wants from it, queried by
joining the tables: completion by department *name*, and the ten most overdue learners by *name*.
Rerunning it updates the same rows in place (the SQLite sink upserts by identity)::

    python -m ispring_async._app.demo [--results 200000] [--output out/nightly.sqlite]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ispring_async._app.cli import main as cli_main
from ispring_async._exceptions import printable
from ispring_async.emulator import serve_in_process
from ispring_async.sinks import DATASETS

__all__ = ["COMPLETION_BY_DEPARTMENT", "MOST_OVERDUE", "Report", "main", "report", "summarize"]

DONE_STATUSES = ("complete", "passed", "accepted")
"""Completion statuses that count as done (the others are still to do, or failed)."""

# Each dataset's rows of the latest complete run only: rows the API no longer returns stay in the
# tables (an export does not delete), and must not count. Readers never see an unfinished run (it
# waits in the pending_ tables), so this is the whole of the last night.
_LATEST = "run_id = (SELECT max(run_id) FROM export_runs WHERE status = 'complete')"

COMPLETION_BY_DEPARTMENT = """
WITH latest AS (SELECT max(run_id) AS run FROM export_runs WHERE status = 'complete'),
     users_now AS (SELECT "userId", "departmentId" FROM users JOIN latest ON run_id = latest.run),
     by_department AS (
         SELECT u."departmentId" AS department_id,
                count(DISTINCT r."userId") AS learners,
                count(*) AS enrollments,
                sum(r."completionStatus" IN ('complete', 'passed', 'accepted')) AS completed,
                sum(r."isOverdue") AS overdue
         FROM learner_results r JOIN latest ON r.run_id = latest.run
         LEFT JOIN users_now u ON u."userId" = r."userId"
         GROUP BY u."departmentId"
     ),
     modules_by_department AS (
         SELECT u."departmentId" AS department_id,
                count(*) AS modules,
                sum(m."completionStatus" IN ('complete', 'passed', 'accepted')) AS modules_done
         FROM learner_module_results m JOIN latest ON m.run_id = latest.run
         LEFT JOIN users_now u ON u."userId" = m."userId"
         GROUP BY u."departmentId"
     )
SELECT coalesce(d.name, '(department ' || b.department_id || ', not in /departments)',
                '(learners not in /users)') AS department,
       b.learners, b.enrollments, b.completed, b.overdue,
       coalesce(m.modules, 0) AS modules, coalesce(m.modules_done, 0) AS modules_done
FROM by_department b
LEFT JOIN modules_by_department m ON m.department_id IS b.department_id
LEFT JOIN departments d ON d."departmentId" = b.department_id
    AND d.run_id = (SELECT run FROM latest)
ORDER BY 1.0 * b.completed / b.enrollments, department
"""
"""Completion by department name: learners, enrollments, completed and overdue ones, and modules.

A user's department that ``/departments`` does not list is its own row, named by its id, apart from
the learners ``/users`` does not list: one "(no department)" for both read as one group, twice."""

MOST_OVERDUE = """
WITH latest AS (SELECT max(run_id) AS run FROM export_runs WHERE status = 'complete')
SELECT coalesce(nullif(trim(coalesce(u."firstName", '') || ' ' || coalesce(u."lastName", '')), ''),
                u.login, r."userId") AS learner,
       u.email,
       coalesce(d.name, '(department ' || u."departmentId" || ', not in /departments)',
                '(not in /users)') AS department,
       count(*) AS overdue_courses,
       date(min(julianday(r."dueDate"))) AS oldest_due
FROM learner_results r
JOIN latest ON r.run_id = latest.run
LEFT JOIN users u ON u."userId" = r."userId" AND u.run_id = latest.run
LEFT JOIN departments d ON d."departmentId" = u."departmentId" AND d.run_id = latest.run
WHERE r."isOverdue"
GROUP BY r."userId"
ORDER BY overdue_courses DESC, min(julianday(r."dueDate")), learner
LIMIT 10
"""
"""The ten learners with the most overdue courses (ties: the longest overdue first), by name."""


class Report:
    """What :func:`report` found: the run, and the rows of both queries."""

    def __init__(
        self, run: tuple[Any, ...], counts: dict[str, int], departments: list[Any], overdue: list[Any]
    ) -> None:
        self.run_id, self.started, self.finished, self.records = run
        self.counts = counts
        self.departments = departments
        self.overdue = overdue


def report(db: sqlite3.Connection) -> Report | None:
    """Run the report's queries on an export database; ``None`` if it holds no complete run."""
    run = db.execute(
        "SELECT run_id, started_at, finished_at, records FROM export_runs "
        "WHERE status = 'complete' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if run is None:
        return None
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted({d.table for d in DATASETS} - tables)
    if missing:
        raise sqlite3.OperationalError(
            f"the report needs every dataset; missing tables: {', '.join(missing)}"
        )
    counts = {
        d.name: db.execute(f"SELECT count(*) FROM {d.table} WHERE {_LATEST}").fetchone()[0]  # noqa: S608
        for d in DATASETS
    }
    return Report(
        run, counts, db.execute(COMPLETION_BY_DEPARTMENT).fetchall(), db.execute(MOST_OVERDUE).fetchall()
    )


def _width(text: str) -> int:
    """The columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def _pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (``str.ljust`` counts characters)."""
    return text + " " * max(0, width - _width(text))


def summarize(path: Path) -> list[str]:
    """The report's lines for the SQLite export ``path``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = report(db)
    finally:
        db.close()
    if found is None:
        return [f"{path}: no complete export"]
    lines = [
        f"{path}: run {found.run_id} complete ({found.started} .. {found.finished}), "
        f"{found.records:,} records",
        "  " + ", ".join(f"{count:,} {name}" for name, count in found.counts.items()),
        "",
        "Completion by department (least complete first):",
    ]
    # Names come from the server: shown with control characters escaped, never obeyed by the terminal.
    departments = [(printable(row[0]), *row[1:]) for row in found.departments]
    overdue = [
        (printable(row[0]), printable(row[1] or "-"), printable(row[2]), *row[3:]) for row in found.overdue
    ]
    width = max((_width(row[0]) for row in departments), default=10)
    lines.append(
        f"  {_pad('department', width)}  {'learners':>8}  {'enrolled':>8}  {'completed':>9}  {'overdue':>7}"
        f"  {'modules done':>12}"
    )
    for name, learners, enrollments, completed, late, modules, modules_done in departments:
        share = f"{(modules_done or 0) / modules:.0%}" if modules else "-"
        lines.append(
            f"  {_pad(name, width)}  {learners:>8,}  {enrollments:>8,}  {completed / enrollments:>9.1%}"
            f"  {late:>7,}  {share:>12}"
        )
    lines += ["", "The ten most overdue learners:"]
    width = max((_width(row[0]) for row in overdue), default=10)
    for learner, email, department, courses, oldest in overdue:
        lines.append(
            f"  {_pad(learner, width)}  {courses:>3} overdue since {oldest}  {department}  <{email}>"
        )
    if not overdue:
        lines.append("  nobody is overdue")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the export's exit status."""
    p = argparse.ArgumentParser(prog="python -m ispring_async._app.demo", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=int, default=200_000, help="rows in the emulated account")
    p.add_argument("--latency-median", type=float, default=0.1, help="median seconds per request")
    p.add_argument("--latency-p99", type=float, default=1.0, help="99th percentile seconds per request")
    p.add_argument("--output", type=Path, default=Path("out/nightly.sqlite"))
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
            "--include", ",".join(d.name for d in DATASETS),
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

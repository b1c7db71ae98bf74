"""``make run``'s report: the joined SQL queries checked against the same numbers computed in Python.

The database is written by the real SQLite sink from the emulator's ground truth of every dataset.
"""

from __future__ import annotations

import collections
import sqlite3
import unicodedata
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ispring_async._app.demo import DONE_STATUSES, MOST_OVERDUE, report, summarize
from ispring_async.emulator import Emulator, EmulatorConfig, serve_in_thread
from ispring_async.sinks import DATASETS, open_sink

EVERYONE = [("userStatuses[]", "1"), ("userStatuses[]", "3")]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """A small account: 600 results, its users, departments and module results."""
    with serve_in_thread(EmulatorConfig(results=600, seed=12)) as emulator:
        yield emulator


def ground_truth(emu: Emulator) -> dict[str, list[Any]]:
    """Every dataset of the account, as the export of active and blocked users holds it."""
    return {
        "departments": emu.departments(),
        "users": emu.expected_users(),
        "results": emu.expected_results(EVERYONE),
        "module-results": emu.expected_module_results(EVERYONE),
    }


def write_night(path: Path, data: dict[str, list[Any]]) -> None:
    """One complete export run of every dataset into the database ``path``."""
    with open_sink(path, datasets=DATASETS) as sink:
        sink.open(resume=False)
        for name, records in data.items():
            sink.write(records, name)
        sink.checkpoint(b"")
        sink.finish()


def _department_label(department_id: str | None, names: dict[str, str]) -> str:
    """The report's name of a department: its name, else its id (unlisted), else no user at all."""
    if department_id is None:
        return "(learners not in /users)"
    return names.get(department_id, f"(department {department_id}, not in /departments)")


def expected_departments(data: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """The completion-by-department rows computed in Python, in the report's order."""
    department_of = {u.user_id: u.department_id for u in data["users"]}
    names = {d.department_id: d.name for d in data["departments"]}
    rows: dict[str | None, list[Any]] = collections.defaultdict(lambda: [set(), 0, 0, 0, 0, 0])
    for r in data["results"]:
        row = rows[department_of.get(r.user_id)]
        row[0].add(r.user_id)
        row[1] += 1
        row[2] += r.completion_status in DONE_STATUSES
        row[3] += r.is_overdue
    for m in data["module-results"]:
        department = department_of.get(m.user_id)
        if department in rows:
            rows[department][4] += 1
            rows[department][5] += m.completion_status in DONE_STATUSES
    table = [(_department_label(d, names), len(v[0]), v[1], v[2], v[3], v[4], v[5]) for d, v in rows.items()]
    return sorted(table, key=lambda row: (row[3] / row[2], row[0]))


def expected_overdue(data: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """The ten most overdue learners computed in Python: name, email, department, count, oldest due day."""
    users = {u.user_id: u for u in data["users"]}
    names = {d.department_id: d.name for d in data["departments"]}
    overdue: dict[str, list[Any]] = collections.defaultdict(list)
    for r in data["results"]:
        if r.is_overdue:
            overdue[r.user_id].append(r.due_date)
    rows = []
    for user_id, dues in overdue.items():
        user = users.get(user_id)
        name = (user.full_name or user.login or user_id) if user else user_id
        department = _department_label(user.department_id, names) if user else "(not in /users)"
        oldest = min(dues)
        rows.append((name, user.email if user else None, department, len(dues), oldest))
    rows.sort(key=lambda row: (-row[3], row[4], row[0]))
    # SQLite's date() of a julianday is the UTC day.
    return [(*row[:4], row[4].astimezone(UTC).date().isoformat()) for row in rows[:10]]


def test_the_report_equals_the_numbers_computed_from_ground_truth(emu: Emulator, tmp_path: Path) -> None:
    """Completion by department name and the ten most overdue learners by name, as Python computes them."""
    path = tmp_path / "nightly.sqlite"
    data = ground_truth(emu)
    write_night(path, data)
    db = sqlite3.connect(path)
    try:
        found = report(db)
    finally:
        db.close()
    assert found is not None
    assert found.counts == {name: len(records) for name, records in data.items()}
    assert found.departments == expected_departments(data)
    assert len(found.overdue) == 10
    assert found.overdue == expected_overdue(data)
    # Names, not ids: every learner listed has a name from the users table.
    user_ids = {u.user_id for u in data["users"]}
    assert not any(name in user_ids for name, *_ in found.overdue)
    lines = summarize(path)
    assert any(expected_departments(data)[0][0] in line for line in lines)
    assert any(found.overdue[0][0] in line for line in lines)


def test_the_report_counts_only_the_latest_complete_run(emu: Emulator, tmp_path: Path) -> None:
    """Rows an earlier night wrote and tonight's API no longer returns do not count in the report."""
    path = tmp_path / "nightly.sqlite"
    data = ground_truth(emu)
    write_night(path, data)
    gone = {r.user_id for r in data["results"][:50]}
    tonight = {
        **data,
        "results": [r for r in data["results"] if r.user_id not in gone],
        "module-results": [m for m in data["module-results"] if m.user_id not in gone],
    }
    write_night(path, tonight)
    db = sqlite3.connect(path)
    try:
        found = report(db)
        (kept,) = db.execute("SELECT count(*) FROM learner_results").fetchone()
    finally:
        db.close()
    assert found is not None
    assert kept == len(data["results"])  # the rows stay in the table ...
    assert found.counts["results"] == len(tonight["results"])  # ... but the report is tonight's
    assert found.departments == expected_departments(tonight)
    assert found.overdue == expected_overdue(tonight)


def test_a_database_without_a_complete_run_says_so(tmp_path: Path) -> None:
    """An export that never completed: the report says there is no complete export, nothing else."""
    path = tmp_path / "nightly.sqlite"
    with open_sink(path, datasets=DATASETS) as sink:
        sink.open(resume=False)
        sink.checkpoint(b"")
    assert summarize(path) == [f"{path}: no complete export"]


def test_names_from_the_server_cannot_drive_the_terminal(emu: Emulator, tmp_path: Path) -> None:
    """Control characters in department and learner names are escaped in the report, never printed raw."""
    data = ground_truth(emu)
    evil = "\x1b]0;pwned\x07\nforged line"
    data["departments"] = [msgspec.structs.replace(d, name=f"{d.name}{evil}") for d in data["departments"]]
    data["users"] = [
        msgspec.structs.replace(
            u,
            fields=tuple(
                msgspec.structs.replace(f, value="\x1b[2J" + f.value) if f.name.lower() == "first_name" else f
                for f in u.fields
            ),
        )
        for u in data["users"]
    ]
    path = tmp_path / "nightly.sqlite"
    write_night(path, data)
    lines = summarize(path)
    assert not any("\x1b" in line or "\x07" in line or "\n" in line for line in lines)
    assert "forged line" not in lines
    assert any("\\x1b[2J" in line for line in lines)


def test_the_readme_shows_the_query_make_run_runs() -> None:
    """The README's example query is, character for character, the one the report runs."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"```sql\n{MOST_OVERDUE.strip()}\n```" in readme


def test_an_unlisted_department_and_unknown_learners_are_told_apart(emu: Emulator, tmp_path: Path) -> None:
    """A department ``/departments`` does not list and learners ``/users`` does not list are two rows
    with two labels (the id named), matching the numbers computed in Python."""
    data = ground_truth(emu)
    department_of = {u.user_id: u.department_id for u in data["users"]}
    dropped = department_of[data["results"][0].user_id]
    data["departments"] = [d for d in data["departments"] if d.department_id != dropped]
    gone = {r.user_id for r in data["results"] if r.is_overdue and department_of[r.user_id] != dropped}
    gone = {sorted(gone)[0]}
    data["users"] = [u for u in data["users"] if u.user_id not in gone]
    path = tmp_path / "nightly.sqlite"
    write_night(path, data)
    db = sqlite3.connect(path)
    try:
        found = report(db)
    finally:
        db.close()
    assert found is not None
    assert found.departments == expected_departments(data)
    labels = [row[0] for row in found.departments]
    assert len(labels) == len(set(labels))
    assert f"(department {dropped}, not in /departments)" in labels
    assert "(learners not in /users)" in labels
    assert found.overdue == expected_overdue(data)


def test_report_columns_line_up_for_wide_and_combining_names(emu: Emulator, tmp_path: Path) -> None:
    """Department and learner names in CJK (two columns a character) and with combining marks (none)
    still line the figures up: every row's first figure ends in the same terminal column."""
    data = ground_truth(emu)
    names = ["李明部", "Zoe\u0308 team", "Sales"]
    data["departments"] = [
        msgspec.structs.replace(d, name=names[i % len(names)] + str(i))
        for i, d in enumerate(data["departments"])
    ]
    path = tmp_path / "nightly.sqlite"
    write_night(path, data)
    lines = summarize(path)
    start = lines.index("Completion by department (least complete first):") + 1
    table = lines[start : lines.index("", start)]
    assert any("李" in line for line in table) and any("\u0308" in line for line in table)
    # The terminal column where each row's learners figure ends (the header: its "learners").
    ends = set()
    for i, line in enumerate(table):
        head = line.rsplit(None, 5 if i == 0 else 4)[0]
        ends.add(
            sum(
                0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
                for c in head
            )
        )
    assert len(ends) == 1, table

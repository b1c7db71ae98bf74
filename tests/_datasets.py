"""Helpers for the tests of several datasets: reading any dataset back from any format, and a struct
with nested values (a person with roles, tags and a boss) that pins JSON and derived columns."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pyarrow.parquet as pq

from ispring_async.sinks import Column, Dataset, Derived

EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "sqlite": "sqlite"}


def to_record(dataset: Dataset, row: dict[str, Any]) -> Any:
    """A flat row of any format (strings, JSON text, ``None``) back to the dataset's struct."""
    fields = {c.name: c for c in dataset.columns[: len(dataset.columns) - len(dataset.derived)]}
    values = {}
    for name, value in row.items():
        if name not in fields or value is None or value == "":
            continue  # identity, run_id, derived columns; absent values
        values[name] = json.loads(value) if fields[name].kind == "json" else value
    return msgspec.convert(values, dataset.type, strict=False)


def read_dataset(output: Path, fmt: str, dataset: Dataset, *, table: str | None = None) -> list[Any]:
    """Every record of one dataset of a published output, read back with the format's own tools."""
    if fmt == "sqlite":
        db = sqlite3.connect(output)
        try:
            cursor = db.execute(f'SELECT * FROM "{table or dataset.table}"')
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            db.close()
        return [to_record(dataset, row) for row in rows]
    path = output / f"{dataset.name}.{EXTENSIONS[fmt]}" if output.is_dir() else output
    if fmt == "jsonl":
        return [msgspec.json.decode(line, type=dataset.type) for line in path.read_bytes().splitlines()]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as file:
            return [to_record(dataset, row) for row in csv.DictReader(file)]
    return [to_record(dataset, row) for row in pq.read_table(path).to_pylist()]


class Role(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A nested struct (as a user's roles are)."""

    role_id: str
    manageable_ids: tuple[str, ...] = ()


class Person(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A record with nested lists and structs, like ``/users/v2``'s."""

    person_id: str
    name: str
    joined: Annotated[datetime, msgspec.Meta(tz=True)]
    roles: tuple[Role, ...] = ()
    tags: tuple[str, ...] = ()
    boss: Role | None = None
    score: float | None = None


PEOPLE = Dataset(
    name="people",
    table="people",
    type=Person,
    identity=lambda p: p.person_id,
    row_identity=lambda row: str(row["personId"]),
    derived=(Derived(Column("firstRole", "str", True), lambda p: p.roles[0].role_id if p.roles else None),),
)


def make_people(n: int, *, start: int = 0) -> list[Person]:
    """``n`` people, with text that needs quoting (commas, quotes, newlines, non-ASCII) in nested values."""
    joined = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Person(
            person_id=f"p-{i}",
            name=f'Zoë "{i}", line\ntwo',
            joined=joined + timedelta(hours=i),
            roles=tuple(Role(role_id=f"r-{i}-{k}", manageable_ids=("d,1", f'd"{k}')) for k in range(i % 3)),
            tags=("a", "b") if i % 2 else (),
            boss=None if i % 4 else Role(role_id="boss"),
            score=None if i % 5 == 0 else i / 3,
        )
        for i in range(start, start + n)
    ]

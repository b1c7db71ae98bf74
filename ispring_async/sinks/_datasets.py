"""The datasets an export can hold, and how each one's records become rows of every format.

A :class:`Dataset` names a kind of record (``results`` → :class:`LearnerResult` in the table
``learner_results``, ...), says what identifies a row, and derives the columns from the struct (one code
path for every format and dataset). Nested fields (a user's ``fields``, ``groups``, ``userRoles``) are
one ``json`` column each: JSON text in SQLite, CSV and Parquet, native JSON in JSON Lines. A dataset may
add *derived* columns (a user's login, email and names taken out of ``fields``), so the common report
needs no JSON functions; the full structure stays beside them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ispring_async._exceptions import ConfigurationError
from ispring_async._models import Department, LearnerModuleResult, LearnerResult, User
from ispring_async.sinks._base import Column, columns_of

__all__ = [
    "DATASETS",
    "DEPARTMENTS",
    "MODULE_RESULTS",
    "RESULTS",
    "USERS",
    "Dataset",
    "Derived",
    "dataset_named",
    "select_datasets",
]

_json = msgspec.json.Encoder()


@dataclasses.dataclass(frozen=True, slots=True)
class Derived:
    """A column computed from a record (not one of its fields), after the struct's own columns."""

    column: Column
    value: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One kind of record an export writes: its name, its table, its struct and its identity."""

    name: str
    """As ``--include`` and the file names say it: ``results``, ``module-results``, ``users``, ..."""
    table: str
    """The SQLite table: ``learner_results``, ``learner_module_results``, ``users``, ``departments``."""
    type: type[msgspec.Struct]
    identity: Callable[[Any], str]
    """The identity of a record: rows are unique by it (SQLite's primary key, the duplicate filter)."""
    row_identity: Callable[[Mapping[str, Any]], str]
    """The same identity read back from a flat row (API names → values; ``None`` or ``""`` if absent)."""
    derived: tuple[Derived, ...] = ()
    columns: tuple[Column, ...] = dataclasses.field(init=False)
    """The struct's fields in declaration order, then the derived columns."""
    json_columns: tuple[str, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = (*columns_of(self.type), *(d.column for d in self.derived))
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "json_columns", tuple(c.name for c in columns if c.kind == "json"))

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def flat(self) -> bool:
        """Whether a record's own encoding is already its row (no nested or derived columns)."""
        return not self.derived and not self.json_columns

    def rows(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Records as flat rows, values in column order: scalars as msgspec's builtins (datetimes as
        RFC 3339 text), nested values as JSON text, then the derived columns."""
        # to_builtins does the per-field work in C; dicts keep the declaration order.
        rows: list[dict[str, Any]] = msgspec.to_builtins(records)
        for name in self.json_columns:
            for row in rows:
                value = row.get(name)
                row[name] = None if value is None else _json.encode(value).decode()
        for derived in self.derived:
            name, value = derived.column.name, derived.value
            for row, record in zip(rows, records, strict=True):
                row[name] = value(record)
        return rows


def _result_row_identity(row: Mapping[str, Any]) -> str:
    # As LearnerResult.identity; an empty CSV field is an absent enrollmentId.
    return str(row.get("enrollmentId") or f"{row['userId']}/{row['courseId']}")


RESULTS = Dataset(
    name="results",
    table="learner_results",
    type=LearnerResult,
    identity=lambda record: record.identity,
    row_identity=_result_row_identity,
)
"""``GET /learners/results``: one row per enrollment (a learner in a course)."""

DEPARTMENTS = Dataset(
    name="departments",
    table="departments",
    type=Department,
    identity=lambda record: record.department_id,
    row_identity=lambda row: str(row["departmentId"]),
)
"""``GET /departments``: the account's department tree (``parentDepartmentId``)."""


def _module_row_identity(row: Mapping[str, Any]) -> str:
    # As LearnerModuleResult.identity: the enrollment's identity, then the course item.
    return f"{_result_row_identity(row)}/{row['courseItemId']}"


MODULE_RESULTS = Dataset(
    name="module-results",
    table="learner_module_results",
    type=LearnerModuleResult,
    identity=lambda record: record.identity,
    row_identity=_module_row_identity,
)
"""``GET /learners/modules/results``: one row per enrollment and course item (module)."""


def _text(column: str, value: Callable[[User], str | None]) -> Derived:
    return Derived(Column(column, "str", nullable=True), value)


USERS = Dataset(
    name="users",
    table="users",
    type=User,
    identity=lambda record: record.identity,
    row_identity=lambda row: str(row["userId"]),
    # The profile fields a report joins on, out of the name/value pairs; ``fields`` keeps them all.
    derived=(
        _text("login", lambda user: user.login),
        _text("email", lambda user: user.email),
        _text("firstName", lambda user: user.first_name),
        _text("lastName", lambda user: user.last_name),
    ),
)
"""``GET /users/v2``: one row per user; nested fields as JSON, login/email/names also as columns."""

DATASETS: tuple[Dataset, ...] = (DEPARTMENTS, USERS, RESULTS, MODULE_RESULTS)
"""Every dataset, in the order an export runs them (the small reference lists first)."""


def dataset_named(name: str) -> Dataset:
    """The dataset ``--include`` calls ``name``; :exc:`ConfigurationError` naming the choices if none."""
    for dataset in DATASETS:
        if dataset.name == name:
            return dataset
    known = ", ".join(d.name for d in DATASETS)
    raise ConfigurationError(f"unknown dataset {name!r}: choose from {known}")


def select_datasets(names: Iterable[str]) -> tuple[Dataset, ...]:
    """The datasets ``names`` call (``"results,users"`` split already), each once, in :data:`DATASETS`
    order, so that ``users,results`` and ``results,users`` are the same export (and checkpoint)."""
    wanted = {dataset_named(name.strip()).name for name in names if name.strip()}
    if not wanted:
        raise ConfigurationError(f"no dataset to export: choose from {', '.join(d.name for d in DATASETS)}")
    return tuple(d for d in DATASETS if d.name in wanted)

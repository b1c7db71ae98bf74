"""SQLite: a database that each nightly run updates in place, one table per dataset.

Tables (created on first use; columns of fields added to a struct later are added)::

    learner_results         identity TEXT PRIMARY KEY, one column per field under its API name
    learner_module_results  ("userId", ...; datetimes as RFC 3339 text, booleans 0/1, nested values
    users                   as JSON text, a user's derived login/email/names), run_id: the last run
    departments             that wrote the row
    pending_<table>         the same columns, no key: the rows of the run in progress, not yet published
    export_runs             run_id, started_at, finished_at, status ('running'|'complete'|'failed'), records
    export_checkpoint       run_id, state, records, saved_at, checksum: the resume point of the unfinished run

**What readers see.** A run writes into the ``pending_`` tables; :meth:`SqliteSink.finish` upserts them
into the dataset tables by identity, marks the run ``complete`` and empties them, all in one
transaction. So the dataset tables only ever change by a whole complete run: a reader (a report, a
BI tool) querying them during an export, or after one was killed, sees the last complete run's data,
every dataset of it. Rows the API no longer returns are *kept* (an export is not a sync of
deletions); the latest complete snapshot of a dataset is::

    SELECT * FROM learner_results
    WHERE run_id = (SELECT max(run_id) FROM export_runs WHERE status = 'complete')

Records written between two checkpoints and the second checkpoint's state commit in one transaction, so
a crash rolls back to exactly the last checkpoint. ``status`` stays ``'running'`` after a crash and is
``'failed'`` after :meth:`SqliteSink.abort`; only ``'complete'`` means the run saw every record.

A checkpoint row is resumed only if its SHA-256 ``checksum`` matches its run, state and count and the
count matches the pending rows; otherwise the damage is logged and the export starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ispring_async._exceptions import ConfigurationError
from ispring_async.sinks._base import Column, SinkBase, SinkError, logger
from ispring_async.sinks._datasets import RESULTS, Dataset

__all__ = ["SqliteSink"]

_SQL_TYPES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "REAL",
    "bool": "INTEGER",
    "datetime": "TEXT",
    "json": "TEXT",
}
PENDING = "pending_"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(column: Column) -> str:
    return f"{_q(column.name)} {_SQL_TYPES[column.kind]}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    records INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS export_checkpoint (
    run_id INTEGER PRIMARY KEY REFERENCES export_runs (run_id),
    state BLOB NOT NULL,
    records INTEGER NOT NULL,
    saved_at TEXT NOT NULL,
    checksum TEXT
)
"""


class _Table:
    """The SQL of one dataset's table and its pending twin, built from its columns (never from data)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.name = _q(dataset.table)
        self.pending = _q(PENDING + dataset.table)
        columns = dataset.columns
        body = ", ".join(_column_sql(c) + ("" if c.nullable else " NOT NULL") for c in columns)
        # The pending table has no key: the exporter hands each identity over once per run (its
        # duplicate filter, rebuilt from identities() on resume), so appending is enough, and cheaper
        # than keeping an index the publishing upsert does not need (a repeat would still be upserted).
        self.create = [
            f"CREATE TABLE IF NOT EXISTS {table} (identity TEXT {key}, {body}, "
            "run_id INTEGER NOT NULL REFERENCES export_runs (run_id))"
            for table, key in ((self.name, "PRIMARY KEY"), (self.pending, "NOT NULL"))
        ]
        names = ", ".join(_q(c.name) for c in columns)
        placeholders = ", ".join("?" * (len(columns) + 2))
        updates = ", ".join(f"{_q(c.name)} = excluded.{_q(c.name)}" for c in columns)
        conflict = f"ON CONFLICT (identity) DO UPDATE SET {updates}, run_id = excluded.run_id"
        self.append = f"INSERT INTO {self.pending} (identity, {names}, run_id) VALUES ({placeholders})"  # noqa: S608
        # "WHERE true" lets SQLite's parser tell the upsert clause from a join; rowid order keeps the
        # order the records came in for rows that are new.
        self.publish = (
            f"INSERT INTO {self.name} (identity, {names}, run_id) "  # noqa: S608
            f"SELECT identity, {names}, run_id FROM {self.pending} WHERE true ORDER BY rowid {conflict}"
        )


def _checksum(run_id: int, state: bytes, records: int) -> str:
    return hashlib.sha256(b"%d\n%d\n%s" % (run_id, records, state)).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SqliteSink(SinkBase):
    """Upserts records into one table per dataset of an SQLite database (``.sqlite``, ``.sqlite3``,
    ``.db``)."""

    format = "sqlite"

    def __init__(self, path: Path, datasets: Sequence[Dataset] = (RESULTS,)) -> None:
        super().__init__(path)
        if not datasets or len({d.name for d in datasets}) != len(datasets):
            raise ConfigurationError("a sink needs one or more distinct datasets")
        self._tables = {d.name: _Table(d) for d in datasets}
        self._counts = dict.fromkeys(self._tables, 0)
        self._db: sqlite3.Connection | None = None
        self._run_id = 0

    @property
    def datasets(self) -> tuple[Dataset, ...]:
        """The datasets this sink writes, in order."""
        return tuple(table.dataset for table in self._tables.values())

    @property
    def outputs(self) -> dict[str, Path]:
        """Each dataset's output (one database for all), by dataset name."""
        return dict.fromkeys(self._tables, self._path)

    def counts(self) -> dict[str, int]:
        """Records of this run so far, by dataset (kept ones included)."""
        return dict(self._counts)

    def open(self, *, resume: bool) -> bytes | None:
        """Start a run (``export_runs``) or, with ``resume=True``, continue the unfinished one."""
        self._begin()
        try:
            # isolation_level=None: transactions are begun and committed here, where checkpoints are.
            # check_same_thread=False: an async exporter may call from a worker thread (never two at once).
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._lock.release()
            raise SinkError(f"cannot open the SQLite database {self._path}: {exc}") from exc
        self._db = db
        self._state = "open"
        try:
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL: a power loss may undo the last commits, never split one; each commit holds data
            # with its checkpoint, so resuming stays exact. finish() syncs fully.
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")
            self._create_schema(db)
            saved = self._resumable(db) if resume else None
            if saved is None:
                db.execute(
                    "UPDATE export_runs SET status = 'failed', finished_at = ? WHERE status = 'running'",
                    (_now(),),
                )
                db.execute("DELETE FROM export_checkpoint")
                for pending in self._pending_tables(db):
                    db.execute(f"DELETE FROM {_q(pending)}")  # noqa: S608 - a table name of ours
                cursor = db.execute(
                    "INSERT INTO export_runs (started_at, status) VALUES (?, 'running')", (_now(),)
                )
                assert cursor.lastrowid is not None
                self._run_id = cursor.lastrowid
            else:
                self._run_id, state, self.records_written = saved
                for name, table in self._tables.items():
                    (self._counts[name],) = db.execute(f"SELECT count(*) FROM {table.pending}").fetchone()  # noqa: S608
                db.execute(
                    "UPDATE export_runs SET status = 'running', finished_at = NULL WHERE run_id = ?",
                    (self._run_id,),
                )
            db.execute("COMMIT")
        except BaseException as exc:
            self.abort()
            if isinstance(exc, sqlite3.Error):
                raise SinkError(f"cannot start an export into {self._path}: {exc}") from exc
            raise
        return None if saved is None else state

    def _table(self, dataset: str) -> _Table:
        try:
            return self._tables[dataset]
        except KeyError:
            raise SinkError(f"{self!r} does not write the dataset {dataset!r}") from None

    def identities(self, dataset: str = RESULTS.name) -> Iterator[str]:
        """Identities of the rows this run has committed for a dataset (earlier runs' are not included)."""
        self._require_open()
        table = self._table(dataset)
        assert self._db is not None
        cursor = self._db.execute(f"SELECT identity FROM {table.pending}")  # noqa: S608
        return (identity for (identity,) in cursor)

    def write(self, records: Sequence[object], dataset: str = RESULTS.name) -> None:
        """Append a batch to the dataset's pending table, in the transaction the next checkpoint commits."""
        self._require_open()
        if not records:
            return
        table = self._table(dataset)
        identity, run_id = table.dataset.identity, self._run_id
        rows = [
            (identity(record), *values.values(), run_id)
            for record, values in zip(records, table.dataset.rows(records), strict=True)
        ]
        with self._translate("write to"):
            assert self._db is not None
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(table.append, rows)
        self.records_written += len(records)
        self._counts[dataset] += len(records)

    def checkpoint(self, state: bytes) -> None:
        """Commit the batches written since the last checkpoint together with ``state``."""
        self._require_open()
        with self._translate("checkpoint"):
            db = self._db
            assert db is not None
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            state = bytes(state)
            db.execute(
                "INSERT INTO export_checkpoint (run_id, state, records, saved_at, checksum) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET state = excluded.state, "
                "records = excluded.records, saved_at = excluded.saved_at, checksum = excluded.checksum",
                (
                    self._run_id,
                    state,
                    self.records_written,
                    _now(),
                    _checksum(self._run_id, state, self.records_written),
                ),
            )
            db.execute(
                "UPDATE export_runs SET records = ? WHERE run_id = ?", (self.records_written, self._run_id)
            )
            db.execute("COMMIT")

    def finish(self) -> None:
        """Publish the pending rows into the dataset tables, mark the run ``complete`` and drop its
        checkpoint, in one transaction."""
        self._require_open()
        with self._translate("finish"):
            db = self._db
            assert db is not None
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            for table in self._tables.values():
                db.execute(table.publish)
                db.execute(f"DELETE FROM {table.pending}")  # noqa: S608
            db.execute(
                "UPDATE export_runs SET status = 'complete', finished_at = ?, records = ? WHERE run_id = ?",
                (_now(), self.records_written, self._run_id),
            )
            db.execute("DELETE FROM export_checkpoint WHERE run_id = ?", (self._run_id,))
            db.execute("COMMIT")
            # In WAL mode with synchronous=NORMAL this syncs the WAL, then the database: the
            # completion is on disk when finish() returns.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
        self._db = None
        self._end("finished")

    def abort(self) -> None:
        """Roll back what the last checkpoint does not cover, mark the run ``failed``, close."""
        if self._state != "open":
            return
        db, self._db = self._db, None
        if db is None:
            self._end("aborted")
            return
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute(
                "UPDATE export_runs SET status = 'failed', finished_at = ? WHERE run_id = ?",
                (_now(), self._run_id),
            )
        except sqlite3.Error:
            pass  # a run still 'running' after its process ended reads as interrupted all the same
        finally:
            db.close()
            self._end("aborted")

    # -- helpers ------------------------------------------------------------------------------------

    def _create_schema(self, db: sqlite3.Connection) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        checkpoint_columns = {row[1] for row in db.execute("PRAGMA table_info(export_checkpoint)")}
        if "checksum" not in checkpoint_columns:
            # A database from before checksums: its checkpoint (unverifiable) is not resumed.
            db.execute("ALTER TABLE export_checkpoint ADD COLUMN checksum TEXT")
        for table in self._tables.values():
            for statement in table.create:
                db.execute(statement)
            for name in (table.name, table.pending):
                present = {row[1] for row in db.execute(f"PRAGMA table_info({name})")}
                for column in table.dataset.columns:
                    if column.name not in present:
                        # A field added to the struct since the database was made; older rows have NULL.
                        db.execute(f"ALTER TABLE {name} ADD COLUMN {_column_sql(column)}")

    @staticmethod
    def _pending_tables(db: sqlite3.Connection) -> list[str]:
        # Every pending table, also of datasets this run does not include: an earlier run's rows.
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
            (len(PENDING), PENDING),
        )
        return [name for (name,) in rows]

    def _resumable(self, db: sqlite3.Connection) -> tuple[int, bytes, int] | None:
        row = db.execute(
            "SELECT c.run_id, c.state, c.records, c.checksum FROM export_checkpoint c "
            "JOIN export_runs r USING (run_id) WHERE r.status != 'complete' "
            "ORDER BY c.run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run_id, state, records, checksum = row
        problem = None
        if not isinstance(run_id, int) or not isinstance(records, int) or not isinstance(state, bytes):
            problem = "its checkpoint row has values of the wrong type"
        elif checksum != _checksum(run_id, state, records):
            problem = "its checkpoint row is damaged (its checksum does not match)"
        else:
            # All pending tables, the run's datasets whichever they were: a rerun with other datasets
            # still finds the count right, and the exporter names the difference.
            rows = sum(
                db.execute(f"SELECT count(*) FROM {_q(name)} WHERE run_id = ?", (run_id,)).fetchone()[0]  # noqa: S608
                for name in self._pending_tables(db)
            )
            if rows != records:
                problem = f"its checkpoint counts {records:,} records but the run has {rows:,} rows"
        if problem is not None:
            # Starting afresh is always correct (the rows are upserted again); a wrong count is not.
            logger.warning("cannot resume the export to %s: %s; starting afresh", self._path, problem)
            return None
        return run_id, state, records

    def _translate(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _translated(f"cannot {action} the SQLite database {self._path}")


@contextlib.contextmanager
def _translated(message: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise SinkError(f"{message}: {exc}") from exc
    except OverflowError:
        # Parsed records are int64 by construction (their structs' constraints); a record built by
        # hand with a bigger integer still fails typed.
        raise SinkError(f"{message}: an integer does not fit SQLite's 64 bits") from None

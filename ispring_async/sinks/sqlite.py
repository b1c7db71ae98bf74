"""SQLite: a database that each nightly run updates in place.

Tables (created on first use; columns of fields added to :class:`LearnerResult` later are added)::

    learner_results    identity TEXT PRIMARY KEY, one column per field under its API name
                       ("userId", ...; datetimes as RFC 3339 text, booleans 0/1), run_id
    export_runs        run_id, started_at, finished_at, status ('running'|'complete'|'failed'), records
    export_checkpoint  run_id, state, records, saved_at, checksum: the resume point of the unfinished run

Rows are upserted by identity, so a rerun updates them in place. ``learner_results.run_id`` is the last
run that wrote a row. Rows the API no longer returns are *kept* (an export is not a sync of deletions);
the latest complete snapshot is::

    SELECT * FROM learner_results
    WHERE run_id = (SELECT max(run_id) FROM export_runs WHERE status = 'complete')

Records written between two checkpoints and the second checkpoint's state commit in one transaction, so
a crash rolls back to exactly the last checkpoint. ``status`` stays ``'running'`` after a crash and is
``'failed'`` after :meth:`SqliteSink.abort`; only ``'complete'`` means the run saw every record.

A checkpoint row is resumed only if its SHA-256 ``checksum`` matches its run, state and count and the
count matches the run's rows; otherwise the damage is logged and the export starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from ispring_async._models import LearnerResult
from ispring_async.sinks._base import COLUMNS, Column, SinkBase, SinkError, logger

__all__ = ["SqliteSink"]

_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER", "datetime": "TEXT"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(column: Column) -> str:
    return f"{_q(column.name)} {_SQL_TYPES[column.kind]}"


_SCHEMA = f"""
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
);
CREATE TABLE IF NOT EXISTS learner_results (
    identity TEXT PRIMARY KEY,
    {", ".join(_column_sql(c) + ("" if c.nullable else " NOT NULL") for c in COLUMNS)},
    run_id INTEGER NOT NULL REFERENCES export_runs (run_id)
);
"""

_NAMES = ", ".join(_q(c.name) for c in COLUMNS)
_PLACEHOLDERS = ", ".join("?" * (len(COLUMNS) + 2))
_UPDATES = ", ".join(f"{_q(c.name)} = excluded.{_q(c.name)}" for c in COLUMNS)
# Built from COLUMNS (the struct's field names, quoted), never from data.
_UPSERT = (
    f"INSERT INTO learner_results (identity, {_NAMES}, run_id) VALUES ({_PLACEHOLDERS}) "  # noqa: S608
    f"ON CONFLICT (identity) DO UPDATE SET {_UPDATES}, run_id = excluded.run_id"
)


def _checksum(run_id: int, state: bytes, records: int) -> str:
    return hashlib.sha256(b"%d\n%d\n%s" % (run_id, records, state)).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SqliteSink(SinkBase):
    """Upserts records into ``learner_results`` of an SQLite database (``.sqlite``, ``.sqlite3``, ``.db``)."""

    format = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: sqlite3.Connection | None = None
        self._run_id = 0

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
                cursor = db.execute(
                    "INSERT INTO export_runs (started_at, status) VALUES (?, 'running')", (_now(),)
                )
                assert cursor.lastrowid is not None
                self._run_id = cursor.lastrowid
            else:
                self._run_id, state, self.records_written = saved
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

    def identities(self) -> Iterator[str]:
        """Identities of the rows this run has committed (previous runs' rows are not included)."""
        self._require_open()
        assert self._db is not None
        cursor = self._db.execute("SELECT identity FROM learner_results WHERE run_id = ?", (self._run_id,))
        return (identity for (identity,) in cursor)

    def write(self, records: Sequence[LearnerResult]) -> None:
        """Upsert a batch inside the transaction the next checkpoint commits."""
        self._require_open()
        if not records:
            return
        run_id = self._run_id
        rows = [
            (record.identity, *values.values(), run_id)
            for record, values in zip(records, msgspec.to_builtins(records), strict=True)
        ]
        with self._translate("write to"):
            assert self._db is not None
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_UPSERT, rows)
        self.records_written += len(records)

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
        """Commit the rest, mark the run ``complete`` and drop its checkpoint, in one transaction."""
        self._require_open()
        with self._translate("finish"):
            db = self._db
            assert db is not None
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
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
        present = {row[1] for row in db.execute("PRAGMA table_info(learner_results)")}
        for column in COLUMNS:
            if column.name not in present:
                # A field added to LearnerResult since the database was made; older rows have NULL.
                db.execute(f"ALTER TABLE learner_results ADD COLUMN {_column_sql(column)}")

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
            (rows,) = db.execute(
                "SELECT count(*) FROM learner_results WHERE run_id = ?", (run_id,)
            ).fetchone()
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
        # Parsed records are int64 by construction (LearnerResult's constraints); a record built by
        # hand with a bigger integer still fails typed.
        raise SinkError(f"{message}: an integer does not fit SQLite's 64 bits") from None

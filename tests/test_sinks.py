"""Sinks: every format round-trips, resumes exactly after a crash, never publishes an incomplete export."""

from __future__ import annotations

import base64
import csv
import gc
import logging
import signal
import sqlite3
import subprocess
import sys
import types
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ispring_async.sinks
from ispring_async._exceptions import ConfigurationError
from ispring_async._models import LearnerResult
from ispring_async.sinks import (
    CsvSink,
    JsonlSink,
    ParquetSink,
    Sink,
    SinkError,
    SqliteSink,
    _files,
    format_for_path,
    open_sink,
)
from tests._helpers import API_NAMES, EXTENSIONS, FORMATS, make_records, read_output

ROOT = Path(__file__).resolve().parents[1]
FILE_FORMATS = [pytest.param(name, id=name) for name in ("jsonl", "csv", "parquet")]


def export(path: Path, pages: Sequence[Sequence[LearnerResult]], *, resume: bool = False) -> bytes | None:
    """A complete run: one write and one checkpoint per page, then finish; returns open()'s result."""
    with open_sink(path) as sink:
        state = sink.open(resume=resume)
        for number, page in enumerate(pages):
            sink.write(page)
            sink.checkpoint(b"page %d" % number)
        sink.finish()
    return state


def pages_of(records: Sequence[LearnerResult], size: int) -> list[Sequence[LearnerResult]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def write_then_crash(
    path: Path, checkpointed: Sequence[LearnerResult], lost: Sequence[LearnerResult]
) -> None:
    """Write and checkpoint, write more, then drop the sink as a crash would: no finish, no abort."""
    sink = open_sink(path)
    sink.open(resume=False)
    for number, page in enumerate(pages_of(checkpointed, 100)):
        sink.write(page)
        sink.checkpoint(b"page %d" % number)
    sink.write(lost)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed file is the point
        del sink
        gc.collect()  # sqlite3 connections sit in a reference cycle (their statement cache)


def run_status(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT status, records FROM export_runs ORDER BY run_id").fetchall()
    finally:
        db.close()


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("count", [pytest.param(0, id="empty"), pytest.param(250, id="250")])
def test_round_trip_gives_the_records_under_api_names(tmp_path: Path, fmt: str, count: int) -> None:
    """Pages written then finished read back as the same records, in order, with the API's column names."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    records = make_records(count)
    assert export(path, pages_of(records, 100)) is None
    columns, back = read_output(path, fmt)
    assert columns == API_NAMES
    assert back == records
    if fmt == "sqlite":
        assert run_status(path) == [("complete", count)]
    else:
        assert leftovers(path) == []


def _check_jsonl(path: Path) -> None:
    first, second = path.read_bytes().splitlines()[:2]
    assert b'"isOverdue":false' in first
    assert b'"isOverdue":true' in second
    assert b'"accessDate":"2024-03-01T08:30:00Z"' in first
    assert b'"sessionId":null' in first
    assert b'"accessDate":"2024-03-01T11:31:00.007919+03:00"' in second


def _check_csv(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [rows[0]["isOverdue"], rows[1]["isOverdue"]] == ["false", "true"]
    assert rows[0]["sessionId"] == ""
    assert rows[0]["accessDate"] == "2024-03-01T08:30:00Z"
    assert rows[1]["accessDate"] == "2024-03-01T11:31:00.007919+03:00"


def _check_parquet(path: Path) -> None:
    schema = pq.read_schema(path)
    assert schema.field("accessDate").type == pa.timestamp("us", tz="UTC")
    assert schema.field("isOverdue").type == pa.bool_()
    assert (schema.field("viewsCount").type, schema.field("progress").type) == (pa.int64(), pa.float64())
    assert not schema.field("userId").nullable
    assert schema.field("dueDate").nullable
    # +03:00 stored as the same instant in UTC
    assert pq.read_table(path).column("accessDate")[1].as_py() == datetime(
        2024, 3, 1, 8, 31, 0, 7919, tzinfo=UTC
    )


def _check_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            'SELECT "isOverdue", typeof("isOverdue"), "accessDate", typeof("progress"), "sessionId" '
            "FROM learner_results ORDER BY rowid LIMIT 2"
        ).fetchall()
        names = [row[1] for row in db.execute("PRAGMA table_info(learner_results)")]
    finally:
        db.close()
    assert rows == [
        (0, "integer", "2024-03-01T08:30:00Z", "real", None),
        (1, "integer", "2024-03-01T11:31:00.007919+03:00", "real", "session-1"),
    ]
    assert names == ["identity", *API_NAMES, "run_id"]


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        pytest.param("jsonl", _check_jsonl, id="jsonl"),
        pytest.param("csv", _check_csv, id="csv"),
        pytest.param("parquet", _check_parquet, id="parquet"),
        pytest.param("sqlite", _check_sqlite, id="sqlite"),
    ],
)
def test_values_are_stored_in_each_formats_types(tmp_path: Path, fmt: str, check: Any) -> None:
    """Booleans, datetimes and absent values take each format's agreed representation."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    export(path, [make_records(10)])
    check(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_after_a_crash_continues_from_the_last_checkpoint(tmp_path: Path, fmt: str) -> None:
    """After a crash, resume returns the last state, keeps only checkpointed rows, and finishes exactly."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    records = make_records(350)
    write_then_crash(path, records[:200], records[200:260])
    if fmt == "sqlite":
        assert run_status(path) == [("running", 200)]
    else:
        assert not path.exists()
        with (tmp_path / f".{path.name}.partial").open("ab") as partial:
            partial.write(b'{"userId":"torn')  # a write the crash cut short

    sink = open_sink(path)
    assert sink.open(resume=True) == b"page 1"
    assert sink.records_written == 200
    assert sorted(sink.identities()) == sorted(r.identity for r in records[:200])
    sink.write(records[200:])
    sink.checkpoint(b"page 2")
    sink.finish()

    assert read_output(path, fmt)[1] == records
    if fmt == "sqlite":
        assert run_status(path) == [("complete", 350)]
    else:
        assert leftovers(path) == []


CHILD = """
import os, signal, sys
from pathlib import Path
from ispring_async.sinks import open_sink
from tests._helpers import make_records

records = make_records(8200)
sink = open_sink(Path(sys.argv[1]))
sink.open(resume=False)
sink.write(records[:100])
sink.checkpoint(b"page 0")
sink.write(records[100:200])
sink.checkpoint(b"page 1")
sink.write(records[200:])  # larger than the write buffer: part of it reaches the file
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_after_sigkill_mid_export_is_exact(tmp_path: Path, fmt: str) -> None:
    """A process killed with SIGKILL mid-batch resumes to exactly the uninterrupted output."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    child = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, timeout=30, check=False)
    assert child.returncode == -signal.SIGKILL
    if fmt == "sqlite":
        assert run_status(path) == [("running", 200)]
    else:
        assert not path.exists()
        checkpoint = msgspec.json.decode((tmp_path / f".{path.name}.checkpoint").read_bytes())
        assert (tmp_path / f".{path.name}.partial").stat().st_size > checkpoint["parts"][0]["offset"]

    records = make_records(8200)
    sink = open_sink(path)
    assert sink.open(resume=True) == b"page 1"
    assert set(sink.identities()) == {r.identity for r in records[:200]}
    sink.write(records[200:])
    sink.finish()
    assert read_output(path, fmt)[1] == records


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_run_publishes_nothing_and_stays_resumable(tmp_path: Path, fmt: str) -> None:
    """An exception inside the with block aborts: no output (or a 'failed' run), checkpoint kept."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    records = make_records(150)

    def failing_run() -> None:
        with open_sink(path) as sink:
            sink.open(resume=False)
            sink.write(records[:100])
            sink.checkpoint(b"after 100")
            sink.write(records[100:])
            raise RuntimeError("network gone")

    with pytest.raises(RuntimeError, match="network gone"):
        failing_run()
    if fmt == "sqlite":
        assert run_status(path) == [("failed", 100)]
        # Readers of the table see nothing of an unfinished run; its checkpointed rows wait in pending
        # (the uncheckpointed batch was rolled back).
        assert read_output(path, fmt)[1] == []
        assert pending_rows(path) == 100
    else:
        assert not path.exists()
    assert export(path, [records[100:]], resume=True) == b"after 100"
    assert read_output(path, fmt)[1] == records


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fresh_start_discards_an_unfinished_run(tmp_path: Path, fmt: str) -> None:
    """open(resume=False) ignores an interrupted run's leftovers: the output holds only the new run."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    old, new = make_records(150), make_records(120, start=1000)
    write_then_crash(path, old[:100], old[100:])
    sink = open_sink(path)
    assert sink.open(resume=False) is None
    assert list(sink.identities()) == []
    sink.write(new)
    sink.finish()
    if fmt == "sqlite":
        # the interrupted run's rows never reached the table: only a complete run publishes
        assert run_status(path) == [("failed", 100), ("complete", 120)]
        assert read_output(path, fmt)[1] == new
        assert pending_rows(path) == 0
    else:
        assert read_output(path, fmt)[1] == new
        assert leftovers(path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_with_nothing_to_resume_starts_afresh_and_keeps_the_old_output(
    tmp_path: Path, fmt: str
) -> None:
    """resume=True after a complete run returns None; the complete output stays until finish replaces it."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    first, second = make_records(50), make_records(30, revision=1)
    export(path, [first])
    with open_sink(path) as sink:
        assert sink.open(resume=True) is None
        sink.write(second)
        assert read_output(path, fmt)[1] == first
        sink.abort()
    assert read_output(path, fmt)[1] == first
    assert export(path, [second], resume=True) is None
    expected = second + first[30:] if fmt == "sqlite" else second
    assert read_output(path, fmt)[1] == expected


def test_sqlite_rerun_updates_rows_in_place(tmp_path: Path) -> None:
    """A second night upserts by identity: no duplicates, new values, same rowids, vanished rows kept."""
    path = tmp_path / "out.sqlite"
    export(path, pages_of(make_records(100), 40))
    db = sqlite3.connect(path)
    rowids_before = dict(db.execute("SELECT identity, rowid FROM learner_results").fetchall())
    db.close()
    tonight = make_records(100, start=50, revision=1)
    export(path, pages_of(tonight, 40))

    rows = {r.identity: r for r in read_output(path, "sqlite")[1]}
    assert len(rows) == 150
    assert [rows[r.identity] for r in tonight] == tonight
    assert [rows[r.identity] for r in make_records(50)] == make_records(50)
    db = sqlite3.connect(path)
    try:
        rowids_after = dict(db.execute("SELECT identity, rowid FROM learner_results").fetchall())
        latest = db.execute(
            "SELECT count(*) FROM learner_results WHERE run_id = "
            "(SELECT max(run_id) FROM export_runs WHERE status = 'complete')"
        ).fetchone()
        runs = db.execute(
            "SELECT run_id, status, records, finished_at IS NOT NULL FROM export_runs"
        ).fetchall()
    finally:
        db.close()
    assert all(rowids_after[i] == rowid for i, rowid in rowids_before.items())
    assert latest == (100,)
    assert runs == [(1, "complete", 100, 1), (2, "complete", 100, 1)]


SECRET = "client_secret=s3cr3t-XYZ"


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_checkpoint_file_holds_the_state_and_nothing_of_the_data(tmp_path: Path, fmt: str) -> None:
    """The sidecar holds offset, counts, columns and the given state only; private to its owner."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    records = [msgspec.structs.replace(r, course_title=SECRET) for r in make_records(20)]
    with open_sink(path) as sink:
        sink.open(resume=False)
        sink.write(records)
        sink.checkpoint(b"\x00opaque\xff")
        checkpoint_path = tmp_path / f".{path.name}.checkpoint"
        raw = checkpoint_path.read_bytes()
        mode = checkpoint_path.stat().st_mode & 0o777
    saved = msgspec.json.decode(raw)
    assert set(saved) == {"version", "format", "records", "parts", "state", "publishing", "checksum"}
    (part,) = saved["parts"]
    assert set(part) == {"dataset", "columns", "offset", "records", "data_crc32"}
    assert base64.b64decode(saved["state"]) == b"\x00opaque\xff"
    assert (saved["format"], part["columns"], saved["records"], part["records"]) == (fmt, API_NAMES, 20, 20)
    assert (part["dataset"], saved["publishing"]) == ("results", False)
    assert SECRET.encode() not in raw
    assert b"s3cr3t" not in raw
    assert mode == 0o600


def test_the_sqlite_checkpoint_row_holds_the_state_only(tmp_path: Path) -> None:
    """export_checkpoint stores the given state, the record count, a time and a checksum, nothing else."""
    path = tmp_path / "out.sqlite"
    with open_sink(path) as sink:
        sink.open(resume=False)
        sink.write(make_records(20))
        sink.checkpoint(b"\x00opaque\xff")
        db = sqlite3.connect(path)
        try:
            cursor = db.execute("SELECT * FROM export_checkpoint")
            columns = [d[0] for d in cursor.description]
            ((run_id, state, records, _saved_at, _checksum),) = cursor.fetchall()
        finally:
            db.close()
    assert columns == ["run_id", "state", "records", "saved_at", "checksum"]
    assert (run_id, state, records) == (1, b"\x00opaque\xff", 20)


def pending_rows(path: Path) -> int:
    """Rows waiting in ``pending_learner_results`` of an SQLite output (an unfinished run's)."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM pending_learner_results").fetchone()[0])
    finally:
        db.close()


def _reseal(checkpoint: Path, **changes: Any) -> None:
    """Change fields of a checkpoint's part and give it a matching checksum: damage only the bounds catch."""
    saved = msgspec.json.decode(checkpoint.read_bytes(), type=_files._Checkpoint)
    top = {k: changes.pop(k) for k in list(changes) if k == "records"}
    (part,) = saved.parts
    changed = msgspec.structs.replace(saved, parts=[msgspec.structs.replace(part, **changes)], **top)
    checkpoint.write_bytes(
        msgspec.json.encode(msgspec.structs.replace(changed, checksum=_files._digest(changed)))
    )


def _flip_bit(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x04
    path.write_bytes(bytes(data))


def _damage(damage: str, checkpoint: Path, partial: Path) -> None:
    saved = msgspec.json.decode(checkpoint.read_bytes())["parts"][0]
    if damage == "unreadable":
        checkpoint.write_bytes(b'{"version": 2, "form')
    elif damage == "other-columns":
        _reseal(checkpoint, columns=[*saved["columns"], "newField"])
    elif damage == "short-partial":
        partial.write_bytes(partial.read_bytes()[:100])
    elif damage == "flipped-bit-in-partial":
        _flip_bit(partial, saved["offset"] // 2)
    elif damage == "flipped-bit-in-state":
        raw = checkpoint.read_bytes()
        _flip_bit(checkpoint, raw.index(b'"state":"') + 12)
    elif damage == "records-edited":
        whole = msgspec.json.decode(checkpoint.read_bytes())
        checkpoint.write_bytes(msgspec.json.encode({**whole, "records": -5}))
    elif damage == "records-negative-resealed":
        _reseal(checkpoint, records=-5)
    elif damage == "offset-negative-resealed":
        _reseal(checkpoint, offset=-1)
    elif damage == "offset-mid-line-resealed":
        _reseal(checkpoint, offset=saved["offset"] - 7)
    elif damage == "old-version":
        checkpoint.write_bytes(msgspec.json.encode({**saved, "version": 1}))
    else:
        raise AssertionError(damage)


DAMAGES = [
    pytest.param(name, id=name)
    for name in (
        "unreadable",
        "other-columns",
        "short-partial",
        "flipped-bit-in-partial",
        "flipped-bit-in-state",
        "records-edited",
        "records-negative-resealed",
        "offset-negative-resealed",
        "offset-mid-line-resealed",
        "old-version",
    )
]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_an_unusable_checkpoint_means_starting_afresh(
    tmp_path: Path, fmt: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged leftover is never trusted: resume returns None, logs what is wrong, the output is exact."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    write_then_crash(path, make_records(100), [])
    _damage(damage, tmp_path / f".{path.name}.checkpoint", tmp_path / f".{path.name}.partial")
    fresh = make_records(10, start=500)
    with caplog.at_level(logging.WARNING, logger="ispring_async.sinks"):
        assert export(path, [fresh], resume=True) is None
    assert "starting afresh" in caplog.text
    assert read_output(path, fmt)[1] == fresh


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("UPDATE export_checkpoint SET records = -5", id="records-negative"),
        pytest.param("UPDATE export_checkpoint SET records = records + 1", id="records-off-by-one"),
        pytest.param("UPDATE export_checkpoint SET state = x'00ff'", id="state-corrupted"),
        pytest.param("UPDATE export_checkpoint SET checksum = NULL", id="no-checksum"),
        pytest.param("DELETE FROM pending_learner_results WHERE rowid % 10 = 0", id="rows-missing"),
    ],
)
def test_an_unusable_sqlite_checkpoint_means_starting_afresh(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged SQLite checkpoint row is never resumed: a logged fresh start, and the counts are right."""
    path = tmp_path / "out.sqlite"
    write_then_crash(path, make_records(100), [])
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(damage)
    finally:
        db.close()
    fresh = make_records(10, start=500)
    with caplog.at_level(logging.WARNING, logger="ispring_async.sinks"):
        assert export(path, [fresh], resume=True) is None
    assert "starting afresh" in caplog.text
    assert run_status(path)[-1] == ("complete", 10)


def test_an_intact_checkpoint_still_resumes(tmp_path: Path) -> None:
    """The checks accept what they should: an undamaged leftover of every file format resumes."""
    for fmt in ("jsonl", "csv", "parquet"):
        path = tmp_path / f"out.{EXTENSIONS[fmt]}"
        records = make_records(120)
        write_then_crash(path, records[:100], records[100:110])
        assert export(path, [records[100:]], resume=True) == b"page 0"
        assert read_output(path, fmt)[1] == records


@pytest.mark.parametrize("fmt", FORMATS)
def test_int64_bounds_are_stored_exactly_in_every_format(tmp_path: Path, fmt: str) -> None:
    """The largest and smallest int64 values the parser accepts are stored and read back exactly."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    base = make_records(2)
    records = [
        msgspec.structs.replace(base[0], duration=2**63 - 1, time_spent=-(2**63), views_count=0),
        msgspec.structs.replace(base[1], duration=-(2**63), time_spent=2**63 - 1, progress=-1.5e308),
    ]
    export(path, [records])
    assert read_output(path, fmt)[1] == records


@pytest.mark.parametrize("fmt", [pytest.param("sqlite", id="sqlite"), pytest.param("parquet", id="parquet")])
def test_a_hand_built_integer_beyond_int64_is_a_sink_error(tmp_path: Path, fmt: str) -> None:
    """A hand-built record (not parsed) with an integer past int64 fails as SinkError, not OverflowError."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    record = msgspec.structs.replace(make_records(1)[0], duration=2**63)
    with pytest.raises(SinkError, match=r"64|Parquet"):
        export(path, [[record]])
    assert not path.exists() or fmt == "sqlite"


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_second_export_to_the_same_path_is_refused(tmp_path: Path, fmt: str) -> None:
    """While one run writes a file, another run for the same path fails instead of interleaving."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    with open_sink(path) as first:
        first.open(resume=False)
        with pytest.raises(SinkError, match="another export"):
            open_sink(path).open(resume=False)
        first.finish()
    export(path, [make_records(3)])  # the lock went with the first run


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_sink_is_used_in_order(tmp_path: Path, fmt: str) -> None:
    """write before open, a second open, and write after finish raise SinkError."""
    sink = open_sink(tmp_path / f"out.{EXTENSIONS[fmt]}")
    with pytest.raises(SinkError, match="not open"):
        sink.write(make_records(1))
    sink.open(resume=False)
    with pytest.raises(SinkError, match="already opened"):
        sink.open(resume=False)
    sink.finish()
    with pytest.raises(SinkError, match="not open"):
        sink.checkpoint(b"")
    sink.abort()  # harmless once finished


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("r.jsonl", JsonlSink, id="jsonl"),
        pytest.param("r.NDJSON", JsonlSink, id="ndjson-upper"),
        pytest.param("r.csv", CsvSink, id="csv"),
        pytest.param("r.parquet", ParquetSink, id="parquet"),
        pytest.param("r.sqlite", SqliteSink, id="sqlite"),
        pytest.param("r.sqlite3", SqliteSink, id="sqlite3"),
        pytest.param("r.db", SqliteSink, id="db"),
    ],
)
def test_the_format_follows_the_extension(tmp_path: Path, name: str, expected: type[object]) -> None:
    """open_sink picks the sink from the extension, case-insensitively."""
    sink = open_sink(tmp_path / name)
    assert type(sink) is expected
    assert format_for_path(name) == sink.format


def test_an_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    """format= wins over the extension and accepts any case."""
    assert type(open_sink(tmp_path / "nightly.out", format="CSV")) is CsvSink
    assert type(open_sink(tmp_path / "r.csv", format="jsonl")) is JsonlSink


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        pytest.param("r.txt", None, "cannot tell the output format from '.txt'", id="unknown-extension"),
        pytest.param("results", None, "no extension", id="no-extension"),
        pytest.param("r.csv", "xlsx", "unknown output format 'xlsx'", id="unknown-format"),
    ],
)
def test_an_unknown_format_is_a_configuration_error(
    tmp_path: Path, name: str, fmt: str | None, message: str
) -> None:
    """An unrecognised extension or format fails before anything is written, naming the choices."""
    with pytest.raises(ConfigurationError, match=message) as info:
        open_sink(tmp_path / name, format=fmt)
    assert "jsonl" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyarrow, asking for Parquet says which extra to install; other formats still work."""
    for module in ("pyarrow", "pyarrow.json", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigurationError, match=r"pip install 'ispring-async\[parquet\]'"):
        open_sink(tmp_path / "r.parquet")
    export(tmp_path / "r.jsonl", [make_records(2)])


def test_every_sink_satisfies_the_protocol(tmp_path: Path) -> None:
    """Each sink class is a Sink (checked by mypy here) with its format's name."""
    sinks: list[Sink] = [
        JsonlSink(tmp_path / "a"),
        CsvSink(tmp_path / "a"),
        ParquetSink(tmp_path / "a"),
        SqliteSink(tmp_path / "a"),
    ]
    assert [s.format for s in sinks] == ["jsonl", "csv", "parquet", "sqlite"]


def test_the_public_names_are_complete() -> None:
    """sinks.__all__ lists every public name of the package once, and each resolves (ruff sorts it)."""
    names = ispring_async.sinks.__all__
    public = {
        name
        for name, value in vars(ispring_async.sinks).items()
        if name[0].isalpha() and name != "annotations" and not isinstance(value, types.ModuleType)
    }
    assert len(names) == len(set(names))
    assert public <= set(names)
    assert all(getattr(ispring_async.sinks, name) is not None for name in names)

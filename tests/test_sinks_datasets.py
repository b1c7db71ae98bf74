"""Sinks writing several datasets: one table each in SQLite, one file each in a folder, one checkpoint.

Nested fields are exercised with a struct of this module (a person with roles, tags and a boss), so
the JSON columns and derived columns are pinned whatever the record structs of the API hold.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from ispring_async._exceptions import ConfigurationError
from ispring_async.emulator import EmulatorConfig, serve_in_thread
from ispring_async.sinks import (
    MODULE_RESULTS,
    RESULTS,
    USERS,
    Dataset,
    SinkError,
    open_sink,
)
from tests._datasets import PEOPLE, make_people, read_dataset
from tests._helpers import make_records

ROOT = Path(__file__).resolve().parents[1]
FILE_FORMATS = ["jsonl", "csv", "parquet"]


def output_path(tmp_path: Path, fmt: str) -> Path:
    """A folder for the file formats, a database for SQLite."""
    return tmp_path / ("out.sqlite" if fmt == "sqlite" else "out")


def test_columns_of_a_nested_struct_are_json_and_derived_ones_follow() -> None:
    """Scalars keep their kinds; tuples, structs and optional structs are JSON; derived columns come last."""
    assert [(c.name, c.kind, c.nullable) for c in PEOPLE.columns] == [
        ("personId", "str", False),
        ("name", "str", False),
        ("joined", "datetime", False),
        ("roles", "json", False),
        ("tags", "json", False),
        ("boss", "json", True),
        ("score", "float", True),
        ("firstRole", "str", True),
    ]
    assert RESULTS.flat
    assert not PEOPLE.flat


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "sqlite"])
def test_two_datasets_round_trip_through_one_sink(tmp_path: Path, fmt: str) -> None:
    """Interleaved batches of two datasets, one checkpoint each time: each reads back exactly."""
    path = output_path(tmp_path, fmt)
    people, results = make_people(30), make_records(40)
    with open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS]) as sink:
        assert sink.open(resume=False) is None
        for i in range(0, 30, 10):
            sink.write(people[i : i + 10], "people")
            sink.write(results[i : i + 10])
            sink.checkpoint(b"%d" % i)
        sink.write(results[30:])
        sink.checkpoint(b"last")
        assert sink.counts() == {"people": 30, "results": 40}
        assert sink.records_written == 70
        sink.finish()
    assert read_dataset(path, fmt, PEOPLE) == people
    assert read_dataset(path, fmt, RESULTS) == results
    if fmt != "sqlite":
        assert sorted(p.name for p in path.iterdir()) == sorted([f"people.{fmt}", f"results.{fmt}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the lock went with the run


@pytest.mark.parametrize("fmt", ["csv", "sqlite", "parquet"])
def test_nested_values_are_json_text_and_derived_columns_are_plain(tmp_path: Path, fmt: str) -> None:
    """In the flat formats a nested field is its JSON text (API names), beside the derived column."""
    path = output_path(tmp_path, fmt)
    (person,) = make_people(1, start=2)
    with open_sink(path, format=fmt, datasets=[PEOPLE]) as sink:
        sink.open(resume=False)
        sink.write([person], "people")
        sink.finish()
    if fmt == "sqlite":
        db = sqlite3.connect(path)
        try:
            roles, first = db.execute('SELECT roles, "firstRole" FROM people').fetchone()
            # The JSON is queryable in SQL, so reports can reach into it.
            (manageable,) = db.execute(
                "SELECT json_extract(roles, '$[1].manageableIds[0]') FROM people"
            ).fetchone()
        finally:
            db.close()
        assert manageable == "d,1"
    elif fmt == "csv":
        import csv

        with (path / "people.csv").open(newline="", encoding="utf-8") as file:
            row = next(csv.DictReader(file))
        roles, first = row["roles"], row["firstRole"]
    else:
        import pyarrow.parquet as pq

        row = pq.read_table(path / "people.parquet").to_pylist()[0]
        roles, first = row["roles"], row["firstRole"]
    assert json.loads(roles) == [
        {"roleId": "r-2-0", "manageableIds": ["d,1", 'd"0']},
        {"roleId": "r-2-1", "manageableIds": ["d,1", 'd"1']},
    ]
    assert first == "r-2-0"


def test_jsonl_keeps_nested_values_nested(tmp_path: Path) -> None:
    """JSON Lines holds the struct as msgspec encodes it: nested lists and objects, no derived columns."""
    path = tmp_path / "people.jsonl"
    people = make_people(3, start=1)
    with open_sink(path, datasets=[PEOPLE]) as sink:
        sink.open(resume=False)
        sink.write(people, "people")
        sink.finish()
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert lines[0]["roles"] == [{"roleId": "r-1-0", "manageableIds": ["d,1", 'd"0']}]
    assert "firstRole" not in lines[0]


@pytest.mark.parametrize(
    ("path", "datasets", "message"),
    [
        pytest.param("out.jsonl", [PEOPLE, RESULTS], "cannot go into the one file", id="two-into-one-file"),
        pytest.param("out.sqlite", [RESULTS, RESULTS], "distinct datasets", id="twice-the-same"),
        pytest.param("out.sqlite", [], "one or more", id="none"),
    ],
)
def test_a_sink_refuses_datasets_it_cannot_hold(path: str, datasets: list[Dataset], message: str) -> None:
    """Several datasets into one file, a dataset twice, or none: ConfigurationError before any file."""
    with pytest.raises(ConfigurationError, match=message):
        open_sink(path, datasets=datasets)


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "sqlite"])
def test_a_dataset_the_sink_does_not_write_is_refused(tmp_path: Path, fmt: str) -> None:
    """Writing or reading back a dataset the sink was not made for is a SinkError, not a silent table."""
    with open_sink(output_path(tmp_path, fmt), format=fmt, datasets=[RESULTS]) as sink:
        sink.open(resume=False)
        with pytest.raises(SinkError, match="does not write the dataset 'people'"):
            sink.write(make_people(1), "people")
        with pytest.raises(SinkError, match="does not write the dataset 'people'"):
            list(sink.identities("people"))


CRASH_MID_RUN = """
import os, signal, sys
from pathlib import Path
from ispring_async.sinks import RESULTS, open_sink
from tests._datasets import PEOPLE, make_people
from tests._helpers import make_records

sink = open_sink(Path(sys.argv[1]), format=sys.argv[2], datasets=[PEOPLE, RESULTS])
sink.open(resume=False)
sink.write(make_people(50), "people")
sink.checkpoint(b"people done")
sink.write(make_records(100))
sink.checkpoint(b"results page 1")
sink.write(make_records(5000, start=100))  # larger than the write buffer: part of it reaches the file
sink.write(make_people(5, start=50), "people")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "sqlite"])
def test_sigkill_mid_run_resumes_every_dataset_to_its_checkpoint(tmp_path: Path, fmt: str) -> None:
    """A process killed mid-batch: each dataset resumes to exactly what the one checkpoint covers."""
    path = output_path(tmp_path, fmt)
    child = subprocess.run(
        [sys.executable, "-c", CRASH_MID_RUN, str(path), fmt], cwd=ROOT, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    with open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS]) as sink:
        assert sink.open(resume=True) == b"results page 1"
        assert sink.counts() == {"people": 50, "results": 100}
        assert set(sink.identities("people")) == {p.person_id for p in make_people(50)}
        assert set(sink.identities()) == {r.identity for r in make_records(100)}
        sink.write(make_records(20, start=100))
        sink.checkpoint(b"results page 2")
        sink.finish()
    assert read_dataset(path, fmt, PEOPLE) == make_people(50)
    assert read_dataset(path, fmt, RESULTS) == make_records(120)


CRASH_PUBLISHING = """
import os, signal, sys
from pathlib import Path
from ispring_async.sinks import RESULTS, open_sink
from tests._datasets import PEOPLE, make_people
from tests._helpers import make_records

sink = open_sink(Path(sys.argv[1]), format=sys.argv[2], datasets=[PEOPLE, RESULTS])
sink.open(resume=False)
sink.write(make_people(20), "people")
sink.write(make_records(30))
sink.checkpoint(b"all done")
replace = os.replace


def replace_then_die(source, target):
    replace(source, target)
    if Path(target).name.startswith("people."):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between publishing one dataset and the next


os.replace = replace_then_die
sink.finish()
"""


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_sigkill_between_two_publishes_finishes_publishing_on_resume(tmp_path: Path, fmt: str) -> None:
    """Killed after one file of the run was published: --resume publishes the rest, nothing rewritten."""
    path = output_path(tmp_path, fmt)
    child = subprocess.run(
        [sys.executable, "-c", CRASH_PUBLISHING, str(path), fmt], cwd=ROOT, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert (path / f"people.{fmt}").exists()
    assert not (path / f"results.{fmt}").exists()
    saved = json.loads((path / ".export.checkpoint").read_bytes())
    assert saved["publishing"] is True
    assert base64.b64decode(saved["state"]) == b"all done"
    published = (path / f"people.{fmt}").stat()
    with open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS]) as sink:
        assert sink.open(resume=True) == b"all done"
        assert sink.counts() == {"people": 20, "results": 30}
        with pytest.raises(SinkError, match="publishing"):
            sink.write(make_records(1))
        sink.finish()
    if fmt != "parquet":
        # Published once, not again. (Parquet's kill landed after its rename and before the spool was
        # removed, so the spool was converted again: the same rows, a new file.)
        assert (path / f"people.{fmt}").stat().st_ino == published.st_ino
    assert read_dataset(path, fmt, PEOPLE) == make_people(20)
    assert read_dataset(path, fmt, RESULTS) == make_records(30)
    assert sorted(p.name for p in path.iterdir()) == sorted([f"people.{fmt}", f"results.{fmt}"])


def write_then_crash(path: Path, fmt: str) -> None:
    """A run of two datasets that checkpointed, then left its block without finishing (aborted)."""
    sink = open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS])
    with sink:
        sink.open(resume=False)
        sink.write(make_people(20), "people")
        sink.write(make_records(30))
        sink.checkpoint(b"state")


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", FILE_FORMATS)
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("flipped-bit-in-second-partial", id="flipped-bit"),
        pytest.param("second-partial-missing", id="partial-missing"),
        pytest.param("published-file-missing", id="published-missing"),
    ],
)
def test_a_damaged_part_means_starting_afresh(
    tmp_path: Path, fmt: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Any part of the folder that does not verify: logged, and the run starts afresh with every dataset."""
    path = output_path(tmp_path, fmt)
    write_then_crash(path, fmt)
    partial = path / f".results.{fmt}.partial"
    if damage == "flipped-bit-in-second-partial":
        _flip(partial, partial.stat().st_size // 2)
    elif damage == "second-partial-missing":
        partial.unlink()
    else:
        # A run killed while publishing whose published file was then removed by hand.
        checkpoint = path / ".export.checkpoint"
        saved = json.loads(checkpoint.read_bytes())
        from ispring_async.sinks import _files

        decoded = msgspec.json.decode(checkpoint.read_bytes(), type=_files._Checkpoint)
        sealed = msgspec.structs.replace(decoded, publishing=True)
        sealed = msgspec.structs.replace(sealed, checksum=_files._digest(sealed))
        checkpoint.write_bytes(msgspec.json.encode(sealed))
        assert saved["publishing"] is False
        (path / f".people.{fmt}.partial").unlink()
    sink = open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS])
    with caplog.at_level(logging.WARNING, logger="ispring_async.sinks"), sink:
        assert sink.open(resume=True) is None
        assert sink.counts() == {"people": 0, "results": 0}
        sink.write(make_records(3))
        sink.finish()
    assert "starting afresh" in caplog.text
    assert read_dataset(path, fmt, PEOPLE) == []
    assert read_dataset(path, fmt, RESULTS) == make_records(3)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_folder_checkpoint_of_other_datasets_is_refused_and_kept(tmp_path: Path, fmt: str) -> None:
    """Resuming a folder with other datasets than its checkpoint's: ConfigurationError, checkpoint kept."""
    path = output_path(tmp_path, fmt)
    write_then_crash(path, fmt)
    other = open_sink(path, format=fmt, datasets=[RESULTS])
    with pytest.raises(ConfigurationError, match="covers the datasets people,results, not results"), other:
        other.open(resume=True)
    with open_sink(path, format=fmt, datasets=[PEOPLE, RESULTS]) as sink:
        assert sink.open(resume=True) == b"state"
        sink.finish()
    assert read_dataset(path, fmt, PEOPLE) == make_people(20)


@pytest.mark.parametrize("fmt", [*FILE_FORMATS, "sqlite"])
def test_the_apis_users_and_module_results_round_trip_through_every_format(tmp_path: Path, fmt: str) -> None:
    """The emulator's users (nested fields, roles, leave dates) and module results read back exactly."""
    with serve_in_thread(EmulatorConfig(results=300, seed=4)) as emulator:
        users, modules = emulator.expected_users(), emulator.expected_module_results()
    assert users
    assert modules
    assert any(u.user_roles for u in users)
    path = output_path(tmp_path, fmt)
    with open_sink(path, format=fmt, datasets=[USERS, MODULE_RESULTS]) as sink:
        sink.open(resume=False)
        sink.write(users, "users")
        sink.write(modules, "module-results")
        sink.checkpoint(b"")
        assert set(sink.identities("users")) == {u.user_id for u in users}
        assert set(sink.identities("module-results")) == {m.identity for m in modules}
        sink.finish()
    assert read_dataset(path, fmt, USERS) == users
    assert read_dataset(path, fmt, MODULE_RESULTS) == modules
    if fmt == "sqlite":
        db = sqlite3.connect(path)
        try:
            names = db.execute('SELECT "userId", login, email, "firstName", "lastName" FROM users').fetchall()
        finally:
            db.close()
        assert names == [(u.user_id, u.login, u.email, u.first_name, u.last_name) for u in users]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_folder_and_one_of_its_files_are_one_output_to_the_lock(tmp_path: Path, fmt: str) -> None:
    """An export into out/ and another into out/results.<ext> exclude each other, in either order."""
    folder, alone = tmp_path / "out", tmp_path / "out" / f"results.{fmt}"
    with open_sink(folder, format=fmt, datasets=[PEOPLE, RESULTS]) as sink:
        sink.open(resume=False)
        with pytest.raises(SinkError, match="another export"), open_sink(alone) as other:
            other.open(resume=False)
        sink.write(make_records(2))
        sink.checkpoint(b"")
        sink.finish()
    with open_sink(alone) as sink:
        sink.open(resume=False)
        with (
            pytest.raises(SinkError, match="another export"),
            open_sink(folder, format=fmt, datasets=[RESULTS]) as other,
        ):
            other.open(resume=False)
        sink.write(make_records(3))
        sink.finish()
    assert read_dataset(alone, fmt, RESULTS) == make_records(3)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"people.{fmt}", f"results.{fmt}"])

"""``ispring-async export --include``: several datasets in one run, against the emulator.

Real HTTP, real files, real SQLite; each dataset read back with its format's own tools and compared
with the emulator's ground truth.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ispring_async._app.cli import main
from ispring_async._app.export import ExitCode, RunState
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, serve_in_thread
from ispring_async.sinks import DATASETS, DEPARTMENTS, RESULTS, Dataset
from tests._datasets import read_dataset

SECRET = "distinctive-Secret-81c0e5d7-DO-NOT-LEAK"
ACTIVE_AND_BLOCKED = [("userStatuses[]", "1"), ("userStatuses[]", "3")]
FAST = ["--page-size", "100", "--retry-attempts", "3", "--retry-max-wait", "0", "--progress", "off"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One fault-free emulator for the module (1500 results, 40 departments)."""
    with serve_in_thread(EmulatorConfig(results=1500, seed=5, client_secret=SECRET)) as emulator:
        yield emulator


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's credentials in the environment, nothing else of ours."""
    for key in ("ISPRING_BASE_URL", "ISPRING_TOKEN", "ISPRING_INCLUDE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", SECRET)


def export(base_url: str, output: Path, *extra: str) -> int:
    """Run ``ispring-async export`` in-process; returns the exit status."""
    return main(["export", "--base-url", base_url, "--output", str(output), *FAST, *extra])


def output_for(tmp_path: Path, fmt: str) -> tuple[Path, list[str]]:
    """Where a multi-dataset export in ``fmt`` goes, and the options that say so."""
    if fmt == "sqlite":
        return tmp_path / "nightly.sqlite", []
    return tmp_path / "out", ["--format", fmt]


def assert_exactly(dataset: Dataset, records: list[Any], expected: list[Any]) -> None:
    """``records`` are exactly ``expected`` (values included): the same rows, each once."""
    identities = [dataset.identity(r) for r in records]
    assert len(identities) == len(set(identities)), f"duplicated {dataset.name}"
    assert {dataset.identity(r): r for r in records} == {dataset.identity(r): r for r in expected}


def truth(emu: Emulator) -> dict[str, list[Any]]:
    """The emulator's ground truth of each dataset an export of active and blocked users holds."""
    return {
        "departments": emu.departments(),
        "users": emu.expected_users(),  # every user: the endpoint has no status filter
        "results": emu.expected_results(ACTIVE_AND_BLOCKED),
        "module-results": emu.expected_module_results(ACTIVE_AND_BLOCKED),
    }


ALL = "results,module-results,users,departments"


def run_state(output: Path, fmt: str) -> RunState | None:
    """The RunState of the output's checkpoint (``None`` when there is none)."""
    if fmt == "sqlite":
        db = sqlite3.connect(output)
        try:
            row = db.execute("SELECT state FROM export_checkpoint").fetchone()
        finally:
            db.close()
        return None if row is None else msgspec.json.decode(row[0], type=RunState)
    try:
        raw = (output / ".export.checkpoint").read_bytes()
    except FileNotFoundError:
        return None
    return msgspec.json.decode(base64.b64decode(msgspec.json.decode(raw)["state"]), type=RunState)


# -- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [
        pytest.param("jsonl", [], id="jsonl"),
        pytest.param("csv", ["--response-format", "json"], id="csv-json-api"),
        pytest.param("parquet", ["--split", "window"], id="parquet-window"),
        pytest.param(
            "sqlite", ["--split", "department", "--page-size", "7"], id="sqlite-department-pages-of-7"
        ),
    ],
)
def test_each_format_holds_every_dataset_exactly(
    emu: Emulator, creds: None, tmp_path: Path, fmt: str, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--include of all four datasets: each one in each format is exactly the emulator's ground truth."""
    output, options = output_for(tmp_path, fmt)
    assert export(emu.base_url, output, "--include", ALL, *options, *extra) == ExitCode.OK
    expected = truth(emu)
    for dataset in DATASETS:
        assert_exactly(dataset, read_dataset(output, fmt, dataset), expected[dataset.name])
    if fmt == "sqlite":
        assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]
    else:
        # One file per dataset and nothing else: no partial file, checkpoint or lock left anywhere.
        assert sorted(p.name for p in output.iterdir()) == sorted(f"{d.name}.{fmt}" for d in DATASETS)
        assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]
    out = capsys.readouterr().out
    total = sum(len(v) for v in expected.values())
    assert f"export complete: {total:,} records" in out
    for name, records in expected.items():
        assert f"  {name + ':':<19} {len(records):,}\n" in out


def test_sqlite_tables_hold_only_complete_runs_while_a_run_fails_and_resumes(
    tmp_path: Path, creds: None
) -> None:
    """Readers of the dataset tables see the last complete run only; a failed run waits in pending_."""
    config = EmulatorConfig(
        results=1200,
        seed=9,
        client_secret=SECRET,
        faults=Faults(script={("results", 16): Fault.SERVER_ERROR}),
    )
    output = tmp_path / "nightly.sqlite"
    args = ["--include", "departments,results", "--split", "none", "--retry-attempts", "1"]
    with serve_in_thread(config) as emulator:
        assert export(emulator.base_url, output, *args) == ExitCode.OK  # a complete night
        first_night = emulator.stats.requests["results"]
        expected = truth(emulator)
        assert export(emulator.base_url, output, *args) == ExitCode.API  # fails at results request 16
        db = sqlite3.connect(output)
        try:
            runs = db.execute("SELECT run_id, status FROM export_runs ORDER BY run_id").fetchall()
            tables = {
                table: db.execute(f"SELECT run_id, count(*) FROM {table} GROUP BY run_id").fetchall()
                for table in (
                    "learner_results",
                    "departments",
                    "pending_learner_results",
                    "pending_departments",
                )
            }
        finally:
            db.close()
        assert runs == [(1, "complete"), (2, "failed")]
        assert tables["learner_results"] == [(1, len(expected["results"]))]
        assert tables["departments"] == [(1, len(expected["departments"]))]
        assert tables["pending_departments"] == [(2, len(expected["departments"]))]
        # Pages of 100 the second night got before the failure (those it got to write), and their state.
        ((run, pending),) = tables["pending_learner_results"]
        assert run == 2
        assert 100 <= pending <= (16 - first_night - 1) * 100
        assert pending % 100 == 0
        state = run_state(output, "sqlite")
        assert state is not None
        assert (state.include, state.done) == (["departments", "results"], ["departments"])
        departments_before = emulator.stats.requests["departments"]
        assert export(emulator.base_url, output, *args, "--resume") == ExitCode.OK
        # Departments were done: the resume fetched none of them again.
        assert emulator.stats.requests["departments"] == departments_before
    for dataset in (RESULTS, DEPARTMENTS):
        assert_exactly(dataset, read_dataset(output, "sqlite", dataset), expected[dataset.name])
        assert read_dataset(output, "sqlite", dataset, table=f"pending_{dataset.table}") == []
    db = sqlite3.connect(output)
    try:
        assert db.execute("SELECT DISTINCT run_id FROM learner_results").fetchall() == [(2,)]
    finally:
        db.close()


@pytest.mark.parametrize(
    "fmt", [pytest.param("jsonl", id="jsonl-folder"), pytest.param("sqlite", id="sqlite")]
)
def test_resume_with_other_datasets_is_refused_and_the_checkpoint_kept(
    tmp_path: Path, creds: None, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint pins its datasets: --resume with others exits 2, and the right ones still resume."""
    config = EmulatorConfig(
        results=800, seed=3, client_secret=SECRET, faults=Faults(script={("results", 4): Fault.SERVER_ERROR})
    )
    output, options = output_for(tmp_path, fmt)
    args = [*options, "--split", "none", "--retry-attempts", "1"]
    with serve_in_thread(config) as emulator:
        assert export(emulator.base_url, output, *args, "--include", "results,departments") == ExitCode.API
        capsys.readouterr()
        assert (
            export(emulator.base_url, output, *args, "--include", "departments", "--resume") == ExitCode.USAGE
        )
        err = capsys.readouterr().err
        assert "covers the datasets departments,results" in err
        assert "without --resume" in err
        # Order does not matter: results,departments and departments,results are one export.
        assert export(emulator.base_url, output, *args, "--include", "departments,results", "--resume") == 0
        expected = truth(emulator)
    for dataset in (RESULTS, DEPARTMENTS):
        assert_exactly(dataset, read_dataset(output, fmt, dataset), expected[dataset.name])


def test_include_comes_from_the_environment_and_the_config_file(
    emu: Emulator, creds: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$ISPRING_INCLUDE and include = [...] in the config choose the datasets; the command line wins."""
    monkeypatch.setenv("ISPRING_INCLUDE", "departments")
    only = tmp_path / "departments.csv"  # one dataset, a file path: that one file
    assert export(emu.base_url, only) == ExitCode.OK
    assert_exactly(DEPARTMENTS, read_dataset(only, "csv", DEPARTMENTS), emu.departments())
    monkeypatch.delenv("ISPRING_INCLUDE")
    config = tmp_path / "nightly.toml"
    config.write_text('include = ["results", "departments"]\nformat = "jsonl"\n')
    folder = tmp_path / "both"
    assert export(emu.base_url, folder, "--config", str(config)) == ExitCode.OK
    assert sorted(p.name for p in folder.iterdir()) == ["departments.jsonl", "results.jsonl"]
    monkeypatch.setenv("ISPRING_INCLUDE", "departments")
    results_only = tmp_path / "results.jsonl"
    assert export(emu.base_url, results_only, "--include", "results") == ExitCode.OK
    assert_exactly(RESULTS, read_dataset(results_only, "jsonl", RESULTS), truth(emu)["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--include", "results,departments"], "cannot go into the one file", id="two-in-one-file"
        ),
        pytest.param(["--include", "results,grades"], "unknown dataset 'grades'", id="unknown-dataset"),
        pytest.param(["--include", ","], "no dataset to export", id="empty-list"),
    ],
)
def test_an_impossible_include_is_a_usage_error_before_any_request(
    emu: Emulator,
    creds: None,
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two datasets into one .jsonl file, an unknown or empty dataset list: exit 2, no request sent."""
    before = dict(emu.stats.requests)
    assert export(emu.base_url, tmp_path / "results.jsonl", *args) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert dict(emu.stats.requests) == before
    assert list(tmp_path.iterdir()) == []


def test_a_folder_needs_a_format(
    emu: Emulator, creds: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder output without --format says which formats there are (exit 2)."""
    assert export(emu.base_url, tmp_path / "out", "--include", "results,departments") == ExitCode.USAGE
    assert "cannot tell the output format" in capsys.readouterr().err


def test_an_sqlite_checkpoint_of_the_version_before_datasets_starts_afresh(
    emu: Emulator, creds: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unfinished run whose state is a bare fan-out state (before datasets): logged, fresh, exact."""
    from ispring_async.sinks import open_sink
    from tests._helpers import make_records

    output = tmp_path / "nightly.sqlite"
    with open_sink(output) as sink:  # what the previous version left: rows and a FanOut state
        sink.open(resume=False)
        sink.write(make_records(30))
        sink.checkpoint(b'{"version":3,"query":[],"planner":{},"chains":[]}')
    with caplog.at_level("WARNING", logger="ispring_async"):
        assert export(emu.base_url, output, "--resume") == ExitCode.OK
    assert "written by an older version; starting afresh" in caplog.text
    assert_exactly(RESULTS, read_dataset(output, "sqlite", RESULTS), truth(emu)["results"])
    db = sqlite3.connect(output)
    try:
        runs = db.execute("SELECT status FROM export_runs ORDER BY run_id").fetchall()
    finally:
        db.close()
    assert runs == [("failed",), ("complete",)]

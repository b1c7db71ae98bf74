"""``ispring-async export`` end to end against the emulator: real HTTP, real files, real SQLite.

Most runs call ``main(argv)`` in-process; the signal tests run the command as a child process and
kill it once its checkpoint shows progress (polled, never timed).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from ispring_async._cli import main
from ispring_async._export import ExitCode
from ispring_async._models import LearnerResult
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, serve_in_thread
from tests._servers import TokenEndpoint, api_error, serve

ROOT = Path(__file__).resolve().parents[1]
SECRET = "distinctive-Secret-4d1f9a2e-DO-NOT-LEAK"
ACTIVE_AND_BLOCKED = [("userStatuses[]", "1"), ("userStatuses[]", "3")]
FAST = ["--page-size", "100", "--retry-attempts", "3", "--retry-max-wait", "0", "--progress", "off"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One fault-free emulator for the module (2000 results; its secret is the distinctive one)."""
    with serve_in_thread(EmulatorConfig(results=2000, seed=5, client_secret=SECRET)) as emulator:
        yield emulator


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's credentials in the environment, nothing else of ours."""
    for key in ("ISPRING_BASE_URL", "ISPRING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", SECRET)


def export(base_url: str, output: Path, *extra: str) -> int:
    """Run ``ispring-async export`` in-process; returns the exit status."""
    return main(["export", "--base-url", base_url, "--output", str(output), *FAST, *extra])


def read_records(path: Path, fmt: str) -> list[LearnerResult]:
    """Every record of a published output, read back with the format's own tools."""
    if fmt == "jsonl":
        return [msgspec.json.decode(line, type=LearnerResult) for line in path.read_bytes().splitlines()]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as file:
            rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
        return [msgspec.convert(row, LearnerResult, strict=False) for row in rows]
    if fmt == "parquet":
        rows = pq.read_table(path).to_pylist()
        return [msgspec.convert(_present(row), LearnerResult) for row in rows]
    db = sqlite3.connect(path)
    try:
        cursor = db.execute("SELECT * FROM learner_results")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor]
    finally:
        db.close()
    fields = [n for n in names if n not in {"identity", "run_id"}]
    return [msgspec.convert(_present({k: r[k] for k in fields}), LearnerResult, strict=False) for r in rows]


def _present(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def assert_ground_truth(records: list[LearnerResult], expected: list[LearnerResult]) -> None:
    """``records`` are exactly ``expected``: the same rows, each once, in any order."""
    identities = [r.identity for r in records]
    assert len(identities) == len(set(identities)), "duplicated rows"
    assert {r.identity: r for r in records} == {r.identity: r for r in expected}


def sqlite_runs(path: Path) -> list[tuple[int, str, int]]:
    """``(run_id, status, records)`` of every run recorded in an SQLite output."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT run_id, status, records FROM export_runs ORDER BY run_id").fetchall()
    finally:
        db.close()


# -- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [
        pytest.param("jsonl", [], id="jsonl"),
        pytest.param("csv", ["--response-format", "json"], id="csv-json-api"),
        pytest.param("parquet", ["--split", "window"], id="parquet-window"),
        pytest.param("sqlite", ["--split", "department"], id="sqlite-department"),
        pytest.param("jsonl", ["--split", "none", "--concurrency", "1"], id="jsonl-one-chain"),
        pytest.param("csv", ["--split", "combined", "--rate-limit", "1000"], id="csv-combined"),
    ],
)
def test_each_format_round_trips_to_ground_truth(
    emu: Emulator, creds: None, tmp_path: Path, fmt: str, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every output format, split and response format holds exactly the API's active and blocked rows."""
    output = tmp_path / f"results.{fmt}"
    assert export(emu.base_url, output, *extra) == ExitCode.OK
    expected = emu.expected_results(ACTIVE_AND_BLOCKED)
    assert_ground_truth(read_records(output, fmt), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]  # nothing left beside it
    out = capsys.readouterr().out
    assert f"export complete: {len(expected):,} records" in out
    assert "duplicates removed:" in out
    assert "retries:" in out


def test_user_status_option_overrides_the_default(emu: Emulator, creds: None, tmp_path: Path) -> None:
    """--user-status 1 exports active users only; the default (1 and 3) also has the blocked users' rows."""
    active = tmp_path / "active.jsonl"
    assert export(emu.base_url, active, "--user-status", "active") == ExitCode.OK
    assert_ground_truth(read_records(active, "jsonl"), emu.expected_results([("userStatuses[]", "1")]))
    assert len(emu.expected_results(ACTIVE_AND_BLOCKED)) > len(read_records(active, "jsonl"))


def test_sqlite_rerun_updates_rows_in_place(emu: Emulator, creds: None, tmp_path: Path) -> None:
    """A second export into the same database upserts: same rows, no duplicates, two complete runs."""
    output = tmp_path / "nightly.sqlite"
    assert export(emu.base_url, output) == ExitCode.OK
    assert export(emu.base_url, output, "--resume") == ExitCode.OK  # nothing to resume: a fresh run
    expected = emu.expected_results(ACTIVE_AND_BLOCKED)
    assert_ground_truth(read_records(output, "sqlite"), expected)
    assert sqlite_runs(output) == [(1, "complete", len(expected)), (2, "complete", len(expected))]


def test_progress_is_logged_as_plain_lines_when_not_a_terminal(
    emu: Emulator, creds: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, progress goes to stderr as timestamped log lines (no carriage returns)."""
    output = tmp_path / "results.jsonl"
    args = ["--split", "none", "--concurrency", "1", "--progress", "auto", "--progress-interval", "0.01"]
    assert export(emu.base_url, output, *args) == ExitCode.OK
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO progress: " in line]
    assert lines
    assert all(" records · " in line and " pages · partitions " in line for line in lines)
    assert "\r" not in err


def test_config_file_runs_an_export(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TOML config file alone (connection, credentials, filters, output) drives a complete export."""
    for key in ("ISPRING_BASE_URL", "ISPRING_CLIENT_ID", "ISPRING_CLIENT_SECRET", "ISPRING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'base_url = "{emu.base_url}"\nclient_id = "emulator-client"\nclient_secret = "{SECRET}"\n'
        'output = "out/passed.sqlite"\npage_size = 70\nsplit = "window"\nconcurrency = 3\n'
        'completion_statuses = ["passed", "failed"]\nuser_statuses = [1, 3, 5]\nprogress = "off"\n'
    )
    config.chmod(0o600)
    assert main(["export", "--config", str(config)]) == ExitCode.OK
    expected = emu.expected_results(
        [
            ("completionStatuses[]", "passed"),
            ("completionStatuses[]", "failed"),
            *ACTIVE_AND_BLOCKED,
            ("userStatuses[]", "5"),
        ]
    )
    assert expected
    assert_ground_truth(read_records(tmp_path / "out" / "passed.sqlite", "sqlite"), expected)


# -- failures leave nothing that looks complete ------------------------------------------------------------


@contextlib.contextmanager
def scripted_api(status: int) -> Iterator[str]:
    """A server in a thread whose token endpoint works and whose results answer ``status``."""
    ready = threading.Event()
    urls: list[str] = []
    stop: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()

    async def results(request: web.Request) -> web.StreamResponse:
        return api_error(status, status, "Permission denied")

    async def run() -> None:
        token = TokenEndpoint(client_id="emulator-client", client_secret=SECRET)
        async with serve({"/api/v3/token": token, "/learners/results": results}) as server:
            stop.append(asyncio.Event())
            urls.append(server.base_url)
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    ready.wait()
    try:
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join()
        loop.close()


def _closed_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("fmt", [pytest.param("jsonl", id="jsonl"), pytest.param("sqlite", id="sqlite")])
@pytest.mark.parametrize(
    "case",
    [pytest.param("wrong-secret", id="401"), pytest.param("403", id="403"), pytest.param("down", id="down")],
)
def test_failed_run_exits_with_its_code_and_publishes_nothing(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    fmt: str,
) -> None:
    """401/403 exit 3 and an unreachable server exits 4; no complete-looking output is left."""
    monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", "wrong-" + SECRET if case == "wrong-secret" else SECRET)
    output = tmp_path / f"results.{fmt}"
    with contextlib.ExitStack() as stack:
        if case == "403":
            base_url, code = stack.enter_context(scripted_api(403)), ExitCode.AUTH
        elif case == "down":
            base_url, code = _closed_port(), ExitCode.API
        else:
            base_url, code = emu.base_url, ExitCode.AUTH
        assert export(base_url, output, "--split", "none") == code
    err = capsys.readouterr().err
    assert "error:" in err
    assert SECRET not in err
    if fmt == "sqlite":
        assert [status for _, status, _ in sqlite_runs(output)] == ["failed"]
    else:
        assert not output.exists()


def test_output_error_exits_5(
    emu: Emulator, creds: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output path that cannot be created fails with exit status 5 before any request."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert export(emu.base_url, blocker / "results.jsonl") == ExitCode.OUTPUT
    assert "error:" in capsys.readouterr().err


def test_failure_mid_export_keeps_the_checkpoint_and_resume_completes(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 500 that outlasts the retries exits 4, keeps the pages so far, and --resume completes exactly."""
    config = EmulatorConfig(
        results=1500, seed=2, client_secret=SECRET, faults=Faults(script={("results", 6): Fault.SERVER_ERROR})
    )
    output = tmp_path / "results.jsonl"
    with serve_in_thread(config) as emulator:
        args = ["--split", "none", "--retry-attempts", "1"]
        assert export(emulator.base_url, output, *args) == ExitCode.API
        err = capsys.readouterr().err
        assert "--resume" in err
        assert not output.exists()
        # Pages 1-5 arrived before the failure; the checkpoint covers those the export got to write.
        kept = json.loads((tmp_path / ".results.jsonl.checkpoint").read_bytes())["records"]
        assert 100 <= kept <= 500
        assert kept % 100 == 0
        assert export(emulator.base_url, output, *args, "--resume") == ExitCode.OK
        assert f"{kept:,} kept from the interrupted run" in capsys.readouterr().out
        assert_ground_truth(read_records(output, "jsonl"), emulator.expected_results(ACTIVE_AND_BLOCKED))
        # The resumed run starts after the checkpointed pages, not from the first page.
        assert emulator.stats.requests["results"] == 6 + 15 - kept // 100


def test_resume_with_other_filters_is_a_usage_error(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint pins its filters: resuming with different ones is refused with exit status 2."""
    config = EmulatorConfig(
        results=600, seed=2, client_secret=SECRET, faults=Faults(script={("results", 3): Fault.SERVER_ERROR})
    )
    output = tmp_path / "results.csv"
    with serve_in_thread(config) as emulator:
        args = ["--split", "none", "--retry-attempts", "1"]
        assert export(emulator.base_url, output, *args) == ExitCode.API
        capsys.readouterr()
        assert export(emulator.base_url, output, *args, "--user-status", "1", "--resume") == ExitCode.USAGE
        err = capsys.readouterr().err
        assert "different query" in err
        assert "without --resume" in err
        # The checkpoint survives the refusal: the right filters still resume it.
        assert export(emulator.base_url, output, *args, "--resume") == ExitCode.OK
        assert_ground_truth(read_records(output, "csv"), emulator.expected_results(ACTIVE_AND_BLOCKED))


def test_resume_with_nothing_to_resume_starts_fresh_and_says_so(
    emu: Emulator, creds: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--resume without a checkpoint runs a fresh export and logs that it did."""
    output = tmp_path / "results.jsonl"
    with caplog.at_level(logging.INFO, logger="ispring_async"):
        assert export(emu.base_url, output, "--resume") == ExitCode.OK
    assert any("nothing to resume" in r.getMessage() for r in caplog.records)
    assert_ground_truth(read_records(output, "jsonl"), emu.expected_results(ACTIVE_AND_BLOCKED))


def test_no_secret_or_token_in_any_output_log_or_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither the client secret nor an access token appears in stdout/stderr, logs, checkpoints or output."""
    config = EmulatorConfig(
        results=800, seed=4, client_secret=SECRET, faults=Faults(script={("results", 4): Fault.SERVER_ERROR})
    )
    output = tmp_path / "results.sqlite"
    seen: list[bytes] = []
    with serve_in_thread(config) as emulator, caplog.at_level(logging.DEBUG):
        token = emulator.issue_token()
        monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
        monkeypatch.setenv("ISPRING_CLIENT_SECRET", SECRET)
        # A failing run with the secret (it leaves a checkpoint), then a resume with a ready token.
        assert export(emulator.base_url, output, "--split", "none", "--retry-attempts", "1") == ExitCode.API
        seen.extend(p.read_bytes() for p in tmp_path.iterdir())
        monkeypatch.delenv("ISPRING_CLIENT_SECRET")
        token_file = tmp_path / "token"
        token_file.write_text(token)
        args = ["--split", "none", "--resume", "--token-file", str(token_file), "--progress", "log"]
        assert export(emulator.base_url, output, *args, "--progress-interval", "0.001") == ExitCode.OK
        token_file.unlink()
        issued = list(emulator._tokens)  # every token the emulator handed out, for the search below
    out, err = capsys.readouterr()
    seen.extend(p.read_bytes() for p in tmp_path.iterdir())
    text = "\n".join([out, err, *(r.getMessage() for r in caplog.records), caplog.text])
    assert "export complete" in out
    for needle in (SECRET, token, *issued):
        assert needle not in text
        assert all(needle.encode() not in blob for blob in seen)


# -- signals and crashes (child processes) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_emu() -> Iterator[Emulator]:
    """An emulator whose requests take 20 ms, so an export runs long enough to be killed part-way."""
    config = EmulatorConfig(results=3000, seed=9, client_secret=SECRET, faults=Faults(latency=0.02))
    with serve_in_thread(config) as emulator:
        yield emulator


def spawn(base_url: str, output: Path, *extra: str) -> subprocess.Popen[str]:
    """``python -m ispring_async export`` as a child process with the secret in its environment."""
    env = {**os.environ, "ISPRING_CLIENT_ID": "emulator-client", "ISPRING_CLIENT_SECRET": SECRET}
    env.pop("ISPRING_TOKEN", None)
    command = [
        sys.executable, "-m", "ispring_async", "export", "--base-url", base_url, "--output", str(output),
        "--page-size", "50", "--concurrency", "2", "--progress", "log", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def checkpointed_records(output: Path) -> int:
    """Records the output's last checkpoint covers (0 before the first)."""
    if output.suffix == ".sqlite":
        if not output.exists():
            return 0
        db = sqlite3.connect(output, timeout=5)
        try:
            row = db.execute("SELECT max(records) FROM export_checkpoint").fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0
        finally:
            db.close()
        return row[0] or 0
    try:
        return int(json.loads((output.parent / f".{output.name}.checkpoint").read_bytes())["records"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def wait_for_checkpoint(process: subprocess.Popen[str], output: Path, records: int) -> None:
    """Poll until the child's checkpoint covers at least ``records`` (it must still be running)."""
    deadline = time.monotonic() + 30
    while checkpointed_records(output) < records:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export made no progress"
        time.sleep(0.002)


@pytest.mark.parametrize("fmt", [pytest.param("jsonl", id="jsonl"), pytest.param("sqlite", id="sqlite")])
def test_resume_after_sigkill_at_a_random_point_equals_ground_truth(
    slow_emu: Emulator, creds: None, tmp_path: Path, fmt: str
) -> None:
    """SIGKILL after a random number of checkpointed records, then --resume: exactly the ground truth."""
    output = tmp_path / f"results.{fmt}"
    expected = slow_emu.expected_results(ACTIVE_AND_BLOCKED)
    threshold = random.Random(f"sigkill-{fmt}").randrange(1, len(expected) // 3)
    process = spawn(slow_emu.base_url, output)
    wait_for_checkpoint(process, output, threshold)
    process.kill()
    process.communicate()
    assert not output.exists() or fmt == "sqlite"
    assert export(slow_emu.base_url, output, "--page-size", "50", "--resume") == ExitCode.OK
    assert_ground_truth(read_records(output, fmt), expected)
    if fmt == "sqlite":
        assert sqlite_runs(output)[-1][1:] == ("complete", len(expected))
        assert len(sqlite_runs(output)) == 1  # the resumed run is the interrupted one, completed


@pytest.mark.parametrize(
    ("signum", "code"),
    [
        pytest.param(signal.SIGTERM, ExitCode.SIGTERM, id="SIGTERM"),
        pytest.param(signal.SIGINT, ExitCode.SIGINT, id="SIGINT"),
    ],
)
def test_sigterm_and_sigint_stop_cleanly_and_print_how_to_resume(
    slow_emu: Emulator, creds: None, tmp_path: Path, signum: int, code: int
) -> None:
    """SIGINT/SIGTERM: exit 130/143, no output file, the checkpoint kept, the resume command printed."""
    output = tmp_path / "results.parquet"
    process = spawn(slow_emu.base_url, output)
    wait_for_checkpoint(process, output, 1)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    assert "interrupted; resume with: ispring-async export --base-url" in err
    assert err.rstrip().endswith("--resume")
    assert "export stopped" in err
    assert not output.exists()
    assert checkpointed_records(output) > 0
    assert SECRET not in out + err
    assert export(slow_emu.base_url, output, "--page-size", "50", "--resume") == ExitCode.OK
    assert_ground_truth(read_records(output, "parquet"), slow_emu.expected_results(ACTIVE_AND_BLOCKED))

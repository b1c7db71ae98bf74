"""``ispring-async export`` end to end against the emulator: real HTTP, real files, real SQLite.

Most runs call ``main(argv)`` in-process; the signal tests run the command as a child process and
kill it once its checkpoint shows progress (polled, never timed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ispring_async import Client, DateRange, ResultsQuery, UserStatus
from ispring_async._app.cli import main
from ispring_async._app.export import ExitCode
from ispring_async._models import LearnerResult
from ispring_async._query import EARLIEST_INSTANT, LATEST_INSTANT
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, serve_in_thread
from tests import _helpers as helpers
from tests._helpers import checkpointed, drain, read_records
from tests._servers import (
    Handler,
    PagedResults,
    TokenEndpoint,
    api_error,
    ident,
    results_body,
    serve_in_background,
    xml_page,
)
from tests._servers import record as server_record

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

    async def results(request: web.Request) -> web.StreamResponse:
        return api_error(status, status, "Permission denied")

    with serve_in_background(api_routes(results)) as url:
        yield url


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


@pytest.mark.parametrize(
    ("split", "loads_seen"),
    [pytest.param("window", False, id="window"), pytest.param("department", True, id="department")],
)
def test_resume_loads_the_written_identities_only_for_a_department_split(
    tmp_path: Path, creds: None, monkeypatch: pytest.MonkeyPatch, split: str, loads_seen: bool
) -> None:
    """A window split's state resumes exactly on its own; only a department split reads the output back."""
    from ispring_async.sinks._files import FileSink

    reads: list[int] = []
    original = FileSink.identities

    def counted(self: FileSink, *args: Any) -> Any:
        reads.append(1)
        return original(self, *args)

    monkeypatch.setattr(FileSink, "identities", counted)
    config = EmulatorConfig(
        results=1500, seed=2, client_secret=SECRET, faults=Faults(script={("results", 6): Fault.SERVER_ERROR})
    )
    output = tmp_path / "results.jsonl"
    with serve_in_thread(config) as emulator:
        args = ["--split", split, "--retry-attempts", "1", "--concurrency", "1"]
        assert export(emulator.base_url, output, *args) == ExitCode.API
        kept = json.loads((tmp_path / ".results.jsonl.checkpoint").read_bytes())["records"]
        assert kept > 0  # the resume has progress to continue from
        assert export(emulator.base_url, output, *args, "--resume") == ExitCode.OK
        assert_ground_truth(read_records(output, "jsonl"), emulator.expected_results(ACTIVE_AND_BLOCKED))
    assert bool(reads) is loads_seen


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
    """The export command as a child process (2 requests in flight) with the secret in its environment."""
    return helpers.spawn(
        base_url, output, "--concurrency", "2", *extra, client_id="emulator-client", secret=SECRET
    )


def wait_for_checkpoint(process: subprocess.Popen[str], output: Path, records: int) -> None:
    """Poll until the child's checkpoint covers at least ``records`` (it must still be running)."""
    deadline = time.monotonic() + 30
    while checkpointed(output) < records:
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
    assert checkpointed(output) > 0
    assert SECRET not in out + err
    assert export(slow_emu.base_url, output, "--page-size", "50", "--resume") == ExitCode.OK
    assert_ground_truth(read_records(output, "parquet"), slow_emu.expected_results(ACTIVE_AND_BLOCKED))


# -- hardening: locks, endless chains, numbers, damaged leftovers, dates, hostile text --------------------


class StallAfterFirstPage(PagedResults):
    """PagedResults whose later pages wait until ``release`` is set: a run that stays mid-export."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.release = threading.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if "pageToken" in request.query and not self.release.is_set():
            # A worker thread waits, so the server's loop keeps answering the second process.
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        return await super().__call__(request)


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("csv", id="csv"),
        pytest.param("parquet", id="parquet"),
    ],
)
def test_a_second_export_into_an_output_in_use_is_refused_at_once(
    creds: None, tmp_path: Path, fmt: str
) -> None:
    """Two real processes, one output: the second exits 5 at once naming the first; SIGKILL frees --resume."""
    output = tmp_path / f"results.{fmt}"
    results = StallAfterFirstPage(120)
    with serve_in_background(api_routes(results)) as url:
        first = spawn(url, output, "--split", "none")
        try:
            wait_for_checkpoint(first, output, 50)
            second = spawn(url, output, "--split", "none")
            _, err = second.communicate(timeout=60)
            assert second.returncode == ExitCode.OUTPUT, err
            assert "another export is writing" in err
            assert f"process {first.pid}" in err
            assert first.poll() is None  # refused while the first still runs: it did not wait
            assert checkpointed(output) == 50  # the first run's checkpoint is untouched
            if fmt == "sqlite":
                assert [status for _, status, _ in sqlite_runs(output)] == ["running"]
        finally:
            first.kill()
            first.communicate()
            results.release.set()
        assert export(url, output, "--page-size", "50", "--split", "none", "--resume") == ExitCode.OK
    assert sorted(r.identity for r in read_records(output, fmt)) == sorted(ident(3, i) for i in range(120))
    if fmt == "sqlite":
        assert [status for _, status, _ in sqlite_runs(output)] == ["complete"]


class EndlessResults:
    """``/learners/results`` that answers every page with no records and a fresh next token."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return web.Response(body=results_body(range(0), f"t{self.hits}"), content_type="application/xml")


def api_routes(results: Handler, **more: Handler) -> dict[str, Handler]:
    """A token endpoint for the test credentials, ``results`` at /learners/results, and ``more``."""
    token = TokenEndpoint(client_id="emulator-client", client_secret=SECRET)
    routes: dict[str, Handler] = {"/api/v3/token": token, "/learners/results": results}
    routes.update({f"/{name}": handler for name, handler in more.items()})
    return routes


@pytest.mark.parametrize(
    "split", [pytest.param("none", id="one-chain"), pytest.param("adaptive", id="adaptive")]
)
def test_an_endless_chain_exits_4_and_so_does_its_resume(
    creds: None, tmp_path: Path, split: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Empty pages with fresh tokens forever: exit 4 after bounded requests; --resume ends the same way."""
    endless = EndlessResults()
    output = tmp_path / "results.jsonl"
    with serve_in_background(api_routes(endless)) as url:
        assert export(url, output, "--split", split) == ExitCode.API
        first = endless.hits
        assert "paging forever" in capsys.readouterr().err
        assert export(url, output, "--split", split, "--resume") == ExitCode.API
        assert "paging forever" in capsys.readouterr().err
    assert first <= 2_000
    assert endless.hits - first <= 2_000
    assert not output.exists()


def one_record_page(**fields: object) -> Handler:
    """``/learners/results`` with one record whose ``fields`` are replaced by the given XML texts."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = xml_page([{**server_record(0), **fields}])
        return web.Response(body=body, content_type="application/xml")

    return handler


@pytest.mark.parametrize("fmt", [pytest.param("sqlite", id="sqlite"), pytest.param("parquet", id="parquet")])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("duration", str(2**63), id="duration-2**63"),
        pytest.param("timeSpent", str(-(2**63) - 1), id="timeSpent-below-int64"),
        pytest.param("viewsCount", "9" * 40, id="viewsCount-40-digits"),
        pytest.param("progress", "NaN", id="progress-NaN"),
        pytest.param("awardedScore", "Infinity", id="awardedScore-Infinity"),
        pytest.param("passingScore", "-inf", id="passingScore-minus-inf"),
        pytest.param("progress", "1e999", id="progress-overflowing-float"),
    ],
)
def test_a_number_no_sink_can_store_exits_4_naming_record_and_field(
    creds: None, tmp_path: Path, fmt: str, field: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Integers past int64 and non-finite floats are a parse error naming record and field, run and resume."""
    output = tmp_path / f"results.{fmt}"
    with serve_in_background(api_routes(one_record_page(**{field: value}))) as url:
        for resume in ([], ["--resume"]):
            assert export(url, output, "--split", "none", *resume) == ExitCode.API
            err = capsys.readouterr().err
            assert f"$[0].{field}" in err and "<result> #1" in err, err
    assert fmt == "sqlite" or not output.exists()
    if fmt == "sqlite":
        assert [status for _, status, _ in sqlite_runs(output)] == ["failed", "failed"]


def test_a_damaged_checkpoint_count_never_reaches_the_summary(
    tmp_path: Path, creds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint edited to ``records: -5``: --resume warns, starts afresh and reports the true count."""
    config = EmulatorConfig(
        results=600, seed=2, client_secret=SECRET, faults=Faults(script={("results", 3): Fault.SERVER_ERROR})
    )
    output = tmp_path / "results.jsonl"
    checkpoint = tmp_path / ".results.jsonl.checkpoint"
    with serve_in_thread(config) as emulator:
        args = ["--split", "none", "--retry-attempts", "1"]
        assert export(emulator.base_url, output, *args) == ExitCode.API
        checkpoint.write_bytes(json.dumps({**json.loads(checkpoint.read_bytes()), "records": -5}).encode())
        capsys.readouterr()
        assert export(emulator.base_url, output, *args, "--resume") == ExitCode.OK
        out, err = capsys.readouterr()
        expected = emulator.expected_results(ACTIVE_AND_BLOCKED)
    assert "starting afresh" in err and "checksum" in err
    assert f"export complete: {len(expected):,} records" in out
    assert "kept from the interrupted run" not in out
    assert_ground_truth(read_records(output, "jsonl"), expected)


class Counting:
    """A handler that counts its requests and answers an empty last page."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return web.Response(body=results_body(range(0), None), content_type="application/xml")


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(["--access-date-to", "9999-12-31"], id="to-the-last-day"),
        pytest.param(["--due-date-from", "9999-12-31T23:59:59.5Z"], id="past-the-last-second"),
        pytest.param(["--completion-date-from", "0001-01-01T00:00:00+05:00"], id="offset-before-year-1"),
        pytest.param(["--access-date-to", "9999-12-31T23:00:00-05:00"], id="offset-past-year-9999"),
        pytest.param(["--earliest", "0001-01-01T00:00:00+01:00"], id="earliest-before-year-1"),
    ],
)
def test_dates_at_the_calendars_edge_exit_2_before_any_request(
    creds: None, tmp_path: Path, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bounds the windows cannot hold are a usage error naming the option, before any request is made."""
    counting = Counting()
    with serve_in_background(api_routes(counting)) as url:
        assert export(url, tmp_path / "results.jsonl", *option) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert option[0] in err and "supported range" in err
    assert "continue with" not in err  # no resume hint that could never succeed
    assert counting.hits == 0


@pytest.mark.anyio
async def test_the_adaptive_split_works_up_to_the_supported_edges() -> None:
    """A query spanning the whole supported range splits adaptively without overflowing a window."""
    config = EmulatorConfig(results=300, seed=3, client_secret=SECRET)
    query = ResultsQuery(
        user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED],
        access_date=DateRange(start=EARLIEST_INSTANT, end=LATEST_INSTANT),
    )
    with serve_in_thread(config) as emulator:
        async with Client(emulator.base_url, client_id="emulator-client", client_secret=SECRET) as client:
            records = await drain(client.learner_results(query, split="adaptive", concurrency=4))
        assert_ground_truth(records, emulator.expected_results(ACTIVE_AND_BLOCKED))


def test_a_department_id_that_is_not_a_uuid_exits_4_not_2(
    creds: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed id from /departments is the server's data: exit 4 (API content), never 2 (usage)."""

    async def departments(request: web.Request) -> web.StreamResponse:
        return web.json_response({"departments": [{"departmentId": "../../etc", "name": "x"}]})

    routes = api_routes(PagedResults(5), departments=departments)
    with serve_in_background(routes) as url:
        args = ["--split", "department", "--response-format", "json"]
        assert export(url, tmp_path / "results.jsonl", *args) == ExitCode.API
    assert "not a UUID" in capsys.readouterr().err


HOSTILE = "bad\x1b[2J\x1b]0;owned\x07\r\nexport complete: 29,533 records in results.sqlite (sqlite)"


def test_a_server_message_reaches_the_terminal_escaped(
    creds: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 400 message with ESC/OSC/BEL and CR/LF is printed escaped: no sequence runs, no line is forged."""

    async def refuse(request: web.Request) -> web.StreamResponse:
        return api_error(400, 1, HOSTILE)

    with serve_in_background(api_routes(refuse)) as url:
        assert export(url, tmp_path / "results.jsonl", "--split", "none") == ExitCode.API
    out, err = capfd.readouterr()
    assert "\\x1b[2J" in err
    for char in "\x1b\x07\r":
        assert char not in out + err
    assert not any(line.startswith("export complete") for line in (out + err).splitlines())

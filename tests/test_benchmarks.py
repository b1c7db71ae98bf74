"""The benchmark runner works end to end on a tiny size (a smoke test; no figure is judged here), and
the complete-export harness measures real processes and refuses any output that is not the ground truth.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.complete import (
    CORES,
    IncompleteExportError,
    Tool,
    check_complete,
    floors,
    jsonl_identities,
    run_rounds,
)
from benchmarks.parse import APPROACHES
from benchmarks.peers import airbyte_identities, dlt_extracted_identities
from benchmarks.peers.airbyte_declarative import manifest
from ispring_async._config import ResponseFormat
from ispring_async._parse_pool import default_parse_workers

LAUNCH = Path(__file__).resolve().parent.parent / "benchmarks" / "_launch.py"


# Each tiny run starts a few dozen interpreters; on a shared 2-core machine that can pass a minute.
@pytest.mark.timeout(240)
def test_tiny_run_writes_results_report_and_plots(tmp_path: Path) -> None:
    """``python -m benchmarks --tiny`` runs every scenario and writes its JSON, the report and the plots."""
    assert main(["--tiny", "--only", "parse,e2e,memory,sinks", "--out", str(tmp_path)]) == 0

    parse = json.loads((tmp_path / "parse.json").read_text())
    assert set(parse["approaches"]) == set(APPROACHES)
    assert all(a["records_per_s"]["median"] > 0 for a in parse["approaches"].values())
    assert parse["machine"]["cores"] >= 1
    assert all(r["records"] in (2000, None) for runs in parse["document"]["raw"].values() for r in runs)
    users = parse["users"]["layouts"]
    assert len(users) == 6
    assert all(u["records_per_s"]["ours-xml"]["median"] > 0 and "vs_lxml" in u for u in users.values())

    e2e = json.loads((tmp_path / "e2e.json").read_text())
    clients = {(c["client"], c["format"]) for c in e2e["cells"]}
    assert clients == {("naive", "xml"), ("ours", "xml"), ("ours", "json")}
    assert all(r["records"] >= 2000 for r in e2e["raw"])

    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["raw"][0]["records"] == 2000
    assert memory["raw"][0]["peak_rss_bytes"] > 0

    sinks = json.loads((tmp_path / "sinks.json").read_text())
    assert set(sinks["sinks"]) == {"jsonl", "csv", "parquet", "sqlite"}

    report = (tmp_path / "report.md").read_text()
    for heading in (
        "## Machine",
        "## Targets",
        "## 1. Parse",
        "## 2. End to end",
        "## 3. Memory",
        "## 4. Sinks",
        "### Users pages (nested records, issue 14)",
        "expat floor/xmltodict",
    ):
        assert heading in report
    for plot in ("e2e-throughput.png", "parse-ratio.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_tiny_complete_exports_are_exact_and_counted_by_the_emulator(tmp_path: Path) -> None:
    """``--tiny --only complete``: CLI, library and naive exports, all exact, requests counted by the API."""
    assert main(["--tiny", "--only", "complete", "--out", str(tmp_path)]) == 0

    data = json.loads((tmp_path / "complete.json").read_text())
    truth = data["truth_records"]["0"]
    assert 2_000 < truth < 3_000  # userStatuses 1 and 3 of 3,000 rows
    # The lognormal cell (median 20 ms, p99 200 ms) runs beside the fixed one, on the same dataset.
    assert data["truth_records"]["20~200"] == truth
    assert {r["latency"] for r in data["raw"]} == {"0", "20~200"}

    tools = {r["tool"] for r in data["raw"]}
    # The command's default beside its other choice: in its process (w0) where auto takes a worker.
    other = "cli-xml-c2-w0" if default_parse_workers(ResponseFormat.XML) else "cli-xml-c2-w1"
    assert tools == {
        "naive-xml", "naive-json", "cli-xml-c2", "cli-json-c2", "lib-xml-c2", "lib-json-c2",
        other, "lib-xml-c2-w1",  # lib: XML parsed in one worker process (parse_workers=1)
    }  # fmt: skip
    for run in data["raw"]:
        assert (run["records"], run["missing"], run["extra"], run["duplicates"]) == (truth, 0, 0, 0)
        assert run["cpu_user_seconds"] > 0
        assert run["peak_rss_bytes"] > 20 * 2**20  # an interpreter, not the launcher's carried-over size
        assert run["token_requests"] >= 1
        # The client and its parse workers summed: at least the largest one process's peak.
        assert run["peak_tree_rss_bytes"] >= run["peak_rss_bytes"]
    naive = [r for r in data["raw"] if r["tool"].startswith("naive")]
    # The naive client is the unsplit chain: one request per page, counted by the emulator.
    assert all(r["requests"] == math.ceil(truth / 1000) for r in naive)
    ours = [c for c in data["cells"] if c["kind"] in ("cli", "lib")]
    assert all(c["requests_vs_unsplit"]["median"] >= 1 and "vs_naive" in c for c in ours)
    report = (tmp_path / "report.md").read_text()
    assert "## 5. Complete export" in report
    assert "`cli-xml-c2`" in report
    assert "### lognormal, median 20 ms, p99 200 ms latency" in report


def test_counting_emulator_waits_its_lognormal_draws() -> None:
    """``latency_median``/``latency_p99`` reach the emulator: its seeded draws for two pages are waited."""
    import random
    import time
    import urllib.parse
    import urllib.request

    from benchmarks._emulator import CLIENT_ID, CLIENT_SECRET, counting_emulator
    from ispring_async.emulator import Faults
    from ispring_async.emulator._server import _lognormal

    median, p99 = 0.2, 1.0
    # The emulator draws request n's wait from Random("<fault seed>:results:<n>"), the gauss last.
    draws = [_lognormal(random.Random(f"{Faults().seed}:results:{n}"), median, p99) for n in (1, 2)]
    with counting_emulator(results=200, latency=0.0, latency_median=median, latency_p99=p99) as emu:
        form = urllib.parse.urlencode(
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"}
        ).encode()
        with urllib.request.urlopen(f"{emu.base_url}/api/v3/token", data=form, timeout=30) as reply:
            token = json.loads(reply.read())["access_token"]
        started = time.perf_counter()
        for _ in draws:
            request = urllib.request.Request(
                f"{emu.base_url}/learners/results?pageSize=10", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=30) as reply:
                reply.read()
        waited = time.perf_counter() - started
        assert emu.requests()["results"] == 2
    # A lower bound only: a loaded machine can make it slower, never faster.
    assert waited >= sum(draws) * 0.95
    assert sum(draws) > 0.3


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _row(enrollment: str | None, user: str = "u", course: str = "c") -> str:
    row = {"userId": user, "courseId": course, "courseTitle": "T"}
    if enrollment is not None:
        row["enrollmentId"] = enrollment
    return json.dumps(row)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        pytest.param([_row("a"), _row("b")], "1 missing", id="missing"),
        pytest.param([_row("a"), _row("b"), _row("c"), _row("d")], "1 not in the ground truth", id="extra"),
        pytest.param([_row("a"), _row("b"), _row("c"), _row("b")], "1 written twice", id="duplicate"),
        pytest.param(
            [_row("a"), _row("b"), _row(None, "u1", "c1")], "1 missing, 1 not in", id="identity-fallback"
        ),
    ],
)
def test_check_complete_refuses_anything_but_the_exact_ground_truth(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    """A record missing, extra or written twice is an ``IncompleteExportError`` that gives the counts."""
    path = _write(tmp_path / "out.jsonl", rows)
    with pytest.raises(IncompleteExportError, match=message):
        check_complete(jsonl_identities(path), {"a", "b", "c"})


def test_check_complete_accepts_the_exact_set_with_the_userid_courseid_identity(tmp_path: Path) -> None:
    """Rows without ``enrollmentId`` are identified by ``userId/courseId``, as the API documents."""
    path = _write(tmp_path / "out.jsonl", [_row("a"), "", _row(None, "u1", "c1")])
    assert check_complete(jsonl_identities(path), {"a", "u1/c1"}) == {
        "records": 2,
        "missing": 0,
        "extra": 0,
        "duplicates": 0,
    }


def _launch(tmp_path: Path, code: str) -> dict[str, float]:
    result = tmp_path / "launch.json"
    subprocess.run([sys.executable, str(LAUNCH), str(result), "--", sys.executable, "-c", code], check=True)
    measured: dict[str, float] = json.loads(result.read_text())
    return measured


def test_launcher_reports_the_childs_own_cpu_peak_memory_and_status(tmp_path: Path) -> None:
    """The launcher's figures are the child's: 200 MiB touched shows in its peak, its exit status is kept."""
    big = _launch(tmp_path, "b = bytearray(200 * 2**20); sum(range(3_000_000))")
    small = _launch(tmp_path, "pass")
    assert big["returncode"] == 0
    assert big["peak_rss_bytes"] > small["peak_rss_bytes"] + 150 * 2**20
    assert small["peak_rss_bytes"] < 100 * 2**20
    assert big["cpu_user_seconds"] + big["cpu_system_seconds"] > 0
    assert big["seconds"] > 0
    assert _launch(tmp_path, "raise SystemExit(3)")["returncode"] == 3


def _tool(name: str, code: str) -> Tool:
    """A tool whose process runs ``code`` with the base URL as ``sys.argv[1]`` in its working directory."""
    return Tool(
        name=name,
        kind="peer",
        format="json",
        concurrency=None,
        command=lambda base_url, _: [sys.executable, "-c", code, base_url],
        identities=lambda workdir, _: jsonl_identities(workdir / "out.jsonl"),
    )


# First page only, as most public clients do: JSON records written with the API's field names.
_FIRST_PAGE = """
import json, os, sys, urllib.parse, urllib.request
base = sys.argv[1]
form = urllib.parse.urlencode({"client_id": os.environ["ISPRING_CLIENT_ID"],
    "client_secret": os.environ["ISPRING_CLIENT_SECRET"], "grant_type": "client_credentials"}).encode()
token = json.load(urllib.request.urlopen(base + "/api/v3/token", form))["access_token"]
request = urllib.request.Request(base + "/learners/results?userStatuses[]=1&userStatuses[]=3",
    headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
rows = json.load(urllib.request.urlopen(request))["results"]
with open("out.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\\n" for r in rows + rows[:TWICE])
"""


@pytest.mark.parametrize(
    ("twice", "message"),
    [
        pytest.param(0, "missing", id="first-page-only"),
        pytest.param(1, "written twice", id="one-duplicate"),
    ],
)
def test_run_rounds_fails_loudly_on_an_incomplete_tool(twice: int, message: str) -> None:
    """A tool that stops after one page, or writes a record twice, fails the run instead of being timed."""
    tool = _tool("first-page", _FIRST_PAGE.replace("TWICE", str(twice)))
    with pytest.raises(IncompleteExportError, match=message):
        run_rounds([tool], latencies_ms=(0,), rounds=1, dataset=2_500, log=lambda _: None)


def test_run_rounds_names_a_tool_that_exits_non_zero_with_its_stderr() -> None:
    """A tool exiting with an error is a ``RuntimeError`` naming it, its status and its stderr's tail."""
    tool = _tool("broken", "import sys; sys.exit('no route to the API')")
    with pytest.raises(RuntimeError, match=r"broken exited with status 1:\n.*no route to the API"):
        run_rounds([tool], latencies_ms=(0,), rounds=1, dataset=500, log=lambda _: None)


def test_run_rounds_kills_a_tool_that_outlives_its_timeout_with_its_children(tmp_path: Path) -> None:
    """A hung tool ends in ``TimeoutError`` within the bound, and the processes it started are gone too."""
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="hung did not finish within 3 s"):
        run_rounds(
            [_tool("hung", code)], latencies_ms=(0,), rounds=1, dataset=500, timeout=3, log=lambda _: None
        )
    assert time.monotonic() - started < 30
    grandchild = int(pid_file.read_text())
    try:
        handle = os.pidfd_open(grandchild)
    except ProcessLookupError:
        return  # gone and reaped already
    # A pidfd turns readable once its process has exited (an event, no polling); orphans may linger
    # as zombies until init reaps them, which is fine: they no longer run.
    with os.fdopen(handle) as pidfd:
        readable, _, _ = select.select([pidfd], [], [], 10)
    assert readable, "the tool's child is still running after the timeout"


def test_a_tool_that_publishes_nothing_is_incomplete(tmp_path: Path) -> None:
    """No output file at all is an ``IncompleteExportError`` (the export never published), not a crash."""
    with pytest.raises(IncompleteExportError, match="no output was published"):
        list(jsonl_identities(tmp_path / "out.jsonl"))


def test_airbyte_records_are_read_from_record_messages_only(tmp_path: Path) -> None:
    """Only RECORD messages count: LOG, TRACE and STATE lines (and non-JSON noise) are skipped."""

    def record(row: str) -> str:
        data = {"stream": "learner_results", "data": json.loads(row), "emitted_at": 1}
        return json.dumps({"type": "RECORD", "record": data})

    stdout = _write(
        tmp_path / "stdout",
        [
            json.dumps({"type": "LOG", "log": {"level": "INFO", "message": '{"enrollmentId": "x"}'}}),
            record(_row("a")),
            "not json",
            json.dumps({"type": "STATE", "state": {"type": "STREAM"}}),
            record(_row(None, "u", "c")),
        ],
    )
    assert list(airbyte_identities(stdout)) == ["a", "u/c"]


def test_dlt_extracted_files_are_read_whole_gzipped_or_not(tmp_path: Path) -> None:
    """dlt's typed-jsonl job files, one array or object per line, gzipped or plain, are all read."""
    jobs = tmp_path / "pipelines" / "p" / "normalize" / "extracted" / "1" / "new_jobs"
    jobs.mkdir(parents=True)
    with gzip.open(jobs / "learner_results.abc.0.typed-jsonl.gz", "wb") as f:
        f.write(f"[{_row('a')},{_row('b')}]\n[{_row('c')}]\n".encode())
    _write(jobs / "learner_results.def.1.typed-jsonl", [_row(None, "u", "c")])
    _write(jobs / "_dlt_pipeline_state.x.0.typed-jsonl", [_row("state-not-a-record")])
    assert sorted(dlt_extracted_identities(tmp_path)) == ["a", "b", "c", "u/c"]
    with pytest.raises(FileNotFoundError, match="dlt extracted no learner_results"):
        list(dlt_extracted_identities(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("fmt", "decoder", "path"),
    [
        pytest.param("xml", "XmlDecoder", ["response", "results", "result"], id="xml"),
        pytest.param("json", "JsonDecoder", ["results"], id="json"),
    ],
)
def test_airbyte_manifest_per_format(fmt: str, decoder: str, path: list[str]) -> None:
    """Airbyte pages ``nextPageToken`` → ``pageToken`` with OAuth2 client credentials, in either format."""
    retriever = manifest(fmt)["streams"][0]["retriever"]
    assert retriever["decoder"]["type"] == decoder
    assert retriever["record_selector"]["extractor"]["field_path"] == path
    assert retriever["paginator"]["page_token_option"]["field_name"] == "pageToken"
    assert "nextPageToken" in retriever["paginator"]["pagination_strategy"]["cursor_value"]
    auth = retriever["requester"]["authenticator"]
    assert (auth["type"], auth["grant_type"]) == ("OAuthAuthenticator", "client_credentials")


def test_a_runs_floors_are_its_cpu_on_one_core_on_every_core_and_its_waits() -> None:
    """The floors a ceiling is computed from: client CPU; client + emulator CPU over the cores;
    start-up plus the requests C at a time, each the median latency."""
    run = {
        "cpu_user_seconds": 3.0,
        "cpu_system_seconds": 1.0,
        "server_cpu_seconds": 2.0,
        "startup_cpu_seconds": 0.5,
        "requests": 200,
        "latency_ms": 50,
    }
    found = floors(run, {"concurrency": 8})
    assert found == {"one_core": 4.0, "machine": 6.0 / CORES, "latency": 0.5 + 200 / 8 * 0.05}
    assert floors(run, {"concurrency": None})["latency"] == 0.5 + 200 * 0.05  # one request at a time

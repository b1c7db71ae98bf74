"""The emulator's fidelity switches: unknown ids, vanished departments, path prefix, latency with a tail."""

from __future__ import annotations

import io
import json
import statistics
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from defusedxml import ElementTree as SafeET

from ispring_async._app.cli import main as cli_main
from ispring_async.emulator import (
    Dataset,
    Emulator,
    EmulatorConfig,
    Faults,
    running_emulator,
    serve_in_process,
)
from ispring_async.emulator._cli import build_config, parser
from tests._emulator_http import EVERY_STATUS, export, get, token_form, validate

STRANGER = str(uuid.UUID(int=7, version=4))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session (not the library's client)."""
    async with aiohttp.ClientSession() as client:
        yield client


def error_of(body: bytes, fmt: str) -> tuple[int, str]:
    """``(code, message)`` of an API error body in ``fmt``."""
    if fmt == "json":
        document = json.loads(body)
        validate(document, "error-response.json")
        return document["code"], document["message"]
    root = SafeET.fromstring(body)
    return int(root.findtext("code") or 0), root.findtext("message") or ""


# -- unknown ids ------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize(
    ("name", "noun"),
    [
        pytest.param("userIds[]", "user IDs", id="users"),
        pytest.param("courseIds[]", "course IDs", id="courses"),
        pytest.param("departmentIds[]", "department IDs", id="departments"),
        pytest.param("enrollmentIds[]", "enrollment IDs", id="enrollments"),
    ],
)
async def test_one_unknown_id_fails_the_whole_request_with_400(
    session: aiohttp.ClientSession, name: str, noun: str, fmt: str
) -> None:
    """unknown_ids='400': one unknown id among known ones is a 400 naming the list, never the id."""
    async with running_emulator(EmulatorConfig(results=300, unknown_ids="400")) as emu:
        first = emu.dataset.record(0)
        known = {
            "userIds[]": first.user_id,
            "courseIds[]": first.course_id,
            "departmentIds[]": emu.dataset.department_ids[0],
            "enrollmentIds[]": first.enrollment_id,
        }[name]
        assert known is not None
        status, _, _ = await get(session, emu, f"/learners/results?{name}={known}", fmt=fmt)
        assert status == 200
        status, _, body = await get(
            session, emu, f"/learners/results?{name}={known}&{name}={STRANGER}", fmt=fmt
        )
        assert status == 400
        assert error_of(body, fmt) == (400, f"One or more invalid {noun}")
        assert STRANGER not in body.decode()
        assert emu.stats.faults["unknown_ids"] == 1
        with pytest.raises(ValueError, match=noun):
            emu.expected_results([(name, STRANGER)])


@pytest.mark.anyio
async def test_by_default_an_unknown_id_matches_nothing(session: aiohttp.ClientSession) -> None:
    """The default unknown_ids='match-nothing' answers 200: the unknown id adds no row."""
    async with running_emulator(EmulatorConfig(results=300)) as emu:
        user = emu.dataset.record(0).user_id
        params = [("userIds[]", user), ("userIds[]", STRANGER), *EVERY_STATUS]
        exported = await export(session, emu, params, page_size=50)
        assert exported == emu.expected_results([("userIds[]", user), *EVERY_STATUS])
        assert exported


@pytest.mark.anyio
async def test_vanished_departments_are_listed_but_unknown_to_results(session: aiohttp.ClientSession) -> None:
    """vanished_departments are in /departments, hold no rows, and answer 400 under unknown_ids='400'."""
    config = EmulatorConfig(results=500, departments=10, vanished_departments=3, unknown_ids="400")
    async with running_emulator(config) as emu:
        ds = emu.dataset
        vanished = [ds.department_ids[i] for i in sorted(ds.vanished)]
        status, _, body = await get(session, emu, "/departments?pageSize=1000", fmt="json")
        assert status == 200
        listed = {d["departmentId"]: d for d in json.loads(body)["departments"]}
        assert len(listed) == 13
        assert set(vanished) <= set(listed)
        assert all(listed[v].get("parentDepartmentId") in listed for v in vanished)
        status, _, body = await get(
            session, emu, f"/learners/results?departmentIds[]={vanished[0]}", fmt="json"
        )
        assert (status, error_of(body, "json")) == (400, (400, "One or more invalid department IDs"))


def test_vanished_departments_leave_the_rest_of_the_dataset_unchanged() -> None:
    """Adding vanished departments changes no row, user or other department."""
    plain = Dataset(EmulatorConfig(results=800, seed=4))
    with_vanished = Dataset(EmulatorConfig(results=800, seed=4, vanished_departments=5))
    assert [plain.record(p) for p in range(len(plain))] == [with_vanished.record(p) for p in range(800)]
    assert set(map(str, plain.departments())) <= set(map(str, with_vanished.departments()))
    assert len(with_vanished.departments()) == len(plain.departments()) + 5


# -- path prefix and token path ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_path_prefix_serves_data_under_it_and_the_token_at_the_root(
    session: aiohttp.ClientSession,
) -> None:
    """path_prefix moves /learners/results and /departments under it; the token stays at /api/v3/token."""
    async with running_emulator(EmulatorConfig(results=100, path_prefix="/index.php/api/v2")) as emu:
        root = emu.base_url.removesuffix("/index.php/api/v2")
        assert emu.token_url == root + "/api/v3/token"
        for path in ("/learners/results", "/departments"):
            status, _, _ = await get(session, emu, path)
            assert status == 200
            async with session.get(root + path, headers={"Authorization": emu.issue_token()}) as response:
                assert response.status == 404
        async with session.post(emu.token_url, data=token_form(emu)) as response:
            assert response.status == 200
        async with session.post(emu.base_url + "/api/v3/token", data=token_form(emu)) as response:
            assert response.status == 404  # where a client joining base URL and token path would post


@pytest.mark.anyio
async def test_token_path_moves_the_token_endpoint(session: aiohttp.ClientSession) -> None:
    """token_path serves the token endpoint elsewhere, and not at /api/v3/token."""
    async with running_emulator(EmulatorConfig(results=10, token_path="/oauth2/token")) as emu:
        async with session.post(emu.token_url, data=token_form(emu)) as response:
            assert response.status == 200
            assert (await response.json())["token_type"] == "bearer"
        async with session.post(emu.base_url + "/api/v3/token", data=token_form(emu)) as response:
            assert response.status == 404


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"path_prefix": "api/v2"}, id="prefix-without-slash"),
        pytest.param({"path_prefix": "/api/v2/"}, id="prefix-trailing-slash"),
        pytest.param({"token_path": "oauth2/token"}, id="token-path-relative"),
        pytest.param({"token_path": "/learners/results"}, id="token-path-on-data"),
        pytest.param({"unknown_ids": "ignore"}, id="unknown-ids-mode"),
        pytest.param({"vanished_departments": -1}, id="negative-vanished"),
    ],
)
def test_invalid_variant_settings_are_refused(changes: dict[str, object]) -> None:
    """A malformed prefix, token path or mode is a ValueError at construction."""
    with pytest.raises(ValueError, match="EmulatorConfig"):
        EmulatorConfig(**changes)  # type: ignore[arg-type]


# -- latency --------------------------------------------------------------------------------------------


def planned_delays(faults: Faults, count: int) -> list[float]:
    """The waits the emulator plans for its first ``count`` results requests (no request is sent)."""
    emu = Emulator(EmulatorConfig(results=10, faults=faults))
    return [emu._plan("results")[1].delay for _ in range(count)]


def test_lognormal_latency_has_the_configured_median_and_tail() -> None:
    """latency_median/latency_p99 give per-request waits whose median and 99th percentile match."""
    delays = planned_delays(Faults(seed=3, latency_median=0.1, latency_p99=1.0), 4000)
    quantiles = statistics.quantiles(delays, n=100)
    assert 0.09 < statistics.median(delays) < 0.11
    assert 0.8 < quantiles[98] < 1.25
    assert min(delays) > 0
    assert planned_delays(Faults(seed=3, latency_median=0.1, latency_p99=1.0), 50) == delays[:50]
    assert planned_delays(Faults(seed=4, latency_median=0.1, latency_p99=1.0), 50) != delays[:50]


def test_lognormal_latency_adds_to_fixed_latency_and_leaves_fault_draws_alone() -> None:
    """The tail adds to latency; the faults drawn per request are the same with or without it."""
    base = Faults(seed=5, latency=0.02, server_error=0.2, reset=0.1)
    tailed = Faults(seed=5, latency=0.02, server_error=0.2, reset=0.1, latency_median=0.05)
    plain_emu = Emulator(EmulatorConfig(results=10, faults=base))
    tailed_emu = Emulator(EmulatorConfig(results=10, faults=tailed))
    plain = [plain_emu._plan("results")[1] for _ in range(300)]
    with_tail = [tailed_emu._plan("results")[1] for _ in range(300)]
    assert [p.fault for p in plain] == [p.fault for p in with_tail]
    assert all(p.delay == 0.02 for p in plain)
    assert all(t.delay > 0.02 for t in with_tail)
    assert planned_delays(Faults(), 5) == [0.0] * 5


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"latency_median": -0.1}, id="negative-median"),
        pytest.param({"latency_median": 0.2, "latency_p99": 0.1}, id="p99-below-median"),
        pytest.param({"latency_p99": 0.5}, id="p99-without-median"),
    ],
)
def test_invalid_latency_settings_are_refused(changes: dict[str, float]) -> None:
    """A negative median or a p99 below the median is a ValueError."""
    with pytest.raises(ValueError, match="latency"):
        Faults(**changes)  # type: ignore[arg-type]


# -- the command line -----------------------------------------------------------------------------------


def test_cli_variant_options_build_the_config() -> None:
    """The fidelity switches of ``ispring-async emulator`` land in EmulatorConfig and Faults."""
    argv = ["--unknown-ids", "400", "--vanished-departments", "2", "--path-prefix", "/api/v2"]
    argv += ["--token-path", "/oauth2/token", "--latency-median", "0.1", "--latency-p99", "1.5"]
    config = build_config(parser().parse_args(argv))
    assert (config.unknown_ids, config.vanished_departments) == ("400", 2)
    assert (config.path_prefix, config.token_path) == ("/api/v2", "/oauth2/token")
    assert (config.faults.latency_median, config.faults.latency_p99) == (0.1, 1.5)
    defaults = build_config(parser().parse_args([]))
    assert (defaults.unknown_ids, defaults.path_prefix, defaults.token_path) == (
        "match-nothing",
        "",
        "/api/v3/token",
    )
    assert defaults.faults.latency_median == 0.0


def test_cli_help_describes_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    """``ispring-async emulator --help`` names each variant switch."""
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in (
        "--subdepartment-matching",
        "--reject-one-sided-ranges",
        "--unknown-ids",
        "--vanished-departments",
        "--path-prefix",
        "--token-path",
        "--empty-last-token",
        "--lenient-lists",
        "--overdue-style",
        "--latency-median",
        "--latency-p99",
    ):
        assert option in text


def test_cli_with_a_prefix_prints_the_token_url_and_serves_an_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child emulator with a prefix and token path prints ISPRING_TOKEN_URL; an export using it works."""
    shown = io.StringIO()
    argv = ["--results", "300", "--path-prefix", "/api/v2", "--token-path", "/oauth2/token"]
    with serve_in_process(argv, client_secret="prefix-secret", echo=shown) as emu:
        lines = dict(line.split("=", 1) for line in shown.getvalue().splitlines() if "=" in line)
        assert emu.base_url.endswith("/api/v2")
        assert lines["ISPRING_TOKEN_URL"] == emu.base_url.removesuffix("/api/v2") + "/oauth2/token"
        for key in ("ISPRING_TOKEN", "ISPRING_BASE_URL", "ISPRING_SKIP_UNKNOWN_IDS"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
        monkeypatch.setenv("ISPRING_CLIENT_SECRET", "prefix-secret")
        monkeypatch.setenv("ISPRING_TOKEN_URL", lines["ISPRING_TOKEN_URL"])
        output = tmp_path / "out.jsonl"
        argv = ["export", "--base-url", emu.base_url, "--output", str(output), "--progress", "off"]
        assert cli_main(argv) == 0
    assert len(output.read_bytes().splitlines()) > 200

"""Unknown ids against ``EmulatorConfig(unknown_ids="400")``: loud by default, bisected out on request.

Every case runs against the real emulator over HTTP; request counts come from the emulator's own
stats, ground truth from its oracle over the ids the account knows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ispring_async import (
    BadRequestError,
    Client,
    DateRange,
    FanOut,
    FanOutOptions,
    ResultsQuery,
    Split,
    _batching,
)
from ispring_async._app.cli import main as cli_main
from ispring_async._app.export import ExitCode
from ispring_async._exceptions import PartitionError
from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, running_emulator, serve_in_thread
from tests._helpers import assert_exactly_once, drain, known_params, read_records, strangers

STATUSES = [1, 3]


@contextlib.asynccontextmanager
async def client_for(emu: Emulator, **options: object) -> AsyncIterator[Client]:
    """A client of ``emu`` (100-record pages)."""
    async with Client(
        emu.base_url,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        page_size=100,
        **options,  # type: ignore[arg-type]
    ) as client:
        yield client


def strict(**overrides: object) -> EmulatorConfig:
    """A small emulator whose unknown ids answer 400."""
    settings: dict[str, object] = {"results": 1500, "seed": 11, "unknown_ids": "400", **overrides}
    return EmulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_default_fails_loudly_naming_the_list_without_probing() -> None:
    """Without skip_unknown_ids a 400 on an id list is a BadRequestError naming the list; no probe is sent."""
    async with running_emulator(strict()) as emu:
        query = ResultsQuery(user_ids=[*emu.dataset.user_ids[:5], *strangers(1, 1)], user_statuses=STATUSES)
        async with client_for(emu) as client:
            with pytest.raises(BadRequestError) as caught:
                await drain(client.learner_results(query, split="none"))
        message = str(caught.value)
        assert "userIds[] (6 ids)" in message
        assert "skip_unknown_ids=True" in message
        assert "One or more invalid user IDs" in message
        assert emu.stats.requests["results"] == 1
        assert client.skipped_ids == {}


@pytest.mark.parametrize(
    ("known", "unknown"),
    [
        pytest.param(40, 1, id="1-of-41"),
        pytest.param(40, 3, id="3-of-43"),
        pytest.param(120, 5, id="5-of-125"),
        pytest.param(1, 1, id="1-of-2"),
    ],
)
@pytest.mark.anyio
async def test_bisection_isolates_unknown_ids_exactly_in_bounded_requests(known: int, unknown: int) -> None:
    """The unknown ids are found in at most 2*k*log2(n)+2 probes; every row of the known ids comes once."""
    async with running_emulator(strict()) as emu:
        rng = random.Random(known * 31 + unknown)
        bad = strangers(unknown, known)
        users = [*rng.sample(emu.dataset.user_ids, known), *bad]
        rng.shuffle(users)
        query = ResultsQuery(user_ids=users, user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, split="none"))
            probes = client._unknown_ids.probes
        assert_exactly_once(records, emu.expected_results(known_params(emu, query)))
        assert set(client.skipped_ids["userIds[]"]) == set(bad)
        # Lists over 50 ids are sent in batches (_batching), each bisected on its own.
        batches = query.batches()
        refused = sum(not set(batch.user_ids or ()).isdisjoint(bad) for batch in batches)
        pages = sum(
            max(1, math.ceil(len(emu.expected_results(known_params(emu, batch))) / 100)) for batch in batches
        )
        n = max(len(tuple(batch.user_ids or ())) for batch in batches)
        assert probes <= 2 * unknown * math.ceil(math.log2(n)) + 2 * refused
        assert emu.stats.requests["results"] == pages + probes + refused  # the refused first requests


@pytest.mark.anyio
async def test_unknown_ids_in_several_lists_are_isolated_per_list() -> None:
    """Unknown user and course ids in one request are both found and skipped; the rest is exact."""
    async with running_emulator(strict()) as emu:
        ds = emu.dataset
        bad_users, bad_courses = strangers(2, 2), strangers(1, 3)
        query = ResultsQuery(
            user_ids=[*ds.user_ids[:60], *bad_users],
            course_ids=[*bad_courses, *ds.course_ids[:6]],
            user_statuses=STATUSES,
        )
        async with client_for(emu, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, split="window", concurrency=4))
        assert_exactly_once(records, emu.expected_results(known_params(emu, query)))
        assert records
        assert set(client.skipped_ids["userIds[]"]) == set(bad_users)
        assert client.skipped_ids["courseIds[]"] == tuple(bad_courses)


@pytest.mark.anyio
async def test_a_list_of_only_unknown_ids_matches_nothing_and_never_widens() -> None:
    """When every id of a list is unknown the query matches nothing: no request goes out without the list."""
    async with running_emulator(strict()) as emu:
        query = ResultsQuery(user_ids=strangers(3, 4), user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, split="adaptive"))
        assert records == []
        assert len(client.skipped_ids["userIds[]"]) == 3
        # The refused request and the probes; of the probes only the one without the list was accepted
        # (200s: the token and that probe), so no page was ever asked for without the list.
        assert emu.stats.requests["results"] == 1 + client._unknown_ids.probes
        assert emu.stats.responses[200] == 2


@pytest.mark.anyio
async def test_a_400_for_another_reason_is_raised_not_taken_for_unknown_ids() -> None:
    """A refusal that is not about ids (a one-sided range the server rejects) is raised; no id is skipped."""
    async with running_emulator(strict(one_sided_ranges=False)) as emu:
        start = DateRange(start=emu.dataset.record(0).access_date)
        query = ResultsQuery(user_ids=emu.dataset.user_ids[:8], access_date=start, user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            with pytest.raises(BadRequestError) as caught:
                await drain(client.learner_results(query, split="none"))
        assert "both startDate and endDate are required" in str(caught.value)
        assert any("no unknown id found" in note for note in caught.value.__notes__)
        assert client.skipped_ids == {}


@pytest.mark.anyio
async def test_concurrent_chains_share_one_search() -> None:
    """Eight windows refused at once wait for one bisection and reuse it, instead of eight searches."""
    async with running_emulator(strict()) as emu:
        bad = strangers(2, 5)
        query = ResultsQuery(user_ids=[*emu.dataset.user_ids[:100], *bad], user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            options = FanOutOptions(split=Split.WINDOW, concurrency=8, windows=8)
            fanout = FanOut(client, query, options)
            records = []
            async with fanout.run() as batches:
                async for batch in batches:
                    records.extend(batch.records)
            probes = client._unknown_ids.probes
            stats = fanout.stats
        assert_exactly_once(records, emu.expected_results(known_params(emu, query)))
        assert set(stats.skipped_ids["userIds[]"]) == set(bad)
        # One search over 102 ids with 2 unknown: at most 2*2*7+2 probes, whatever the chain count.
        assert probes <= 2 * 2 * 7 + 2


@pytest.mark.anyio
async def test_department_split_skips_departments_that_vanished() -> None:
    """Departments /departments lists but results no longer knows are skipped; every row still comes once."""
    async with running_emulator(strict(vanished_departments=3)) as emu:
        vanished = {emu.dataset.department_ids[i] for i in emu.dataset.vanished}
        query = ResultsQuery(user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            stream = client.learner_results(query, split="department")
            records = await drain(stream)
        assert_exactly_once(records, emu.expected_results(query.to_params()))
        assert set(stream.skipped_ids["departmentIds[]"]) == vanished
        assert stream.skipped_ids == client.skipped_ids


@pytest.mark.anyio
async def test_department_split_without_skipping_fails_naming_department_ids() -> None:
    """By default a vanished department fails the export with a PartitionError naming departmentIds[]."""
    async with running_emulator(strict(vanished_departments=1)) as emu:
        async with client_for(emu) as client:
            with pytest.raises(PartitionError) as caught:
                await drain(client.learner_results(ResultsQuery(), split="department"))
        assert isinstance(caught.value.__cause__, BadRequestError)
        assert "departmentIds[] (1 id)" in str(caught.value.__cause__)


@pytest.mark.anyio
async def test_a_chain_resumed_from_a_saved_token_narrows_again_and_stays_exact() -> None:
    """A new client resuming a narrowed chain from its saved token gets exactly the remaining rows."""
    async with running_emulator(strict()) as emu:
        query = ResultsQuery(user_ids=[*emu.dataset.user_ids[:150], *strangers(2, 6)], user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            pages = client.result_pages(query)
            async with contextlib.aclosing(pages):
                first = await anext(pages)
        assert first.next_page_token is not None
        async with client_for(emu, skip_unknown_ids=True) as fresh:
            pages = fresh.result_pages(query, first.next_page_token)
            rest = [r async for page in pages for r in page.records]
        assert_exactly_once([*first.records, *rest], emu.expected_results(known_params(emu, query)))


@pytest.mark.anyio
async def test_skipped_ids_are_logged_once_per_search(caplog: pytest.LogCaptureFixture) -> None:
    """Each skipped id is named in one warning of the ispring_async logger."""
    async with running_emulator(strict()) as emu:
        bad = strangers(1, 7)
        query = ResultsQuery(user_ids=[*emu.dataset.user_ids[:10], *bad], user_statuses=STATUSES)
        with caplog.at_level(logging.WARNING, logger="ispring_async"):
            async with client_for(emu, skip_unknown_ids=True) as client:
                await drain(client.learner_results(query, split="window", concurrency=4))
        lines = [r.getMessage() for r in caplog.records if bad[0] in r.getMessage()]
        assert len(lines) == 1
        assert "userIds[]" in lines[0]


@pytest.mark.anyio
async def test_default_emulator_matches_nothing_for_unknown_ids() -> None:
    """Under the default switch an unknown id matches nothing, so nothing is skipped or probed."""
    async with running_emulator(EmulatorConfig(results=800, seed=11)) as emu:
        query = ResultsQuery(user_ids=[*emu.dataset.user_ids[:20], *strangers(2, 8)], user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, split="none"))
        assert_exactly_once(records, emu.expected_results(query.to_params()))
        assert client.skipped_ids == {}
        assert client._unknown_ids.probes == 0


# -- the export command -----------------------------------------------------------------------------------

EXPORT_FLAGS = ["--page-size", "100", "--retry-attempts", "1", "--retry-max-wait", "0", "--progress", "off"]


def export_argv(emu: Emulator, output: Path, users: Sequence[str], *extra: str) -> list[str]:
    """``ispring-async export`` of ``users``' results from ``emu`` into ``output`` (one chain)."""
    argv = ["export", "--base-url", emu.base_url, "--output", str(output), "--split", "none"]
    return [*argv, *EXPORT_FLAGS, *(f"--user-id={u}" for u in users), *extra]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The emulator's credentials in the environment, none of our other variables."""
    for key in ("ISPRING_BASE_URL", "ISPRING_TOKEN", "ISPRING_TOKEN_URL", "ISPRING_SKIP_UNKNOWN_IDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ISPRING_CLIENT_ID", "emulator-client")
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", "emulator-secret")
    return monkeypatch


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("flag", id="flag"),
        pytest.param("env", id="env"),
        pytest.param("config", id="config-key"),
    ],
)
def test_export_skips_unknown_ids_when_asked_and_says_which(
    how: str, env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flag, $ISPRING_SKIP_UNKNOWN_IDS or the config key: the rest exported exactly, skips named."""
    with serve_in_thread(strict()) as emu:
        bad = strangers(2, 9)
        users = [*emu.dataset.user_ids[:50], *bad]
        output = tmp_path / "out.jsonl"
        extra: list[str] = []
        if how == "flag":
            extra = ["--skip-unknown-ids"]
        elif how == "env":
            env.setenv("ISPRING_SKIP_UNKNOWN_IDS", "1")
        else:
            config = tmp_path / "export.toml"
            config.write_text("skip_unknown_ids = true\n", encoding="utf-8")
            extra = ["--config", str(config)]
        assert cli_main(export_argv(emu, output, users, *extra)) == ExitCode.OK
        query = ResultsQuery(user_ids=users, user_statuses=STATUSES)
        assert_exactly_once(read_records(output, "jsonl"), emu.expected_results(known_params(emu, query)))
    captured = capsys.readouterr()
    assert f"skipped unknown:    userIds[] 2: {', '.join(bad)}" in captured.out
    assert all(b in captured.err for b in bad)  # the warning log line


def test_export_without_skipping_fails_naming_the_list(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default the export exits 4 with a message naming userIds[] and the option that skips."""
    with serve_in_thread(strict()) as emu:
        users = [*emu.dataset.user_ids[:5], *strangers(1, 10)]
        assert cli_main(export_argv(emu, tmp_path / "out.jsonl", users)) == ExitCode.API
    err = capsys.readouterr().err
    assert "userIds[] (6 ids)" in err
    assert "--skip-unknown-ids" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_export_interrupted_after_skipping_resumes_exactly(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure pages after the bisection, then --resume: the output is exactly the known ids' rows."""
    with serve_in_thread(strict()) as probe_run:
        users = [*probe_run.dataset.user_ids[:90], *strangers(3, 11)]
        assert cli_main(export_argv(probe_run, tmp_path / "dry.jsonl", users, "--skip-unknown-ids")) == 0
        # Refused request, probes and pages of an uninterrupted run: fail four pages before its end.
        total = probe_run.stats.requests["results"]
    faults = Faults(script={("results", total - 4): Fault.SERVER_ERROR})
    with serve_in_thread(strict(faults=faults)) as emu:
        output = tmp_path / "out.sqlite"
        argv = export_argv(emu, output, users, "--skip-unknown-ids")
        assert cli_main(argv) == ExitCode.API
        assert "continue with" in capsys.readouterr().err
        assert cli_main([*argv, "--resume"]) == ExitCode.OK
        query = ResultsQuery(user_ids=users, user_statuses=STATUSES)
        expected = emu.expected_results(known_params(emu, query))
    records = read_records(output, "sqlite")
    assert_exactly_once(records, expected)
    assert len(expected) > 400


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["user_ids", "course_ids", "department_ids", "enrollment_ids"])
async def test_each_id_list_is_bisected(field: str) -> None:
    """An unknown id is found and skipped in whichever of the four id lists it is."""
    async with running_emulator(strict()) as emu:
        ds = emu.dataset
        rows = [ds.record(p) for p in range(0, 1500, 37)]
        known = {
            "user_ids": [r.user_id for r in rows],
            "course_ids": ds.course_ids[:5],
            "department_ids": ds.department_ids[:4],
            "enrollment_ids": [r.enrollment_id for r in rows if r.enrollment_id],
        }[field]
        bad = strangers(1, 12)
        query = ResultsQuery(**{field: [*known, *bad]}, user_statuses=STATUSES)  # type: ignore[arg-type]
        async with client_for(emu, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, split="none"))
        truth = [(n, v) for n, v in query.to_params() if v not in bad]
        assert_exactly_once(records, emu.expected_results(truth))
        assert records
        assert list(client.skipped_ids.values()) == [tuple(bad)]


@pytest.mark.anyio
@pytest.mark.parametrize("unknown", [pytest.param(0, id="all-known"), pytest.param(1, id="one-unknown")])
async def test_a_list_refused_for_its_length_skips_no_known_id(
    unknown: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL over the server's limit (also a 400) is raised; no known id is taken for an unknown one.

    Batching (``_batching``) keeps requests short, so it is widened here past aiohttp's 8190-byte
    request line to stand for a server whose limit is shorter than ours.
    """
    monkeypatch.setattr(_batching, "MAX_IDS_PER_LIST", 1000)
    monkeypatch.setattr(_batching, "MAX_IDS_PER_REQUEST", 1000)
    async with running_emulator(strict(results=3000)) as emu:
        bad = strangers(unknown, 13)
        users = [*emu.dataset.user_ids[:200], *bad]
        query = ResultsQuery(user_ids=users, user_statuses=STATUSES)
        async with client_for(emu, skip_unknown_ids=True) as client:
            with pytest.raises(BadRequestError) as caught:
                await drain(client.learner_results(query, split="none"))
        assert any("no unknown id found" in note for note in caught.value.__notes__)
        assert set(client.skipped_ids.get("userIds[]", ())) == set(bad)

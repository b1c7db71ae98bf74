"""The client against every emulator switch that changes behaviour: the variants of the real API.

``ispring-api.md`` lists what is unknown or seen to differ about the real service; the emulator has a
switch for each (``VARIANTS``). Here the library's fan-out (every split), its page chains (with a
resume from a saved token) and the export command (to a real SQLite or JSONL file) run under each
one and must return exactly the emulator's ground truth: every row the account holds for the query,
each once. A behaviour that works only under the default switches fails here.

``make test`` runs a bounded selection (``SELECTION``: every variant, a few scenarios each);
``ISPRING_VARIANTS_FULL=1`` (``make chaos``) runs every variant with every scenario.

The parser helper's XML layout switches plug in through ``LAYOUTS``: each entry is a set of
``EmulatorConfig`` fields crossed with every variant in the full run (and with the default variant in
the bounded one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ispring_async import Client, DateRange, ModuleResultsQuery, ResultsQuery, Split, UsersQuery
from ispring_async._app.cli import main as cli_main
from ispring_async._app.export import ExitCode
from ispring_async._models import LearnerResult
from ispring_async.emulator import Emulator, EmulatorConfig, serve_in_thread
from ispring_async.emulator._config import XML_LAYOUTS
from tests._helpers import assert_exactly_once, drain, known_params, read_records, strangers

SECRET = "variants-secret-3b7e"
STATUSES = [1, 3]
FULL = os.environ.get("ISPRING_VARIANTS_FULL", "") not in ("", "0")


@dataclasses.dataclass(frozen=True)
class Variant:
    """An emulator switch (as ``EmulatorConfig`` fields) and how a client must be told about it."""

    config: Mapping[str, Any]
    token_url: bool = False
    """Whether the client needs ``token_url`` (the token is not at the host root's /api/v3/token)."""


VARIANTS: dict[str, Variant] = {
    "default": Variant({}),
    "subdepartment-matching": Variant({"subdepartment_matching": True}),
    "two-sided-ranges-only": Variant({"one_sided_ranges": False}),
    "unknown-ids-400": Variant({"unknown_ids": "400", "vanished_departments": 2}),
    "path-prefix": Variant({"path_prefix": "/index.php/api/v2"}),
    "path-prefix-own-token-url": Variant({"path_prefix": "/api/v2", "token_path": "/oauth2/token"}, True),
    "empty-last-token": Variant({"empty_last_token": True}),
    "lenient-lists": Variant({"lenient_lists": True}),
    "overdue-words": Variant({"overdue_style": "words"}),
    "page-size-clamped": Variant({"max_page_size": 40}),
}

LAYOUTS: dict[str, Mapping[str, Any]] = {
    "flat": {},
    **{name: {"xml_layout": layout} for name, layout in XML_LAYOUTS.items() if name != "compact"},
}

# A variant's known failure, owned by another area: xfail(strict=True), so the lead sees it flip.
# (Empty: the fan-out now sends both bounds on every window, so strict servers pass.)
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def queries(emu: Emulator) -> dict[str, ResultsQuery]:
    """The scenarios' queries: everything, and id lists (with unknown ids) under a bounded date range."""
    ds = emu.dataset
    rng = random.Random(3)
    users = [*rng.sample(ds.user_ids, 80), *strangers(2, 1)]
    start, end = datetime(2021, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    return {
        "all": ResultsQuery(user_statuses=STATUSES),
        "ids": ResultsQuery(
            user_ids=users,
            course_ids=[*ds.course_ids[:8], *strangers(1, 2)],
            access_date=DateRange(start=start, end=end),
            user_statuses=STATUSES,
        ),
    }


def ground_truth(emu: Emulator, query: ResultsQuery) -> list[LearnerResult]:
    """Every row the account holds for ``query``: unknown ids hold none, whatever the switch says."""
    expected = emu.expected_results(known_params(emu, query))
    assert expected, "a scenario with no rows proves nothing"
    return expected


# -- the emulators: one per variant and layout, shared by the module ------------------------------------


@pytest.fixture(scope="module")
def emulators() -> Iterator[Any]:
    """``get(variant, layout)``: a running emulator for that combination (started on first use)."""
    running: dict[tuple[str, str], Emulator] = {}
    with contextlib.ExitStack() as stack:

        def get(variant: str, layout: str) -> Emulator:
            if (variant, layout) not in running:
                config = EmulatorConfig(
                    results=1500,
                    seed=21,
                    departments=12,
                    department_depth=3,
                    client_secret=SECRET,
                    **{**LAYOUTS[layout], **VARIANTS[variant].config},
                )
                running[variant, layout] = stack.enter_context(serve_in_thread(config))
            return running[variant, layout]

        yield get


@contextlib.asynccontextmanager
async def client_for(emu: Emulator, variant: str, *, response_format: str = "xml") -> AsyncIterator[Client]:
    """A client of ``emu`` configured as a user of that variant would (100-record pages)."""
    token_url = emu.token_url if VARIANTS[variant].token_url else None
    async with Client(
        emu.base_url,
        client_id=emu.client_id,
        client_secret=SECRET,
        page_size=100,
        response_format=response_format,
        token_url=token_url,
        skip_unknown_ids=True,
    ) as client:
        yield client


# -- the matrix -------------------------------------------------------------------------------------------

SCENARIOS = [
    *(
        f"fanout-{split.value}-{q}-{fmt}"
        for split in Split
        for q in ("all", "ids")
        for fmt in ("xml", "json")
    ),
    *(f"pages-{q}-{fmt}" for q in ("all", "ids") for fmt in ("xml", "json")),
    "export-sqlite",
    "export-jsonl",
]
# Each variant in make test: the adaptive split on id lists, a department split of everything (where
# vanished departments and subtrees bite), a resumed page chain, and the export command.
SELECTION = ["fanout-adaptive-ids-xml", "fanout-department-all-json", "pages-ids-xml", "export-sqlite"]
# And where a variant bites hardest: windows without a query range, departments with id lists.
EXTRA = {"two-sided-ranges-only": ["fanout-adaptive-all-xml"], "unknown-ids-400": ["fanout-combined-ids-xml"]}


def _cases() -> list[Any]:
    cases = []
    for layout in LAYOUTS:
        for variant in VARIANTS:
            bounded = (
                [*SELECTION, *EXTRA.get(variant, ())] if layout == "flat" or variant == "default" else []
            )
            chosen = SCENARIOS if FULL else bounded
            for scenario in chosen:
                marks = []
                reason = KNOWN_FAILURES.get((variant, scenario))
                if reason is not None:
                    marks.append(pytest.mark.xfail(strict=True, reason=reason))
                cases.append(
                    pytest.param(variant, layout, scenario, marks=marks, id=f"{variant}-{layout}-{scenario}")
                )
    return cases


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("variant", "layout", "scenario"), [c for c in _cases() if "export" not in c.values[2]]
)
async def test_library_equals_ground_truth_under_each_variant(
    emulators: Any, variant: str, layout: str, scenario: str
) -> None:
    """The fan-out (each split) and a resumed page chain return exactly the ground truth under the switch."""
    emu: Emulator = emulators(variant, layout)
    kind, *rest = scenario.split("-")
    fmt = rest[-1]
    query = queries(emu)[rest[-2]]
    expected = ground_truth(emu, query)
    skipped: dict[str, set[str]] = {}
    async with client_for(emu, variant, response_format=fmt) as client:
        if kind == "fanout":
            split = Split(rest[0])
            records = await drain(client.learner_results(query, split=split, concurrency=4))
        else:
            # A chain read one page, then resumed from its saved token by a new client.
            pages = client.result_pages(query)
            async with contextlib.aclosing(pages):
                first = await anext(pages)
            records = list(first.records)
            if first.next_page_token:
                async with client_for(emu, variant, response_format=fmt) as resumed:
                    async for page in resumed.result_pages(query, first.next_page_token):
                        records.extend(page.records)
                # Long id lists go in batches (_batching): the resumed client may be the one whose
                # batch met an unknown id.
                for name, ids in resumed.skipped_ids.items():
                    skipped.setdefault(name, set()).update(ids)
    assert_exactly_once(records, expected)
    for name, ids in client.skipped_ids.items():
        skipped.setdefault(name, set()).update(ids)
    if variant == "unknown-ids-400" and rest[-2] == "ids":
        assert {"userIds[]", "courseIds[]"} <= set(skipped)
        assert len(skipped["userIds[]"]) == 2


@pytest.mark.parametrize(("variant", "layout", "scenario"), [c for c in _cases() if "export" in c.values[2]])
def test_export_command_equals_ground_truth_under_each_variant(
    emulators: Any,
    variant: str,
    layout: str,
    scenario: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ispring-async export`` to a real file holds exactly the ground truth under the switch."""
    emu: Emulator = emulators(variant, layout)
    for key in ("ISPRING_BASE_URL", "ISPRING_TOKEN", "ISPRING_TOKEN_URL", "ISPRING_SKIP_UNKNOWN_IDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ISPRING_CLIENT_ID", emu.client_id)
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", SECRET)
    fmt = scenario.removeprefix("export-")
    output = tmp_path / f"results.{fmt}"
    query = queries(emu)["ids"]
    argv = ["export", "--base-url", emu.base_url, "--output", str(output), "--skip-unknown-ids"]
    argv += ["--page-size", "100", "--retry-attempts", "2", "--retry-max-wait", "0", "--progress", "off"]
    argv += [f"--user-id={u}" for u in query.user_ids or ()]
    argv += [f"--course-id={c}" for c in query.course_ids or ()]
    argv += ["--access-date-from", "2021-01-01T00:00:00Z", "--access-date-to", "2026-06-01T00:00:00Z"]
    if VARIANTS[variant].token_url:
        argv += ["--token-url", emu.token_url]
    assert cli_main(argv) == ExitCode.OK
    assert_exactly_once(read_records(output, fmt), ground_truth(emu, query))
    out = capsys.readouterr().out
    if variant == "unknown-ids-400":
        assert "skipped unknown:    userIds[] 2:" in out
        assert "skipped unknown:    courseIds[] 1:" in out
    else:
        assert "skipped unknown" not in out


# -- module results and users (issue 14) ------------------------------------------------------------------

DATASET_SCENARIOS = [
    f"{dataset}-{split}-{q}-{fmt}"
    for dataset in ("modules", "users")
    for split in ("none", "adaptive", "department")
    for q in ("all", "ids")
    for fmt in ("xml", "json")
]
# make test: per variant, a fanned-out module query with id lists (unknown ones too) and a users
# department split of everything; the XML layouts with the default variant only.
DATASET_SELECTION = ["modules-adaptive-ids-xml", "users-department-all-json"]


def _dataset_cases() -> list[Any]:
    cases = []
    for layout in LAYOUTS:
        for variant in VARIANTS:
            bounded = DATASET_SELECTION if layout == "flat" or variant == "default" else []
            for scenario in DATASET_SCENARIOS if FULL else bounded:
                cases.append(pytest.param(variant, layout, scenario, id=f"{variant}-{layout}-{scenario}"))
    return cases


def dataset_queries(emu: Emulator) -> dict[str, Any]:
    """Module and users queries: everything, and id lists each holding one id the account lacks."""
    ds, modules, directory = emu.dataset, emu.modules, emu.directory
    rng = random.Random(5)
    return {
        "modules-all": ModuleResultsQuery(user_statuses=STATUSES),
        "modules-ids": ModuleResultsQuery(
            module_ids=[*rng.sample(modules.module_ids, 12), *strangers(1, 3)],
            user_ids=[*rng.sample(ds.user_ids, 60), *strangers(1, 4)],
            user_statuses=STATUSES,
        ),
        "users-all": UsersQuery(),
        "users-ids": UsersQuery(
            department_ids=[*ds.department_ids[:6], *strangers(1, 5)],
            group_ids=[*directory.group_ids[:6], *strangers(1, 6)],
        ),
    }


def _known(emu: Emulator, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ds, modules, directory = emu.dataset, emu.modules, emu.directory
    index: dict[str, dict[str, int]] = {
        "userIds[]": ds.user_index,
        "moduleIds[]": modules.module_index,
        "departments[]": ds.department_index,
        "groups[]": directory.group_index,
    }
    return [(n, v) for n, v in params if n not in index or v in index[n]]


@pytest.mark.anyio
@pytest.mark.parametrize(("variant", "layout", "scenario"), _dataset_cases())
async def test_module_results_and_users_equal_ground_truth_under_each_variant(
    emulators: Any, variant: str, layout: str, scenario: str
) -> None:
    """Module results and users, fanned out or not, equal the ground truth under the switch and layout."""
    emu: Emulator = emulators(variant, layout)
    dataset, split, q, fmt = scenario.split("-")
    query = dataset_queries(emu)[f"{dataset}-{q}"]
    params = _known(emu, query.to_params())
    records: list[Any]
    async with client_for(emu, variant, response_format=fmt) as client:
        if dataset == "modules":
            expected: list[Any] = emu.expected_module_results(params)
            records = await drain(client.learner_module_results(query, split=split, concurrency=4))
        else:
            expected = emu.expected_users(params)
            records = await drain(client.users(query, split=split, concurrency=4))
        skipped = client.skipped_ids
    assert expected, "a scenario with no rows proves nothing"
    identities = [r.identity for r in records]
    assert len(identities) == len(set(identities)), "a record came twice"
    assert {r.identity: r for r in records} == {r.identity: r for r in expected}
    if variant == "unknown-ids-400" and q == "ids":
        # The strangers of the query; a department split also skips the vanished departments it lists.
        ours = {k: v for k, v in skipped.items() if k != "departmentIds[]"}
        assert len(sum(ours.values(), ())) == 2

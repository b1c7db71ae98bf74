"""Date-window pages come from the emulator's DateIndex, and still equal the full-scan ground truth."""

from __future__ import annotations

import dataclasses
import itertools
import random
from array import array
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ispring_async.emulator import Dataset, EmulatorConfig, running_emulator
from ispring_async.emulator._dataset import DATE_COLUMNS, REFERENCE_NOW
from ispring_async.emulator._index import DateIndex
from ispring_async.emulator._query import ResultsFilter, parse_results, select_all, select_page
from tests._emulator_http import export

Params = list[tuple[str, str]]
BLOCK = 64
NAMES = {"access": "accessDate", "due": "dueDate", "completion": "completionDate"}
ACTIVE_AND_BLOCKED: Params = [("userStatuses[]", "1"), ("userStatuses[]", "3")]


def small_blocks(results: int = 3000, seed: int = 11) -> Dataset:
    """A dataset whose date indexes span many blocks (3000 rows in 64-row blocks: 47 blocks)."""
    config = EmulatorConfig(results=results, seed=seed, departments=12, department_depth=3)
    return Dataset(config, index_block=BLOCK)


DS = small_blocks()
DATES: dict[str, list[int]] = {
    column: sorted({v for v in getattr(DS, f"r_{column}") if v}) for column in DATE_COLUMNS
}


def instant(seconds: int) -> str:
    """Epoch seconds as the RFC 3339 text a client sends."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def page_through(ds: Dataset, f: ResultsFilter, page_size: int) -> list[int]:
    """Every position ``select_page`` serves from ``f.after`` on, following tokens (the last row's key)."""
    served: list[int] = []
    after = f.after
    while True:
        page, more = select_page(ds, dataclasses.replace(f, page_size=page_size, after=after), subtree=False)
        if served:
            assert page, "a page announced by 'more' is empty"
        # Pages must move forward in key order, or a token could lead back and the export never end.
        assert page == sorted(set(page))
        assert after is None or not page or ds.key(page[0]) > after
        served += page
        if not more:
            return served
        assert len(page) == page_size
        after = ds.key(page[-1])


@st.composite
def bound(draw: st.DrawFn, column: str) -> int | None:
    """A window bound: absent, a row's exact date (± a little), or anywhere in the data's span."""
    values = DATES[column]
    kind = draw(st.sampled_from(["none", "exact", "near", "anywhere"]))
    if kind == "none":
        return None
    if kind == "anywhere":
        return draw(st.integers(values[0] - 86400, values[-1] + 86400))
    value = draw(st.sampled_from(values))
    return value + (draw(st.integers(-3, 3)) if kind == "near" else 0)


@st.composite
def windowed_queries(draw: st.DrawFn) -> Params:
    """One to three date windows (at least one bound each), combined with the API's other filters."""
    params: Params = []
    columns = draw(st.lists(st.sampled_from(DATE_COLUMNS), min_size=1, max_size=3, unique=True))
    for column in columns:
        start, end = draw(bound(column)), draw(bound(column))
        if start is None and end is None:
            start = draw(bound(column)) or REFERENCE_NOW - 365 * 86400
        if start is not None and end is not None and start > end:
            start, end = end, start
        if start is not None:
            params.append((f"{NAMES[column]}[startDate]", instant(start)))
        if end is not None:
            params.append((f"{NAMES[column]}[endDate]", instant(end)))
    statuses = draw(st.lists(st.sampled_from(["1", "3", "5"]), max_size=3, unique=True))
    params += [("userStatuses[]", status) for status in statuses]
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(["complete", "in_progress", "failed", "passed"]), min_size=1))
        params += [("completionStatuses[]", status) for status in chosen]
    for name, ids in (
        ("courseIds[]", DS.course_ids),
        ("departmentIds[]", DS.department_ids),
        ("userIds[]", DS.user_ids[:40]),
    ):
        if draw(st.integers(0, 3)) == 0:
            params += [(name, i) for i in draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4))]
    return params


@settings(max_examples=150)
@given(params=windowed_queries(), page_size=st.integers(1, 400))
def test_windowed_pages_equal_the_full_scan(params: Params, page_size: int) -> None:
    """Paging any date-window query (exact-instant, one-sided, combined) serves exactly select_all's rows."""
    f = parse_results(params)
    assert page_through(DS, f, page_size) == select_all(DS, f, subtree=False)


@pytest.mark.parametrize("column", [pytest.param(column, id=column) for column in DATE_COLUMNS])
def test_exact_instant_windows_find_every_row_of_that_instant(column: str) -> None:
    """A window [t, t] on a row's own date returns that row and every other row of the same instant."""
    values: array[int] = getattr(DS, f"r_{column}")
    rng = random.Random(column)
    for pos in rng.sample([p for p in range(len(DS)) if values[p]], 25):
        moment = instant(values[pos])
        f = parse_results(
            [
                (f"{NAMES[column]}[startDate]", moment),
                (f"{NAMES[column]}[endDate]", moment),
                ("userStatuses[]", "1"),
                ("userStatuses[]", "3"),
                ("userStatuses[]", "5"),
            ]
        )
        served = page_through(DS, f, 3)
        assert pos in served
        assert served == [p for p in range(len(DS)) if values[p] == values[pos]]


class CountingIndex(DateIndex):
    """A DateIndex that counts the candidate rows it hands out."""

    handed_out = 0

    def window(self, low: int, high: int, start: int) -> Iterator[int]:
        """Count every position the real window yields."""
        for pos in super().window(low, high, start):
            self.handed_out += 1
            yield pos


def test_a_narrow_window_is_walked_from_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-week accessDate page checks only that week's rows, not the dataset (issue 3)."""
    ds = small_blocks()
    counting = CountingIndex(ds.r_access, block=BLOCK)
    monkeypatch.setitem(ds._date_indexes, "access", counting)
    start = ds.r_access[100] // 86400 * 86400
    end = start + 7 * 86400 - 1
    f = parse_results([("accessDate[startDate]", instant(start)), ("accessDate[endDate]", instant(end))])
    page, more = select_page(ds, f, subtree=False)
    assert not more
    assert page == select_all(ds, f, subtree=False)
    in_window = [p for p in range(len(ds)) if start <= ds.r_access[p] <= end]
    assert counting.handed_out == len(in_window)
    assert 0 < len(page) <= len(in_window) < len(ds) // 50


@settings(max_examples=200)
@given(
    dates=st.lists(st.sampled_from([0, 5, 6, 7, 7, 7, 9, 12, 30]), max_size=120),
    block=st.integers(1, 20),
    low=st.integers(-2, 32),
    span=st.integers(0, 35),
    start=st.integers(0, 130),
    writes=st.lists(st.tuples(st.integers(0, 119), st.sampled_from([0, 6, 7, 11, 31])), max_size=10),
    appended=st.lists(st.sampled_from([0, 7, 8, 31]), max_size=25),
)
def test_date_index_window_is_exact(
    dates: list[int],
    block: int,
    low: int,
    span: int,
    start: int,
    writes: list[tuple[int, int]],
    appended: list[int],
) -> None:
    """DateIndex.window yields exactly the positions >= start dated in [low, high], ascending, after
    in-place writes (announced with changed) and appended rows."""
    column = array("I", dates)
    index = DateIndex(column, block=block)

    def expected() -> list[int]:
        high = low + span
        return [p for p in range(start, len(column)) if column[p] and low <= column[p] <= high]

    assert list(index.window(low, low + span, start)) == expected()
    for pos, value in writes:
        if pos < len(column):
            column[pos] = value
            index.changed(pos)
    column.extend(appended)
    assert list(index.window(low, low + span, start)) == expected()


def test_mutations_are_reflected_in_windowed_pages() -> None:
    """Inserted rows (appended) and updated completion dates (in place) show in windowed pages at once,
    also on pages continuing a token taken before the change."""
    ds = small_blocks(results=2000, seed=5)
    recent = parse_results(
        [("accessDate[startDate]", instant(REFERENCE_NOW - 40 * 86400)), *ACTIVE_AND_BLOCKED]
    )
    completed = parse_results(
        [("completionDate[startDate]", instant(REFERENCE_NOW - 86400)), *ACTIVE_AND_BLOCKED]
    )
    first_page, more = select_page(ds, dataclasses.replace(completed, page_size=1), subtree=False)
    assert more
    token = ds.key(first_page[-1])
    before = {f: page_through(ds, f, 7) for f in (recent, completed)}

    rng = random.Random(9)
    inserted = [ds.insert(rng) for _ in range(150)]
    updated = {pos for pos in (ds.update(rng) for _ in range(400)) if pos is not None}

    for f in (recent, completed):
        truth = select_all(ds, f, subtree=False)
        assert page_through(ds, f, 7) == truth
        assert truth != before[f]
    continued = page_through(ds, dataclasses.replace(completed, after=token), 5)
    assert continued == [p for p in select_all(ds, completed, subtree=False) if ds.key(p) > token]
    assert set(select_all(ds, recent, subtree=False)) & set(inserted)
    newly_completed = set(select_all(ds, completed, subtree=False)) - set(before[completed])
    assert newly_completed & updated
    assert newly_completed - set(inserted)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session (not the library's client)."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_windowed_fan_out_over_http_equals_ground_truth(
    session: aiohttp.ClientSession, fmt: str
) -> None:
    """Adjacent accessDate windows (shared inclusive bounds) + userStatuses 1,3, paged over HTTP, each
    equal expected_results; together they cover the unwindowed query."""
    ds = small_blocks(results=2500, seed=3)
    edges = [int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) for year in (2016, 2019, 2021, 2023, 2026)]
    async with running_emulator(ds.config, dataset=ds) as emu:
        seen = set()
        for start, end in itertools.pairwise(edges):
            params = [
                ("accessDate[startDate]", instant(start)),
                ("accessDate[endDate]", instant(end)),
                *ACTIVE_AND_BLOCKED,
            ]
            exported = await export(session, emu, params, page_size=97, fmt=fmt)
            assert exported == emu.expected_results(params)
            assert exported
            seen |= {record.identity for record in exported}
        assert seen == {record.identity for record in emu.expected_results(ACTIVE_AND_BLOCKED)}

"""The fan-out's pure planning: windows cover the caller's range exactly once, splits cover their parent."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispring_async import DateRange, ResultsQuery
from ispring_async._plan import (
    WIRE_CEILING,
    WIRE_FLOOR,
    Partition,
    Planner,
    Split,
    epoch_seconds,
    quantile_points,
    range_seconds,
)

T0 = epoch_seconds(datetime(2017, 1, 1, tzinfo=UTC))
T1 = epoch_seconds(datetime(2025, 1, 1, tzinfo=UTC))
D1 = "f0b2d3c0-aded-11e9-bfe6-0a580af40906"
D2 = "f0b2d3c0-aded-11e9-bfe6-0a580af40907"
D3 = "f0b2d3c0-aded-11e9-bfe6-0a580af40908"


def planner(query: ResultsQuery | None = None, split: Split = Split.WINDOW, **options: object) -> Planner:
    """A planner over 2017..2025 with 8 windows and a 60 s minimum window unless overridden."""
    settings: dict[str, object] = {"earliest": T0, "now": T1, "windows": 8, "min_window": 60}
    settings.update(options)
    return Planner(query=query or ResultsQuery(), split=split, **settings)  # type: ignore[arg-type]


def wire_bounds(p: Planner, partition: Partition) -> tuple[int | None, int | None]:
    """The inclusive whole-second bounds a partition sends as accessDate."""
    params = dict(p.query_for(partition).to_params())
    start, end = params.get("accessDate[startDate]"), params.get("accessDate[endDate]")
    return (
        None if start is None else epoch_seconds(datetime.fromisoformat(start)),
        None if end is None else epoch_seconds(datetime.fromisoformat(end)),
    )


def owners(p: Planner, partitions: list[Partition], instant: int) -> int:
    """How many partitions' wire ranges contain ``instant``."""
    count = 0
    for partition in partitions:
        start, end = wire_bounds(p, partition)
        if (start is None or start <= instant) and (end is None or instant <= end):
            count += 1
    return count


def test_open_query_keeps_both_ends_open() -> None:
    """Without an accessDate range the outer windows reach 1970 and 9999 on the wire, so no row is lost."""
    p = planner()
    windows = p.initial()
    assert len(windows) == 8
    assert windows[0].start is None and windows[-1].end is None
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    # By default neighbours share their boundary instant (dedupe drops the repeats); with whole_seconds
    # a window ends one second before the next starts.
    assert wire_bounds(p, windows[0]) == (WIRE_FLOOR, windows[0].end)
    assert wire_bounds(p, windows[-1]) == (windows[-1].start, WIRE_CEILING)
    exact = planner(whole_seconds=True)
    assert wire_bounds(exact, exact.initial()[0]) == (WIRE_FLOOR, windows[0].end - 1)  # type: ignore[operator]


@given(
    start=st.integers(T0, T1),
    width=st.integers(1, 10**8),
    count=st.integers(1, 64),
    whole_seconds=st.booleans(),
    probe=st.integers(0, 10**8),
)
def test_windows_cover_the_callers_range_once(
    start: int, width: int, count: int, whole_seconds: bool, probe: int
) -> None:
    """Every second of the caller's range is in a window; in exactly one in whole-second mode."""
    query = ResultsQuery(
        access_date=DateRange(
            start=datetime.fromtimestamp(start, UTC), end=datetime.fromtimestamp(start + width, UTC)
        )
    )
    p = planner(query, windows=count, whole_seconds=whole_seconds)
    windows = p.initial()
    assert len(windows) <= count
    instant = start + probe % (width + 1)
    hits = owners(p, windows, instant)
    assert hits == 1 if whole_seconds else 1 <= hits <= 2
    assert owners(p, windows, start - 1) == 0
    assert owners(p, windows, start + width + 1) == 0


@given(
    start=st.one_of(st.none(), st.integers(T0, T1)),
    width=st.integers(0, 10**8),
    ways=st.integers(2, 6),
    probe=st.integers(0, 10**8),
)
def test_split_children_cover_their_parent_exactly(
    start: int | None, width: int, ways: int, probe: int
) -> None:
    """Adaptive children together select exactly the seconds their parent selects, each second once."""
    p = planner(split=Split.ADAPTIVE)
    end = None if start is None else start + width + 1
    parent = Partition(windowed=True, start=start, end=end)
    children = p.split_further(parent, ways)
    assert len(children) <= ways
    base = start if start is not None else T0
    instant = base + probe % (width + 1)
    assert_children_cover(p, parent, children, instant)


def assert_children_cover(p: Planner, parent: Partition, children: list[Partition], instant: int) -> None:
    """``children`` select ``instant`` exactly as often as ``parent`` (once) and have unique keys."""
    if children:
        assert owners(p, children, instant) == owners(p, [parent], instant) == 1
        assert len({child.key for child in children}) == len(children)


def test_narrow_window_spreads_the_callers_departments() -> None:
    """A window at the minimum width is split by the caller's department list instead."""
    query = ResultsQuery(department_ids=[D1, D2, D3])
    p = planner(query, split=Split.ADAPTIVE)
    narrow = Partition(departments=(D1, D2, D3), windowed=True, start=T0, end=T0 + 100)
    children = p.split_further(narrow, 2)
    assert [c.departments for c in children] == [(D1, D2), (D3,)]
    assert all((c.start, c.end) == (T0, T0 + 100) for c in children)
    assert p.split_further(Partition(departments=(D1,), windowed=True, start=T0, end=T0 + 100)) == []


@pytest.mark.parametrize("split", [pytest.param(s, id=s.value) for s in Split if s is not Split.ADAPTIVE])
def test_fixed_strategies_never_split_further(split: Split) -> None:
    """Only the adaptive strategy splits a long partition."""
    p = planner(split=split)
    assert p.split_further(Partition(windowed=True, start=T0, end=T1), 4) == []


def test_department_groups_use_the_callers_ids_without_listing() -> None:
    """With the caller's departments, the plan is those ids in groups and needs no GET /departments."""
    query = ResultsQuery(department_ids=[D1, D2, D3])
    p = planner(query, split=Split.DEPARTMENT, departments_per_partition=2)
    assert not p.needs_departments
    assert [part.departments for part in p.initial()] == [(D1, D2), (D3,)]
    assert planner(split=Split.DEPARTMENT).needs_departments


def test_combined_is_every_group_times_every_window_and_keeps_filters() -> None:
    """Combined crosses department groups with windows; every other filter reaches every partition."""
    query = ResultsQuery(completion_statuses=["failed"], user_statuses=[1, 3], page_size=33)
    p = planner(query, split=Split.COMBINED, windows=3)
    parts = p.initial([D1, D2])
    assert len(parts) == 6 and len({part.key for part in parts}) == 6
    for part in parts:
        params = p.query_for(part).to_params()
        assert ("completionStatuses[]", "failed") in params
        assert ("userStatuses[]", "3") in params and ("pageSize", "33") in params
        assert sum(name == "departmentIds[]" for name, _ in params) == 1


def test_overlap_mode_ends_where_the_callers_range_ends() -> None:
    """Overlap mode ends inner windows on the next start, and the last one on the caller's end."""
    end = datetime(2020, 1, 9, 21, tzinfo=UTC)
    query = ResultsQuery(access_date=DateRange(start=datetime(2020, 1, 1, 21, tzinfo=UTC), end=end))
    p = planner(query, windows=8, whole_seconds=False)
    windows = p.initial()
    assert wire_bounds(p, windows[0])[1] == windows[1].start
    assert wire_bounds(p, windows[-1])[1] == epoch_seconds(end)


def test_range_seconds_rounds_like_the_wire() -> None:
    """A fractional start rounds up and an end down, as the request would send them."""
    start = datetime(2020, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    end = datetime(2020, 1, 2, 0, 0, 0, 500_000, tzinfo=UTC)
    low, high = range_seconds(DateRange(start=start, end=end))
    assert low == epoch_seconds(start) + 1
    assert high == epoch_seconds(end) + 1
    assert range_seconds(None) == (None, None)


def test_tiny_range_stays_one_window() -> None:
    """A range narrower than two minimum windows is not cut."""
    query = ResultsQuery(
        access_date=DateRange(start=datetime.fromtimestamp(T0, UTC), end=datetime.fromtimestamp(T0 + 90, UTC))
    )
    p = planner(query, split=Split.ADAPTIVE)
    assert len(p.initial()) == 1
    assert p.split_further(p.initial()[0], 4) == []


@given(
    start=st.one_of(st.none(), st.integers(T0, T1)),
    width=st.integers(0, 10**8),
    ways=st.integers(2, 40),
    dates=st.lists(st.integers(T0 - 10**6, T1 + 10**8), max_size=300),
    probe=st.integers(0, 10**8),
)
def test_quantile_children_cover_their_parent_exactly(
    start: int | None, width: int, ways: int, dates: list[int], probe: int
) -> None:
    """Children cut at a sample's quantiles select exactly their parent's seconds, whatever the sample."""
    p = planner(split=Split.ADAPTIVE)
    end = None if start is None else start + width + 1
    parent = Partition(windowed=True, start=start, end=end)
    children = p.split_further(parent, ways, dates)
    assert len(children) <= ways
    base = start if start is not None else T0
    assert_children_cover(p, parent, children, base + probe % (width + 1))


@given(
    dates=st.lists(st.integers(0, 10**6), min_size=1, max_size=2000),
    ways=st.integers(2, 32),
    min_window=st.integers(1, 1000),
)
def test_quantile_points_are_ordered_spaced_and_avoid_sampled_instants(
    dates: list[int], ways: int, min_window: int
) -> None:
    """Points rise by at least min_window, and fall on a sampled instant only next to another one
    (or to fence the one instant of a sample that has only one)."""
    points = quantile_points(None, None, ways, dates, min_window=min_window)
    assert len(points) <= ways - 1
    assert all(b - a >= min_window for a, b in itertools.pairwise(points))
    sampled = set(dates)
    if len(sampled) == 1:
        half = max(3, (min_window + 1) // 2)
        assert points == [dates[0] - half, dates[0] + half][: ways - 1]
        return
    for point in points:
        if point in sampled:
            assert point - 1 in sampled  # a neighbouring pair one second apart: no room between
        assert min(dates) < point <= max(dates)


def test_quantile_points_balance_the_sample() -> None:
    """Over a skewed sample every window gets about the same share of sampled rows."""
    dates = [T0 + (i * i) % 5_000_000 for i in range(1000)] + [T0 + 123] * 200  # a bulk enrollment
    points = quantile_points(None, None, 16, dates)
    bounds = [None, *points, None]
    shares = [
        sum(1 for d in dates if (a is None or d >= a) and (b is None or d < b))
        for a, b in itertools.pairwise(bounds)
    ]
    assert len(shares) == 16
    assert sum(shares) == len(dates)
    assert max(shares) <= 200 + len(dates) // 16  # the bulk instant stays whole, in one window
    assert sorted(shares)[1] >= 0.5 * len(dates) / 16


@given(
    start=st.one_of(st.none(), st.integers(T0, T1)),
    width=st.one_of(st.none(), st.integers(0, 10**8)),
    ways=st.integers(2, 16),
    split=st.sampled_from([Split.ADAPTIVE, Split.WINDOW, Split.COMBINED]),
    whole_seconds=st.booleans(),
)
def test_every_windowed_request_sends_both_bounds(
    start: int | None, width: int | None, ways: int, split: Split, whole_seconds: bool
) -> None:
    """Whatever the caller's range (one-sided too), every window sends startDate and endDate, in order."""
    end = None if width is None else (start if start is not None else T0) + width
    if start is None and end is None:
        access = None
    else:
        access = DateRange(
            start=None if start is None else datetime.fromtimestamp(start, UTC),
            end=None if end is None else datetime.fromtimestamp(end, UTC),
        )
    p = planner(ResultsQuery(access_date=access), split=split, windows=ways, whole_seconds=whole_seconds)
    partitions = p.initial([D1, D2])
    partitions += [c for part in partitions for c in p.split_further(part, ways, [T0 + 5, T1 - 5])]
    for partition in partitions:
        if access is None and partition.start is None and partition.end is None:
            continue  # the unsplit query, sent as the caller wrote it
        low, high = wire_bounds(p, partition)
        assert low is not None and high is not None and low <= high


def test_unsplit_query_without_a_range_is_sent_as_written() -> None:
    """The adaptive plan's first request is exactly the caller's query: no date parameters added."""
    query = ResultsQuery(user_statuses=[1, 3])
    p = planner(query, split=Split.ADAPTIVE, windows=1)
    (root,) = p.initial()
    assert p.query_for(root).to_params() == query.to_params()


def test_a_page_sorted_by_date_is_not_taken_as_a_sample() -> None:
    """A first page sorted by date shows one end of its window: the split falls back to equal windows."""
    p = planner(split=Split.ADAPTIVE)
    parent = Partition(windowed=True, start=T0, end=T1)
    early = [T0 + 60 * i for i in range(100)]  # the 100 earliest rows, in date order
    by_date = p.split_further(parent, 4, early)
    assert [c.start for c in by_date[1:]] == [T0 + (T1 - T0) * i // 4 for i in range(1, 4)]
    shuffled = early[::2] + early[1::2]
    cut = p.split_further(parent, 4, shuffled)[1].start
    assert cut is not None and cut < T0 + 60 * 100  # a real sample: cut at its quantiles


def test_a_sample_on_one_instant_fences_that_instant() -> None:
    """A first page all on one instant fences it in a min_window window, the instant well inside."""
    instant = T0 + 10**6
    assert quantile_points(T0, T1, 8, [instant] * 100, min_window=60) == [instant - 30, instant + 30]
    assert quantile_points(None, None, 8, [instant] * 100, min_window=1) == [instant - 3, instant + 3]
    assert quantile_points(instant - 50, None, 8, [instant] * 100, min_window=60) == [instant + 30]

"""Sans-IO planning for the fan-out: which partitions a query is split into, and how one splits further.

A partition is the caller's query narrowed to a group of departments and/or an ``accessDate`` window.
Windows are half-open ``[start, end)`` in whole epoch seconds (``None``: open on that side). On the
wire a window is ``[start, end]`` by default: neighbours overlap on one instant and the fan-out's dedupe
removes what both return, which is exact whether the API's end bound is inclusive or exclusive and
whatever precision it stores dates with (neither is documented). With ``whole_seconds=True`` it is
``[start, end - 1 s]``: no overlap, exact if the end bound is inclusive and stored dates have whole
seconds, as every date the API sends does.

Every windowed request sends both bounds (the vendor's OpenAPI marks both required, and a strict
server answers 400 to a one-sided range): a window open on one side because the caller's query is
sends ``WIRE_FLOOR`` (1970-01-01Z) or ``WIRE_CEILING`` (9999-12-30T00:00:00Z) there, so the union of
the windows is still the caller's whole range. The one exception is the unsplit first request of a
query with no ``accessDate`` at all: it is sent as the caller wrote it, so a small query costs one
request that is exactly the caller's. ``earliest`` and ``now`` only choose where equal windows are cut;
``split_further`` given the dates of a partition's first page cuts at their quantiles instead (the
first page is ordered by enrollment, not by date, so it samples the partition's date distribution).

Departments are the caller's ids, or every department of the account: with exact matching
they are disjoint; with sub-department matching they overlap (a parent returns its subtree), which
the dedupe makes correct but not cheap, so the adaptive split cuts windows (disjoint under either
semantics) and spreads only the caller's own department list.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

from ispring_async._query import DateRange, ResultsQuery

__all__ = [
    "WIRE_CEILING",
    "WIRE_FLOOR",
    "Partition",
    "Planner",
    "Split",
    "epoch_seconds",
    "quantile_points",
    "range_seconds",
]

WIRE_FLOOR = 0
"""Epoch seconds sent as ``accessDate[startDate]`` by a window with no lower bound (1970-01-01Z)."""
WIRE_CEILING = 253402128000
"""Epoch seconds sent as ``accessDate[endDate]`` by a window with no upper bound (9999-12-30T00:00:00Z:
inside the range ``DateRange`` accepts, a day short of the calendar's end that ``datetime``, MySQL's
DATETIME and PHP all accept)."""


class Split(enum.StrEnum):
    """How a query is split into independent page chains.

    ``ADAPTIVE`` (the default) cuts the ``accessDate`` range into a few windows and cuts again any
    window whose first page shows it is longer than one page, so the allowed concurrency is used
    whatever the data's shape.
    """

    NONE = "none"
    """One chain: the query as given."""
    DEPARTMENT = "department"
    """One chain per department (or per group of ``departments_per_partition``)."""
    WINDOW = "window"
    """``windows`` equal ``accessDate`` windows."""
    COMBINED = "combined"
    """Every department group × every window."""
    ADAPTIVE = "adaptive"
    """Start with a few windows; split long partitions until chains are short (see the module doc)."""


def epoch_seconds(value: datetime) -> int:
    """Whole epoch seconds of an aware datetime, rounded down."""
    return int(value.astimezone(UTC).timestamp() // 1)


def range_seconds(date_range: DateRange | None) -> tuple[int | None, int | None]:
    """A query's inclusive ``DateRange`` as half-open whole seconds ``[start, end)``.

    Rounds as the wire does (``_query._wire_datetime``): a start up, an end down to the second.
    """
    if date_range is None:
        return None, None
    start = end = None
    if date_range.start is not None:
        start = epoch_seconds(date_range.start)
        if date_range.start.microsecond:
            start += 1
    if date_range.end is not None:
        end = epoch_seconds(date_range.end) + 1
    return start, end


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _text(seconds: int | None) -> str:
    return "*" if seconds is None else _instant(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Partition:
    """One piece of a split query: a department group and an ``accessDate`` window, each optional.

    ``windowed`` says whether the partition sets ``accessDate`` itself (from ``start``/``end``) or
    keeps the caller's range untouched. ``batch`` is the index of the caller's query's id batch
    (``ResultsQuery.batches()``) when its id lists are too long for one request, else ``None``.
    """

    departments: tuple[str, ...] | None = None
    windowed: bool = False
    start: int | None = None
    end: int | None = None
    batch: int | None = None

    @property
    def key(self) -> str:
        """A short, stable, unique name, e.g. ``dept=<id>+3 access=[2019-01-01T00:00:00Z,*)``."""
        parts = [] if self.batch is None else [f"batch={self.batch}"]
        if self.departments is not None:
            extra = len(self.departments) - 1
            parts.append(f"dept={self.departments[0]}" + (f"+{extra}" if extra else ""))
        if self.windowed:
            parts.append(f"access=[{_text(self.start)},{_text(self.end)})")
        return " ".join(parts) or "all"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Planner:
    """Turns the caller's query into partitions, splits partitions, and builds each one's query.

    ``earliest`` and ``now`` (epoch seconds) bound where open-ended ranges are cut; ``windows`` is the
    window count of ``WINDOW``/``COMBINED`` and the starting count of ``ADAPTIVE``; windows are never
    cut narrower than ``min_window`` seconds.
    """

    query: ResultsQuery
    split: Split
    earliest: int
    now: int
    windows: int
    min_window: int
    departments_per_partition: int = 1
    whole_seconds: bool = False

    @functools.cached_property
    def batches(self) -> list[ResultsQuery]:
        """The caller's query cut into queries whose id lists fit one request (usually just it)."""
        return self.query.batches()

    @property
    def batches_overlap(self) -> bool:
        """Whether id batches may return the same row: they hold different department ids, which
        overlap if ``departmentIds`` matches sub-departments."""
        return len({batch.department_ids for batch in self.batches}) > 1

    @property
    def needs_departments(self) -> bool:
        """Whether the plan needs the account's department list (``GET /departments``)."""
        return self.split in (Split.DEPARTMENT, Split.COMBINED) and self.query.department_ids is None

    def initial(self, departments: Sequence[str] | None = None) -> list[Partition]:
        """The starting partitions; ``departments`` is the account's list when ``needs_departments``."""
        split = self.split
        by_department = split in (Split.DEPARTMENT, Split.COMBINED)
        by_window = split in (Split.WINDOW, Split.COMBINED, Split.ADAPTIVE)
        windows: list[tuple[int | None, int | None]] = [(None, None)]
        if by_window:
            windows = self.cut(*range_seconds(self.query.access_date), self.windows)
        batches = self.batches
        partitions: list[Partition] = []
        for index, query in enumerate(batches):
            groups: list[tuple[str, ...] | None] = [None]
            caller = query.department_ids
            if by_department:
                # The caller's own ids keep the caller's semantics exactly under either matching mode.
                ids = tuple(caller) if caller is not None else tuple(dict.fromkeys(departments or ()))
                size = self.departments_per_partition
                groups = [ids[i : i + size] for i in range(0, len(ids), size)]
            elif caller is not None and split is Split.ADAPTIVE:
                groups = [tuple(caller)]
            batch = index if len(batches) > 1 else None
            partitions.extend(
                Partition(departments=group, windowed=by_window, start=start, end=end, batch=batch)
                for group in groups
                for start, end in windows
            )
        return partitions

    def cut(self, start: int | None, end: int | None, count: int) -> list[tuple[int | None, int | None]]:
        """``[start, end)`` cut into at most ``count`` windows at least ``min_window`` wide.

        Open ends stay open; the cut points fall in ``[earliest, now]`` where a side is open.
        """
        low = start if start is not None else min(self.earliest, end if end is not None else self.earliest)
        high = end if end is not None else max(self.now, low)
        count = max(1, min(count, (high - low) // self.min_window))
        points = sorted({low + (high - low) * i // count for i in range(1, count)})
        bounds = [start, *points, end]
        return list(itertools.pairwise(bounds))

    def split_further(
        self, partition: Partition, parts: int = 2, dates: Sequence[int] | None = None
    ) -> list[Partition]:
        """At most ``parts`` children covering ``partition`` exactly (``ADAPTIVE`` only), or ``[]``.

        With ``dates`` (epoch seconds of the partition's first page, in page order) a window is cut at
        their quantiles, so each child expects about the same number of rows; without them, or when
        the page is sorted by date (then it samples only one end of the window), into equal windows.
        No window is cut narrower than ``min_window``. A window too narrow to cut spreads its
        department group (the caller's list) instead.
        """
        if self.split is not Split.ADAPTIVE or parts < 2:
            return []
        if partition.windowed:
            points = None
            if dates and not _date_ordered(dates):
                points = quantile_points(
                    partition.start, partition.end, parts, dates, min_window=self.min_window
                )
            if points:
                windows = list(itertools.pairwise([partition.start, *points, partition.end]))
            else:
                windows = self.cut(partition.start, partition.end, parts)
            if len(windows) >= 2:
                return [dataclasses.replace(partition, start=a, end=b) for a, b in windows]
        group = partition.departments
        if group is not None and len(group) >= 2:
            size = -(-len(group) // min(parts, len(group)))
            return [
                dataclasses.replace(partition, departments=group[i : i + size])
                for i in range(0, len(group), size)
            ]
        return []

    def query_for(self, partition: Partition) -> ResultsQuery:
        """The caller's query narrowed to ``partition``; every other filter is kept as given."""
        base = self.query if partition.batch is None else self.batches[partition.batch]
        changes: dict[str, object] = {}
        if partition.departments is not None:
            changes["department_ids"] = partition.departments
        if partition.windowed:
            start, end = partition.start, partition.end
            if start is None and end is None:
                # Only the unsplit window of a query without accessDate: the caller's query as given.
                changes["access_date"] = None
            else:
                _, outer_end = range_seconds(self.query.access_date)
                if end is None:
                    last = WIRE_CEILING
                elif end == outer_end or self.whole_seconds:
                    # The last window ends where the caller's range does; sending ``end`` inclusive
                    # there would reach one second past it.
                    last = end - 1
                else:
                    last = end
                first = WIRE_FLOOR if start is None else start
                changes["access_date"] = DateRange(start=_instant(first), end=_instant(max(first, last)))
        return dataclasses.replace(base, **changes) if changes else base  # type: ignore[arg-type]


def quantile_points(
    start: int | None, end: int | None, parts: int, dates: Sequence[int], *, min_window: int = 1
) -> list[int]:
    """Cut points splitting ``[start, end)`` into at most ``parts`` windows of about equal row counts.

    ``dates`` is a sample of the window's rows (epoch seconds). Each point falls between two
    neighbouring distinct sample dates (3 s after the first where the gap allows), so it lands on a
    sampled instant only when those are one second apart: rows sharing an instant (a bulk enrollment)
    stay in one window instead of being fetched by both neighbours. Points are at least
    ``min_window`` apart and from a bounded side.
    """
    inside = sorted(d for d in dates if (start is None or d >= start) and (end is None or d < end))
    n = len(inside)
    points: list[int] = []
    floor = None if start is None else start + min_window
    taken = 0  # sample rows left of the last point
    while len(points) < parts - 1:
        # Spread what is left of the sample over the windows still to make, so a bulk instant that
        # swallowed one quantile does not leave the next windows empty.
        j = taken + max(1, (n - taken) // (parts - len(points)))
        while j < n and (
            inside[j] == inside[j - 1] or (floor is not None and _cut(inside[j - 1], inside[j]) < floor)
        ):
            j += 1
        if j >= n:
            break
        # Prefer a gap of 6 s or more a few samples on (see ``_cut``).
        for k in range(j, min(n, j + 1 + max(1, n // (4 * parts)))):
            if inside[k] - inside[k - 1] >= 6:
                j = k
                break
        point = _cut(inside[j - 1], inside[j])
        if end is not None and point > end - min_window:
            break
        points.append(point)
        floor = point + min_window
        taken = j
    if not points and n and inside[0] == inside[-1]:
        # Every sampled row on one instant (a bulk enrollment bigger than a page): fence it into a
        # window of its own at once, rather than halving empty time around it split after split.
        # The instant sits 3 s or more inside (a window's end is sent inclusive: a fence on the
        # instant itself would hand the bulk to both neighbours).
        instant = inside[0]
        half = max(3, (min_window + 1) // 2)
        points = [
            p
            for p in (instant - half, instant + half)
            if (start is None or p >= start + min_window) and (end is None or p <= end - min_window)
        ][: parts - 1]
    return points


def _cut(before: int, after: int) -> int:
    """A cut point between two neighbouring distinct sample dates: ``before < point <= after``.

    Rows within a second of a boundary are what the dedupe remembers, and a dense instant there would
    be remembered whole, so where the gap allows the point is 3 s after ``before``, 2 s clear of both.
    Not the gap's middle: with daily bulk enrollments at one hour, the middle between two sampled
    days is the unsampled day between them.
    """
    return before + 3 if after - before >= 6 else (before + after + 1) // 2


def _date_ordered(dates: Sequence[int]) -> bool:
    """Whether a page's dates are sorted (either way): then it is one end of its window, not a sample."""
    if len(dates) < 8 or min(dates) == max(dates):
        return False
    pairs = list(itertools.pairwise(dates))
    return all(a <= b for a, b in pairs) or all(a >= b for a, b in pairs)

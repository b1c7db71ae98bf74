"""An in-memory ``PageSource``: the fan-out's unit tests run against it instead of HTTP.

It plays any server behaviour the project's notes allow for ``accessDate``: an inclusive, exclusive or
to-the-second end bound; dates stored with sub-second precision and shown exact, truncated or
rounded; pages ordered by key, by date or against it; and one-sided ranges refused. Requests can be
held at an ``anyio.Event`` so tests order tasks with events, never with sleeps.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Literal

import anyio

from ispring_async import BadRequestError, LearnerResult, ResultsQuery
from ispring_async._models import Department, DepartmentsPage, ResultsPage
from ispring_async._transport import OnRetry

__all__ = ["MemorySource", "Row", "make_rows"]

EndBound = Literal["inclusive", "exclusive", "second"]
Display = Literal["exact", "truncate", "round"]
Order = Literal["key", "date", "reverse-date"]

T0 = datetime(2017, 1, 1, tzinfo=UTC).timestamp()
T1 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


@dataclasses.dataclass(frozen=True)
class Row:
    """A stored row: its key (the keyset order), its true access date (epoch, maybe fractional)."""

    key: int
    when: float
    has_enrollment: bool = True

    def record(self, display: Display) -> LearnerResult:
        """The row as the server shows it."""
        shown = {"exact": self.when, "truncate": math.floor(self.when), "round": round(self.when)}[display]
        return LearnerResult(
            user_id=f"user-{self.key % 97}",
            course_id=f"course-{self.key}",
            course_title="Course",
            access_date=datetime.fromtimestamp(shown, UTC),
            completion_status="complete",
            is_overdue=False,
            enrollment_id=f"enrollment-{self.key}" if self.has_enrollment else None,
        )


def make_rows(count: int, *, seed: int, subsecond: bool) -> list[Row]:
    """``count`` rows: spread over 2017-2025, with bulk enrollments sharing one instant, clustered
    days, and (if ``subsecond``) fractional seconds; every 10th row has no enrollment id."""
    rng = random.Random(seed)
    bulk = [rng.uniform(T0, T1) // 1 for _ in range(5)]
    rows = []
    for key in range(count):
        kind = rng.random()
        if kind < 0.1:
            when = rng.choice(bulk)
        elif kind < 0.4:
            when = T0 + 86400 * rng.randrange(30) + 75600  # 21:00:00 on one of 30 days
        else:
            when = rng.uniform(T0, T1) // 1
        if subsecond:
            when += rng.choice((0.0, 0.25, 0.5, 0.999))
        rows.append(Row(key=key, when=when, has_enrollment=key % 10 != 0))
    return rows


class MemorySource:
    """A ``PageSource`` over ``rows`` with the chosen server behaviour (see the module docstring)."""

    def __init__(
        self,
        rows: list[Row],
        *,
        end: EndBound = "inclusive",
        display: Display = "truncate",
        order: Order = "key",
        ignore_dates: bool = False,
        page_size: int = 100,
    ) -> None:
        self.rows = rows
        self.end, self.display, self.order = end, display, order
        self.ignore_dates = ignore_dates
        self.page_size = page_size
        self.requests = 0
        self.open_chains = 0
        self.hold: anyio.Event | None = None
        """While set to an unset event, every request waits for it (``requested`` is set first)."""
        self.requested = anyio.Event()

    def _select(self, query: ResultsQuery) -> list[Row]:
        rows = self.rows
        span = query.access_date
        if span is not None:
            if span.start is None or span.end is None:
                raise BadRequestError(
                    "Invalid accessDate: both startDate and endDate are required",
                    status=400,
                    url="memory:/learners/results",
                )
            if not self.ignore_dates:
                low, high = span.start.timestamp(), span.end.timestamp()
                if self.end == "inclusive":
                    rows = [r for r in rows if low <= r.when <= high]
                elif self.end == "exclusive":
                    rows = [r for r in rows if low <= r.when < high]
                else:
                    rows = [r for r in rows if low <= r.when < high + 1]
        if self.order == "date":
            rows = sorted(rows, key=lambda r: (r.when, r.key))
        elif self.order == "reverse-date":
            rows = sorted(rows, key=lambda r: (-r.when, r.key))
        return rows

    def truth(self) -> set[str]:
        """Every identity the unsplit query returns."""
        return {row.record(self.display).identity for row in self.rows}

    async def result_pages(
        self, query: ResultsQuery, page_token: str | None = None, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[ResultsPage, None]:
        """Pages of the rows ``query`` selects, from the offset ``page_token`` names."""
        self.open_chains += 1
        try:
            rows = self._select(query)
            size = query.page_size or self.page_size
            offset = int(page_token) if page_token else 0
            while True:
                self.requests += 1
                self.requested.set()
                if self.hold is not None:
                    await self.hold.wait()
                page = rows[offset : offset + size]
                offset += size
                token = str(offset) if offset < len(rows) else None
                yield ResultsPage(records=[r.record(self.display) for r in page], next_page_token=token)
                if token is None:
                    return
        finally:
            self.open_chains -= 1

    async def department_pages(
        self, page_token: str | None = None, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[DepartmentsPage, None]:
        """One page of three departments (the memory source does not filter by them)."""
        self.requests += 1
        yield DepartmentsPage(
            departments=[
                Department(department_id=f"00000000-0000-0000-0000-00000000000{i}", name=f"D{i}")
                for i in range(3)
            ],
            next_page_token=None,
        )

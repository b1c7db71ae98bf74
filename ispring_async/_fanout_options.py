"""What a fan-out takes and what it reports: ``FanOutOptions``, ``PartitionProgress``, ``Batch`` and
``FanOutStats``. Plain values, validated where they are built, so the scheduler (``_fanout.py``) and
the application (``_app/export.py``, the CLI) share one definition of every default.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from ispring_async._config import DEFAULT_CONCURRENCY
from ispring_async._exceptions import ConfigurationError
from ispring_async._models import LearnerResult
from ispring_async._plan import Split
from ispring_async._query import check_instant

__all__ = [
    "DEFAULT_EARLIEST",
    "DEFAULT_OPTIONS",
    "Batch",
    "FanOutOptions",
    "FanOutStats",
    "PartitionProgress",
]

DEFAULT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Where equal date windows start cutting when the query's ``accessDate`` has no start (the first
window still reaches back to 1970, so older rows are exported; they are just not split further)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FanOutOptions:
    """How a fan-out splits and runs a query. Every option is validated here.

    >>> FanOutOptions(split="window", concurrency=16, rate_limit=20.0)
    """

    split: Split = Split.ADAPTIVE
    """How the query is split (``Split`` or its value)."""
    concurrency: int = DEFAULT_CONCURRENCY
    """At most this many requests in flight across all chains (about 8 hide 50 ms of latency)."""
    rate_limit: float | None = None
    """At most this many requests per second across all chains (``None``: no client-side limit)."""
    earliest: datetime | None = None
    """Where equal windows (``WINDOW``/``COMBINED``) start cutting when the query has no
    ``accessDate`` start (``None``: ``DEFAULT_EARLIEST``, 2000-01-01Z). Must be timezone-aware."""
    windows: int | None = None
    """Windows of ``WINDOW``/``COMBINED`` (``None``: ``concurrency``), and the starting windows of
    ``ADAPTIVE`` (``None``: one, so a small on-demand query costs one request; a long one splits as
    soon as its first page shows a next token)."""
    min_window: float = 60.0
    """Seconds: no window is cut narrower (dates have whole seconds; at least 1)."""
    max_partitions: int | None = None
    """``ADAPTIVE`` never has more unfinished partitions than this; the first split cuts into this
    many windows (``None``: ``2 * concurrency``, so the last chains running are short)."""
    departments_per_partition: int = 1
    """Department ids per request (``departmentIds[]``) for ``DEPARTMENT``/``COMBINED``."""
    buffer: int = 8
    """Pages buffered between the chains and the consumer; a slower consumer makes producers wait, so
    at most ``buffer + concurrency`` pages are held in memory."""
    whole_seconds: bool = False
    """``False`` (the default) sends window ``[a, b)`` as ``[a, b]``: neighbours share the instant
    ``b``, and dedupe drops the rows both return. That stays exact whether the API's end bound is
    inclusive or exclusive and whatever precision it stores dates with, which nobody outside iSpring
    knows. ``True`` sends ``[a, b - 1 s]``: no overlap, exact only if the end bound is inclusive and
    every stored date has whole seconds, as every date the API sends does."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "split", Split(self.split))
        except ValueError:
            allowed = ", ".join(s.value for s in Split)
            raise ConfigurationError(
                f"FanOutOptions.split must be one of {allowed}, got {self.split!r}"
            ) from None
        for name in ("concurrency", "departments_per_partition"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"FanOutOptions.{name} must be an int >= 1, got {value!r}")
        for name in ("windows", "max_partitions"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"FanOutOptions.{name} must be an int >= 1 or None, got {value!r}")
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 0:
            raise ConfigurationError(f"FanOutOptions.buffer must be an int >= 0, got {self.buffer!r}")
        if self.rate_limit is not None and not (
            isinstance(self.rate_limit, int | float) and self.rate_limit > 0
        ):
            raise ConfigurationError(f"FanOutOptions.rate_limit must be > 0 or None, got {self.rate_limit!r}")
        if not isinstance(self.min_window, int | float) or not self.min_window >= 1:
            raise ConfigurationError(f"FanOutOptions.min_window must be >= 1 second, got {self.min_window!r}")
        if self.earliest is not None:
            check_instant(self.earliest, "FanOutOptions.earliest")  # aware, and inside the calendar


DEFAULT_OPTIONS = FanOutOptions()
"""The production defaults, shared as every signature's default."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PartitionProgress:
    """A partition's counters, passed to ``on_progress`` whenever they change.

    ``pages`` and ``records`` count what was handed to the consumer (records after dedupe); ``retries``
    counts retried attempts. A partition split into smaller ones ends ``done`` after its first page
    with ``split_into`` naming its children (they fetch its window again and drop what it delivered).
    """

    key: str
    pages: int
    records: int
    retries: int
    done: bool
    split_into: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Batch:
    """One page's worth of new records (already deduplicated), in delivery order."""

    partition: str
    records: list[LearnerResult]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FanOutStats:
    """Counters of a fan-out so far.

    ``pages``/``records`` were handed to the consumer (``duplicates_removed``: rows dropped as sent
    twice, by overlapping partitions or shared boundaries); ``requests`` counts page requests sent (first
    attempts and planning included; retries are in ``retries_by_cause``). ``partitions_total`` counts
    the plan's current partitions (split ones replaced by their children). ``identities_held`` is how
    many row identities the duplicate filter holds now (bounded by the plan, not the export, except
    for department splits and a resume's ``seen``).
    """

    pages: int
    records: int
    duplicates_removed: int
    retries_by_cause: dict[str, int]
    partitions_total: int
    partitions_done: int
    requests: int
    splits: int
    identities_held: int = 0
    refetched: int = 0
    """Rows dropped because a split's children fetched its delivered first page again (the plan's
    cost, counted apart from ``duplicates_removed``, which the server sent twice)."""
    skipped_ids: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Ids left out as unknown to the account (``Client(skip_unknown_ids=True)``), by parameter."""

"""Which records of a delivered page are new: exact, in memory bounded by the plan, not by the export.

Partitions of a split query only overlap in known places, so only those are remembered:

- **Shared window boundaries.** Neighbouring windows ``[a, b)`` and ``[b, c)`` are sent as ``[a, b]``
  and ``[b, c]``, so a row can come from both only if the server thinks it is at ``b``. Whatever the
  server does with the end bound (inclusive, exclusive, to the second or finer), such a row carries an
  ``accessDate`` within one second of ``b``. A ``Boundary`` remembers the identities delivered in that
  zone and is dropped once every chain touching it has finished.
- **Kept first pages.** A partition that splits delivers its first page and its children fetch the
  same window again, so each child carries the identities of that page that fall in its own window
  (``kept``) and drops them when they come again; an identity seen again is forgotten, so the set
  empties after the child's first pages in the usual case.
- **Department groups.** Department partitions may overlap (``departmentIds`` may match
  sub-departments; the API does not say, and a row carries no department to tell), so chains of a
  department split share one exact ``Group`` of every identity they delivered. It is an
  ``IdentitySet``: in memory up to ``IdentitySet.MEMORY_LIMIT`` identities, then in a private
  temporary SQLite database on disk, so memory stays bounded however large the split's export.
- **A resumed export's ``seen``**: identities written before (only department splits need them),
  checked on every page; an ``IdentitySet`` too.

A row outside its window by more than the one-second zone means the server did not filter as asked
(it ignored ``accessDate``, or read it in another time zone): that is an error, not a duplicate, since
both the plan and this dedupe rest on the filter.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from ispring_async._exceptions import ResponseError
from ispring_async._models import LearnerResult

__all__ = ["Boundary", "Dedupe", "Group", "IdentitySet", "Scope", "WindowError", "epoch_of"]

_ZONE = timedelta(seconds=1)
_ACCESS_DATE = operator.attrgetter("access_date")


class WindowError(ResponseError):
    """The server returned a row outside the ``accessDate`` window the partition asked for."""


def epoch_of(record: LearnerResult) -> int:
    """A record's ``accessDate`` in whole epoch seconds (rounded down)."""
    return int(record.access_date.timestamp() // 1)


def _identity(record: LearnerResult) -> str:
    # The record's own identity, not an enrollment's: the fan-out also runs module results (several
    # per enrollment, told apart by their course item) and users through this filter.
    return record.identity


@dataclasses.dataclass(eq=False)
class Boundary:
    """Identities delivered within a second of one shared window boundary, and who still touches it."""

    ids: set[str] = dataclasses.field(default_factory=set)
    live: int = 0


class IdentitySet:
    """An exact set of identities whose memory is bounded: a ``set`` up to ``memory_limit`` entries,
    then a private temporary SQLite database (on disk, deleted when closed) for the rest.

    Pages are checked whole (``add_page``/``known``), so the database costs one ``SELECT … IN`` and
    one ``INSERT`` batch per page rather than a query per record.
    """

    MEMORY_LIMIT = 20_000
    """Identities held in memory before they move to disk: about 2.5 MiB."""
    _CHUNK = 500  # ids per ``IN (…)``: under every SQLite build's variable limit
    # Only "?" placeholders are formatted in; the ids travel as bound parameters.
    _SELECT = f"SELECT id FROM ids WHERE id IN ({','.join('?' * _CHUNK)})"  # noqa: S608

    def __init__(self, ids: Iterable[str] = (), *, memory_limit: int | None = None) -> None:
        self._limit = self.MEMORY_LIMIT if memory_limit is None else memory_limit
        self._memory: set[str] = set()
        self._db: sqlite3.Connection | None = None
        self._on_disk = 0
        iterator = iter(ids)
        while batch := list(itertools.islice(iterator, 10_000)):
            self._store(dict.fromkeys(batch))

    def __len__(self) -> int:
        return len(self._memory) + self._on_disk

    def __iter__(self) -> Iterator[str]:
        yield from list(self._memory)
        if self._db is not None:
            for (identity,) in self._db.execute("SELECT id FROM ids"):
                yield identity

    def __bool__(self) -> bool:
        return bool(self._memory) or self._on_disk > 0

    def __repr__(self) -> str:
        return f"IdentitySet(in_memory={len(self._memory)}, on_disk={self._on_disk})"

    def known(self, ids: Sequence[str]) -> set[int]:
        """Positions of ``ids`` already in the set (nothing is added)."""
        memory = self._memory
        hits: set[int] = set()
        if not memory.isdisjoint(ids):
            hits.update(i for i, identity in enumerate(ids) if identity in memory)
        if self._db is not None:
            stored = self._stored([identity for identity in ids if identity not in memory])
            if stored:
                hits.update(i for i, identity in enumerate(ids) if identity in stored)
        return hits

    def add_page(self, ids: Sequence[str]) -> set[int]:
        """Add ``ids``; the positions that were known already (or repeat an earlier position)."""
        memory = self._memory
        drop: set[int] = set()
        if self._db is None and memory.isdisjoint(ids):
            # The common case: two C-level set operations, no loop in Python.
            before = len(memory)
            memory.update(ids)
            if len(memory) - before == len(ids):
                self._spill_if_full()
                return drop
            memory.difference_update(ids)
        stored = self._stored([identity for identity in ids if identity not in memory])
        fresh: dict[str, None] = {}
        for i, identity in enumerate(ids):
            if identity in memory or identity in stored or identity in fresh:
                drop.add(i)
            else:
                fresh[identity] = None
        self._store(fresh)
        return drop

    def clear(self) -> None:
        """Forget everything (and delete the database)."""
        self._memory = set()
        if self._db is not None:
            self._db.close()
            self._db = None
        self._on_disk = 0

    def _stored(self, ids: list[str]) -> set[str]:
        db = self._db
        if db is None or not ids:
            return set()
        found: set[str] = set()
        for i in range(0, len(ids), self._CHUNK):
            chunk = ids[i : i + self._CHUNK]
            # Padded to one length, so one statement serves every page: sqlite3 caches a prepared
            # statement per distinct SQL text (up to 128), and one per length of partial pages grew
            # the process by ~7 MiB over a 1M-record department export.
            chunk += [chunk[0]] * (self._CHUNK - len(chunk))
            found.update(row[0] for row in db.execute(self._SELECT, chunk))
        return found

    def _store(self, fresh: dict[str, None]) -> None:
        self._memory.update(fresh)
        self._spill_if_full()

    def _spill_if_full(self) -> None:
        if len(self._memory) <= self._limit:
            return
        db = self._db
        if db is None:
            # "" is SQLite's private temporary database: a file only this connection sees, removed on
            # close. No journal and no fsync: it holds nothing that must survive the process.
            db = self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("PRAGMA cache_size = -2048")  # 2 MiB of page cache, whatever the set's size
            db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO ids VALUES (?)", ((identity,) for identity in self._memory))
        db.execute("COMMIT")
        self._on_disk += len(self._memory)
        self._memory = set()


@dataclasses.dataclass(eq=False)
class Group:
    """Every identity delivered by a group of possibly overlapping (department) chains."""

    ids: IdentitySet = dataclasses.field(default_factory=IdentitySet)
    live: int = 0


@dataclasses.dataclass(eq=False, kw_only=True)
class Scope:
    """One chain's view of the dedupe: its window, its shared edges, kept identities and group."""

    start: int | None = None
    end: int | None = None
    left: Boundary | None = None
    right: Boundary | None = None
    kept: dict[str, int] = dataclasses.field(default_factory=dict)
    group: Group | None = None
    # The one-second zones as datetimes, computed once: rows at or before ``low`` or at or after
    # ``high`` are near an edge; everything between needs no bookkeeping.
    low: datetime | None = None
    high: datetime | None = None
    floor: datetime | None = None
    ceiling: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None:
            edge = datetime.fromtimestamp(self.start, UTC)
            self.floor = edge - _ZONE
            if self.left is not None:
                self.low = edge + _ZONE
        if self.end is not None:
            edge = datetime.fromtimestamp(self.end, UTC)
            self.ceiling = edge + _ZONE
            if self.right is not None:
                self.high = edge - _ZONE


class Dedupe:
    """The consumer side's duplicate filter (see the module docstring); one per fan-out."""

    def __init__(self, seen: Iterable[str] = ()) -> None:
        # An IdentitySet is taken as it is: a resume builds one off the event loop, never a list.
        self._seen = seen if isinstance(seen, IdentitySet) else IdentitySet(seen)
        self._boundaries: dict[int, Boundary] = {}
        self.refetched = 0
        """Rows dropped because a split's children fetched its kept first page again: the plan's
        own cost, not duplicates the server sent."""

    @property
    def remembered(self) -> int:
        """How many identities the filter holds now (boundaries, kept pages, groups and ``seen``)."""
        return len(self._seen) + sum(len(b.ids) for b in self._boundaries.values())

    def boundaries(self) -> list[tuple[int, list[str]]]:
        """The identities remembered at each live boundary, for a checkpoint."""
        return [(instant, sorted(b.ids)) for instant, b in sorted(self._boundaries.items()) if b.ids]

    def boundary(self, instant: int) -> Boundary:
        """The boundary at ``instant`` (epoch seconds), made on first use."""
        found = self._boundaries.get(instant)
        if found is None:
            found = self._boundaries[instant] = Boundary()
        return found

    def open(
        self,
        start: int | None,
        end: int | None,
        *,
        left: bool,
        right: bool,
        kept: dict[str, int] | None = None,
        group: Group | None = None,
    ) -> Scope:
        """The scope of a chain over ``[start, end)`` that shares its ``left``/``right`` edge."""
        scope = Scope(
            start=start,
            end=end,
            left=self.boundary(start) if left and start is not None else None,
            right=self.boundary(end) if right and end is not None else None,
            kept=kept or {},
            group=group,
        )
        for edge in (scope.left, scope.right):
            if edge is not None:
                edge.live += 1
        if group is not None:
            group.live += 1
        return scope

    def close(self, scope: Scope) -> None:
        """The chain has finished (or split): release what only it still needed."""
        for instant, edge in ((scope.start, scope.left), (scope.end, scope.right)):
            if edge is not None:
                edge.live -= 1
                if edge.live == 0 and instant is not None:
                    del self._boundaries[instant]
        scope.left = scope.right = None
        scope.kept = {}
        group = scope.group
        if group is not None:
            group.live -= 1
            if group.live == 0:
                group.ids.clear()
            scope.group = None

    def admit(self, scope: Scope, records: list[LearnerResult]) -> list[LearnerResult]:
        """The records of a page that were not delivered before (the list itself when all are new).

        Raises ``WindowError`` for a row outside the scope's window by more than a second.
        """
        seen, kept, group = self._seen, scope.kept, scope.group
        if seen or kept or group is not None:
            ids = [_identity(r) for r in records]
            drop: set[int] = set()
            if seen:
                drop.update(seen.known(ids))
            if kept and not kept.keys().isdisjoint(ids):
                for i, identity in enumerate(ids):
                    if identity in kept:
                        del kept[identity]
                        drop.add(i)
                        self.refetched += 1
            if group is not None:
                drop.update(group.ids.add_page(ids))
            if drop:
                records = [r for i, r in enumerate(records) if i not in drop]
        low, high, floor, ceiling = scope.low, scope.high, scope.floor, scope.ceiling
        if low is None and high is None and floor is None and ceiling is None:
            return records
        near = _near_edges(records, low, high, floor, ceiling)
        if not near:
            return records
        repeated: set[int] = set()
        for index in near:
            record = records[index]
            when = record.access_date
            if (floor is not None and when < floor) or (ceiling is not None and when > ceiling):
                raise WindowError(
                    f"the server returned a row with accessDate {when.isoformat()} for the window "
                    f"{_window_text(scope)}: it did not apply the accessDate filter as sent, so date "
                    "windows cannot split this export (split='none' reads it as one chain)"
                )
            identity = _identity(record)
            for edge in (
                scope.left if low is not None and when <= low else None,
                scope.right if high is not None and when >= high else None,
            ):
                if edge is None:
                    continue
                if identity in edge.ids:
                    repeated.add(index)
                else:
                    edge.ids.add(identity)
        if repeated:
            records = [r for i, r in enumerate(records) if i not in repeated]
        return records

    def split(
        self,
        parent: Scope,
        page: Sequence[LearnerResult],
        children: Sequence[tuple[int | None, int | None]],
        *,
        group: Group | None = None,
    ) -> list[Scope]:
        """Scopes for the children of ``parent`` (windows in order, or one window per department group).

        Each child keeps the identities of ``page`` (the parent's delivered first page, duplicates
        included: the children fetch all of it again) and of the parent's remaining ``kept`` that fall
        within a second of its window. The parent's scope is closed.
        """
        kept = dict(parent.kept)
        kept.update((_identity(r), epoch_of(r)) for r in page)
        windows = set(children)
        same_window = len(windows) == 1
        scopes = []
        for index, (start, end) in enumerate(children):
            mine = {
                identity: when
                for identity, when in kept.items()
                if (start is None or when >= start - 1) and (end is None or when <= end + 1)
            }
            # Department children share the parent's window and edges; window children share the
            # inner boundaries between them and inherit the parent's outer ones.
            left = parent.left is not None if same_window or index == 0 else True
            right = parent.right is not None if same_window or index == len(children) - 1 else True
            scopes.append(self.open(start, end, left=left, right=right, kept=mine, group=group))
        self.close(parent)
        return scopes


def _near_edges(
    records: list[LearnerResult],
    low: datetime | None,
    high: datetime | None,
    floor: datetime | None,
    ceiling: datetime | None,
) -> list[int]:
    # Usually no row is near an edge: the page's earliest and latest dates, found by C-level map and
    # min/max (about a quarter of a comprehension's cost), prove it without a Python loop.
    lower = low if low is not None else floor
    upper = high if high is not None else ceiling
    if records:
        dates = list(map(_ACCESS_DATE, records))
        if (lower is None or min(dates) > lower) and (upper is None or max(dates) < upper):
            return []
    if lower is not None and upper is not None:
        return [i for i, r in enumerate(records) if not lower < r.access_date < upper]
    if lower is not None:
        return [i for i, r in enumerate(records) if r.access_date <= lower]
    assert upper is not None
    return [i for i, r in enumerate(records) if r.access_date >= upper]


def _window_text(scope: Scope) -> str:
    def text(seconds: int | None) -> str:
        if seconds is None:
            return "*"
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"[{text(scope.start)}, {text(scope.end)})"

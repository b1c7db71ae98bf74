"""Query strings of ``/learners/results`` and ``/departments``: parsing, validation, selection.

Parameters arrive as ``(name, value)`` pairs exactly as on the wire. Lists are PHP-style
(``userIds[]=a&userIds[]=b``, also ``userIds[0]=a``); a bare ``userIds=a`` is a one-value list, and
when repeated the last one wins unless ``lenient`` collects them all. Unknown parameters are ignored,
as the real service ignores them (the vendor's own sample sends ``completionStatus=failed``, which is
not a filter). Invalid values raise ``QueryError``, which the server answers with ``400``.

Two selections exist on purpose: ``select_page`` walks indexes (ids, or a date window's
``DateIndex``) from the page token and stops after one page (what the server does), ``select_all``
checks every row (the ground truth). Tests compare the two, so a bug in the indexes cannot hide in
both.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses
import heapq
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from itertools import chain

from ispring_async.emulator._dataset import STATUSES, Dataset, format_uuid

__all__ = [
    "QueryError",
    "ResultsFilter",
    "decode_page_token",
    "encode_page_token",
    "parse_page",
    "parse_results",
    "select_all",
    "select_page",
    "unknown_ids_message",
]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NAME = re.compile(r"([A-Za-z]+)(?:\[([^\]]*)\])?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LISTS = ("enrollmentIds", "userIds", "courseIds", "departmentIds", "completionStatuses", "userStatuses")
_DATES = ("accessDate", "dueDate", "completionDate")
_USER_STATUSES = frozenset({1, 3, 5})
_NO_BOUND = 1 << 62


class QueryError(ValueError):
    """An invalid request parameter; the message is what the API's 400 body says."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultsFilter:
    """A validated ``/learners/results`` query. Dates are inclusive bounds in epoch seconds."""

    enrollment_ids: tuple[str, ...] | None = None
    user_ids: tuple[str, ...] | None = None
    course_ids: tuple[str, ...] | None = None
    department_ids: tuple[str, ...] | None = None
    completion_statuses: frozenset[int] | None = None
    user_statuses: frozenset[int] = frozenset({1})
    access: tuple[int, int] | None = None
    due: tuple[int, int] | None = None
    completion: tuple[int, int] | None = None
    page_size: int = 1000
    after: int | None = None


def encode_page_token(key: int) -> str:
    """The opaque token of the page after the row with ``key``: base64 of the key as a UUID."""
    return base64.urlsafe_b64encode(format_uuid(key).encode("ascii")).decode("ascii").rstrip("=")


def decode_page_token(token: str) -> int:
    """The key a page token continues after; any other text is a ``QueryError``."""
    text = token.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        decoded = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise QueryError("Invalid pageToken") from None
    if not _UUID.fullmatch(decoded):
        raise QueryError("Invalid pageToken")
    return int(decoded.replace("-", ""), 16)


def _split(
    params: Iterable[tuple[str, str]], *, lenient: bool
) -> tuple[dict[str, list[str]], dict[str, str]]:
    lists: dict[str, list[str]] = {}
    scalars: dict[str, str] = {}
    for name, value in params:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        base, sub = match.groups()
        if base in _LISTS:
            if sub is None and not lenient:
                lists[base] = [value]
            else:
                lists.setdefault(base, []).append(value)
        elif base in _DATES and sub in ("startDate", "endDate"):
            scalars[name] = value
        elif base in ("pageSize", "pageToken") and sub is None:
            scalars[base] = value
    return lists, scalars


def _uuids(name: str, values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    for value in values:
        if not _UUID.fullmatch(value):
            raise QueryError(f"Invalid {name}: {value[:60]!r} is not a UUID")
    return tuple(value.lower() for value in values)


def _moment(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        hint = " (encode '+' as %2B)" if " " in value.strip() else ""
        raise QueryError(f"Invalid {name}: {value[:60]!r} is not an RFC 3339 date{hint}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _range(
    base: str, scalars: dict[str, str], *, one_sided: bool, exclusive_end: bool = False
) -> tuple[int, int] | None:
    start_text = scalars.get(f"{base}[startDate]")
    end_text = scalars.get(f"{base}[endDate]")
    if start_text is None and end_text is None:
        return None
    if not one_sided and (start_text is None or end_text is None):
        raise QueryError(f"Invalid {base}: both startDate and endDate are required")
    start = None if start_text is None else _moment(f"{base}[startDate]", start_text)
    end = None if end_text is None else _moment(f"{base}[endDate]", end_text)
    if start is not None and end is not None and start > end:
        raise QueryError(f"Invalid {base}: startDate is after endDate")
    # Rows hold whole seconds, so an inclusive fractional bound includes the whole seconds within it,
    # and an exclusive one the whole seconds strictly before it.
    last = _NO_BOUND
    if end is not None:
        last = math.ceil(end.timestamp()) - 1 if exclusive_end else math.floor(end.timestamp())
    return (-_NO_BOUND if start is None else math.ceil(start.timestamp()), last)


def parse_page(scalars: dict[str, str], *, max_page_size: int) -> tuple[int, int | None]:
    """``(page_size, after_key)`` from ``pageSize`` and ``pageToken``."""
    size_text = scalars.get("pageSize")
    if size_text is None:
        size = max_page_size
    else:
        if not _INTEGER.fullmatch(size_text.strip()):
            raise QueryError(f"Invalid pageSize: {size_text[:30]!r} is not an integer")
        size = int(size_text)
        if size <= 0:
            raise QueryError("Invalid pageSize: must be a positive integer")
    token = scalars.get("pageToken")
    after = decode_page_token(token) if token else None
    return min(size, max_page_size), after


def page_params(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The last ``pageSize`` and ``pageToken`` of a query (``/departments`` takes nothing else)."""
    return _split(params, lenient=False)[1]


def parse_results(
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool = False,
    max_page_size: int = 1000,
    one_sided_ranges: bool = True,
    exclusive_end: bool = False,
) -> ResultsFilter:
    """Validate a ``/learners/results`` query string given as ``(name, value)`` pairs."""
    lists, scalars = _split(params, lenient=lenient)
    statuses: frozenset[int] | None = None
    if "completionStatuses" in lists:
        indexes = set()
        for value in lists["completionStatuses"]:
            if value not in STATUSES:
                raise QueryError(f"Invalid completionStatuses: unknown status {value[:40]!r}")
            indexes.add(STATUSES.index(value))
        statuses = frozenset(indexes)
    user_statuses = frozenset({1})
    if "userStatuses" in lists:
        chosen = set()
        for value in lists["userStatuses"]:
            if not _INTEGER.fullmatch(value) or int(value) not in _USER_STATUSES:
                raise QueryError(f"Invalid userStatuses: {value[:20]!r} is not one of 1, 3, 5")
            chosen.add(int(value))
        user_statuses = frozenset(chosen)
    page_size, after = parse_page(scalars, max_page_size=max_page_size)
    return ResultsFilter(
        enrollment_ids=_uuids("enrollmentIds", lists.get("enrollmentIds")),
        user_ids=_uuids("userIds", lists.get("userIds")),
        course_ids=_uuids("courseIds", lists.get("courseIds")),
        department_ids=_uuids("departmentIds", lists.get("departmentIds")),
        completion_statuses=statuses,
        user_statuses=user_statuses,
        access=_range("accessDate", scalars, one_sided=one_sided_ranges, exclusive_end=exclusive_end),
        due=_range("dueDate", scalars, one_sided=one_sided_ranges, exclusive_end=exclusive_end),
        completion=_range("completionDate", scalars, one_sided=one_sided_ranges, exclusive_end=exclusive_end),
        page_size=page_size,
        after=after,
    )


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """A filter's ids turned into dataset indexes (unknown ids match nothing)."""

    users: frozenset[int] | None
    courses: frozenset[int] | None
    departments: frozenset[int] | None
    enrollments: frozenset[int] | None


def _resolve(ds: Dataset, f: ResultsFilter, *, subtree: bool) -> _Resolved:
    def known(ids: tuple[str, ...] | None, index: dict[str, int]) -> frozenset[int] | None:
        if ids is None:
            return None
        return frozenset(index[i] for i in ids if i in index)

    departments = known(f.department_ids, ds.department_index)
    if departments is not None and subtree:
        departments = frozenset(d for top in departments for d in ds.subtree(top))
    enrollments = None
    if f.enrollment_ids is not None:
        found = set()
        for text in f.enrollment_ids:
            pos = ds.position_of(int(text.replace("-", ""), 16))
            if pos is not None and ds.r_flags[pos] & 1:
                found.add(pos)
        enrollments = frozenset(found)
    return _Resolved(
        users=known(f.user_ids, ds.user_index),
        courses=known(f.course_ids, ds.course_index),
        departments=departments,
        enrollments=enrollments,
    )


_ID_NOUNS = (
    ("enrollment_ids", "enrollment IDs"),
    ("user_ids", "user IDs"),
    ("course_ids", "course IDs"),
    ("department_ids", "department IDs"),
)


def _known_enrollment(ds: Dataset, text: str) -> bool:
    pos = ds.position_of(int(text.replace("-", ""), 16))
    return pos is not None and bool(ds.r_flags[pos] & 1)


def unknown_ids_message(ds: Dataset, f: ResultsFilter) -> str | None:
    """The 400 message for the first id list holding an id the account does not know, else ``None``.

    Like the service as production code meets it, the message names the list, never the id: a
    client has to find the culprits itself (one id at a time, or by bisecting the list).
    """
    indexes = {
        "user_ids": ds.user_index,
        "course_ids": ds.course_index,
        "department_ids": ds.department_index,
    }
    for field, noun in _ID_NOUNS:
        ids: tuple[str, ...] | None = getattr(f, field)
        if ids is None:
            continue
        if field == "enrollment_ids":
            unknown = any(not _known_enrollment(ds, i) for i in ids)
        else:
            unknown = any(i not in indexes[field] for i in ids)
        if unknown:
            return f"One or more invalid {noun}"
    return None


def _predicate(ds: Dataset, f: ResultsFilter, r: _Resolved) -> Callable[[int], bool]:
    """Does the row at a position match every condition of the filter?"""
    r_user, r_course, r_status = ds.r_user, ds.r_course, ds.r_status
    user_status, user_dept = ds.user_status, ds.user_dept
    dates = [(column, bounds) for column, bounds in ((ds.r_access, f.access), (ds.r_due, f.due),
             (ds.r_completion, f.completion)) if bounds is not None]  # fmt: skip
    allowed_user_statuses = f.user_statuses
    statuses = f.completion_statuses

    def matches(pos: int) -> bool:
        user = r_user[pos]
        if user_status[user] not in allowed_user_statuses:
            return False
        if r.users is not None and user not in r.users:
            return False
        if r.courses is not None and r_course[pos] not in r.courses:
            return False
        if r.departments is not None and user_dept[user] not in r.departments:
            return False
        if r.enrollments is not None and pos not in r.enrollments:
            return False
        if statuses is not None and r_status[pos] not in statuses:
            return False
        for column, (start, end) in dates:
            value = column[pos]
            # 0 is an absent date: a range on it never matches.
            if not value or value < start or value > end:
                return False
        return True

    return matches


def select_all(ds: Dataset, f: ResultsFilter, *, subtree: bool) -> list[int]:
    """Positions of every row the filter selects, in API order (pagination ignored)."""
    matches = _predicate(ds, f, _resolve(ds, f, subtree=subtree))
    return [pos for pos in range(len(ds)) if matches(pos)]


def _indexed(
    index: tuple[array[int], array[int]], tail: dict[int, list[int]], keys: Iterable[int], start: int
) -> Iterator[int]:
    """Positions >= start of the index entries of ``keys``, merged in ascending order."""
    offsets, rows = index
    view = memoryview(rows)
    runs: list[Iterable[int]] = []
    late: list[int] = []
    for key in keys:
        if key + 1 < len(offsets):
            end = offsets[key + 1]
            runs.append(view[bisect.bisect_left(rows, start, offsets[key], end) : end])
        late.extend(pos for pos in tail.get(key, ()) if pos >= start)
    merged: Iterable[int] = runs[0] if len(runs) == 1 else heapq.merge(*runs)
    # Inserted rows sit after every built row, so appending them keeps the order.
    return chain(merged, sorted(late))


def _candidates(ds: Dataset, f: ResultsFilter, r: _Resolved, start: int) -> Iterator[int]:
    """The narrowest index's positions from ``start`` on; a plain scan without list or date filters."""
    options: list[tuple[int, Callable[[], Iterator[int]]]] = []
    for column, bounds in (("access", f.access), ("due", f.due), ("completion", f.completion)):
        if bounds is not None:
            dates = ds.date_index(column)
            options.append((dates.estimate(*bounds), partial(dates.window, *bounds, start)))
    if r.enrollments is not None:
        chosen = sorted(pos for pos in r.enrollments if pos >= start)
        options.append((len(chosen), partial(iter, chosen)))
    for keys, index, tail in (
        (r.users, ds.by_user, ds.tail_by_user),
        (r.courses, ds.by_course, ds.tail_by_course),
        (r.departments, ds.by_department, ds.tail_by_department),
    ):
        if keys is not None:
            offsets = index[0]
            size = sum(offsets[k + 1] - offsets[k] for k in keys if k + 1 < len(offsets))
            size += sum(len(tail.get(k, ())) for k in keys)
            options.append((size, partial(_indexed, index, tail, sorted(keys), start)))
    if not options:
        return iter(range(start, len(ds)))
    return min(options, key=lambda option: option[0])[1]()


def select_page(ds: Dataset, f: ResultsFilter, *, subtree: bool) -> tuple[list[int], bool]:
    """One page of positions after ``f.after`` and whether more rows follow it."""
    resolved = _resolve(ds, f, subtree=subtree)
    matches = _predicate(ds, f, resolved)
    start = 0 if f.after is None else ds.position_after(f.after)
    page: list[int] = []
    for pos in _candidates(ds, f, resolved, start):
        if matches(pos):
            if len(page) == f.page_size:
                return page, True
            page.append(pos)
    return page, False

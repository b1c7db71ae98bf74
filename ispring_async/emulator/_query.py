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
from ispring_async.emulator._modules import MAX_MODULES, MODULE_STEP, ModuleCatalog
from ispring_async.emulator._users import UserDirectory

__all__ = [
    "ModuleResultsFilter",
    "QueryError",
    "ResultsFilter",
    "UsersFilter",
    "decode_module_page_token",
    "decode_page_token",
    "encode_module_page_token",
    "encode_page_token",
    "module_unknown_ids_message",
    "parse_module_results",
    "parse_page",
    "parse_results",
    "parse_users",
    "select_all",
    "select_all_modules",
    "select_all_users",
    "select_module_page",
    "select_page",
    "select_users_page",
    "unknown_ids_message",
    "users_unknown_ids_message",
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
    params: Iterable[tuple[str, str]], *, lenient: bool, names: tuple[str, ...] = _LISTS
) -> tuple[dict[str, list[str]], dict[str, str]]:
    lists: dict[str, list[str]] = {}
    scalars: dict[str, str] = {}
    for name, value in params:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        base, sub = match.groups()
        if base in names:
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


# -- /learners/modules/results ----------------------------------------------------------------------

_MODULE_LISTS = ("moduleIds", "courseItemIds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModuleResultsFilter:
    """A validated ``/learners/modules/results`` query: the results filters plus module lists.

    ``results`` holds the filters the endpoint shares with ``/learners/results`` (its ``after`` is
    unused); ``after`` is ``(enrollment key, module index)`` from the page token.
    """

    results: ResultsFilter
    module_ids: tuple[str, ...] | None = None
    course_item_ids: tuple[str, ...] | None = None
    after: tuple[int, int] | None = None


def encode_module_page_token(key: int, module: int) -> str:
    """The opaque token of the page after module ``module`` of the enrollment with ``key``."""
    text = f"{format_uuid(key)}.{module}"
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_module_page_token(token: str) -> tuple[int, int]:
    """``(enrollment key, module index)`` a module results token continues after; else ``QueryError``."""
    text = token.strip().replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise QueryError("Invalid pageToken") from None
    key_text, dot, module_text = decoded.partition(".")
    if not dot or not _UUID.fullmatch(key_text) or not module_text.isdigit() or len(module_text) > 3:
        raise QueryError("Invalid pageToken")
    return int(key_text.replace("-", ""), 16), int(module_text)


def parse_module_results(
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool = False,
    max_page_size: int = 1000,
    one_sided_ranges: bool = True,
    exclusive_end: bool = False,
) -> ModuleResultsFilter:
    """Validate a ``/learners/modules/results`` query: ``parse_results``' rules, then the module lists."""
    pairs = list(params)
    shared = parse_results(
        [(name, value) for name, value in pairs if name != "pageToken"],
        lenient=lenient,
        max_page_size=max_page_size,
        one_sided_ranges=one_sided_ranges,
        exclusive_end=exclusive_end,
    )
    lists, scalars = _split(pairs, lenient=lenient, names=_MODULE_LISTS)
    token = scalars.get("pageToken")
    return ModuleResultsFilter(
        results=shared,
        module_ids=_uuids("moduleIds", lists.get("moduleIds")),
        course_item_ids=_uuids("courseItemIds", lists.get("courseItemIds")),
        after=decode_module_page_token(token) if token else None,
    )


def module_unknown_ids_message(ds: Dataset, catalog: ModuleCatalog, f: ModuleResultsFilter) -> str | None:
    """``unknown_ids_message`` for the shared lists, then ``moduleIds`` and ``courseItemIds``."""
    message = unknown_ids_message(ds, f.results)
    if message is not None:
        return message
    for ids, index, noun in (
        (f.module_ids, catalog.module_index, "module IDs"),
        (f.course_item_ids, catalog.course_item_index, "course item IDs"),
    ):
        if ids is not None and any(i not in index for i in ids):
            return f"One or more invalid {noun}"
    return None


def _module_set(catalog: ModuleCatalog, f: ModuleResultsFilter) -> frozenset[int] | None:
    """The module indexes the module lists allow (both lists: the intersection), ``None``: any."""
    allowed: frozenset[int] | None = None
    for ids, index in ((f.module_ids, catalog.module_index), (f.course_item_ids, catalog.course_item_index)):
        if ids is not None:
            found = frozenset(index[i] for i in ids if i in index)
            allowed = found if allowed is None else allowed & found
    return allowed


def _module_matches(
    catalog: ModuleCatalog, f: ResultsFilter, allowed: frozenset[int] | None
) -> Callable[[int, int], bool]:
    """Does module ``k`` of the enrollment at ``pos`` match the module-level conditions?

    Statuses and date ranges apply to the module's own values, not its enrollment's.
    """
    statuses = f.completion_statuses
    dates = [(index, bounds) for index, bounds in ((1, f.access), (2, f.due), (4, f.completion))
             if bounds is not None]  # fmt: skip
    course_modules, r_course = catalog.course_modules, catalog.ds.r_course

    def matches(pos: int, k: int) -> bool:
        if allowed is not None and course_modules[r_course[pos]][k] not in allowed:
            return False
        if statuses is None and not dates:
            return True
        values = catalog.values(pos, k)
        if statuses is not None and values.status not in statuses:
            return False
        for index, (start, end) in dates:
            value = values[index]
            if not value or value < start or value > end:
                return False
        return True

    return matches


def _enrollment_filter(f: ModuleResultsFilter) -> ResultsFilter:
    """The enrollment-level part of a module query, for candidates: statuses and dates dropped."""
    return dataclasses.replace(f.results, completion_statuses=None, due=None, completion=None, access=None)


def select_all_modules(
    ds: Dataset, catalog: ModuleCatalog, f: ModuleResultsFilter, *, subtree: bool
) -> list[tuple[int, int]]:
    """Every ``(position, module index)`` the filter selects, in API order: a check of every module
    of every row (the ground truth), no index used."""
    shared = _enrollment_filter(f)
    enrolled = _predicate(ds, shared, _resolve(ds, shared, subtree=subtree))
    matches = _module_matches(catalog, f.results, _module_set(catalog, f))
    found: list[tuple[int, int]] = []
    for pos in range(len(ds)):
        if enrolled(pos):
            found.extend((pos, k) for k in range(len(catalog.modules_of(pos))) if matches(pos, k))
    return found


def select_module_page(
    ds: Dataset, catalog: ModuleCatalog, f: ModuleResultsFilter, *, subtree: bool
) -> tuple[list[tuple[int, int]], bool]:
    """One page of ``(position, module index)`` after ``f.after`` and whether more follow it.

    Candidates come from the results' indexes: the id lists as they are, an ``accessDate`` window
    widened by the latest a module can open after its enrollment (``MODULE_STEP`` per module), and
    the courses that hold the allowed modules.
    """
    shared = _enrollment_filter(f)
    allowed = _module_set(catalog, f)
    narrowing = shared
    if f.results.access is not None:
        start_date, end_date = f.results.access
        widen = (MAX_MODULES - 1) * MODULE_STEP
        narrowing = dataclasses.replace(narrowing, access=(start_date - widen, end_date))
    resolved = _resolve(ds, shared, subtree=subtree)
    if allowed is not None:
        courses = frozenset(catalog.module_course[m] for m in allowed)
        if resolved.courses is not None:
            courses &= resolved.courses
        resolved = dataclasses.replace(resolved, courses=courses)
    enrolled = _predicate(ds, shared, resolved)
    matches = _module_matches(catalog, f.results, allowed)
    start, first_module = 0, 0
    if f.after is not None:
        key, module = f.after
        at = ds.position_of(key)
        start, first_module = (ds.position_after(key), 0) if at is None else (at, module + 1)
    page: list[tuple[int, int]] = []
    size = f.results.page_size
    for pos in _candidates(ds, narrowing, resolved, start):
        if not enrolled(pos):
            continue
        for k in range(first_module if pos == start else 0, len(catalog.modules_of(pos))):
            if matches(pos, k):
                if len(page) == size:
                    return page, True
                page.append((pos, k))
    return page, False


# -- /users/v2 ----------------------------------------------------------------------------------------

_USER_LISTS = ("departments", "userIds", "logins", "emails", "groups")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsersFilter:
    """A validated ``/users/v2`` query; every given list must match (an AND of the lists)."""

    department_ids: tuple[str, ...] | None = None
    user_ids: tuple[str, ...] | None = None
    logins: tuple[str, ...] | None = None
    emails: tuple[str, ...] | None = None
    group_ids: tuple[str, ...] | None = None
    page_size: int = 1000
    after: int | None = None


def parse_users(
    params: Iterable[tuple[str, str]], *, lenient: bool = False, max_page_size: int = 1000
) -> UsersFilter:
    """Validate a ``/users/v2`` query string given as ``(name, value)`` pairs."""
    lists, scalars = _split(params, lenient=lenient, names=_USER_LISTS)
    page_size, after = parse_page(scalars, max_page_size=max_page_size)
    logins, emails = lists.get("logins"), lists.get("emails")
    return UsersFilter(
        department_ids=_uuids("departments", lists.get("departments")),
        user_ids=_uuids("userIds", lists.get("userIds")),
        # Logins and emails are matched as given: the emulator's are lowercase ASCII.
        logins=None if logins is None else tuple(logins),
        emails=None if emails is None else tuple(emails),
        group_ids=_uuids("groups", lists.get("groups")),
        page_size=page_size,
        after=after,
    )


def users_unknown_ids_message(ds: Dataset, directory: UserDirectory, f: UsersFilter) -> str | None:
    """The 400 message for the first id list (users, departments, groups) holding an unknown id.

    Logins and emails are not ids: one the account does not know matches nothing.
    """
    for ids, index, noun in (
        (f.user_ids, ds.user_index, "user IDs"),
        (f.department_ids, ds.department_index, "department IDs"),
        (f.group_ids, directory.group_index, "group IDs"),
    ):
        if ids is not None and any(i not in index for i in ids):
            return f"One or more invalid {noun}"
    return None


def _user_matches(
    ds: Dataset, directory: UserDirectory, f: UsersFilter, *, subtree: bool
) -> Callable[[int], bool]:
    def known(ids: tuple[str, ...] | None, index: dict[str, int]) -> frozenset[int] | None:
        return None if ids is None else frozenset(index[i] for i in ids if i in index)

    users = known(f.user_ids, ds.user_index)
    departments = known(f.department_ids, ds.department_index)
    if departments is not None and subtree:
        departments = frozenset(d for top in departments for d in ds.subtree(top))
    logins = known(f.logins, directory.login_index)
    emails = known(f.emails, directory.email_index)
    groups = known(f.group_ids, directory.group_index)
    user_dept, user_groups = ds.user_dept, directory.groups

    def matches(user: int) -> bool:
        if users is not None and user not in users:
            return False
        if departments is not None and user_dept[user] not in departments:
            return False
        if logins is not None and user not in logins:
            return False
        if emails is not None and user not in emails:
            return False
        return groups is None or any(g in groups for g in user_groups[user])

    return matches


def select_all_users(ds: Dataset, directory: UserDirectory, f: UsersFilter, *, subtree: bool) -> list[int]:
    """Every user index the filter selects, in the order ``/users/v2`` pages them."""
    matches = _user_matches(ds, directory, f, subtree=subtree)
    return [user for user in directory.in_order if matches(user)]


def select_users_page(
    ds: Dataset, directory: UserDirectory, f: UsersFilter, *, subtree: bool
) -> tuple[list[int], bool]:
    """One page of user indexes after ``f.after`` (a user id as a key) and whether more follow."""
    matches = _user_matches(ds, directory, f, subtree=subtree)
    start = 0 if f.after is None else bisect.bisect_right(directory.keys, f.after)
    page: list[int] = []
    order = directory.in_order
    for at in range(start, len(order)):
        user = order[at]
        if matches(user):
            if len(page) == f.page_size:
                return page, True
            page.append(user)
    return page, False

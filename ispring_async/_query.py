"""The filters of ``GET /learners/results``, validated before any request and encoded for the wire.

``ResultsQuery.to_params()`` is the one place a query becomes URL parameters; the emulator's ground
truth reads the same list, so what the client sends and what the tests check cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from ispring_async._batching import id_batches
from ispring_async._config import MAX_PAGE_SIZE
from ispring_async._exceptions import ConfigurationError
from ispring_async._models import CompletionStatus, UserStatus

__all__ = [
    "EARLIEST_INSTANT",
    "LATEST_INSTANT",
    "DateRange",
    "ModuleResultsQuery",
    "ResultsQuery",
    "UsersQuery",
    "check_instant",
]

_E = TypeVar("_E", CompletionStatus, UserStatus)

_ID_FIELDS = {
    "enrollmentIds[]": "enrollment_ids",
    "userIds[]": "user_ids",
    "courseIds[]": "course_ids",
    "departmentIds[]": "department_ids",
}

# Bounds a day inside the calendar's edges: windows, rounding and "end of day" add seconds to a bound,
# and at year 1 or 9999 that overflows (year 10000 is out of range) long after the query was accepted.
EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)


def check_instant(value: datetime, what: str) -> datetime:
    """``value`` in UTC, or ``ConfigurationError`` if it is naive or outside the supported years.

    >>> check_instant(datetime(9999, 12, 31, tzinfo=UTC), "DateRange.end")
    Traceback (most recent call last):
    ...
    ispring_async._exceptions.ConfigurationError: DateRange.end 9999-12-31 00:00:00+00:00 is outside ...
    """
    if not isinstance(value, datetime):
        raise ConfigurationError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ConfigurationError(
            f"{what} must be timezone-aware (e.g. tzinfo=datetime.UTC), got naive {value}"
        )
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None  # an offset that pushes it past year 1 or 9999
    if utc is None or not EARLIEST_INSTANT <= utc <= LATEST_INSTANT:
        first, last = (_wire_datetime(t, round_up=False) for t in (EARLIEST_INSTANT, LATEST_INSTANT))
        raise ConfigurationError(
            f"{what} {value} is outside the supported range {first} .. {last} "
            "(leave the bound out for an open range)"
        )
    return utc


def _wire_datetime(value: datetime, *, round_up: bool) -> str:
    """RFC 3339 in UTC with a ``Z``: no ``+`` to encode, and no offset for a server to misread."""
    utc = value.astimezone(UTC)
    if utc.microsecond:
        # The API's dates have whole seconds, so rounding a start up and an end down to the second
        # selects exactly the rows the precise bound would, and sends what every API accepts.
        utc = utc.replace(microsecond=0) + (timedelta(seconds=1) if round_up else timedelta())
    # isoformat, not strftime: strftime("%Y") does not pad years before 1000 on every platform.
    return utc.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DateRange:
    """An inclusive time range; either end may be left open, but not both.

    >>> DateRange(start=datetime(2019, 12, 24, 21, tzinfo=UTC))
    DateRange(start=datetime.datetime(2019, 12, 24, 21, 0, tzinfo=datetime.timezone.utc), end=None)
    """

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is None and self.end is None:
            raise ConfigurationError("DateRange needs a start, an end, or both (use None for no range)")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                check_instant(value, f"DateRange.{name}")
        if self.start is not None and self.end is not None:
            if self.start > self.end:
                raise ConfigurationError(f"DateRange start {self.start} is after its end {self.end}")
            if _wire_datetime(self.start, round_up=True) > _wire_datetime(self.end, round_up=False):
                raise ConfigurationError(f"DateRange {self.start}..{self.end} contains no whole second")

    def to_params(self, name: str) -> list[tuple[str, str]]:
        """The range as ``name[startDate]`` / ``name[endDate]`` parameters."""
        params = []
        if self.start is not None:
            params.append((f"{name}[startDate]", _wire_datetime(self.start, round_up=True)))
        if self.end is not None:
            params.append((f"{name}[endDate]", _wire_datetime(self.end, round_up=False)))
        return params


def _listed(field: str, values: Iterable[Any], owner: str, what: str) -> tuple[Any, ...]:
    """``values`` as a non-empty tuple: a single string, or an empty list, is refused."""
    if isinstance(values, str | bytes):
        raise ConfigurationError(f"{owner}.{field} must be a list{what}, not a single string")
    items = tuple(values)
    if not items:
        # An empty list would silently mean "no filter", i.e. everything: make the caller say None.
        raise ConfigurationError(f"{owner}.{field} is empty; pass None for no filter")
    return items


def _strings(field: str, values: Iterable[str] | None, owner: str) -> tuple[str, ...] | None:
    """A list filter as a tuple of strings: ``None`` stays no filter, an empty list is refused."""
    if values is None:
        return None
    ids = _listed(field, values, owner, "")
    for value in ids:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{owner}.{field}: {value!r} is not a non-empty string")
    return tuple(dict.fromkeys(ids))


def _uuids(field: str, values: Iterable[str] | None, owner: str = "ResultsQuery") -> tuple[str, ...] | None:
    if values is None:
        return None
    ids = _listed(field, values, owner, " of ids")
    for value in ids:
        try:
            canonical = str(uuid.UUID(value))
        except (ValueError, TypeError, AttributeError):
            canonical = None
        # uuid.UUID also takes braces, URNs and bare hex; the API's ids are the hyphenated form only.
        if canonical is None or canonical != str(value).lower():
            raise ConfigurationError(f"{owner}.{field}: {value!r} is not a UUID")
    return tuple(dict.fromkeys(value.lower() for value in ids))


def _members(field: str, enum: type[_E], values: Iterable[Any] | None) -> tuple[_E, ...] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes):
        raise ConfigurationError(f"ResultsQuery.{field} must be a list, not a single string")
    members = []
    for value in values:
        try:
            members.append(enum(value))
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum)
            raise ConfigurationError(f"ResultsQuery.{field}: {value!r} is not one of {allowed}") from None
    if not members:
        raise ConfigurationError(f"ResultsQuery.{field} is empty; pass None for no filter")
    return tuple(dict.fromkeys(members))


def _check_page_size(size: object, owner: str) -> None:
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE
    ):
        raise ConfigurationError(f"{owner}.page_size must be 1..{MAX_PAGE_SIZE}, got {size!r}")


#: What a query (the library's and the export command's) asks for unless told otherwise: see ResultsQuery.
DEFAULT_USER_STATUSES: tuple[UserStatus, ...] = (UserStatus.ACTIVE, UserStatus.BLOCKED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultsQuery:
    """Every filter of ``GET /learners/results``; all optional, combined with AND (OR within a list).

    Ids must be UUIDs, statuses members (or values) of ``CompletionStatus`` / ``UserStatus``, dates
    timezone-aware; anything else raises ``ConfigurationError`` (a ``ValueError``) here, before any
    request. ``page_size=None`` uses the client's ``page_size``.

    ``user_statuses`` defaults to ``DEFAULT_USER_STATUSES``, active **and blocked** users, the same
    decision the export command takes, made here once for both: the API's own default (no
    ``userStatuses``) is active users only and silently drops blocked users' results, and a default
    that drops rows without a word is the wrong default for an export client. A required argument
    (stamina's way) would make every caller spell out the same two statuses; terminated users (5) are
    left to be asked for, as on the command line. ``user_statuses=None`` sends no filter, i.e. the
    API's default, for a caller who wants exactly that.

    >>> ResultsQuery(completion_statuses=["failed"], page_size=33).to_params()
    [('completionStatuses[]', 'failed'), ('userStatuses[]', '1'), ('userStatuses[]', '3'), ('pageSize', '33')]
    """

    # Which field each id-list parameter comes from: a batch of the query is built back from them.
    _id_fields: ClassVar[dict[str, str]] = _ID_FIELDS

    enrollment_ids: Iterable[str] | None = None
    user_ids: Iterable[str] | None = None
    course_ids: Iterable[str] | None = None
    department_ids: Iterable[str] | None = None
    completion_statuses: Iterable[CompletionStatus | str] | None = None
    user_statuses: Iterable[UserStatus | int] | None = DEFAULT_USER_STATUSES
    access_date: DateRange | None = None
    due_date: DateRange | None = None
    completion_date: DateRange | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        # Normalise to tuples so a query is hashable, immutable and cheap to re-encode per page.
        for field in ("enrollment_ids", "user_ids", "course_ids", "department_ids"):
            object.__setattr__(self, field, _uuids(field, getattr(self, field)))
        object.__setattr__(
            self,
            "completion_statuses",
            _members("completion_statuses", CompletionStatus, self.completion_statuses),
        )
        object.__setattr__(self, "user_statuses", _members("user_statuses", UserStatus, self.user_statuses))
        for field in ("access_date", "due_date", "completion_date"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, DateRange):
                raise ConfigurationError(f"ResultsQuery.{field} must be a DateRange or None")
        _check_page_size(self.page_size, "ResultsQuery")

    def to_params(self) -> list[tuple[str, str]]:
        """The query as URL parameters, PHP-style (``userIds[]=a&userIds[]=b``), in a stable order.

        ``pageToken`` is not part of a query: pagination adds it per page.
        """
        params: list[tuple[str, str]] = []
        for name, ids in (
            ("enrollmentIds", self.enrollment_ids),
            ("userIds", self.user_ids),
            ("courseIds", self.course_ids),
            ("departmentIds", self.department_ids),
        ):
            params.extend((f"{name}[]", value) for value in ids or ())
        # The seed's sample request sends ``completionStatus=failed`` while its parameter table names
        # ``completionStatuses``; the table (and the OpenAPI) win, in the same PHP list form as the rest.
        params.extend(("completionStatuses[]", str(s)) for s in self.completion_statuses or ())
        params.extend(("userStatuses[]", str(int(s))) for s in self.user_statuses or ())
        for name, date_range in (
            ("accessDate", self.access_date),
            ("dueDate", self.due_date),
            ("completionDate", self.completion_date),
        ):
            if date_range is not None:
                params.extend(date_range.to_params(name))
        if self.page_size is not None:
            params.append(("pageSize", str(self.page_size)))
        return params

    def batches(self) -> list[ResultsQuery]:
        """The query as queries whose id lists fit one request each (``_batching.id_batches``).

        ``[self]`` when it fits already. The batches' rows partition the query's, except that
        department batches may overlap if ``departmentIds`` matches sub-departments (see
        ``_batching``); ``Client.learner_results`` dedupes them.
        """
        cut = id_batches(self.to_params())
        if len(cut) == 1:
            return [self]
        queries = []
        for params in cut:
            lists: dict[str, list[str]] = {}
            for name, value in params:
                if name in self._id_fields:
                    lists.setdefault(self._id_fields[name], []).append(value)
            queries.append(dataclasses.replace(self, **lists))  # type: ignore[arg-type]
        return queries


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModuleResultsQuery(ResultsQuery):
    """Every filter of ``GET /learners/modules/results``: ``ResultsQuery``'s, plus ``module_ids`` and
    ``course_item_ids``, validated the same way.

    The endpoint shares the results' filters; ``completion_statuses`` and the date ranges apply to each
    module result's own status and dates (a module's ``accessDate`` is when the learner first opened
    it), so date windows split it as they split results.

    >>> ModuleResultsQuery(module_ids=["0c6a62f4-2f52-11ea-8e3f-0a580af40c09"]).to_params()[-1]
    ('moduleIds[]', '0c6a62f4-2f52-11ea-8e3f-0a580af40c09')
    """

    _id_fields: ClassVar[dict[str, str]] = {
        **_ID_FIELDS,
        "moduleIds[]": "module_ids",
        "courseItemIds[]": "course_item_ids",
    }

    module_ids: Iterable[str] | None = None
    course_item_ids: Iterable[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("module_ids", "course_item_ids"):
            object.__setattr__(self, field, _uuids(field, getattr(self, field), "ModuleResultsQuery"))

    def to_params(self) -> list[tuple[str, str]]:
        """``ResultsQuery.to_params()`` with ``moduleIds[]`` and ``courseItemIds[]`` before ``pageSize``."""
        params = super().to_params()
        size = params.pop() if params and params[-1][0] == "pageSize" else None
        params.extend(("moduleIds[]", value) for value in self.module_ids or ())
        params.extend(("courseItemIds[]", value) for value in self.course_item_ids or ())
        if size is not None:
            params.append(size)
        return params


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsersQuery:
    """The filters of ``GET /users/v2``; all optional, combined with AND (OR within a list).

    ``department_ids`` (sent as ``departments[]``), ``user_ids`` and ``group_ids`` (``groups[]``) must be
    UUIDs; ``logins`` and ``emails`` are matched as the API stores them. The endpoint has no status
    filter: every user is listed, blocked and terminated ones included.

    >>> UsersQuery(logins=["jdoe"]).to_params()
    [('logins[]', 'jdoe')]
    """

    department_ids: Iterable[str] | None = None
    user_ids: Iterable[str] | None = None
    logins: Iterable[str] | None = None
    emails: Iterable[str] | None = None
    group_ids: Iterable[str] | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        for field in ("department_ids", "user_ids", "group_ids"):
            object.__setattr__(self, field, _uuids(field, getattr(self, field), "UsersQuery"))
        for field in ("logins", "emails"):
            object.__setattr__(self, field, _strings(field, getattr(self, field), "UsersQuery"))
        _check_page_size(self.page_size, "UsersQuery")

    def to_params(self) -> list[tuple[str, str]]:
        """The query as URL parameters (``departments[]=a&userIds[]=b``), in a stable order."""
        params: list[tuple[str, str]] = []
        for name, values in (
            ("departments", self.department_ids),
            ("userIds", self.user_ids),
            ("logins", self.logins),
            ("emails", self.emails),
            ("groups", self.group_ids),
        ):
            params.extend((f"{name}[]", value) for value in values or ())
        if self.page_size is not None:
            params.append(("pageSize", str(self.page_size)))
        return params

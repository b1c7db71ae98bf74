"""The records the API returns, as msgspec structs.

Attribute names are snake_case; ``rename="camel"`` maps them to the API's element and key names, so the
same struct decodes XML-derived data, JSON pages, and encodes back to the API's field names for sinks.

Structs are ``gc=False``: they hold only atomic values, or tuples of frozen structs that hold only
atomic values, so no record can take part in a reference cycle and the cycle collector need not track
the millions of them a nightly export creates. (Nested sequences are tuples, not lists, for that
reason: a frozen struct holding a list could be made part of a cycle by appending to it.)
"""

from __future__ import annotations

import enum
import sys
from datetime import date, datetime
from typing import Annotated

import msgspec

__all__ = [
    "CompletionStatus",
    "Department",
    "DepartmentsPage",
    "LearnerModuleResult",
    "LearnerResult",
    "ModuleResultsPage",
    "ResultsPage",
    "RowIdentity",
    "User",
    "UserField",
    "UserRole",
    "UserStatus",
    "UserSubordination",
    "UsersPage",
    "WorkLeaveStatus",
]

# An aware datetime: the API always sends an offset (``Z`` or ``+00:00``); a naive value is refused
# rather than silently interpreted in the local zone.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# Numbers every sink can store, checked where a page is parsed (msgspec's error names the record and the
# field), not where a sink first fails: SQLite and Parquet hold signed 64-bit integers, and no sink
# has one faithful spelling of NaN or Infinity (JSON has none at all, CSV and SQLite disagree). The
# API's numbers are finite, so a non-finite one is the server's error, and refused like a wrong type.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]

RowIdentity = str
"""The identity of a result row: its ``enrollmentId``, else ``"<userId>/<courseId>"``."""


class CompletionStatus(enum.StrEnum):
    """Course completion statuses the API documents (``completionStatuses`` filter values).

    ``LearnerResult.completion_status`` is a plain ``str`` so a status the vendor adds later does not
    abort an export; compare it with these members (they are ``str``).
    """

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    COMPLETE = "complete"
    PASSED = "passed"
    ACCEPTED = "accepted"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    DECLINED = "declined"


class UserStatus(enum.IntEnum):
    """User statuses for the ``userStatuses`` filter. The API's default is ``ACTIVE`` only."""

    ACTIVE = 1
    BLOCKED = 3
    TERMINATED = 5


class LearnerResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One learner's result in one course (one enrollment).

    >>> r.course_title, r.completion_status, r.progress
    ('Course 1', 'in_progress', 9.09)
    """

    user_id: str
    course_id: str
    course_title: str
    access_date: AwareDatetime
    completion_status: str
    is_overdue: bool
    enrollment_id: str | None = None
    session_id: str | None = None
    due_date: AwareDatetime | None = None
    expiration_date: AwareDatetime | None = None
    completion_date: AwareDatetime | None = None
    duration: Int64 | None = None
    time_spent: Int64 | None = None
    progress: FiniteFloat | None = None
    awarded_score: FiniteFloat | None = None
    passing_score: FiniteFloat | None = None
    views_count: Int64 | None = None

    @property
    def identity(self) -> RowIdentity:
        """The row's identity: ``enrollmentId`` when present, else ``userId/courseId``."""
        return self.enrollment_id or f"{self.user_id}/{self.course_id}"


class LearnerModuleResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One learner's result in one module (course item) of one enrollment (``/learners/modules/results``).

    Required and optional fields as the OpenAPI schema ``LearnerModuleResult`` says.

    >>> m.module_title, m.completion_status, m.identity
    ('Module 1', 'passed', 'e1/ci1')
    """

    user_id: str
    course_id: str
    module_id: str
    module_title: str
    course_item_id: str
    access_date: AwareDatetime
    completion_status: str
    is_overdue: bool
    enrollment_id: str | None = None
    due_date: AwareDatetime | None = None
    expiration_date: AwareDatetime | None = None
    completion_date: AwareDatetime | None = None
    time_spent: Int64 | None = None
    awarded_score: FiniteFloat | None = None
    passing_score: FiniteFloat | None = None
    progress: FiniteFloat | None = None
    views_count: Int64 | None = None

    @property
    def identity(self) -> RowIdentity:
        """``<result identity>/<courseItemId>``: the enrollment's row (as ``LearnerResult.identity``
        spells it) and the course item within it.

        ``courseItemId`` rather than ``moduleId``: one module can be placed in a course twice (two
        course items), and each placement has its own result; within one enrollment a course item
        occurs once. The enrollment part keeps a learner's re-enrollments in one course apart.
        """
        return f"{self.enrollment_id or f'{self.user_id}/{self.course_id}'}/{self.course_item_id}"


class UserField(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One profile field of a user: ``<field><name>…</name><value>…</value></field>``."""

    name: str
    value: str


class UserRole(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One role of a user (``<userRoles><userRole>``); ``manageable_department_ids`` for admin roles."""

    role_id: str
    role_type: str | None = None
    manageable_department_ids: tuple[str, ...] = ()


class UserSubordination(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """Who a user reports to: ``subordination_type`` is ``manual``, ``inherit`` or ``no_supervisor``."""

    subordination_type: str
    supervisor_id: str | None = None


class WorkLeaveStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A user's leave (``OutOfTheOffice``, ``OnVacation``, …) from ``start_date`` to ``end_date``."""

    work_leave_reason: str
    start_date: date
    end_date: date | None = None


# Profile field names compared without case or "_": the OpenAPI spells them ``login`` and ``email``
# (``UserProfileFields``), the vendor's pages ``LOGIN``, ``FIRST_NAME``; both read the same.
def _field_key(name: str) -> str:
    return name.replace("_", "").lower()


class User(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A user of ``/users/v2`` (the OpenAPI's ``UserV2``): ids, role, status, dates, profile fields.

    ``status`` and ``role`` are plain values (compare with ``UserStatus`` and the role names), so a value
    the vendor adds later does not abort an export. ``last_login_date`` is optional although the schema
    lists it as required: a user who never signed in has none, and that must not fail a nightly export.

    >>> u.login, u.full_name, u.groups
    ('jdoe', 'Jane Doe', ('g1', 'g2'))
    """

    user_id: str
    department_id: str
    status: Int64
    role: str
    role_id: str
    fields: tuple[UserField, ...]
    added_date: AwareDatetime
    last_login_date: AwareDatetime | None = None
    groups: tuple[str, ...] = ()
    manageable_department_ids: tuple[str, ...] = ()
    user_roles: tuple[UserRole, ...] = ()
    subordination: UserSubordination | None = None
    co_subordination: UserSubordination | None = None
    work_leave_status: WorkLeaveStatus | None = None
    security_policy_acceptance_date: AwareDatetime | None = None
    privacy_policy_consent_acceptance_date: AwareDatetime | None = None

    @property
    def identity(self) -> str:
        """The row's identity: ``userId``."""
        return self.user_id

    def field(self, name: str) -> str | None:
        """The value of profile field ``name`` (``"first_name"``, ``"FIRST_NAME"`` and ``"firstName"``
        are one name), or ``None`` if the user has no such field."""
        key = _field_key(name)
        for item in self.fields:
            if _field_key(item.name) == key:
                return item.value
        return None

    @property
    def login(self) -> str | None:
        """The ``login`` profile field."""
        return self.field("login")

    @property
    def email(self) -> str | None:
        """The ``email`` profile field."""
        return self.field("email")

    @property
    def first_name(self) -> str | None:
        """The ``first_name`` profile field."""
        return self.field("first_name")

    @property
    def last_name(self) -> str | None:
        """The ``last_name`` profile field."""
        return self.field("last_name")

    @property
    def full_name(self) -> str | None:
        """First and last name joined by a space (either alone if the other is empty), else ``None``."""
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or None


class Department(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A department; the tree is rebuilt from ``parent_department_id`` (absent on the root)."""

    department_id: str
    name: str
    parent_department_id: str | None = None
    code: str | None = None


class ResultsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of results and the token of the next page (``None`` on the last page)."""

    records: list[LearnerResult]
    next_page_token: str | None = None


class DepartmentsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of departments and the token of the next page (``None`` on the last page)."""

    departments: list[Department]
    next_page_token: str | None = None


class ModuleResultsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of module results and the token of the next page (``None`` on the last page)."""

    records: list[LearnerModuleResult]
    next_page_token: str | None = None


class UsersPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of users and the token of the next page (``None`` on the last page)."""

    users: list[User]
    next_page_token: str | None = None

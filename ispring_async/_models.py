"""The records the API returns, as msgspec structs.

Attribute names are snake_case; ``rename="camel"`` maps them to the API's element and key names, so the
same struct decodes XML-derived data, JSON pages, and encodes back to the API's field names for sinks.

Structs are ``gc=False``: they hold only atomic values, so the cycle collector need not track the
millions of them a nightly export creates.
"""

from __future__ import annotations

import enum
import sys
from datetime import datetime
from typing import Annotated

import msgspec

__all__ = [
    "CompletionStatus",
    "Department",
    "DepartmentsPage",
    "LearnerResult",
    "ResultsPage",
    "RowIdentity",
    "UserStatus",
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

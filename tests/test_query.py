"""ResultsQuery / DateRange: validation before any request, and the exact wire parameters."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ispring_async import (
    CompletionStatus,
    ConfigurationError,
    DateRange,
    ResultsQuery,
    UserStatus,
)
from ispring_async._query import DEFAULT_USER_STATUSES
from tests._helpers import C1, D1, E1, U1, U2, seed_params, seed_query, utc

# The seed document's sample request, verbatim (its pageToken is added by pagination, not the query).


def test_seed_sample_request_parameters() -> None:
    """The seed's sample request comes out parameter for parameter (up to order)."""
    assert Counter(seed_query().to_params()) == seed_params()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"enrollment_ids": [E1]}, [("enrollmentIds[]", E1)], id="enrollmentIds"),
        pytest.param({"user_ids": [U1, U2]}, [("userIds[]", U1), ("userIds[]", U2)], id="userIds-list"),
        pytest.param({"course_ids": [C1]}, [("courseIds[]", C1)], id="courseIds"),
        pytest.param({"department_ids": [D1]}, [("departmentIds[]", D1)], id="departmentIds"),
        pytest.param(
            {"completion_statuses": ["passed", CompletionStatus.FAILED]},
            [("completionStatuses[]", "passed"), ("completionStatuses[]", "failed")],
            id="completionStatuses-str-and-enum",
        ),
        pytest.param(
            {"user_statuses": [UserStatus.ACTIVE, 3]},
            [("userStatuses[]", "1"), ("userStatuses[]", "3")],
            id="userStatuses",
        ),
        pytest.param(
            {"access_date": DateRange(start=utc(2021, 1, 2, 3, 4, 5))},
            [("accessDate[startDate]", "2021-01-02T03:04:05Z")],
            id="accessDate-start-only",
        ),
        pytest.param(
            {"due_date": DateRange(end=utc(2021, 1, 2))},
            [("dueDate[endDate]", "2021-01-02T00:00:00Z")],
            id="dueDate-end-only",
        ),
        pytest.param(
            {"completion_date": DateRange(start=utc(2021, 1, 1), end=utc(2021, 2, 1))},
            [
                ("completionDate[startDate]", "2021-01-01T00:00:00Z"),
                ("completionDate[endDate]", "2021-02-01T00:00:00Z"),
            ],
            id="completionDate-both",
        ),
        pytest.param({"page_size": 1000}, [("pageSize", "1000")], id="pageSize"),
        pytest.param({}, [], id="no-filter"),
        pytest.param({"user_ids": [U1, U1.upper()]}, [("userIds[]", U1)], id="ids-deduplicated-lowercased"),
    ],
)
def test_each_filter_encoding(kwargs: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """Every filter becomes exactly its PHP-style wire parameters (the statuses' default left out)."""
    assert ResultsQuery(**{"user_statuses": None, **kwargs}).to_params() == expected


def test_default_user_statuses_are_active_and_blocked() -> None:
    """Without ``user_statuses`` a query asks for active and blocked users; None sends no filter."""
    assert ResultsQuery().to_params() == [("userStatuses[]", "1"), ("userStatuses[]", "3")]
    assert ResultsQuery().user_statuses == DEFAULT_USER_STATUSES == (UserStatus.ACTIVE, UserStatus.BLOCKED)
    assert ResultsQuery(user_statuses=None).to_params() == []


def test_offsets_are_sent_as_utc_z() -> None:
    """A non-UTC offset is converted, so no '+' ever has to survive URL encoding."""
    moscow = timezone(timedelta(hours=3))
    params = DateRange(start=datetime(2019, 12, 25, 0, 0, tzinfo=moscow)).to_params("accessDate")
    assert params == [("accessDate[startDate]", "2019-12-24T21:00:00Z")]


def test_sub_second_bounds_round_inwards() -> None:
    """Sub-second bounds round start up and end down, selecting the same whole-second rows."""
    rng = DateRange(
        start=utc(2020, 1, 1, 0, 0, 0) + timedelta(microseconds=1), end=utc(2020, 1, 1, 0, 0, 9, 999999)
    )
    assert rng.to_params("dueDate") == [
        ("dueDate[startDate]", "2020-01-01T00:00:01Z"),
        ("dueDate[endDate]", "2020-01-01T00:00:09Z"),
    ]


def test_equal_bounds_are_one_instant() -> None:
    """start == end is a valid one-point range."""
    assert len(DateRange(start=utc(2020, 1, 1), end=utc(2020, 1, 1)).to_params("accessDate")) == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: ResultsQuery(completion_statuses=["done"]), "not one of", id="bad-completion-status"
        ),
        pytest.param(lambda: ResultsQuery(user_statuses=[2]), "not one of", id="bad-user-status"),
        pytest.param(lambda: ResultsQuery(user_ids=["not-a-uuid"]), "not a UUID", id="non-uuid"),
        pytest.param(lambda: ResultsQuery(course_ids=["{" + C1 + "}"]), "not a UUID", id="braced-uuid"),
        pytest.param(
            lambda: ResultsQuery(course_ids=[C1.replace("-", "")]), "not a UUID", id="unhyphenated-uuid"
        ),
        pytest.param(lambda: ResultsQuery(user_ids=U1), "single string", id="bare-string-ids"),
        pytest.param(
            lambda: ResultsQuery(completion_statuses="failed"), "single string", id="bare-string-statuses"
        ),
        pytest.param(lambda: ResultsQuery(department_ids=[]), "pass None", id="empty-list"),
        pytest.param(lambda: ResultsQuery(user_statuses=[]), "pass None", id="empty-user-statuses"),
        pytest.param(lambda: ResultsQuery(page_size=0), "page_size", id="page-size-zero"),
        pytest.param(lambda: ResultsQuery(page_size=1001), "page_size", id="page-size-too-big"),
        pytest.param(lambda: ResultsQuery(page_size=True), "page_size", id="page-size-bool"),
        pytest.param(
            lambda: DateRange(start=utc(2021, 1, 2), end=utc(2021, 1, 1)),
            "after its end",
            id="start-after-end",
        ),
        pytest.param(lambda: DateRange(start=datetime(2021, 1, 1)), "timezone-aware", id="naive-start"),
        pytest.param(lambda: DateRange(end=datetime(2021, 1, 1)), "timezone-aware", id="naive-end"),
        pytest.param(lambda: DateRange(), "needs a start", id="empty-range"),
        pytest.param(
            lambda: DateRange(start="2021-01-01"),  # type: ignore[arg-type]
            "must be a datetime",
            id="string-date",
        ),
        pytest.param(
            lambda: DateRange(start=utc(2021, 1, 1, 0, 0, 0, 1), end=utc(2021, 1, 1, 0, 0, 0, 2)),
            "no whole second",
            id="sub-second-range",
        ),
        pytest.param(
            lambda: ResultsQuery(access_date=(utc(2021, 1, 1), None)),  # type: ignore[arg-type]
            "DateRange",
            id="tuple-range",
        ),
    ],
)
def test_invalid_query_raises_value_error(build: Any, message: str) -> None:
    """Each invalid input raises a ConfigurationError (a ValueError) that says what is wrong."""
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert isinstance(info.value, ConfigurationError)


def test_query_is_immutable_and_hashable() -> None:
    """Lists are frozen into tuples: a query can be shared between tasks and used as a key."""
    ids = [U1]
    query = ResultsQuery(user_ids=ids, user_statuses=None)
    ids.append(U2)
    assert query.to_params() == [("userIds[]", U1)]
    assert hash(query) == hash(ResultsQuery(user_ids=[U1], user_statuses=None))

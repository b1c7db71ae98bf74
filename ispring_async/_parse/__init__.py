"""Sans-IO page parsers: body bytes in, msgspec structs out. No sockets, no event loop.

A parser is fed each (decompressed) body chunk as it arrives (``feed``) and returns the whole page at
``close``; a page's records reach the caller only once the page is complete, so a body that breaks
part-way yields nothing and the transport simply fetches it again.

One stage per module: ``_envelope`` (the parser protocol and the bounds every body is held to),
``_hardening`` (the refusing expat, the HTML sniff), ``_shapes`` (page layouts and struct conversion),
``_xml`` (one XML page over two routes: ``_fast`` and ``_reference``; ``_nested`` for records that
nest, such as users), ``_json``, ``_errors`` (error bodies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from ispring_async._config import ResponseFormat
from ispring_async._models import (
    Department,
    DepartmentsPage,
    LearnerModuleResult,
    LearnerResult,
    ModuleResultsPage,
    ResultsPage,
    User,
    UsersPage,
)
from ispring_async._parse._envelope import DEFAULT_LIMITS, Bounds, PageParser, ParseLimits
from ispring_async._parse._errors import parse_error_body
from ispring_async._parse._json import (
    JsonParser,
    json_departments,
    json_module_results,
    json_results,
    json_users,
)
from ispring_async._parse._nested import USERS
from ispring_async._parse._shapes import DEPARTMENTS, MODULE_RESULTS, RESULTS, Shape
from ispring_async._parse._xml import XmlListParser

__all__ = [
    "DEFAULT_LIMITS",
    "PageParser",
    "ParseLimits",
    "departments_parser",
    "module_results_parser",
    "parse_error_body",
    "results_parser",
    "users_parser",
]

S = TypeVar("S", bound=msgspec.Struct)
T_co = TypeVar("T_co", covariant=True)


class _XmlPage(Generic[S, T_co]):
    """Adapts the list parser to a page type (records and token -> ``ResultsPage`` etc.)."""

    def __init__(
        self, shape: Shape[S], make: Callable[[list[S], str | None], T_co], *, page: str, bounds: Bounds
    ) -> None:
        self._inner = XmlListParser(shape, page=page, bounds=bounds)
        self._make = make
        self.feed = self._inner.feed

    def close(self) -> T_co:
        return self._make(*self._inner.close())


def _results_page(records: list[LearnerResult], token: str | None) -> ResultsPage:
    return ResultsPage(records=records, next_page_token=token)


def _module_results_page(records: list[LearnerModuleResult], token: str | None) -> ModuleResultsPage:
    return ModuleResultsPage(records=records, next_page_token=token)


def _users_page(users: list[User], token: str | None) -> UsersPage:
    return UsersPage(users=users, next_page_token=token)


def _departments_page(departments: list[Department], token: str | None) -> DepartmentsPage:
    return DepartmentsPage(departments=departments, next_page_token=token)


def _parser(
    fmt: ResponseFormat,
    shape: Shape[S],
    make: Callable[[list[S], str | None], T_co],
    json_page: Callable[[bytearray], tuple[T_co, int]],
    *,
    page: str,
    page_size: int | None,
    limits: ParseLimits,
) -> PageParser[T_co]:
    """One endpoint's page parser: every endpoint shares the envelope, the routes and the errors."""
    bounds = limits.bounds(page_size=page_size, markup_per_record=shape.markup_per_record)
    if fmt is ResponseFormat.JSON:
        return JsonParser(json_page, page=page, bounds=bounds)
    return _XmlPage(shape, make, page=page, bounds=bounds)


def results_parser(
    fmt: ResponseFormat, *, page: str, page_size: int | None = None, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[ResultsPage]:
    """A parser for one ``/learners/results`` page asked for with ``page_size`` (``None``: 1000).

    ``page`` labels errors (never put secrets in it).
    """
    return _parser(fmt, RESULTS, _results_page, json_results, page=page, page_size=page_size, limits=limits)


def departments_parser(
    fmt: ResponseFormat, *, page: str, page_size: int | None = None, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[DepartmentsPage]:
    """A parser for one ``/departments`` page."""
    return _parser(
        fmt, DEPARTMENTS, _departments_page, json_departments, page=page, page_size=page_size, limits=limits
    )


def module_results_parser(
    fmt: ResponseFormat, *, page: str, page_size: int | None = None, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[ModuleResultsPage]:
    """A parser for one ``/learners/modules/results`` page (``<response><results><result>``, as results)."""
    return _parser(
        fmt,
        MODULE_RESULTS,
        _module_results_page,
        json_module_results,
        page=page,
        page_size=page_size,
        limits=limits,
    )


def users_parser(
    fmt: ResponseFormat, *, page: str, page_size: int | None = None, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[UsersPage]:
    """A parser for one ``/users/v2`` page (``<response><userProfiles><userProfile>``, records nested:
    ``<fields><field>``, ``<groups><id>``, ``<userRoles><userRole>``, ``<subordination>``, …)."""
    return _parser(fmt, USERS, _users_page, json_users, page=page, page_size=page_size, limits=limits)

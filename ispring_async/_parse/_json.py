"""JSON pages: gathered within the envelope's byte cap, decoded by msgspec in one call at close.

msgspec cannot decode incrementally, so the body is gathered into one ``bytearray`` (a single copy,
decoded in place) of at most ``max_body_bytes``; a whitespace bomb stops at the cap, as it streams.
Nesting beyond the interpreter's recursion limit (an unknown member nested 100,000 deep) becomes a
``ParseError`` rather than a bare ``RecursionError``; a page of more records than asked for is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from ispring_async._exceptions import ParseError, UnexpectedContentError
from ispring_async._models import (
    Department,
    DepartmentsPage,
    LearnerModuleResult,
    LearnerResult,
    ModuleResultsPage,
    ResultsPage,
    User,
    UserField,
    UsersPage,
)
from ispring_async._parse._envelope import Bounds, Envelope
from ispring_async._parse._hardening import looks_like_html

__all__ = ["JsonParser", "json_departments", "json_module_results", "json_results", "json_users"]

T_co = TypeVar("T_co", covariant=True)


class _JsonResults(msgspec.Struct):
    results: list[LearnerResult]
    nextPageToken: str | None = None


class _JsonDepartments(msgspec.Struct):
    departments: list[Department]
    nextPageToken: str | None = None


class _JsonModuleResults(msgspec.Struct):
    results: list[LearnerModuleResult]
    nextPageToken: str | None = None


class _JsonUsers(msgspec.Struct):
    userProfiles: list[User]
    nextPageToken: str | None = None


_JSON_RESULTS = msgspec.json.Decoder(_JsonResults, strict=False)
_JSON_DEPARTMENTS = msgspec.json.Decoder(_JsonDepartments, strict=False)
_JSON_MODULE_RESULTS = msgspec.json.Decoder(_JsonModuleResults, strict=False)
_JSON_USERS = msgspec.json.Decoder(_JsonUsers, strict=False)


class JsonParser(Generic[T_co]):
    """One JSON page; ``decode`` turns the whole body into the page and its record count."""

    def __init__(self, decode: Callable[[bytearray], tuple[T_co, int]], *, page: str, bounds: Bounds) -> None:
        self._decode = decode
        self._page = page
        self._envelope = Envelope(bounds, page=page)
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the decompressed body."""
        if not self._body and looks_like_html(data):
            raise UnexpectedContentError(f"the body of {self._page} is an HTML page, not the API's JSON")
        self._envelope.take(data, markup=False)
        self._body += data

    def close(self) -> T_co:
        """Decode the body: the page, or a ``ParseError`` saying what is wrong with it."""
        body, self._body = self._body, bytearray()
        try:
            page, count = self._decode(body)
        except msgspec.ValidationError as exc:
            raise ParseError(f"invalid JSON page ({exc})", page=self._page) from None
        except msgspec.DecodeError as exc:
            raise ParseError(f"malformed JSON ({exc})", page=self._page, retryable=True) from None
        except RecursionError:
            raise ParseError("JSON nested too deeply", page=self._page) from None
        self._envelope.check_records(count)
        return page


def json_results(body: bytearray) -> tuple[ResultsPage, int]:
    """A results page from a whole JSON body."""
    decoded = _JSON_RESULTS.decode(body)
    page = ResultsPage(records=decoded.results, next_page_token=decoded.nextPageToken or None)
    return page, len(decoded.results)


def json_departments(body: bytearray) -> tuple[DepartmentsPage, int]:
    """A departments page from a whole JSON body."""
    decoded = _JSON_DEPARTMENTS.decode(body)
    page = DepartmentsPage(departments=decoded.departments, next_page_token=decoded.nextPageToken or None)
    return page, len(decoded.departments)


def json_module_results(body: bytearray) -> tuple[ModuleResultsPage, int]:
    """A module results page from a whole JSON body."""
    decoded = _JSON_MODULE_RESULTS.decode(body)
    page = ModuleResultsPage(records=decoded.results, next_page_token=decoded.nextPageToken or None)
    return page, len(decoded.results)


def _lenient_user_type() -> type[msgspec.Struct]:
    """``User`` with ``fields`` also admitting the OpenAPI's object form (``{"login": …}``)."""
    members: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(User):
        kind: Any = tuple[UserField, ...] | dict[str, str] if f.name == "fields" else f.type
        if f.required:
            members.append((f.name, kind, msgspec.NODEFAULT))
        elif f.default_factory is not msgspec.NODEFAULT:
            members.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
        else:
            members.append((f.name, kind, f.default))
    return msgspec.defstruct("_LenientUser", members, kw_only=True, rename="camel")


_LenientUser = _lenient_user_type()


class _JsonUsersLenient(msgspec.Struct):
    userProfiles: list[_LenientUser]  # type: ignore[valid-type]
    nextPageToken: str | None = None


_JSON_USERS_LENIENT = msgspec.json.Decoder(_JsonUsersLenient, strict=False)
_USER_FIELDS = tuple(f.name for f in msgspec.structs.fields(User))


def _users_with_object_fields(body: bytearray) -> _JsonUsers:
    """The page again, typed as strictly as before but for ``fields``, which may be an object: its
    members become the pairs, in order. Decoded into structs, not Python objects, so a hostile page
    costs what a valid one does; a page wrong elsewhere raises the same error as before."""
    decoded = _JSON_USERS_LENIENT.decode(body)
    users = []
    for lenient in decoded.userProfiles:
        values = {name: getattr(lenient, name) for name in _USER_FIELDS}
        fields = values["fields"]
        if isinstance(fields, dict):
            values["fields"] = tuple(UserField(name=name, value=value) for name, value in fields.items())
        users.append(User(**values))
    return _JsonUsers(userProfiles=users, nextPageToken=decoded.nextPageToken)


def json_users(body: bytearray) -> tuple[UsersPage, int]:
    """A users page from a whole JSON body (``fields`` as ``[{"name": …, "value": …}]``, or in the
    OpenAPI's object form ``{"login": …, "email": …}``, read as the same pairs)."""
    try:
        decoded = _JSON_USERS.decode(body)
    except msgspec.ValidationError:
        decoded = _users_with_object_fields(body)
    page = UsersPage(users=decoded.userProfiles, next_page_token=decoded.nextPageToken or None)
    return page, len(decoded.userProfiles)

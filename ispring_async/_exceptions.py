"""Every error ispring_async raises, under one root.

    ISpringError
    ├── ConfigurationError          bad options (also a ValueError)
    ├── TransportError              connection refused/reset, TLS, timeouts (after retries)
    │   └── ReadTimeoutError        the server stopped sending
    ├── APIError                    the API answered with an error status (code, message, status, url)
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401, or the token endpoint refused the credentials
    │   ├── PermissionDeniedError   403
    │   ├── NotFoundError           404 (often a wrong base URL)
    │   ├── RateLimitError          429, after retries (retry_after)
    │   └── ServerError             5xx, after retries
    ├── ResponseError               a 2xx the client cannot use
    │   ├── UnexpectedContentError  HTML or another content type where XML/JSON was asked for
    │   ├── ParseError              malformed XML/JSON or wrong field types (page, where)
    │   │   └── UnsafeXMLError      DTDs, entity declarations, external references
    │   ├── PaginationError         a page chain that would never end (repeated token, no new pages)
    │   └── WindowError             a row outside the accessDate window its partition asked for
    ├── PartitionError              a fan-out partition failed (partition, __cause__)
    └── SinkError                   the output cannot be written, or is in use (ispring_async.sinks)

aiohttp, expat and msgspec exceptions are translated where they are caught and never reach callers
untranslated. No message ever contains a secret or a token, and no error is chained (``__cause__``,
``__context__``) to an aiohttp object that holds one: the transport keeps only a safe description.
Text a server sent (an API error message, a malformed header) goes through :func:`printable` before
it becomes part of a message or a log line, so it cannot drive the terminal that shows it.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ISpringError",
    "NotFoundError",
    "PaginationError",
    "ParseError",
    "PartitionError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "ResponseError",
    "ServerError",
    "TransportError",
    "UnexpectedContentError",
    "UnsafeXMLError",
]
# printable (below) is shared by the package's modules, not part of the public API.

# C0 and C1 controls (ESC starts every terminal sequence, BEL ends OSC titles, CR/LF forge lines), DEL,
# the Unicode line and paragraph separators, and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` with every control character spelled as an escape, so it is shown, never obeyed.

    Idempotent (an escape is plain text), and a no-op on ordinary text.

    >>> printable("bad\x1b]0;owned\x07 request\nexport complete")
    'bad\\x1b]0;owned\\x07 request\\nexport complete'
    """
    return _UNPRINTABLE.sub(_escape, text)


class ISpringError(Exception):
    """The root of every error this library raises."""


class ConfigurationError(ISpringError, ValueError):
    """An option or query is invalid; raised before any request is made."""


class TransportError(ISpringError):
    """The request could not be completed at the network level (after retries)."""


class ReadTimeoutError(TransportError):
    """The server stopped sending before the response was complete."""


class APIError(ISpringError):
    """The API answered with an error status.

    ``code`` and ``message`` are the API's own (from its error body) when it sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        code: int | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.code = code
        self.api_message = api_message


class BadRequestError(APIError):
    """400: the API refused the query (an unknown id can fail a whole request)."""


class AuthenticationError(APIError):
    """401, or the token endpoint refused the client credentials."""


class PermissionDeniedError(APIError):
    """403: the account may not read these results."""


class NotFoundError(APIError):
    """404: usually a wrong base URL or path."""


class RateLimitError(APIError):
    """429 still returned after every retry; ``retry_after`` is the server's last hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx still returned after every retry."""


class ResponseError(ISpringError):
    """A successful status whose body the client cannot use."""


class UnexpectedContentError(ResponseError):
    """The body is not the XML/JSON that was asked for (e.g. an HTML page from a wrong base URL)."""


class ParseError(ResponseError):
    """The body is malformed, or a field has a value of the wrong type.

    ``page`` names the page (its URL without credentials) and ``where`` the element or record.
    ``retryable`` is true for broken syntax (a body cut short or corrupted in transit), which a fresh
    attempt may fix, and false for a well-formed body with wrong content, which it cannot.
    """

    def __init__(
        self, message: str, *, page: str | None = None, where: str | None = None, retryable: bool = False
    ) -> None:
        parts = [message]
        if where:
            parts.append(f"at {where}")
        if page:
            parts.append(f"in {page}")
        super().__init__(" ".join(parts))
        self.page = page
        self.where = where
        self.retryable = retryable


class UnsafeXMLError(ParseError):
    """The XML declares a DTD or entities, or references external resources; refused outright."""


class PaginationError(ResponseError):
    """The page chain would never end: a token already followed, pages that keep adding nothing while
    they carry a fresh token, or more pages than ``max_pages_per_chain``."""


class PartitionError(ISpringError):
    """A fan-out partition failed; ``partition`` names it and ``__cause__`` says why."""

    def __init__(self, message: str, *, partition: str) -> None:
        super().__init__(message)
        self.partition = partition

    def __reduce__(self) -> tuple[object, ...]:
        # The keyword-only argument would be lost by BaseException's reduce (args only): unpickling,
        # say in another process, would fail with a TypeError instead of giving the error back.
        return functools.partial(type(self), partition=self.partition), self.args, self.__dict__

"""One aiohttp session, and requests as a series of attempts with retries.

A request is attempted until it succeeds, fails in a way no retry can fix, or runs out of attempts or
time. Each attempt streams the body chunk by chunk into a *fresh* parser and returns only what the
parser's ``close()`` gives back, so a body that breaks part-way leaves nothing behind: the next
attempt fetches the whole page again, which is how every record is delivered exactly once.

What is retried (``RetryEvent.cause``) and what is raised when no attempt is left:

- ``429``: 429, honouring ``Retry-After`` (seconds or HTTP date) → ``RateLimitError``
- ``5xx``: 500, 502, 503, 504 (``Retry-After`` honoured too) → ``ServerError``
- ``reset``: connection refused, reset or closed before the body → ``TransportError``
- ``timeout``: connect timeout, no response, a body that stalls → ``ReadTimeoutError`` / ``TransportError``
- ``truncated``: a body cut short, by its framing or as a document → ``TransportError`` / ``ParseError``
- ``parse``: broken XML/JSON syntax mid-body (a corrupted stream) → ``ParseError``
- ``401-refresh``: a 401, once per request, after a token refresh → ``AuthenticationError``

Retries stop after ``RetryPolicy.attempts`` tries, or earlier when the next wait would end more than
``RetryPolicy.total`` seconds after the first attempt began; the last error is raised with a note
saying how many attempts were made.

Never retried, because the same request would fail the same way: 400, 403, 404, other statuses,
redirects, TLS verification failures, HTML where XML/JSON was asked for, unsafe XML, and a
well-formed body with a wrong field value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, NoReturn, Protocol, TypeVar

import aiohttp
import yarl

from ispring_async._config import Limits, RetryPolicy, Timeouts
from ispring_async._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ISpringError,
    NotFoundError,
    ParseError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    TransportError,
    UnexpectedContentError,
    UnsafeXMLError,
    printable,
)
from ispring_async._parse import PageParser, parse_error_body
from ispring_async._parse_pool import OffloadedParser
from ispring_async._parse_turn import ParseTurn

__all__ = ["OnRetry", "RetryCause", "RetryEvent", "Secret", "TokenSource", "Transport"]

logger = logging.getLogger("ispring_async")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

RetryCause = Literal["429", "5xx", "reset", "timeout", "truncated", "parse", "401-refresh"]

_RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_CHUNK = 65536
_MAX_REFRESHES = 3
"""Token refreshes one request may trigger on 401s before the refusal is taken as final."""
# Error bodies are small; a proxy's error page can be large and is only read for a code and message.
_MAX_ERROR_BODY = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class RetryEvent:
    """One failed attempt that will be retried: why, which attempt, and how long the client waits.

    ``page`` is the request's label (e.g. ``"GET /learners/results page 3"``); it holds no token.
    """

    cause: RetryCause
    attempt: int
    wait: float
    page: str


OnRetry = Callable[[RetryEvent], None]


class TokenSource(Protocol):
    """Gives the bearer token for a request, and learns when the server refused one."""

    async def token(self) -> str:
        """A token valid for the next request (refreshed first if it is close to expiry)."""

    def invalidate(self, token: str) -> bool:
        """The server answered 401 to ``token``; return whether ``token()`` can now get a new one."""


class Secret(str):
    """A token, a client secret or a header built from one: the value is sent, its ``repr`` is ``'***'``.

    An error's traceback keeps every frame it passed through, locals and all, and error trackers
    (Sentry's default), ``traceback.TracebackException(capture_locals=True)`` and debuggers show those
    locals with ``repr``. Every local of ours that holds a credential holds it as a ``Secret``, so a
    frame shows ``***`` where the value was. (``str()``, formatting and ``+`` give a plain ``str``:
    whatever is built from a secret is wrapped again where it is built.)
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class _RetryableError(Exception):
    """An attempt failed in a way another attempt may fix; ``error`` is raised if none is left."""

    def __init__(self, cause: RetryCause, error: ISpringError, *, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause: RetryCause = cause
        self.error = error
        self.retry_after = retry_after


class _UnauthorizedError(Exception):
    def __init__(self, error: AuthenticationError) -> None:
        super().__init__("401")
        self.error = error


def check_base_url(base_url: str | yarl.URL, *, allow_insecure_http: bool) -> yarl.URL:
    """The base URL as a ``yarl.URL``; plain ``http://`` only to loopback unless explicitly allowed."""
    url = yarl.URL(base_url)
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute https:// URL, got {str(url)!r}")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host}: tokens would cross the network unencrypted "
            "(use https://, or allow_insecure_http=True if you really mean it)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - (now or datetime.now(UTC))).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            # A date the calendar cannot hold (year 10000, an offset past the edge) is as unreadable
            # as garbage: no hint, so the usual back-off applies.
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _retryable_parse_error(exc: ParseError, *, at_end: bool) -> RetryCause | None:
    """Which parse failures a fresh attempt may fix: a body that ended early or broke mid-stream.

    Broken syntax is retried: a body cut short, or one whose tail is garbage (a proxy fault, a
    server-side crash mid-render) says nothing about the next attempt. A well-formed body with a wrong
    value, and unsafe XML, are the server's considered answer and are raised at once; the parser says
    which is which with ``ParseError.retryable``.
    """
    if isinstance(exc, UnsafeXMLError) or not exc.retryable:
        return None
    # Syntax that breaks only at end of input is a document cut short; earlier, a corrupted stream.
    # (JSON is decoded at end of body, so every JSON syntax error counts as "truncated".)
    return "truncated" if at_end else "parse"


class Transport:
    """One aiohttp session to one API host; ``request()`` runs attempts until one succeeds."""

    def __init__(
        self,
        base_url: str | yarl.URL,
        *,
        timeouts: Timeouts,
        limits: Limits,
        retry: RetryPolicy,
        user_agent: str,
        allow_insecure_http: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.timeouts = timeouts
        self.limits = limits
        self.retry = retry
        self.user_agent = user_agent
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._turn = ParseTurn()

    def __repr__(self) -> str:
        return f"Transport(base_url={str(self.base_url)!r})"

    async def open(self) -> None:
        """Create the session (inside the running event loop, as aiohttp requires)."""
        if self._session is not None:
            raise RuntimeError("Transport is already open")
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections,
            keepalive_timeout=self.limits.keepalive_expiry,
            # ssl=True: aiohttp's default context verifies certificates and host names.
            ssl=True,
        )
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.request,
            # sock_connect, not connect: waiting for a free pooled connection is not a network fault.
            sock_connect=self.timeouts.connect,
            sock_read=self.timeouts.read,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.user_agent},
            raise_for_status=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def url(self, path: str) -> yarl.URL:
        """The URL of an API path under the base URL (no query: safe to show in messages)."""
        return self.base_url.with_path(self.base_url.path.rstrip("/") + path)

    async def request(
        self,
        method: str,
        path: str | yarl.URL,
        parser_factory: Callable[[], PageParser[T] | OffloadedParser[T]],
        *,
        label: str,
        params: Sequence[tuple[str, str]] = (),
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: TokenSource | None = None,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Run attempts until one returns the parsed body; raise the last error when none is left.

        ``parser_factory`` is called once per attempt, so a failed attempt's partial result is dropped.
        ``label`` names the request in errors, logs and ``RetryEvent``s; it must hold no secret.
        ``path`` is under the base URL, or an absolute ``yarl.URL`` checked like it (the token URL).
        """
        policy = self.retry
        started = time.monotonic()
        attempt = 0
        failures = 0
        refreshes = 0
        while True:
            attempt += 1
            token = None
            event: RetryEvent
            final: ISpringError | None = None
            try:
                # Wrapped here too, so a TokenSource of the caller's own still leaves no token in the
                # locals of our frames (see Secret).
                token = Secret(await auth.token()) if auth is not None else None
                return await self._attempt(
                    method, path, parser_factory(), label=label, params=params, form=form,
                    headers=headers, token=token,
                )  # fmt: skip
            except _UnauthorizedError as exc:
                # One refresh-and-retry per refused token. A long request (retries, Retry-After waits)
                # can outlive the token it refreshed to, and a token can be revoked right after it was
                # issued (a race with a rotation): each new refusal earns a refresh, up to a bound, after
                # which the refusal is taken as final (credentials revoked, a proxy eating the header).
                if auth is None or token is None or refreshes >= _MAX_REFRESHES or not auth.invalidate(token):
                    final = exc.error
                else:
                    refreshes += 1
                    event = RetryEvent("401-refresh", attempt, 0.0, label)
            except _RetryableError as exc:
                failures += 1
                wait = self._wait(exc, failures, label)
                if failures >= policy.attempts or time.monotonic() - started + wait > policy.total:
                    exc.error.add_note(f"gave up after {attempt} attempts ({label})")
                    final = exc.error
                else:
                    event = RetryEvent(exc.cause, attempt, wait, label)
            if final is not None:
                # Raised here, outside the except block, so Python chains no __context__ to it: the
                # error a caller sees leads to nothing but itself (see _attempt).
                raise final
            self._notify(on_retry, event)
            if event.wait > 0:
                await asyncio.sleep(event.wait)

    def _wait(self, exc: _RetryableError, failures: int, label: str) -> float:
        policy = self.retry
        retry_after = exc.retry_after
        if retry_after is None:
            return policy.backoff(failures, self._rng.random())
        if retry_after < policy.min_retry_after:
            # "Retry-After: 0" (or a date in the past) from a struggling server would turn every
            # retry into an immediate hammering; a short floor keeps retries a back-off.
            logger.warning(
                "%s: Retry-After of %.2fs is below the floor, waiting %.2fs instead",
                label,
                retry_after,
                policy.min_retry_after,
            )
            retry_after = policy.min_retry_after
        return min(retry_after, policy.max_retry_after) * policy.wait_scale

    @staticmethod
    def _notify(on_retry: OnRetry | None, event: RetryEvent) -> None:
        # A 401 refresh is routine (tokens get revoked); the others say the service is struggling.
        level = logging.INFO if event.cause == "401-refresh" else logging.WARNING
        logger.log(
            level,
            "%s: %s on attempt %d, retrying in %.2fs",
            event.page,
            event.cause,
            event.attempt,
            event.wait,
        )
        if on_retry is not None:
            on_retry(event)

    async def _attempt(
        self,
        method: str,
        path: str | yarl.URL,
        parser: PageParser[T] | OffloadedParser[T],
        *,
        label: str,
        params: Sequence[tuple[str, str]],
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        token: str | None,
    ) -> T:
        session = self._session
        if session is None:
            raise RuntimeError("Transport is not open")
        url = path if isinstance(path, yarl.URL) else self.url(path)
        shown = f"{method} {url}"
        request_headers = dict(headers or {})
        if token is not None:
            request_headers["Authorization"] = Secret(f"Bearer {token}")
        # Where an exception happened decides what it means: a timeout before the status line is a
        # slow connect, one inside the body is a stalled server.
        in_body = at_end = False
        ticket = self._turn.ticket()
        failure: _RetryableError | ISpringError
        try:
            async with session.request(
                method, url, params=params or None, data=form, headers=request_headers, allow_redirects=False
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    if response.content_type in ("text/html", "application/xhtml+xml"):
                        raise UnexpectedContentError(
                            f"{shown} answered {status} with an HTML page instead of the API's XML/JSON;"
                            " is the base URL right?"
                        )
                    in_body = True
                    await self._feed(response.content, parser, ticket)
                    at_end = True
                    if isinstance(parser, OffloadedParser):
                        try:
                            return await parser.result()
                        except ParseError:
                            # Parsed after the last byte, but raised where the streaming parser
                            # raised it: mid-body is a corrupted stream, not a truncated one.
                            at_end = not parser.failed_in_feed
                            raise
                    return parser.close()
                body = await _read_limited(response)
                self._raise_status(response, body, shown)
        except ParseError as exc:
            cause = _retryable_parse_error(exc, at_end=at_end)
            if cause is None:
                raise
            failure = _RetryableError(cause, exc)
        except UnexpectedContentError as exc:
            if shown in str(exc):
                raise
            # The parser names the page; the caller needs the URL to see the base URL is wrong.
            failure = UnexpectedContentError(f"{exc} (from {shown}; is the base URL right?)")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = self._translate(exc, shown, label, in_body=in_body)
        # Raised outside the except blocks, with no __cause__: aiohttp's exceptions carry the request
        # (``request_info`` holds the Authorization header with the bearer token), so an error chained
        # to one would print the token in any traceback, Sentry event or logging.exception. Only the
        # safe description _translate extracted survives.
        raise failure

    async def _feed(
        self, content: aiohttp.StreamReader, parser: PageParser[T] | OffloadedParser[T], ticket: int
    ) -> None:
        """Stream the body into ``parser``, a chunk at a time, taking turns with the other responses.

        The turn is held from chunk to chunk while bytes are buffered, and given up while bytes are
        awaited or when an older request asks for it (see _parse_turn).
        """
        turn = self._turn
        try:
            while True:
                chunk = content.read_nowait(_CHUNK)
                if not chunk:
                    if content.at_eof():
                        return
                    turn.give_up(ticket)  # (if held) while bytes are awaited
                    chunk = await content.read(_CHUNK)
                    if not chunk:
                        return
                if not turn.holds(ticket):
                    await turn.take(ticket)
                parser.feed(chunk)
                # One pass of the loop with the turn held: the sockets are read (this buffer
                # refills) and a response whose bytes arrived meanwhile asks for the turn.
                await asyncio.sleep(0)
                if turn.older_waiting(ticket):
                    turn.give_up(ticket)
        finally:
            turn.give_up(ticket)

    def _translate(
        self, exc: BaseException, shown: str, label: str, *, in_body: bool
    ) -> _RetryableError | ISpringError:
        """The one place an aiohttp (or socket) failure becomes our error: a description, never the object."""
        if isinstance(exc, aiohttp.ClientPayloadError):
            return _RetryableError(
                "truncated", TransportError(f"{shown}: the response body was cut short ({label})")
            )
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
            return TransportError(f"{shown}: TLS failed: {printable(str(exc))}")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            message = f"{shown}: connecting timed out after {self.timeouts.connect}s"
            return _RetryableError("timeout", TransportError(message))
        if isinstance(exc, TimeoutError):
            timeouts = self.timeouts
            if not isinstance(exc, aiohttp.SocketTimeoutError):
                message = (
                    f"{shown}: the attempt took longer than Timeouts.request={timeouts.request}s ({label})"
                )
            elif in_body:
                message = f"{shown}: the server stopped sending mid-body for {timeouts.read}s ({label})"
            else:
                message = f"{shown}: no response within Timeouts.read={timeouts.read}s ({label})"
            return _RetryableError("timeout", ReadTimeoutError(message))
        if isinstance(exc, aiohttp.ClientConnectionError | OSError):
            return _RetryableError(
                "reset",
                TransportError(f"{shown}: connection failed: {type(exc).__name__} {printable(str(exc))}"),
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            # A status line, header or framing aiohttp could not parse (or an encoding it cannot
            # decode): its message quotes the server's bytes, its request_info our headers.
            return TransportError(
                f"{shown}: the server's response is malformed ({label}): {printable(exc.message)}"
            )
        return TransportError(f"{shown}: {type(exc).__name__} ({label})")

    @staticmethod
    def _raise_status(response: aiohttp.ClientResponse, body: bytes, shown: str) -> NoReturn:

        status = response.status
        code, api_message = parse_error_body(body)
        # The server's words go into a message shown on terminals and in logs: escaped (the
        # attribute keeps them as sent).
        detail = f": {printable(api_message)}" if api_message else ""
        if code is not None:
            detail += f" (code {code})"
        message = f"{shown} answered {status} {printable(response.reason or '')}".rstrip() + detail
        url = shown.split(" ", 1)[1]

        def error(cls: type[APIError]) -> APIError:
            return cls(message, status=status, url=url, code=code, api_message=api_message)

        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            raise _RetryableError(
                "429",
                RateLimitError(
                    message,
                    retry_after=retry_after,
                    status=status,
                    url=url,
                    code=code,
                    api_message=api_message,
                ),
                retry_after=retry_after,
            )
        if status in _RETRIED_STATUSES:
            # Retry-After on a 503 is the server saying when it will be back: honour it as for 429.
            raise _RetryableError("5xx", error(ServerError), retry_after=retry_after)
        if status == 401:
            raise _UnauthorizedError(
                AuthenticationError(message, status=status, url=url, code=code, api_message=api_message)
            )
        if 300 <= status < 400:
            # Not followed: a redirect could downgrade to http:// or carry the token to another host.
            message += (
                f"; redirected to {_shown_location(response.headers.get('Location'))} (check the base URL)"
            )
        error_class: type[APIError] = {
            400: BadRequestError,
            403: PermissionDeniedError,
            404: NotFoundError,
        }.get(status, ServerError if status >= 500 else APIError)
        raise error(error_class)


def _shown_location(location: str | None) -> str:
    """A redirect's target for a message: without its query (it may carry a token), escaped."""
    if not location:
        return "nowhere (no Location header)"
    try:
        url = yarl.URL(location)
        shown = str(url.with_query(None).with_fragment(None))
        url.port  # noqa: B018 - raises ValueError for a port out of range, as aiohttp would
    except (ValueError, TypeError):
        return f"an unreadable Location {printable(location.partition('?')[0])[:200]!r}"
    return printable(shown)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    """Up to ``_MAX_ERROR_BODY`` bytes of an error body; a broken error body is just an empty one."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size >= _MAX_ERROR_BODY:
                break
    except (aiohttp.ClientError, TimeoutError, OSError):
        pass
    return b"".join(chunks)[:_MAX_ERROR_BODY]

"""A hostile or broken server: every failure typed, no secret reachable from an error, nothing obeyed.

Malformed responses come from a raw-socket server on 127.0.0.1 (tests/_servers.py ``raw_server``):
bytes no HTTP framework would send. The rest use the scripted aiohttp servers.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from datetime import UTC, datetime
from xml.parsers.expat import ExpatError

import anyio
import pytest
from aiohttp import web

from ispring_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigurationError,
    ISpringError,
    NotFoundError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    TransportError,
)
from ispring_async._app.progress import PrintableFormatter
from ispring_async._auth import MIN_TOKEN_LIFETIME, REFRESH_FRACTION, ClientCredentialsAuth, StaticTokenAuth
from ispring_async._exceptions import printable
from ispring_async._transport import parse_retry_after
from tests._helpers import FakeClock, Raw
from tests._hostile import MALFORMED, NO_WAIT, SECRET, TOKEN, _http, _token_reply, client_for, reachable
from tests._servers import (
    Handler,
    PagedResults,
    TokenEndpoint,
    api_error,
    raw_server,
    serve,
    transport_for,
)


def assert_no_secret_reachable(exc: BaseException) -> None:
    """No exception reachable from ``exc`` is foreign, or shows the token or secret in any form."""
    printed = "".join(traceback.format_exception(exc))
    for error in reachable(exc):
        # Besides ours, only the task machinery's control flow (a cancellation, a full stream) and the
        # parser's own cause (expat's position in the body) may appear.
        allowed = ISpringError | BaseExceptionGroup | asyncio.CancelledError | anyio.WouldBlock | ExpatError
        assert isinstance(error, allowed), f"untranslated {type(error).__name__}"
        for shown in (str(error), repr(error), repr(vars(error)), printed):
            assert TOKEN not in shown
            assert SECRET not in shown


@pytest.mark.anyio
@pytest.mark.parametrize("data_reply", MALFORMED)
async def test_malformed_responses_raise_errors_that_reach_no_secret(data_reply: bytes) -> None:
    """A malformed status line, header, chunk or encoding: a typed error chained to nothing with the token."""

    def reply(head: bytes) -> bytes:
        return _token_reply() if head.startswith(b"POST /api/v3/token") else data_reply

    async with raw_server(reply) as url, client_for(url) as client:
        # (A header with ESC in it is accepted by aiohttp; the empty body is then a ParseError.)
        with pytest.raises(ISpringError) as caught:
            await anext(client.result_pages())
    assert_no_secret_reachable(caught.value)
    assert "\x1b" not in str(caught.value) and "\x07" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("token_reply", MALFORMED[:3])
async def test_a_malformed_token_reply_reaches_no_secret(token_reply: bytes) -> None:
    """The token request carries the client secret: its failure is typed and chained to nothing holding it."""
    async with raw_server(lambda head: token_reply) as url, client_for(url) as client:
        with pytest.raises(TransportError) as caught:
            await anext(client.result_pages())
    assert_no_secret_reachable(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "split", [pytest.param("none", id="one-chain"), pytest.param("window", id="fan-out-task-group")]
)
async def test_errors_through_the_fan_out_reach_no_secret(split: str) -> None:
    """Through the fan-out's task group, the error (and its group or partition wrapper) holds no secret."""
    bad_header = MALFORMED[2].values[0]

    def reply(head: bytes) -> bytes:
        return _token_reply() if head.startswith(b"POST /api/v3/token") else bad_header  # type: ignore[return-value]

    async def drain(client: Client) -> None:
        async with client.learner_results(split=split, concurrency=2) as results:
            async for _ in results:
                pass

    async with raw_server(reply) as url, client_for(url) as client:
        with pytest.raises(ISpringError) as caught:
            await drain(client)
    assert_no_secret_reachable(caught.value)


# -- Retry-After and Location the calendar or a URL parser cannot hold ---------------------------------


OVERFLOWING_DATES = [
    pytest.param("Sat, 01 Jan 9999999999 00:00:00 GMT", id="year-beyond-c-int"),
    pytest.param("Sat, 01 Jan 99999999999999999999 00:00:00 GMT", id="year-beyond-c-long"),
    pytest.param("Sat, 01 Jan 99999 00:00:00 GMT", id="year-99999"),
]


@pytest.mark.parametrize("value", OVERFLOWING_DATES)
def test_retry_after_dates_beyond_the_calendar_are_no_hint(value: str) -> None:
    """A Retry-After date the calendar cannot hold reads as no hint at all, never an OverflowError."""
    assert parse_retry_after(value, now=datetime(2024, 1, 1, tzinfo=UTC)) is None


def answer(status: int, headers: dict[str, str], message: str = "nope") -> web.Response:
    """An API error response with extra headers."""
    response = api_error(status, status, message)
    response.headers.update(headers)
    return response


@pytest.mark.anyio
@pytest.mark.parametrize("value", OVERFLOWING_DATES)
@pytest.mark.parametrize(
    ("status", "error"),
    [pytest.param(429, RateLimitError, id="429"), pytest.param(404, NotFoundError, id="404")],
)
async def test_an_overflowing_retry_after_gives_the_status_error(
    value: str, status: int, error: type[APIError]
) -> None:
    """A 429 or 404 whose Retry-After overflows the calendar raises its API error, not OverflowError."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return answer(status, {"Retry-After": value})

    async with serve({"/x": handler}) as server, transport_for(server, retry=NO_WAIT) as transport:
        with pytest.raises(error) as caught:
            await transport.request("GET", "/x", Raw, label="GET /x")
    if isinstance(caught.value, RateLimitError):
        assert caught.value.retry_after is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://[::1", id="unclosed-ipv6"),
        pytest.param("http://example.com:99999/x", id="port-out-of-range"),
        pytest.param("http://exa mple.com/\x1b[2J?token=abc", id="space-and-escape"),
        pytest.param(None, id="no-location"),
    ],
)
async def test_a_malformed_location_on_a_redirect_is_an_api_error(location: str | None) -> None:
    """A 3xx with an unreadable (or no) Location is an APIError naming the status, not a ValueError."""

    header = b"" if location is None else b"\r\nLocation: " + location.encode()
    reply = _http(b"HTTP/1.1 302 Found" + header + b"\r\nContent-Length: 0")
    async with raw_server(lambda head: reply) as url, Client(url, token=TOKEN, retry=NO_WAIT) as client:
        with pytest.raises(APIError) as caught:
            await anext(client.result_pages())
    message = str(caught.value)
    assert caught.value.status == 302
    assert "redirected to" in message
    assert "\x1b" not in message and "token=abc" not in message


# -- tokens that cannot be sent ------------------------------------------------------------------------

UNSENDABLE = [
    pytest.param("abc\r\nX-Injected: 1", id="crlf"),
    pytest.param("abc\ndef", id="lf"),
    pytest.param("abc\x00def", id="nul"),
    pytest.param("abc\x7f", id="del"),
]


@pytest.mark.parametrize("token", UNSENDABLE)
def test_a_static_token_with_control_characters_is_refused_before_any_request(token: str) -> None:
    """A ready token holding CR, LF, NUL or DEL is a ConfigurationError at construction, not echoed."""
    with pytest.raises(ConfigurationError) as caught:
        Client("http://127.0.0.1:9", token=token)
    assert token not in str(caught.value)
    with pytest.raises(ConfigurationError):
        StaticTokenAuth(token)


@pytest.mark.anyio
@pytest.mark.parametrize("token", UNSENDABLE)
async def test_a_token_endpoint_reply_with_control_characters_is_an_authentication_error(token: str) -> None:
    """An access_token that cannot be a header value is an AuthenticationError, and never sent."""

    async def token_endpoint(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": token, "expires_in": 1800})

    results = PagedResults(5)
    routes: dict[str, Handler] = {"/api/v3/token": token_endpoint, "/learners/results": results}
    async with serve(routes) as server, client_for(server.base_url) as client:
        with pytest.raises(AuthenticationError) as caught:
            await anext(client.result_pages())
    assert token not in str(caught.value)
    assert server.hits("/learners/results") == []


# -- what a server says is shown, never obeyed ------------------------------------------------------------

HOSTILE_MESSAGE = "bad query\x1b[2J\x1b]0;owned\x07\r\nexport complete: 29,533 records\u202e"


@pytest.mark.anyio
async def test_an_api_error_message_with_control_characters_is_escaped_in_the_error() -> None:
    """A 400's message with ESC/OSC/BEL/CR/LF is escaped in the error text; the attribute keeps it as sent."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return api_error(400, 1, HOSTILE_MESSAGE)

    async with serve({"/x": handler}) as server, transport_for(server, retry=NO_WAIT) as transport:
        with pytest.raises(BadRequestError) as caught:
            await transport.request("GET", "/x", Raw, label="GET /x")
    text = str(caught.value)
    for char in "\x1b\x07\r\n\u202e":
        assert char not in text
    assert "\\x1b[2J" in text and "\\r\\nexport complete" in text
    assert caught.value.api_message == HOSTILE_MESSAGE


def test_log_lines_escape_what_the_message_interpolates() -> None:
    """The CLI's log formatter escapes control characters in a message, but keeps a traceback's lines."""
    formatter = PrintableFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "got %s", (HOSTILE_MESSAGE,), None)
        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    first, *rest = text.split("\n")
    assert first == f"WARNING got {printable(HOSTILE_MESSAGE)}"
    assert "\x1b" not in text
    assert rest and rest[0].startswith("Traceback")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("plain text, ünïcödé, 日本", "plain text, ünïcödé, 日本", id="ordinary-text-unchanged"),
        pytest.param("\x1b[31mred", "\\x1b[31mred", id="esc"),
        pytest.param("a\tb\rc\nd", "a\\tb\\rc\\nd", id="whitespace-controls"),
        pytest.param("\x9b2J\u2028\u2066", "\\x9b2J\\u2028\\u2066", id="c1-and-unicode-controls"),
    ],
)
def test_printable_escapes_controls_and_is_idempotent(text: str, shown: str) -> None:
    """printable spells control characters as escapes, leaves other text alone, and is idempotent."""
    assert printable(text) == shown
    assert printable(printable(text)) == shown


# -- floors for a server that asks for no wait ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", [pytest.param("0", id="zero"), pytest.param("-5", id="negative")])
async def test_a_retry_after_below_the_floor_waits_the_floor_and_says_so(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry-After 0 or negative waits RetryPolicy.min_retry_after (scaled) per retry, with a log line."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return answer(429, {"Retry-After": value}) if calls < 3 else web.Response(body=b"ok")

    events: list[RetryEvent] = []
    policy = RetryPolicy(attempts=4, min_retry_after=2.0, wait_scale=0.005)
    async with serve({"/x": handler}) as server, transport_for(server, retry=policy) as transport:
        with caplog.at_level(logging.WARNING, logger="ispring_async"):
            assert await transport.request("GET", "/x", Raw, label="GET /x", on_retry=events.append) == b"ok"
    assert [event.wait for event in events] == [pytest.approx(0.01), pytest.approx(0.01)]
    assert caplog.text.count("below the floor") == 2


@pytest.mark.anyio
@pytest.mark.parametrize("expires_in", [pytest.param(0, id="zero"), pytest.param(-30, id="negative")])
async def test_an_expires_in_below_the_floor_is_raised_to_it_and_logged(
    expires_in: float, caplog: pytest.LogCaptureFixture
) -> None:
    """expires_in <= 0 does not mean a token request per page: the token lives MIN_TOKEN_LIFETIME."""
    clock = FakeClock()
    endpoint = TokenEndpoint(expires_in=expires_in)

    async def data(request: web.Request) -> web.StreamResponse:
        return web.Response(body=request.headers.get("Authorization", "").encode())

    async with (
        serve({"/api/v3/token": endpoint, "/data": data}) as server,
        transport_for(server, retry=NO_WAIT) as transport,
    ):
        auth = ClientCredentialsAuth(transport, client_id="the-id", client_secret=SECRET, clock=clock)

        async def token_seen() -> bytes:
            return await transport.request("GET", "/data", Raw, label="GET /data", auth=auth)

        with caplog.at_level(logging.WARNING, logger="ispring_async"):
            assert [await token_seen() for _ in range(5)] == [b"Bearer tok-1"] * 5
            clock.now += REFRESH_FRACTION * MIN_TOKEN_LIFETIME + 0.1
            assert await token_seen() == b"Bearer tok-2"
    assert len(server.hits("/api/v3/token")) == 2
    assert "expires_in" in caplog.text and "below" in caplog.text

"""A hostile server's replies and the checks on what the client makes of them, shared by the hostile-input
test modules (test_hostile_server, test_adversarial)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from ispring_async import Client
from tests._helpers import no_wait

SECRET = "s3cr3t-VALUE"


TOKEN = "TOKEN-d41d8cd98f00b204"


NO_WAIT = no_wait(2)


def _http(head: bytes, body: bytes = b"") -> bytes:
    return head + b"\r\n\r\n" + body


def _token_reply() -> bytes:
    body = b'{"access_token": "%s", "expires_in": 1800}' % TOKEN.encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body)
    return _http(head, body)


MALFORMED = [
    pytest.param(_http(b"HTTP/1.1 2OO OK\r\nContent-Length: 0"), id="bad-status-code"),
    pytest.param(_http(b"HELLO THERE"), id="bad-status-line"),
    pytest.param(_http(b"HTTP/1.1 200 OK\r\nX-No-Colon-Here\r\nContent-Length: 0"), id="bad-header-line"),
    pytest.param(
        _http(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked",
            b"ZZ\r\nabc\r\n",
        ),
        id="bad-chunk-size",
    ),
    pytest.param(
        _http(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 0"), id="20kb-header"
    ),
    pytest.param(
        _http(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Encoding: br\r\nContent-Length: 4",
            b"abcd",
        ),
        id="brotli-without-brotli",
    ),
    pytest.param(
        _http(b"HTTP/1.1 200 OK\r\nX-Evil: \x1b]0;owned\x07\r\nContent-Length: 0"),
        id="control-chars-in-header",
    ),
]


def reachable(exc: BaseException) -> list[BaseException]:
    """Every exception reachable from ``exc`` through causes, contexts and exception groups."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)
    return found


@contextlib.asynccontextmanager
async def client_for(base_url: str, **options: object) -> AsyncIterator[Client]:
    """An open client with client credentials, no waits between retries."""
    async with Client(
        base_url,
        client_id="the-id",
        client_secret=SECRET,
        retry=NO_WAIT,
        **options,  # type: ignore[arg-type]
    ) as client:
        yield client

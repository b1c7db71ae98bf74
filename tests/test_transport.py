"""Transport: retries and their limits, status translation, body faults, HTML, TLS and http:// rules.

Every test talks to a real aiohttp server on 127.0.0.1 scripted per scenario (tests/_servers.py).
"""

from __future__ import annotations

import random
import socket
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from ispring_async import (
    APIError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ParseError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    ResponseFormat,
    ResultsPage,
    RetryEvent,
    RetryPolicy,
    ServerError,
    Timeouts,
    TransportError,
    UnexpectedContentError,
    UnsafeXMLError,
)
from ispring_async._config import DEFAULT_CONNECTION_LIMITS
from ispring_async._parse import results_parser
from ispring_async._transport import Transport, check_base_url, parse_retry_after
from tests._helpers import no_wait
from tests._servers import (
    Handler,
    PagedResults,
    Server,
    api_error,
    partial_then,
    results_body,
    serve,
    transport_for,
)

PATH = "/learners/results"
NO_WAIT = no_wait(4)


async def get_page(
    transport: Transport, events: list[RetryEvent] | None = None, *, size: int = 10
) -> ResultsPage:
    """One results page through the real parser."""
    label = "GET /learners/results page 1"
    return await transport.request(
        "GET",
        PATH,
        lambda: results_parser(ResponseFormat.XML, page=label),
        label=label,
        params=[("pageSize", str(size))],
        on_retry=None if events is None else events.append,
    )


def failing(times: int, failure: Handler, then: Handler) -> Handler:
    """A handler that answers with ``failure`` for the first ``times`` calls, then with ``then``."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await (failure if calls <= times else then)(request)

    return handler


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering ``code`` with an empty body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers)

    return handler


def body(raw: bytes, ctype: str = "application/xml") -> Handler:
    """A handler answering 200 with ``raw``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, headers={"Content-Type": ctype})

    return handler


PAGE = results_body(range(10), None)


def reset_mid_body() -> Handler:
    """Half the page, then the connection closes (Content-Length promised more)."""
    holder: dict[str, Server] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await partial_then(
            request, PAGE, ctype="application/xml", mode="reset", server=holder["server"]
        )

    handler.holder = holder  # type: ignore[attr-defined]
    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        pytest.param(status(429, {"Retry-After": "0"}), "429", id="429-retry-after-seconds"),
        pytest.param(
            status(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            "429",
            id="429-retry-after-http-date",
        ),
        pytest.param(status(429), "429", id="429-no-retry-after"),
        pytest.param(status(500), "5xx", id="500"),
        pytest.param(status(502), "5xx", id="502"),
        pytest.param(status(503, {"Retry-After": "0"}), "5xx", id="503"),
        pytest.param(status(504), "5xx", id="504"),
        pytest.param(body(PAGE[: len(PAGE) // 2]), "truncated", id="document-cut-short"),
        pytest.param(body(PAGE[:-20] + b"<br />Fatal error"), "parse", id="garbage-tail"),
        pytest.param(
            body(PAGE.replace(b"</result><result>", b"</result>\x00<result>", 1)), "parse", id="garbage-mid"
        ),
    ],
)
async def test_retryable_failure_then_success(failure: Handler, cause: str) -> None:
    """Each retryable failure is retried (whole page, new parser) and the next attempt's page is returned."""
    async with (
        serve({PATH: failing(2, failure, PagedResults(10))}) as server,
        transport_for(server) as transport,
    ):
        events: list[RetryEvent] = []
        page = await get_page(transport, events)
    assert [r.time_spent for r in page.records] == list(range(10))
    assert [(e.cause, e.attempt, e.wait) for e in events] == [(cause, 1, 0.0), (cause, 2, 0.0)]
    assert len(server.hits(PATH)) == 3


@pytest.mark.anyio
async def test_reset_mid_body_is_retried() -> None:
    """A connection that closes mid-body is a 'truncated' retry, and the page comes back whole."""
    handler = reset_mid_body()
    async with serve({PATH: failing(1, handler, PagedResults(10))}) as server:
        handler.holder["server"] = server  # type: ignore[attr-defined]
        async with transport_for(server) as transport:
            events: list[RetryEvent] = []
            page = await get_page(transport, events)
    assert len(page.records) == 10
    assert [e.cause for e in events] == ["truncated"]


@pytest.mark.anyio
async def test_stalled_body_times_out_and_is_retried() -> None:
    """A server that stops sending mid-body trips the read timeout; the retry gets the page."""
    holder: dict[str, Server] = {}

    async def stall(request: web.Request) -> web.StreamResponse:
        return await partial_then(
            request, PAGE, ctype="application/xml", mode="stall", server=holder["server"]
        )

    async with serve({PATH: failing(1, stall, PagedResults(10))}) as server:
        holder["server"] = server
        async with transport_for(server, timeouts=Timeouts(read=0.2)) as transport:
            events: list[RetryEvent] = []
            page = await get_page(transport, events)
    assert len(page.records) == 10
    assert [e.cause for e in events] == ["timeout"]


@pytest.mark.anyio
async def test_stall_on_every_attempt_raises_read_timeout() -> None:
    """A server that always stalls cannot hang the export: ReadTimeoutError after the attempts run out."""
    holder: dict[str, Server] = {}

    async def stall(request: web.Request) -> web.StreamResponse:
        return await partial_then(
            request, PAGE, ctype="application/xml", mode="stall", server=holder["server"]
        )

    async with serve({PATH: stall}) as server:
        holder["server"] = server
        policy = no_wait(2)
        async with transport_for(server, retry=policy, timeouts=Timeouts(read=0.2)) as transport:
            with pytest.raises(ReadTimeoutError, match="stopped sending mid-body"):
                await get_page(transport)
    assert len(server.hits(PATH)) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [
        pytest.param(status(503), ServerError, "503", id="503"),
        pytest.param(status(429, {"Retry-After": "0"}), RateLimitError, "429", id="429"),
        pytest.param(body(PAGE[:100]), ParseError, "malformed XML", id="truncated"),
    ],
)
async def test_retries_are_bounded_by_attempts(
    failure: Handler, error: type[Exception], message: str
) -> None:
    """A failure that persists is raised as its own error class after exactly ``attempts`` tries."""
    async with (
        serve({PATH: failure}) as server,
        transport_for(server, retry=no_wait(3)) as t,
    ):
        with pytest.raises(error, match=message) as info:
            await get_page(t)
    assert len(server.hits(PATH)) == 3
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)


@pytest.mark.anyio
async def test_rate_limit_error_carries_retry_after() -> None:
    """RateLimitError after the last attempt keeps the server's last Retry-After hint."""
    async with (
        serve({PATH: status(429, {"Retry-After": "7"})}) as server,
        transport_for(server, retry=no_wait(2)) as transport,
    ):
        with pytest.raises(RateLimitError) as info:
            await get_page(transport)
    assert info.value.retry_after == 7.0
    assert info.value.status == 429


@pytest.mark.anyio
async def test_retry_after_is_capped_and_scaled() -> None:
    """Retry-After is capped by max_retry_after and scaled by wait_scale (no real sleeping here)."""
    policy = RetryPolicy(attempts=3, wait_scale=0.001, max_retry_after=5)
    async with (
        serve({PATH: failing(1, status(429, {"Retry-After": "100"}), PagedResults(10))}) as server,
        transport_for(server, retry=policy) as transport,
    ):
        events: list[RetryEvent] = []
        await get_page(transport, events)
    assert [e.wait for e in events] == [pytest.approx(0.005)]


@pytest.mark.anyio
async def test_total_time_bound_gives_up_before_a_long_wait() -> None:
    """A retry whose wait would exceed ``total`` is not started: the error is raised at once."""
    policy = RetryPolicy(attempts=5, total=10, max_retry_after=120)
    async with (
        serve({PATH: status(503, {"Retry-After": "60"})}) as server,
        transport_for(server, retry=policy) as transport,
    ):
        with pytest.raises(ServerError):
            await get_page(transport)
    assert len(server.hits(PATH)) == 1


@pytest.mark.anyio
async def test_backoff_uses_seeded_jitter() -> None:
    """Backoff waits are the policy's exponential backoff times jitter from the given random.Random."""
    policy = RetryPolicy(attempts=4, initial=0.001, maximum=0.003)
    async with (
        serve({PATH: failing(3, status(500), PagedResults(10))}) as server,
        transport_for(server, retry=policy, rng=random.Random(42)) as transport,
    ):
        events: list[RetryEvent] = []
        await get_page(transport, events)
    expected_rng = random.Random(42)
    assert [e.wait for e in events] == [policy.backoff(n, expected_rng.random()) for n in (1, 2, 3)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "error", "code", "api_message"),
    [
        pytest.param(
            api_error(400, 400, "Invalid userIds"), BadRequestError, 400, "Invalid userIds", id="400-json"
        ),
        pytest.param(
            api_error(403, 403, "Permission denied", fmt="xml"),
            PermissionDeniedError,
            403,
            "Permission denied",
            id="403-xml",
        ),
        pytest.param(web.Response(status=404, text="nope"), NotFoundError, None, None, id="404-plain"),
        pytest.param(web.Response(status=501), ServerError, None, None, id="501-not-retried"),
        pytest.param(web.Response(status=418), APIError, None, None, id="418-other"),
        pytest.param(
            web.Response(status=302, headers={"Location": "http://elsewhere.example/x?secret=1"}),
            APIError,
            None,
            None,
            id="redirect-not-followed",
        ),
    ],
)
async def test_non_retryable_status(
    answer: web.Response, error: type[APIError], code: int | None, api_message: str | None
) -> None:
    """Non-retryable statuses raise at once with the API's code and message and the URL, no query."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return answer

    async with serve({PATH: handler}) as server, transport_for(server) as transport:
        with pytest.raises(error) as info:
            await get_page(transport)
    assert type(info.value) is error
    assert (info.value.code, info.value.api_message) == (code, api_message)
    assert info.value.url == f"{server.base_url}{PATH}"
    assert "pageSize" not in str(info.value)
    assert "secret" not in str(info.value)
    assert len(server.hits(PATH)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "ctype"),
    [
        pytest.param(
            b"<html><body>Welcome</body></html>", "text/html; charset=utf-8", id="content-type-html"
        ),
        pytest.param(
            b"<!DOCTYPE html><html><body>x</body></html>", "application/xml", id="html-body-xml-type"
        ),
    ],
)
async def test_html_200_names_the_url_and_is_not_retried(raw: bytes, ctype: str) -> None:
    """A 200 HTML page (wrong base URL) raises UnexpectedContentError naming the URL, without retrying."""
    async with serve({PATH: body(raw, ctype)}) as server, transport_for(server) as transport:
        with pytest.raises(UnexpectedContentError, match="HTML") as info:
            await get_page(transport)
    assert f"{server.base_url}{PATH}" in str(info.value)
    assert "pageSize" not in str(info.value)
    assert len(server.hits(PATH)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(
            PAGE.replace(b"<timeSpent>3</timeSpent>", b"<timeSpent>three</timeSpent>"),
            ParseError,
            id="bad-value",
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><response/>', UnsafeXMLError, id="dtd"
        ),
    ],
)
async def test_well_formed_but_wrong_body_is_not_retried(raw: bytes, error: type[Exception]) -> None:
    """A well-formed body with a wrong value, or unsafe XML, is the server's answer: raised at once."""
    async with serve({PATH: body(raw)}) as server, transport_for(server) as transport:
        with pytest.raises(error):
            await get_page(transport)
    assert len(server.hits(PATH)) == 1


@pytest.mark.anyio
async def test_connection_refused_is_a_transport_error_after_retries() -> None:
    """Nothing listening: retried as 'reset', then TransportError (never an aiohttp exception)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = Transport(
        f"http://127.0.0.1:{port}",
        timeouts=Timeouts(),
        limits=DEFAULT_CONNECTION_LIMITS,
        retry=no_wait(2),
        user_agent="tests",
    )
    events: list[RetryEvent] = []
    await transport.open()
    try:
        with pytest.raises(TransportError, match="connection failed") as info:
            await get_page(transport, events)
    finally:
        await transport.aclose()
    assert type(info.value) is TransportError
    assert [e.cause for e in events] == ["reset"]


def test_parse_retry_after_forms() -> None:
    """Retry-After parses as delta-seconds or an HTTP date; junk and absence give None."""
    now = datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        pytest.param("https://api-learn.ispringlearn.com", False, id="https"),
        pytest.param("http://127.0.0.1:8080", False, id="ipv4-loopback"),
        pytest.param("http://127.3.4.5", False, id="ipv4-loopback-net"),
        pytest.param("http://[::1]:9000", False, id="ipv6-loopback"),
        pytest.param("http://localhost:9000", False, id="localhost"),
        pytest.param("http://api.internal", True, id="explicitly-allowed"),
    ],
)
def test_base_url_accepted(url: str, allow: bool) -> None:
    """https anywhere; plain http to loopback, or anywhere when explicitly allowed."""
    assert str(check_base_url(url, allow_insecure_http=allow)).startswith(url.split(":")[0])


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://api-learn.ispringlearn.com", id="http-remote"),
        pytest.param("http://10.0.0.1", id="http-private-ip"),
        pytest.param("http://localhost.evil.com", id="http-localhost-lookalike"),
        pytest.param("ftp://api-learn.ispringlearn.com", id="other-scheme"),
        pytest.param("api-learn.ispringlearn.com", id="no-scheme"),
        pytest.param("https://user:pw@api-learn.ispringlearn.com", id="userinfo"),
        pytest.param("https://api-learn.ispringlearn.com/?token=x", id="query"),
    ],
)
def test_base_url_refused(url: str) -> None:
    """Plain http to a non-loopback host and malformed base URLs are refused before any request."""
    with pytest.raises(ConfigurationError):
        check_base_url(url, allow_insecure_http=False)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a throw-away self-signed certificate for 127.0.0.1."""
    directory: Path = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl unavailable: {exc}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.anyio
async def test_tls_certificates_are_verified(self_signed: ssl.SSLContext) -> None:
    """An untrusted certificate fails with TransportError at once: TLS errors are not retried."""
    async with serve({PATH: PagedResults(10)}, ssl_context=self_signed) as server:
        events: list[RetryEvent] = []
        async with transport_for(server) as transport:
            with pytest.raises(TransportError, match="TLS"):
                await get_page(transport, events)
    assert events == []
    assert server.hits(PATH) == []

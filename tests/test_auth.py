"""Authentication: token requests, refresh before expiry, single-flight, 401 recovery, masked secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ispring_async import AuthenticationError, ParseError, RetryEvent, RetryPolicy, Timeouts
from ispring_async._auth import ClientCredentialsAuth, StaticTokenAuth
from ispring_async._config import DEFAULT_LIMITS
from ispring_async._transport import _MAX_REFRESHES, Transport
from tests._servers import Handler, Server, TokenEndpoint, api_error, serve

TOKEN = "/api/v3/token"
DATA = "/data"
SECRET = "s3cr3t-VALUE"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Raw:
    """A parser that returns the body as bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> bytes:
        return b"".join(self.chunks)


def data_handler(endpoint: TokenEndpoint, *, accept: str = "latest") -> Handler:
    """``/data`` answering 200 to an accepted bearer token, else 401.

    ``accept="latest"``: only the newest token is valid (older ones were revoked);
    ``accept="none"``: every token is refused.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        ok = accept == "latest" and endpoint.issued and header == f"Bearer {endpoint.issued[-1]}"
        if not ok:
            return api_error(401, 401, "Unauthorized")
        return web.Response(body=header.encode())

    return handler


@contextlib.asynccontextmanager
async def setup(
    endpoint: TokenEndpoint, *, accept: str = "latest", clock: FakeClock | None = None, secret: str = SECRET
) -> AsyncIterator[tuple[Server, Transport, ClientCredentialsAuth]]:
    """A server with a token endpoint and /data, an open transport, and client-credentials auth."""
    async with serve({TOKEN: endpoint, DATA: data_handler(endpoint, accept=accept)}) as server:
        transport = Transport(
            server.base_url,
            timeouts=Timeouts(),
            limits=DEFAULT_LIMITS,
            retry=RetryPolicy(attempts=3, wait_scale=0),
            user_agent="tests",
        )
        await transport.open()
        auth = ClientCredentialsAuth(
            transport, client_id="the-id", client_secret=secret, clock=clock or FakeClock()
        )
        try:
            yield server, transport, auth
        finally:
            await transport.aclose()


async def fetch(
    transport: Transport, auth: ClientCredentialsAuth | StaticTokenAuth, events: list[RetryEvent]
) -> bytes:
    """GET /data with ``auth``; returns the Authorization header the server saw."""
    return await transport.request("GET", DATA, Raw, label="GET /data", auth=auth, on_retry=events.append)


@pytest.mark.anyio
async def test_token_request_form_and_bearer_header() -> None:
    """The token is requested with the documented form and sent as 'Authorization: Bearer <token>'."""
    async with setup(TokenEndpoint()) as (server, transport, auth):
        assert await fetch(transport, auth, []) == b"Bearer tok-1"
    (token_request,) = server.hits(TOKEN)
    assert token_request.method == "POST"
    assert token_request.form == {
        "client_id": "the-id",
        "client_secret": SECRET,
        "grant_type": "client_credentials",
    }


@pytest.mark.anyio
async def test_concurrent_requests_share_one_token_request() -> None:
    """Many requests that find no token at once cause exactly one token request."""
    async with setup(TokenEndpoint()) as (server, transport, auth):
        answers = await asyncio.gather(*(fetch(transport, auth, []) for _ in range(20)))
    assert set(answers) == {b"Bearer tok-1"}
    assert len(server.hits(TOKEN)) == 1


@pytest.mark.anyio
async def test_refresh_at_80_percent_of_lifetime() -> None:
    """A token is reused until 80% of expires_in has passed, then one new token is fetched."""
    clock = FakeClock()
    async with setup(TokenEndpoint(expires_in=100), clock=clock) as (server, transport, auth):
        assert await fetch(transport, auth, []) == b"Bearer tok-1"
        clock.now += 79
        assert await fetch(transport, auth, []) == b"Bearer tok-1"
        clock.now += 2
        answers = await asyncio.gather(*(fetch(transport, auth, []) for _ in range(10)))
    assert set(answers) == {b"Bearer tok-2"}
    assert len(server.hits(TOKEN)) == 2


@pytest.mark.anyio
async def test_401_refreshes_once_and_retries() -> None:
    """A revoked token (401) is refreshed once and the request retried with the new token."""
    endpoint = TokenEndpoint()
    async with setup(endpoint) as (server, transport, auth):
        await auth.token()
        endpoint.issued[-1] = "tok-rotated"  # the server revoked tok-1
        events: list[RetryEvent] = []
        assert await fetch(transport, auth, events) == b"Bearer tok-2"
    assert [e.cause for e in events] == ["401-refresh"]
    assert len(server.hits(TOKEN)) == 2
    assert len(server.hits(DATA)) == 2


@pytest.mark.anyio
async def test_concurrent_401s_cause_one_refresh() -> None:
    """Many requests refused with the same stale token cause one refresh, not one each."""
    endpoint = TokenEndpoint()
    async with setup(endpoint) as (server, transport, auth):
        await auth.token()
        endpoint.issued[-1] = "tok-rotated"
        answers = await asyncio.gather(*(fetch(transport, auth, []) for _ in range(10)))
    assert set(answers) == {b"Bearer tok-2"}
    assert len(server.hits(TOKEN)) == 2


@pytest.mark.anyio
async def test_persistent_401_raises_after_a_bounded_number_of_refreshes() -> None:
    """Every token refused: one refresh per refusal, at most three, then AuthenticationError."""
    async with setup(TokenEndpoint(), accept="none") as (server, transport, auth):
        with pytest.raises(AuthenticationError) as info:
            await fetch(transport, auth, [])
    assert info.value.status == 401
    assert len(server.hits(TOKEN)) == 1 + _MAX_REFRESHES
    assert len(server.hits(DATA)) == 1 + _MAX_REFRESHES


@pytest.mark.anyio
async def test_static_token_401_is_final() -> None:
    """A caller-supplied token cannot be refreshed: a 401 raises at once, after one request."""
    async with setup(TokenEndpoint(), accept="none") as (server, transport, _):
        with pytest.raises(AuthenticationError):
            await fetch(transport, StaticTokenAuth("fixed-token"), [])
    assert len(server.hits(DATA)) == 1
    assert server.hits(DATA)[0].authorization == "Bearer fixed-token"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [pytest.param(400, id="400"), pytest.param(401, id="401")])
async def test_refused_credentials_raise_authentication_error_without_the_secret(status: int) -> None:
    """Wrong credentials (400 or 401 at the token endpoint) raise AuthenticationError without the secret."""

    async def refuse(request: web.Request) -> web.StreamResponse:
        return api_error(status, status, "Invalid client")

    async with serve({TOKEN: refuse}) as server:
        transport = Transport(
            server.base_url, timeouts=Timeouts(), limits=DEFAULT_LIMITS, retry=RetryPolicy(), user_agent="t"
        )
        await transport.open()
        auth = ClientCredentialsAuth(transport, client_id="the-id", client_secret=SECRET)
        try:
            with pytest.raises(AuthenticationError, match="refused the client credentials") as info:
                await auth.token()
        finally:
            await transport.aclose()
    assert info.value.api_message == "Invalid client"
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert len(server.hits(TOKEN)) == 1


@pytest.mark.anyio
async def test_malformed_token_reply_is_a_parse_error_without_the_token() -> None:
    """A token reply of the wrong shape raises ParseError that does not echo the reply."""

    async def odd(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": 12345678, "expires_in": 60})

    async with serve({TOKEN: odd}) as server:
        transport = Transport(
            server.base_url, timeouts=Timeouts(), limits=DEFAULT_LIMITS, retry=RetryPolicy(), user_agent="t"
        )
        await transport.open()
        auth = ClientCredentialsAuth(transport, client_id="the-id", client_secret=SECRET)
        try:
            with pytest.raises(ParseError, match="access_token") as info:
                await auth.token()
        finally:
            await transport.aclose()
    assert "12345678" not in str(info.value)


@pytest.mark.anyio
async def test_secrets_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Neither the client secret nor any token appears in a repr or a log line, retries included."""
    caplog.set_level(logging.DEBUG)
    endpoint = TokenEndpoint()
    async with setup(endpoint) as (_, transport, auth):
        await auth.token()
        endpoint.issued[-1] = "tok-rotated"
        await fetch(transport, auth, [])
        shown = " ".join([repr(auth), repr(transport), repr(StaticTokenAuth("tok-static")), caplog.text])
    assert "401-refresh" in caplog.text
    for secret in (SECRET, "tok-1", "tok-2", "tok-static"):
        assert secret not in shown

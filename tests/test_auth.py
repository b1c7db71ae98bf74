"""Authentication: token requests, refresh before expiry, single-flight, 401 recovery, masked secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yarl
from aiohttp import web

from ispring_async import (
    APIError,
    AuthenticationError,
    Client,
    ConfigurationError,
    ParseError,
    ResultsQuery,
    RetryEvent,
    RetryPolicy,
    Timeouts,
)
from ispring_async._app.cli import _UsageError, resolve_settings
from ispring_async._auth import ClientCredentialsAuth, StaticTokenAuth, resolve_token_url
from ispring_async._config import DEFAULT_CONNECTION_LIMITS
from ispring_async._transport import _MAX_REFRESHES, Transport
from ispring_async.emulator import EmulatorConfig, running_emulator
from tests._helpers import FakeClock, Raw, drain, no_wait
from tests._servers import Handler, PagedResults, Server, TokenEndpoint, api_error, serve

TOKEN = "/api/v3/token"
DATA = "/data"
SECRET = "s3cr3t-VALUE"


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
            limits=DEFAULT_CONNECTION_LIMITS,
            retry=no_wait(3),
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
            server.base_url,
            timeouts=Timeouts(),
            limits=DEFAULT_CONNECTION_LIMITS,
            retry=RetryPolicy(),
            user_agent="t",
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
            server.base_url,
            timeouts=Timeouts(),
            limits=DEFAULT_CONNECTION_LIMITS,
            retry=RetryPolicy(),
            user_agent="t",
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


# -- the token URL ------------------------------------------------------------------------------------


def results_routes(endpoint: TokenEndpoint, data_path: str) -> dict[str, Handler]:
    """A token endpoint at ``/api/v3/token`` and a results page at ``data_path`` that needs its token."""

    async def results(request: web.Request) -> web.StreamResponse:
        if not endpoint.issued or request.headers.get("Authorization") != f"Bearer {endpoint.issued[-1]}":
            return api_error(401, 401, "Unauthorized")
        return await PagedResults(3)(request)

    return {TOKEN: endpoint, data_path: results}


async def first_page(base_url: str, **options: object) -> int:
    """Records on the first results page a client of ``base_url`` reads (credentials of TokenEndpoint)."""
    async with Client(base_url, client_id="the-id", client_secret=SECRET, **options) as client:  # type: ignore[arg-type]
        pages = client.result_pages()
        async with contextlib.aclosing(pages):
            return len((await anext(pages)).records)


@pytest.mark.anyio
async def test_base_url_with_a_path_gets_its_token_at_the_host_root() -> None:
    """A base URL ending in /api/v2 reads data under it and posts credentials to /api/v3/token at the root."""
    endpoint = TokenEndpoint()
    async with serve(results_routes(endpoint, "/api/v2/learners/results")) as server:
        assert await first_page(server.base_url + "/api/v2") == 3
    assert [hit.path for hit in server.seen] == [TOKEN, "/api/v2/learners/results"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token_url",
    [pytest.param("/oauth2/token", id="path-at-root"), pytest.param("{base}/oauth2/token", id="absolute")],
)
async def test_token_url_option_is_where_credentials_go(token_url: str) -> None:
    """token_url (a path at the host root, or an absolute URL) receives the credentials; nothing else does."""
    endpoint = TokenEndpoint()
    data = results_routes(endpoint, "/x/learners/results")["/x/learners/results"]
    routes: dict[str, Handler] = {"/oauth2/token": endpoint, "/x/learners/results": data}
    async with serve(routes) as server:
        url = token_url.format(base=server.base_url)
        assert await first_page(server.base_url + "/x", token_url=url) == 3
    assert [hit.path for hit in server.seen] == ["/oauth2/token", "/x/learners/results"]
    assert server.seen[0].form["client_secret"] == SECRET


@pytest.mark.anyio
async def test_token_url_on_another_host_is_used_only_when_named() -> None:
    """An absolute token_url on another server gets the secret; the data server never sees it."""
    endpoint = TokenEndpoint()
    async with (
        serve({"/token": endpoint}) as auth_server,
        serve(results_routes(endpoint, "/learners/results")) as data_server,
    ):
        assert await first_page(data_server.base_url, token_url=auth_server.base_url + "/token") == 3
    assert [hit.path for hit in auth_server.seen] == ["/token"]
    assert all(hit.form == {} for hit in data_server.seen)
    assert [hit.path for hit in data_server.seen] == ["/learners/results"]


@pytest.mark.anyio
async def test_a_redirecting_token_endpoint_is_not_followed() -> None:
    """A token endpoint answering 307 elsewhere fails; the redirect target never receives the secret."""
    async with serve({"/api/v3/token": TokenEndpoint()}) as elsewhere:

        async def redirect(request: web.Request) -> web.StreamResponse:
            return web.Response(status=307, headers={"Location": elsewhere.base_url + "/api/v3/token"})

        async with serve({TOKEN: redirect}) as server:
            with pytest.raises(APIError) as caught:
                await first_page(server.base_url)
    assert caught.value.status == 307
    assert SECRET not in str(caught.value)
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    ("token_url", "needle"),
    [
        pytest.param("http://auth.example.com/token", "refusing plain http://", id="http-off-loopback"),
        pytest.param("https://me:pw-SECRET@auth.example.com/t", "credentials", id="userinfo"),
        pytest.param("https://auth.example.com/t?client_secret=x", "query", id="query"),
        pytest.param("/token?x=1", "query", id="path-with-query"),
        pytest.param("oauth2/token", "path starting with '/'", id="relative"),
        pytest.param("//auth.example.com/token", "absolute", id="scheme-relative"),
        pytest.param("", "non-empty", id="empty"),
    ],
)
def test_unsafe_or_ambiguous_token_urls_are_refused(token_url: str, needle: str) -> None:
    """A token URL that could leak the secret, or whose target is ambiguous, is a ConfigurationError."""
    with pytest.raises(ConfigurationError) as caught:
        Client(
            "https://api-learn.ispringlearn.com/api/v2",
            client_id="i",
            client_secret=SECRET,
            token_url=token_url,
        )
    assert needle in str(caught.value)
    assert "pw-SECRET" not in str(caught.value)


def test_token_url_defaults_and_insecure_opt_in() -> None:
    """The default is /api/v3/token at the host root; http:// off loopback needs allow_insecure_http."""
    base = yarl.URL("https://acme.ispringlearn.com/index.php/api/v2")
    assert str(resolve_token_url(base, None)) == "https://acme.ispringlearn.com/api/v3/token"
    assert str(resolve_token_url(base, "/oauth2/token")) == "https://acme.ispringlearn.com/oauth2/token"
    insecure = resolve_token_url(base, "http://auth.internal/token", allow_insecure_http=True)
    assert str(insecure) == "http://auth.internal/token"
    with pytest.raises(ConfigurationError):
        Client("https://a.example.com", token="t", token_url="/oauth2/token")


@pytest.mark.anyio
async def test_emulator_path_prefix_and_token_path_round_trip() -> None:
    """Against an emulator with /api/v2 data and a token at /oauth2/token, the client reads every row."""
    config = EmulatorConfig(results=300, path_prefix="/api/v2", token_path="/oauth2/token")
    async with running_emulator(config) as emu:
        assert emu.base_url.endswith("/api/v2")
        async with Client(
            emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret, token_url=emu.token_url
        ) as client:
            records = await drain(client.learner_results(ResultsQuery(), split="none"))
    assert len(records) == len(emu.expected_results(ResultsQuery().to_params()))
    assert emu.stats.requests["token"] == 1


def test_export_token_url_comes_from_flag_env_or_config_in_that_order(tmp_path: Path) -> None:
    """--token-url beats $ISPRING_TOKEN_URL, which beats token_url in the config file."""
    config = tmp_path / "export.toml"
    config.write_text('token_url = "/from-config"\nskip_unknown_ids = true\n', encoding="utf-8")
    base = {"config": str(config), "base_url": "https://a.example.com/api/v2", "output": "x.jsonl"}
    env = {"ISPRING_CLIENT_ID": "i", "ISPRING_CLIENT_SECRET": SECRET}
    layers = [
        ({}, {}, "/from-config"),
        ({}, {"ISPRING_TOKEN_URL": "/from-env"}, "/from-env"),
        ({"token_url": "/from-flag"}, {"ISPRING_TOKEN_URL": "/from-env"}, "/from-flag"),
    ]
    for cli, extra_env, expected in layers:
        settings = resolve_settings({**base, **cli}, {**env, **extra_env})[0]
        assert settings.token_url == expected
        assert settings.skip_unknown_ids is True
    off = resolve_settings({**base}, {**env, "ISPRING_SKIP_UNKNOWN_IDS": "0"})[0]
    assert off.skip_unknown_ids is False
    with pytest.raises(_UsageError, match="ISPRING_SKIP_UNKNOWN_IDS must be true or false"):
        resolve_settings({**base}, {**env, "ISPRING_SKIP_UNKNOWN_IDS": "maybe"})

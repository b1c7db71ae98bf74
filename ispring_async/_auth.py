"""Bearer tokens: a fixed one, or one obtained from client credentials and refreshed before it expires.

Refresh is single-flight: however many requests find the token stale at once, one ``POST /api/v3/token``
is made and all of them use its answer. A token is refreshed at 80% of its ``expires_in`` (measured from
before the token request was sent), so a long export never sends one that expires in flight; a 401 still
gets one refresh-and-retry (the transport asks for it via ``invalidate``).

The token URL is ``/api/v3/token`` at the base URL's host root, whatever path the base URL has (data
endpoints may sit under ``/api/v2``; the token does not), or the caller's ``token_url``: a path at that
root, or an absolute URL. It is checked like the base URL (no plain ``http://`` off loopback, no
credentials or query in it) and, as every request, never follows a redirect, so the secret goes only
to the host the base URL names or to one the caller named explicitly.

Neither the client secret nor any token appears in a ``repr``, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

import msgspec
import yarl

from ispring_async._exceptions import APIError, AuthenticationError, ConfigurationError, ParseError
from ispring_async._transport import Secret, Transport, check_base_url

__all__ = ["TOKEN_PATH", "ClientCredentialsAuth", "StaticTokenAuth", "resolve_token_url"]

TOKEN_PATH = "/api/v3/token"  # noqa: S105 - a URL path, not a password
_LABEL = f"POST {TOKEN_PATH}"
# Refresh this far into a token's lifetime: late enough to refresh rarely, early enough that a page
# requested just before the threshold still finishes under a valid token.
REFRESH_FRACTION = 0.8
_MAX_TOKEN_REPLY = 1 << 20
MIN_TOKEN_LIFETIME = 60.0
"""The shortest ``expires_in`` believed: a zero or negative one would mean a token request per page."""
# A bearer token travels in a header; CR, LF, NUL or any other control character would either be
# refused by aiohttp with a bare ValueError or, worse, split the header.
_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f]")

logger = logging.getLogger("ispring_async")


def resolve_token_url(
    base_url: yarl.URL, token_url: str | None, *, allow_insecure_http: bool = False
) -> yarl.URL:
    """Where client credentials are posted: ``TOKEN_PATH`` at ``base_url``'s host root by default.

    ``token_url`` may be a path (``"/oauth2/token"``, at the host root) or an absolute URL (any host:
    naming it is the caller's decision). Either way the same rules as for the base URL apply.

    >>> resolve_token_url(yarl.URL("https://acme.ispringlearn.com/api/v2"), None)
    URL('https://acme.ispringlearn.com/api/v3/token')
    """
    if token_url is None:
        return base_url.origin().with_path(TOKEN_PATH)
    if not isinstance(token_url, str) or not token_url.strip():
        raise ConfigurationError("token_url must be a non-empty URL or a path starting with '/'")
    text = token_url.strip()
    if text.startswith("/") and not text.startswith("//"):
        if "?" in text or "#" in text:
            raise ConfigurationError("token_url must not carry a query or a fragment")
        return base_url.origin().with_path(text)
    url = yarl.URL(text)
    if not url.is_absolute():
        raise ConfigurationError(
            "token_url must be an absolute https:// URL or a path starting with '/' (at the base URL's "
            f"host root), got {url.path!r}"
        )
    try:
        checked = check_base_url(url, allow_insecure_http=allow_insecure_http)
    except ConfigurationError as exc:
        raise ConfigurationError(str(exc).replace("base_url", "token_url")) from None
    return checked


class _TokenReply(msgspec.Struct):
    access_token: str
    expires_in: float = 1800.0

    def __repr__(self) -> str:
        return "_TokenReply(access_token='***')"


_decode_reply = msgspec.json.Decoder(_TokenReply).decode


class _TokenReplyParser:
    """Collects the token endpoint's small JSON reply and decodes it once complete."""

    def __init__(self, label: str = _LABEL) -> None:
        self._label = label
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > _MAX_TOKEN_REPLY:
            raise ParseError("the token endpoint's reply is implausibly large", page=self._label)
        self._chunks.append(data)

    def close(self) -> _TokenReply:
        try:
            return _decode_reply(b"".join(self._chunks))
        except msgspec.DecodeError as exc:
            # msgspec names the path and expected type, never the value: safe to show.
            raise ParseError(
                f"the token endpoint's reply is not the expected JSON: {exc}", page=self._label
            ) from None


def _sendable(token: str) -> bool:
    return _UNSENDABLE.search(token) is None


class StaticTokenAuth:
    """A token the caller obtained; it cannot be refreshed, so a 401 is final.

    A token holding control characters (CR, LF, NUL, ...) cannot be sent in a header: it is refused
    here with ``ConfigurationError``, before any request.
    """

    def __init__(self, token: str) -> None:
        if not _sendable(token):
            # Never the value: only that it is unusable (a stray newline from a token file, usually).
            raise ConfigurationError(
                "the access token holds control characters (CR, LF, NUL, ...) and cannot be sent"
            )
        self._token = Secret(token)

    def __repr__(self) -> str:
        return "StaticTokenAuth(token='***')"

    async def token(self) -> str:
        """The caller's token."""
        return self._token

    def invalidate(self, token: str) -> bool:
        """Nothing to refresh with: the transport raises the 401 as ``AuthenticationError``."""
        return False


class ClientCredentialsAuth:
    """Tokens from ``POST /api/v3/token`` (``grant_type=client_credentials``), refreshed before expiry."""

    def __init__(
        self,
        transport: Transport,
        *,
        client_id: str,
        client_secret: str,
        token_url: yarl.URL | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self.token_url = token_url or resolve_token_url(transport.base_url, None)
        """Where the credentials are posted (see ``resolve_token_url``)."""
        self._label = f"POST {self.token_url.path}"
        self._client_id = client_id
        self._client_secret = Secret(client_secret)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = float("-inf")
        self.fetches = 0
        """How many tokens were obtained (for tests and diagnostics)."""

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(client_id={self._client_id!r}, client_secret='***')"

    def _current(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None

    async def token(self) -> str:
        """The current token, fetching a new one first (once, for all waiters) if it is due."""
        token = self._current()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have refreshed already.
            token = self._current()
            if token is None:
                token = await self._fetch()
            return token

    def invalidate(self, token: str) -> bool:
        """Mark ``token`` as refused; a 401 to an already-replaced token forces no second refresh."""
        if token == self._token:
            self._refresh_at = float("-inf")
        return True

    async def _fetch(self) -> str:
        started = self._clock()
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "grant_type": "client_credentials",
        }
        try:
            reply = await self._transport.request(
                "POST",
                self.token_url,
                lambda: _TokenReplyParser(self._label),
                label=self._label,
                form=form,
                headers={"Accept": "application/json"},
            )
        except APIError as exc:
            if exc.status not in (400, 401, 403):
                raise
            # The endpoint answers a wrong id or secret with 400 or 401 depending on the case; to the
            # caller both mean the same thing.
            raise AuthenticationError(
                f"the token endpoint refused the client credentials for client_id {self._client_id!r}: "
                f"{exc.api_message or exc.status}",
                status=exc.status,
                url=exc.url,
                code=exc.code,
                api_message=exc.api_message,
            ) from exc
        if not reply.access_token:
            raise ParseError("the token endpoint returned an empty access_token", page=self._label)
        if not _sendable(reply.access_token):
            raise AuthenticationError(
                "the token endpoint returned an access_token holding control characters (CR, LF, NUL, "
                "...), which cannot be sent in a header",
                status=200,
                url=str(self.token_url),
            )
        lifetime = reply.expires_in
        if not lifetime >= MIN_TOKEN_LIFETIME:  # NaN included
            logger.warning(
                "%s: expires_in of %s seconds is below %gs; refreshing the token after %gs instead",
                self._label,
                lifetime,
                MIN_TOKEN_LIFETIME,
                REFRESH_FRACTION * MIN_TOKEN_LIFETIME,
            )
            lifetime = MIN_TOKEN_LIFETIME
        token = Secret(reply.access_token)
        self._token = token
        self._refresh_at = started + REFRESH_FRACTION * lifetime
        self.fetches += 1
        return token

"""Bearer tokens: a fixed one, or one obtained from client credentials and refreshed before it expires.

Refresh is single-flight: however many requests find the token stale at once, one ``POST /api/v3/token``
is made and all of them use its answer. A token is refreshed at 80% of its ``expires_in`` (measured from
before the token request was sent), so a long export never sends one that expires in flight; a 401 still
gets one refresh-and-retry (the transport asks for it via ``invalidate``).

Neither the client secret nor any token appears in a ``repr``, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

import msgspec

from ispring_async._exceptions import APIError, AuthenticationError, ConfigurationError, ParseError
from ispring_async._transport import Transport

__all__ = ["TOKEN_PATH", "ClientCredentialsAuth", "StaticTokenAuth"]

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


class _TokenReply(msgspec.Struct):
    access_token: str
    expires_in: float = 1800.0

    def __repr__(self) -> str:
        return "_TokenReply(access_token='***')"


_decode_reply = msgspec.json.Decoder(_TokenReply).decode


class _TokenReplyParser:
    """Collects the token endpoint's small JSON reply and decodes it once complete."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > _MAX_TOKEN_REPLY:
            raise ParseError("the token endpoint's reply is implausibly large", page=_LABEL)
        self._chunks.append(data)

    def close(self) -> _TokenReply:
        try:
            return _decode_reply(b"".join(self._chunks))
        except msgspec.DecodeError as exc:
            # msgspec names the path and expected type, never the value: safe to show.
            raise ParseError(
                f"the token endpoint's reply is not the expected JSON: {exc}", page=_LABEL
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
        self._token = token

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._client_id = client_id
        self._client_secret = client_secret
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
                TOKEN_PATH,
                _TokenReplyParser,
                label=_LABEL,
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
            raise ParseError("the token endpoint returned an empty access_token", page=_LABEL)
        if not _sendable(reply.access_token):
            raise AuthenticationError(
                "the token endpoint returned an access_token holding control characters (CR, LF, NUL, "
                "...), which cannot be sent in a header",
                status=200,
                url=str(self._transport.url(TOKEN_PATH)),
            )
        lifetime = reply.expires_in
        if not lifetime >= MIN_TOKEN_LIFETIME:  # NaN included
            logger.warning(
                "%s: expires_in of %s seconds is below %gs; refreshing the token after %gs instead",
                _LABEL,
                lifetime,
                MIN_TOKEN_LIFETIME,
                REFRESH_FRACTION * MIN_TOKEN_LIFETIME,
            )
            lifetime = MIN_TOKEN_LIFETIME
        self._token = reply.access_token
        self._refresh_at = started + REFRESH_FRACTION * lifetime
        self.fetches += 1
        return reply.access_token

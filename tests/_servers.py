"""Small scripted aiohttp servers on 127.0.0.1 for request-path tests: one handler per scenario.

The emulator models the API; these model *faults*, precisely: "503 twice then 200", "half a body
then a reset", "stall mid-body". Handlers compose: a scenario wraps ``PagedResults`` and decides,
per call, whether to misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

from aiohttp import web

from ispring_async import RetryPolicy, Timeouts
from ispring_async._config import DEFAULT_CONNECTION_LIMITS
from ispring_async._transport import Transport
from tests._helpers import no_wait

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    raw_query: str
    authorization: str | None
    form: dict[str, str]


class Server:
    """A running scripted server: its base URL, what it received, and an event that ends stalls."""

    def __init__(self) -> None:
        self.base_url = ""
        self.seen: list[Seen] = []
        self.release = asyncio.Event()

    def hits(self, path: str) -> list[Seen]:
        """The requests made to ``path``, in order."""
        return [s for s in self.seen if s.path == path]


@contextlib.asynccontextmanager
async def serve(routes: Mapping[str, Handler], *, ssl_context: object = None) -> AsyncIterator[Server]:
    """Serve ``routes`` (path -> handler, any method) on 127.0.0.1 on a free port."""
    server = Server()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
        server.seen.append(
            Seen(
                request.method,
                request.path,
                list(request.query.items()),
                request.raw_path.partition("?")[2],
                request.headers.get("Authorization"),
                form,
            )
        )
        return await handler(request)

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_route("*", path, _coroutine(handler))
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)  # type: ignore[arg-type]
    await site.start()
    port = runner.addresses[0][1]
    server.base_url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def transport_for(
    server: Server,
    *,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Transport]:
    """An open Transport to ``server`` (``retry``: four attempts that never sleep, unless given)."""
    transport = Transport(
        server.base_url,
        timeouts=timeouts or Timeouts(),
        limits=DEFAULT_CONNECTION_LIMITS,
        retry=retry or no_wait(4),
        user_agent="tests",
        rng=rng,
    )
    await transport.open()
    try:
        yield transport
    finally:
        await transport.aclose()


def _coroutine(handler: Handler) -> Handler:
    # aiohttp wants a coroutine function; handler objects with an async __call__ are not one.
    async def call(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    return call


def ident(kind: int, i: int) -> str:
    """A deterministic UUID: ``kind`` tells users, courses and enrollments apart."""
    return str(uuid.UUID(int=(kind << 64) | i))


def record(i: int) -> dict[str, object]:
    """Record ``i`` as the API's JSON would carry it."""
    return {
        "userId": ident(1, i),
        "courseId": ident(2, i % 7),
        "courseTitle": f"Course {i % 7} & <{i}>",
        "enrollmentId": ident(3, i),
        "accessDate": "2021-07-28T21:00:00+00:00",
        "timeSpent": i,
        "completionStatus": "in_progress",
        "progress": 9.09,
        "isOverdue": i % 2 == 1,
    }


def _xml_text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def results_body(indices: range, next_token: str | None, *, fmt: str = "xml") -> bytes:
    """A results page holding records ``indices`` in the API's XML or JSON."""
    if fmt == "json":
        page: dict[str, object] = {"results": [record(i) for i in indices]}
        if next_token:
            page["nextPageToken"] = next_token
        return json.dumps(page).encode()
    return xml_page([record(i) for i in indices], next_token)


def xml_page(rows: list[dict[str, object]], next_token: str | None = None) -> bytes:
    """A results page in the API's XML holding ``rows`` (API field names to values) as given."""
    results = "".join(
        "<result>" + "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in row.items()) + "</result>"
        for row in rows
    )
    token = f"<nextPageToken>{next_token}</nextPageToken>" if next_token else ""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f"{head}<response><results>{results}</results>{token}</response>".encode()


def content_type(fmt: str) -> str:
    """The Content-Type the API sends for ``fmt``."""
    return "application/json" if fmt == "json" else "application/xml"


class PagedResults:
    """``GET /learners/results`` over records ``0..total-1``: honours pageSize and pageToken.

    Tokens are ``"after-<offset>"``; the format follows ``Accept`` like the API's.
    """

    def __init__(self, total: int) -> None:
        self.total = total

    def page(self, request: web.Request) -> tuple[range, str | None]:
        """Which records the request's page holds, and the next token."""
        size = int(request.query.get("pageSize", "1000"))
        token = request.query.get("pageToken")
        start = int(token.removeprefix("after-")) if token and token.startswith("after-") else 0
        stop = min(start + size, self.total)
        return range(start, stop), (f"after-{stop}" if stop < self.total else None)

    @staticmethod
    def fmt(request: web.Request) -> str:
        """The format the request asked for."""
        return "json" if "application/json" in request.headers.get("Accept", "") else "xml"

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        indices, next_token = self.page(request)
        fmt = self.fmt(request)
        return web.Response(body=results_body(indices, next_token, fmt=fmt), content_type=content_type(fmt))


async def partial_then(
    request: web.Request, body: bytes, *, ctype: str, mode: str, server: Server
) -> web.StreamResponse:
    """Send half of ``body`` and then fail as ``mode`` says: ``reset`` or ``stall``."""
    response = web.StreamResponse(headers={"Content-Type": ctype})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if mode == "stall":
        await server.release.wait()
    assert request.transport is not None
    request.transport.close()
    return response


def api_error(status: int, code: int, message: str, *, fmt: str = "json") -> web.Response:
    """An API error response with the API's error body."""
    if fmt == "json":
        return web.json_response({"code": code, "message": message}, status=status)
    body = f"<?xml version='1.0'?><response><code>{code}</code><message>{message}</message></response>"
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


class TokenEndpoint:
    """``POST /api/v3/token``: issues ``tok-1``, ``tok-2``, ... and remembers which are valid."""

    def __init__(
        self, *, client_id: str = "the-id", client_secret: str = "s3cr3t-VALUE", expires_in: float = 1800
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.issued: list[str] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
            or form.get("grant_type") != "client_credentials"
        ):
            return api_error(401, 401, "Invalid client credentials")
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "bearer"}
        )


RawReply = Callable[[bytes], bytes]
"""Given a request's head (request line and headers), the exact bytes to answer with."""


@contextlib.asynccontextmanager
async def raw_server(reply: RawReply) -> AsyncIterator[str]:
    """A loopback TCP server that answers each request with ``reply``'s bytes, then closes; yields its URL.

    For responses no HTTP framework would send: a broken status line, a header without a colon, a bad
    chunk size, a 20 KB header. A request body (the token form) is read and dropped first.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    await reader.readexactly(int(value))
            writer.write(reply(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def serve_in_background(routes: Mapping[str, Handler]) -> Iterator[str]:
    """``serve(routes)`` on its own event loop in a thread, for code that runs its own loop (the CLI)."""
    ready = threading.Event()
    urls: list[str] = []
    stop: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()

    async def run() -> None:
        async with serve(routes) as server:
            stop.append(asyncio.Event())
            urls.append(server.base_url)
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the background server did not start")
    try:
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()

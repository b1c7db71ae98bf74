"""XML pages parsed in worker processes: the second core parses while the event loop receives.

Parsing an XML page of 1000 results costs about 16 ms of CPU (on the 2-core benchmark VM; the rest of
the client's path costs about 10 ms a page), and in-process it holds the event loop for all of it. A
``ParsePool`` (``Client(parse_workers=N)``) hands whole bodies to N worker processes
(``ispring_async._parse_worker``: plain ``python -c``, not ``multiprocessing``, see there) that run
*the same parser factory on the same chunks* and send the page back as JSON bytes, decoded here by one
typed ``msgspec`` decoder per page type (0.8-1.7 ms a page, by the machine's load). JSON, not msgpack:
msgpack's timestamp keeps the instant but not the offset (``+03:00`` comes back as UTC), and sinks
write the offset. Only the four list endpoints' XML pages go to workers: never JSON (its parse costs
what decoding a worker's answer would), never a token response (which holds a token).

What stays in this process, so the worker is an accelerator and never an authority:

- **The safety envelope.** Every decompressed byte is counted here as it streams in, against
  ``max_body_bytes`` and the markup bound (the endpoint's own ``Envelope``, on the same chunks), before
  any worker sees it; at most ``BUFFER_BYTES`` of a body are buffered, and a
  bigger body is parsed here instead, streaming (the buffered chunks fed first): memory is bounded by
  ``BUFFER_BYTES`` per request in flight, as the in-process parser bounds its own.
- **Every failure.** A worker answers with a page or with "no page"; nothing else crosses back. When it
  has no page (the body is malformed, hostile, or the worker raised anything at all), the body is parsed
  again here from the buffered chunks, and *that* parser's error is raised: the same class, message,
  ``page``, cause and ``retryable`` as without workers, and whether it broke in ``feed`` (mid-body: a
  corrupted stream, retried as ``"parse"``) or in ``close`` (a body cut short: ``"truncated"``). No
  exception is pickled across the boundary, so none can lose its type or drag a foreign object along.
  Such bodies are rare and bounded by ``BUFFER_BYTES``, so the second parse costs little.
- **Secrets.** A worker gets the body chunks, the page label (``"GET /learners/results page 3"``: the
  path and a number, no query, no token), the page size and the ``ParseLimits``; nothing else.

A page goes to a worker only when one is idle (and the body is at least ``MIN_OFFLOAD_BYTES``);
otherwise it is parsed here, as without workers. So the first pages, which arrive while the workers are
still starting (an interpreter and the parsers' imports: 0.1-0.3 s), are not held up, and when every
worker is busy this process parses too instead of queueing (``QUEUE_DEPTH``). A worker that dies
(killed, out of memory) breaks the pool: the pages it held are parsed here, a warning is logged, and the
client parses in-process from then on. Cancelling a request whose page is in a worker abandons the
result (the worker finishes that one page, at most a few tens of milliseconds, and takes the next);
closing the pool stops the workers and waits for them, bounded, then kills any that do not stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import anyio
import msgspec

from ispring_async._config import ResponseFormat
from ispring_async._exceptions import ParseError
from ispring_async._models import DepartmentsPage, ModuleResultsPage, ResultsPage, UsersPage
from ispring_async._parse import (
    PageParser,
    ParseLimits,
    _fast,
    departments_parser,
    module_results_parser,
    results_parser,
    users_parser,
)
from ispring_async._parse._envelope import Envelope
from ispring_async._parse._nested import USERS
from ispring_async._parse._shapes import DEPARTMENTS, MODULE_RESULTS, RESULTS, Shape
from ispring_async._parse_worker import BOOTSTRAP, PAGE, READY, read_frame, write_frame

__all__ = [
    "BUFFER_BYTES",
    "MAX_PARSE_WORKERS",
    "MIN_OFFLOAD_BYTES",
    "OffloadedParser",
    "ParsePool",
    "default_parse_workers",
]

logger = logging.getLogger("ispring_async")

T = TypeVar("T")

BUFFER_BYTES: Final = 4 << 20
"""Bytes of one body buffered for a worker; past that the body is parsed here, streaming. A real
page of 1000 results is about 0.5 MB (1000 users about 1 MB), so every real page fits."""
MIN_OFFLOAD_BYTES: Final = 64 << 10
"""Smaller bodies are parsed here: ~2 ms of parsing, no better than the handover and the decode."""
MAX_PARSE_WORKERS: Final = 32
QUEUE_DEPTH: Final = 1
"""Pages one worker holds at once; when every worker holds this many, the page is parsed here rather
than queued. A page waiting behind another adds a parse (~16 ms) to its chain's round trip. Measured
at C=8 (195,867 results, emulator on the same 2 cores, one worker, two runs each): at 0 ms depths 1, 2
and 4 were within the noise of each other; at 50 ms depth 2 and 4 took 1.15-1.4x the in-process time,
depth 1 (the README's benchmark run) 0.91-1.04x."""
SHUTDOWN_TIMEOUT: Final = 5.0
ANSWER_TIMEOUT: Final = 60.0
"""Seconds a worker may take to answer one page (a parse takes milliseconds): past it the worker is
taken as stuck (stopped, looping), the pool as broken, and the page is parsed in this process."""
"""Seconds ``aclose`` waits for the workers to exit before killing them."""

_ENDPOINTS: Final[dict[Callable[..., PageParser[Any]], tuple[str, Shape[Any], msgspec.json.Decoder[Any]]]] = {
    results_parser: ("results", RESULTS, msgspec.json.Decoder(ResultsPage)),
    module_results_parser: ("module_results", MODULE_RESULTS, msgspec.json.Decoder(ModuleResultsPage)),
    users_parser: ("users", USERS, msgspec.json.Decoder(UsersPage)),
    departments_parser: ("departments", DEPARTMENTS, msgspec.json.Decoder(DepartmentsPage)),
}
"""The parser factories a worker runs: the name a request gives it (``_parse_worker.ENDPOINTS``), its
shape (for the envelope's bounds, as the factory derives them) and the decoder of its page type."""

_REQUEST: Final = msgspec.msgpack.Encoder()
_KEPT_ENV: Final = frozenset(
    {
        "PATH", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "PYTHONHOME", "PYTHONUTF8", "SYSTEMROOT",
        "LD_LIBRARY_PATH",  # an interpreter whose libpython is found only through it
    }
)  # fmt: skip
"""The environment a worker inherits: locale and interpreter only. The export command reads its
secret from ``ISPRING_CLIENT_SECRET``, and a worker has no use for it or for anything else there."""
_PACKAGE: Final = str(Path(__file__).resolve().parent)


class _WorkerGoneError(Exception):
    """The worker's pipe ended: it exited, was killed, or could not start."""


def worker_argv() -> list[str]:
    """A worker's command line: this interpreter, the bootstrap, the package's folder and sys.path.

    ``-P``: ``python -c`` would put the current directory first on ``sys.path``, and the bootstrap's
    first imports (``signal``, ``json``, ``types``) would run a ``types.py`` lying in the folder the
    command was started from.
    """
    return [sys.executable, "-P", "-c", BOOTSTRAP, _PACKAGE, json.dumps(sys.path)]


class _Worker:
    """One worker process and the thread that talks to it (blocking pipe I/O, one exchange at a time)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (the argv is ours alone, see worker_argv)
            worker_argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith("LC_")},
            # Its own process group: Ctrl-C and a group's SIGTERM (systemd, timeout) reach the parent,
            # which stops the pool; a worker still starting would die of them with a fatal-error
            # traceback, and the parent would warn of a worker that "stopped unexpectedly". It ends
            # when its input does, however the parent ends.
            process_group=0,
        )
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ispring-parse-worker")

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        if read_frame(self.process.stdout) != READY:
            raise _WorkerGoneError

    def exchange(self, request: bytes) -> bytes:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            write_frame(stdin, request)
            answer = read_frame(stdout)
        except OSError:  # a broken pipe: the worker is gone
            raise _WorkerGoneError from None
        if answer is None:
            raise _WorkerGoneError
        return answer

    def stop(self) -> None:
        """End its input (it exits when it has read it all), wait for it, kill it if it hangs."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class ParsePool:
    """``workers`` processes that parse XML bodies (see the module docstring); ``workers=0``: none.

    ``open()`` starts them (without waiting for them to be up), ``aclose()`` stops them. Pages and
    counts: ``offloaded`` pages were parsed by a worker, ``local`` here, ``declined`` a worker found no
    page in (and this process parsed again to raise its error).
    """

    def __init__(self, workers: int, *, min_offload_bytes: int = MIN_OFFLOAD_BYTES) -> None:
        self.workers = workers
        self.min_offload_bytes = min_offload_bytes
        self.offloaded = 0
        self.local = 0
        self.declined = 0
        self.on_handover: Callable[[], None] | None = None
        """Called when a page has been handed to a worker (tests order themselves with it)."""
        self._up: anyio.Event | None = None
        self._all: list[_Worker] = []
        self._held: dict[_Worker, int] = {}
        """Pages each worker that is up holds (in its pipe or being parsed)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False
        self._broken = False

    def __repr__(self) -> str:
        return f"ParsePool(workers={self.workers})"

    @property
    def running(self) -> bool:
        """Whether workers may take pages (open, and not broken by a worker's death)."""
        return self._open and not self._broken

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes started (for tests and diagnostics)."""
        return [worker.process for worker in self._all]

    def open(self) -> None:
        """Start the workers; each takes pages once it has said it is ready."""
        if self.workers == 0 or self._open:
            return
        self._loop = asyncio.get_running_loop()
        self._up = anyio.Event()
        self._open = True
        for _ in range(self.workers):
            try:
                worker = _Worker()
            except OSError as exc:  # no processes or file descriptors left: parse here instead
                self._mark_broken(f"could not be started ({exc})")
                return
            self._all.append(worker)
            ready = worker.thread.submit(worker.wait_ready)
            ready.add_done_callback(self._from_thread(self._returned, worker))

    def _from_thread(
        self, callback: Callable[[_Worker, concurrent.futures.Future[Any]], None], worker: _Worker
    ) -> Callable[[concurrent.futures.Future[Any]], None]:
        loop = self._loop
        assert loop is not None

        def done(future: concurrent.futures.Future[Any]) -> None:
            # RuntimeError: the loop is closed, and nobody is left to take pages.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, worker, future)

        return done

    def _returned(self, worker: _Worker, done: concurrent.futures.Future[Any]) -> None:
        """A worker's exchange (or its start) ended: it holds one page fewer, or the pool is broken."""
        if not done.cancelled() and done.exception() is not None:
            self._mark_broken("stopped unexpectedly")
        elif self.running:
            self._held[worker] = max(0, self._held.get(worker, 1) - 1)
            if len(self._held) == self.workers and self._up is not None:
                self._up.set()

    async def wait_started(self) -> None:
        """Return once every worker is up (or the pool broke, or has none): for tests and warm-ups."""
        if self._up is not None and self.running:
            await self._up.wait()

    def _mark_broken(self, why: str) -> None:
        if self.running:
            self._broken = True
            self._held.clear()
            if self._up is not None:
                self._up.set()
            logger.warning("a parse worker %s; parsing in this process from now on", why)

    def parser(
        self,
        factory: Callable[..., PageParser[T]],
        fmt: ResponseFormat,
        *,
        page: str,
        page_size: int,
        limits: ParseLimits,
    ) -> PageParser[T] | OffloadedParser[T]:
        """A parser for one body: the in-process one, or one that may hand the body to a worker.

        JSON is always parsed here: its parse costs what decoding a worker's answer would.
        """
        if not self.running or fmt is ResponseFormat.JSON or factory not in _ENDPOINTS:
            return factory(fmt, page=page, page_size=page_size, limits=limits)
        return OffloadedParser(self, factory, fmt, page=page, page_size=page_size, limits=limits)

    async def parse(
        self,
        factory: Callable[..., PageParser[T]],
        fmt: ResponseFormat,
        page: str,
        page_size: int,
        limits: ParseLimits,
        chunks: list[bytes],
    ) -> T | None:
        """The page a worker parsed from ``chunks``, or ``None``: every worker full, or it found no page."""
        if not self.running or not self._held:
            return None
        worker = min(self._held, key=self._held.__getitem__)
        if self._held[worker] >= QUEUE_DEPTH:
            return None
        self._held[worker] += 1
        endpoint, _, decoder = _ENDPOINTS[factory]
        request = _REQUEST.encode((endpoint, fmt, page, page_size, limits, chunks))
        exchange = worker.thread.submit(worker.exchange, request)
        # The worker holds one page fewer when its exchange ends, not when this await does: cancelling the
        # await (the request's scope is cancelled) leaves the exchange to finish one bounded parse
        # in its thread, and its answer is dropped.
        exchange.add_done_callback(self._from_thread(self._returned, worker))
        if self.on_handover is not None:
            self.on_handover()
        try:
            # A running exchange cannot be cancelled: a timeout only stops waiting for it.
            answer = await asyncio.wait_for(asyncio.wrap_future(exchange), ANSWER_TIMEOUT)
        except _WorkerGoneError:
            return None
        except TimeoutError:
            self._mark_broken(f"gave no answer in {ANSWER_TIMEOUT:g}s")
            return None
        if answer[:1] != PAGE:
            self.declined += 1
            return None
        try:
            decoded: T = decoder.decode(memoryview(answer)[1:])
        except (msgspec.DecodeError, msgspec.ValidationError):
            # A worker answering garbage is a broken worker, not the server's fault: parse here.
            self._mark_broken("answered with a frame that is not a page")
            return None
        self.offloaded += 1
        return decoded

    async def aclose(self) -> None:
        """Stop the workers and wait for them (each bounded by ``SHUTDOWN_TIMEOUT``, then killed).

        Shielded: it runs to the end even when the caller is being cancelled, so no worker outlives
        the client. Waiting reaps them, so their CPU counts as this process's children's.
        """
        workers, self._all = self._all, []
        self._open = False
        self._held.clear()
        if not workers:
            return
        with anyio.CancelScope(shield=True):
            # Each worker's stop runs in its own thread after the exchange in progress, if any.
            # asyncio.wait, not wait_for: a timeout must not cancel a stop that has yet to run.
            stops = [asyncio.wrap_future(worker.thread.submit(worker.stop)) for worker in workers]
            _, pending = await asyncio.wait(stops, timeout=SHUTDOWN_TIMEOUT)
            if pending:
                logger.warning("parse workers did not stop within %gs; killing them", SHUTDOWN_TIMEOUT)
                for worker in workers:
                    # Stuck in an exchange (a stopped process): killing it ends the exchange, and the
                    # stop queued behind it then reaps it.
                    worker.process.kill()
                await asyncio.wait(pending)
            for worker in workers:
                worker.thread.shutdown(wait=False)


class OffloadedParser(Generic[T]):
    """One body's parser in front of a ``ParsePool``: counts and buffers in ``feed``, parses in ``result``.

    Not a ``PageParser``: its end is ``await result()``, since the page may come from another
    process. ``failed_in_feed`` tells the transport, after a ``ParseError``, whether the authoritative
    parser raised it while fed (mid-body) or at its close (end of body).
    """

    __slots__ = (
        "_chunks",
        "_envelope",
        "_factory",
        "_fmt",
        "_inner",
        "_limits",
        "_page",
        "_page_size",
        "_pool",
        "_size",
        "failed_in_feed",
    )

    def __init__(
        self,
        pool: ParsePool,
        factory: Callable[..., PageParser[T]],
        fmt: ResponseFormat,
        *,
        page: str,
        page_size: int,
        limits: ParseLimits,
    ) -> None:
        self._pool = pool
        self._factory = factory
        self._fmt = fmt
        self._page = page
        self._page_size = page_size
        self._limits = limits
        # The in-process parser's envelope, the same bounds counted on the same chunks: a body that
        # breaks one fails here, mid-body, as it would without workers, before a worker sees it.
        shape = _ENDPOINTS[factory][1]
        bounds = limits.bounds(page_size=page_size, markup_per_record=shape.markup_per_record)
        self._envelope = Envelope(bounds, page=page)
        self._chunks: list[bytes] = []
        self._size = 0
        self._inner: PageParser[T] | None = None
        self.failed_in_feed = False

    def feed(self, data: bytes) -> None:
        """Count ``data`` against the byte cap and buffer it; past ``BUFFER_BYTES``, parse here."""
        if self._inner is not None:
            self._feed(self._inner, data)
            return
        self._envelope.take(data, markup=True)
        self._chunks.append(data)
        self._size += len(data)
        if self._size > BUFFER_BYTES:
            self._inner = self._new()
            chunks, self._chunks = self._chunks, []
            for chunk in chunks:
                self._feed(self._inner, chunk)

    def _new(self) -> PageParser[T]:
        return self._factory(self._fmt, page=self._page, page_size=self._page_size, limits=self._limits)

    def _feed(self, parser: PageParser[T], data: bytes) -> None:
        try:
            parser.feed(data)
        except ParseError:
            self.failed_in_feed = True
            raise

    async def result(self) -> T:
        """End of body: the page, from a worker if one is idle, else (or on any failure) from here."""
        pool = self._pool
        if self._inner is None and self._size >= pool.min_offload_bytes:
            page = await pool.parse(
                self._factory, self._fmt, self._page, self._page_size, self._limits, self._chunks
            )
            if page is not None:
                self._chunks = []
                return page
        if self._inner is None:
            self._inner = self._new()
            chunks, self._chunks = self._chunks, []
            for chunk in chunks:
                self._feed(self._inner, chunk)
        pool.local += 1
        return self._inner.close()


def default_parse_workers(fmt: ResponseFormat) -> int:
    """What ``--parse-workers auto`` means: none where the fast route's C pass is built (the usual
    install), else one worker per core beyond the first, at most two; none on one core, and none
    for JSON, which is never offloaded.

    Measured on the 2-core VM with the emulator on the same two cores (README, Performance). With the
    C pass a page costs the parent about as much to hand over and take back as JSON (copy, pipe,
    decode) as to parse in place: the command's complete export took 1.16x / 1.10x longer with one
    worker at 0 / 50 ms (2 rounds, 2026-12-04), the library's 0.96x / 1.13x. With the Python passes
    alone, once responses took turns to be parsed (``_parse_turn``), one worker made the export
    faster in 18 of 19 rounds (median 1.13x, 0.92-1.35x; 2026-12-03). Beyond two cores that rule
    is a reasoned guess: the event loop keeps one core, and two workers outpace what one loop
    receives and decodes.
    """
    if fmt is ResponseFormat.JSON or _fast.speedups is not None:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, 2))

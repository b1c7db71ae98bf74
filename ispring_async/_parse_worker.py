"""The parse worker process: request frames on stdin, answers on stdout (see ``ispring_async._parse_pool``).

Started by ``ParsePool`` as ``python -c BOOTSTRAP`` (never with ``multiprocessing``: ``spawn`` re-runs
the parent's ``__main__``, which breaks every user script without an ``if __name__ == "__main__":``
guard, and imports whatever it imports). The bootstrap registers the package without running its
``__init__`` (which imports the client and aiohttp), so a worker imports the parsers and msgspec only:
about 60 ms and 20 MiB, and no module that could hold a token.

A frame is a 4-byte big-endian length and that many bytes. A request is msgpack
``[endpoint, format, page label, page size, ParseLimits, [chunk, ...]]`` (decoded with a typed decoder:
nothing is unpickled); an answer is ``b"P"`` and the page as JSON, or ``b"E"`` when the parser found
no page (the parent parses the body again to raise its own, authoritative error). The worker answers
``b"R"`` once it is ready, and exits at end of input.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import IO, Any, Final

import msgspec

from ispring_async._config import ResponseFormat
from ispring_async._parse import (
    PageParser,
    ParseLimits,
    departments_parser,
    module_results_parser,
    results_parser,
    users_parser,
)

__all__ = ["BOOTSTRAP", "ENDPOINTS", "Request", "main", "read_frame", "write_frame"]

ENDPOINTS: Final[dict[str, Callable[..., PageParser[Any]]]] = {
    "results": results_parser,
    "module_results": module_results_parser,
    "users": users_parser,
    "departments": departments_parser,
}
"""The parser factories a worker runs, by the name a request gives."""

Request = tuple[str, ResponseFormat, str, int, ParseLimits, list[bytes]]

READY: Final = b"R"
PAGE: Final = b"P"
NO_PAGE: Final = b"E"

# argv[1] is the package's folder, argv[2] the parent's sys.path as JSON: no secret is in either.
# SIGINT is ignored before anything else: Ctrl-C reaches every process of the terminal's foreground
# group, the parent then cancels and closes the pool, and a worker still importing must not print a
# KeyboardInterrupt traceback.
BOOTSTRAP: Final = """\
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
import json, sys, types
sys.path[:] = json.loads(sys.argv[2])
package = types.ModuleType("ispring_async")
package.__path__ = [sys.argv[1]]
sys.modules["ispring_async"] = package
from ispring_async._parse_worker import main
main()
"""


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's bytes, or ``None`` at end of input (also in the middle of a frame)."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: IO[bytes], *parts: bytes) -> None:
    stream.write(sum(map(len, parts)).to_bytes(4, "big"))
    for part in parts:
        stream.write(part)
    stream.flush()


def parse(request: Request) -> bytes | None:
    """Run the request's parser over its chunks: the page as JSON, or ``None`` if it found no page."""
    endpoint, fmt, page, page_size, limits, chunks = request
    try:
        parser = ENDPOINTS[endpoint](fmt, page=page, page_size=page_size, limits=limits)
        for chunk in chunks:
            parser.feed(chunk)
        return msgspec.json.encode(parser.close())
    except Exception:  # any failure: the parent parses the body again and raises its own error
        return None


def main() -> None:
    """Answer request frames from stdin until it ends."""
    # Also here for a worker started otherwise than by BOOTSTRAP (see it for why).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the answers' pipe.
    sys.stdout = sys.stderr
    decoder = msgspec.msgpack.Decoder(Request)
    try:
        write_frame(sink, READY)
        while (frame := read_frame(source)) is not None:
            try:
                answer = parse(decoder.decode(frame))
            except msgspec.DecodeError:
                answer = None
            write_frame(sink, NO_PAGE) if answer is None else write_frame(sink, PAGE, answer)
    except BrokenPipeError:
        # The parent is gone (killed mid-page): end quietly, not with a traceback in its log. The
        # answers' pipe is pointed at /dev/null so the exit's flush of the unsent answer cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sink.fileno())
        os.close(devnull)

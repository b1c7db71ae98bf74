"""Time and peak traced memory of each hostile case of tests/test_parse_hostile.py, as a table.

``python -m tests.hostile_figures``. Seconds are measured without tracemalloc (which slows every
allocation several-fold); the peak with it. The tests assert generous bounds on both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from ispring_async import ResponseFormat
from tests.test_parse_hostile import HEAD, MIB, RECORD, TAIL, _records, _unknown_text_bomb, feed, measure


def _names() -> Iterator[bytes]:
    yield HEAD + b"<result>"
    for start in range(0, 3_000_000, 10_000):
        yield b"".join(b"<n%07d/>" % i for i in range(start, start + 10_000))
    yield b"</result>" + TAIL


def _whitespace() -> Iterator[bytes]:
    yield b'{"results": ['
    for _ in range(250):
        yield b" " * MIB
    yield b"]}"


def _chunked(body: bytes, size: int = 1 << 16) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def cases() -> dict[str, Callable[[], object]]:
    """Each hostile input, as a call that parses it."""
    comment = _chunked(HEAD + b"<result><!--" + b"x" * (40 * MIB) + b"--></result>" + TAIL)
    slashes = (RECORD % 1).replace(b">T<", b">" + b"/" * 400_000 + b"<")
    deep = b'{"other": ' + b"[" * 200_000 + b"]" * 200_000 + b', "results": []}'
    return {
        "24 comments before <response> (280 B)": lambda: feed(
            [b"<!-- c -->" * 24 + b"<response><results>" + TAIL]
        ),
        "20,000 comments before <response>": lambda: feed(
            [b"<!-- c -->" * 20_000 + b"<response><results>" + TAIL]
        ),
        "400,000 '/' in a title": lambda: feed([HEAD + slashes + TAIL]),
        "1,500 unknown elements x 1 MiB text": lambda: feed(_unknown_text_bomb(1500, MIB)),
        "3M distinct element names": lambda: feed(_names()),
        "40 MiB comment in 64 KiB chunks": lambda: feed(comment),
        "1,200 records for pageSize 1000": lambda: feed([HEAD + _records(1200) + TAIL], page_size=1000),
        "250 MB of JSON whitespace": lambda: feed(_whitespace(), fmt=ResponseFormat.JSON),
        "JSON nested 200,000 deep": lambda: feed([deep], fmt=ResponseFormat.JSON),
    }


def main() -> None:
    """Print one Markdown row per case: seconds, peak traced MiB, outcome."""
    print("| case | seconds | peak MiB | outcome |\n|---|---:|---:|---|")
    for name, run in cases().items():
        result, _, peak = measure(run)
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # the outcome is known from the traced run
            run()
        seconds = time.perf_counter() - start
        outcome = type(result).__name__ + (f": {result}" if isinstance(result, Exception) else "")
        print(f"| {name} | {seconds:.2f} | {peak:.1f} | {outcome[:80]} |")


if __name__ == "__main__":
    main()

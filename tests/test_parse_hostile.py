"""Hostile bodies end — parsed or with a typed error — in time linear in their size and bounded memory.

Each case is one the issue measured getting through (a frozen event loop, gigabytes of memory, a silently
wrong value). Memory is measured in-test with tracemalloc (libexpat allocates through Python's allocator,
so its buffers and name tables are counted too); time is bounded by a per-test timeout generous enough
for a loaded machine and far below what super-linear behaviour would take.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator

import anyio
import msgspec
import pytest
from aiohttp import web

from ispring_async import (
    Client,
    ConfigurationError,
    ParseError,
    ParseLimits,
    ResponseFormat,
    ResultsQuery,
    UnexpectedContentError,
)
from ispring_async._parse import results_parser
from tests._helpers import both_routes
from tests._servers import results_body, serve

MIB = 1 << 20
HEAD = b'<?xml version="1.0" encoding="UTF-8"?><response><results>'
TAIL = b"</results></response>"
RECORD = (
    b"<result><userId>u%d</userId><courseId>c</courseId><courseTitle>T</courseTitle>"
    b"<accessDate>2021-07-28T21:00:00+00:00</accessDate><completionStatus>passed</completionStatus>"
    b"<isOverdue>0</isOverdue></result>"
)


def measure(run: Callable[[], object]) -> tuple[object, float, float]:
    """``run()``'s result (or the exception it raised), its seconds, and its peak traced MiB."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result: object = run()
    except Exception as exc:
        result = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    return result, seconds, peak


def feed(chunks: Iterable[bytes], *, fmt: ResponseFormat = ResponseFormat.XML, **kwargs: object) -> object:
    parser = results_parser(fmt, page="hostile", **kwargs)  # type: ignore[arg-type]
    for chunk in chunks:
        parser.feed(chunk)
    return parser.close()


def _records(n: int) -> bytes:
    return b"".join(RECORD % i for i in range(n))


# --- super-linear constructs on the hot path ---------------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize("comments", [pytest.param(24, id="24"), pytest.param(20_000, id="20000")])
@pytest.mark.parametrize(
    "fmt", [pytest.param(ResponseFormat.XML, id="xml"), pytest.param(ResponseFormat.JSON, id="json")]
)
def test_comments_before_the_root_do_not_freeze_the_html_sniff(comments: int, fmt: ResponseFormat) -> None:
    """A run of comments before the root (9 s for 24 on the old sniff pattern) is passed in linear time."""
    body = b"<!-- c -->" * comments + b"<response><results>" + _records(2) + TAIL
    result, seconds, _ = measure(lambda: feed([body], fmt=fmt))
    assert seconds < 3.0  # generous for a loaded machine: the old pattern took 9 s for 24
    if fmt is ResponseFormat.XML:
        assert not isinstance(result, Exception) and len(result.records) == 2  # type: ignore[attr-defined]
    else:
        assert isinstance(result, ParseError)  # XML is not JSON: typed, not a hang


@pytest.mark.timeout(5)
def test_comments_before_an_html_page_are_still_recognised() -> None:
    """The linear sniff still sees an HTML page behind a few comments."""
    with pytest.raises(UnexpectedContentError):
        feed([b"<!-- a -->\n<!-- b --><html><body>502</body></html>"])


@pytest.mark.timeout(5)
@pytest.mark.parametrize("slashes", [pytest.param(40_000, id="40k"), pytest.param(400_000, id="400k")])
def test_slashes_in_a_title_cost_linear_time(slashes: int) -> None:
    """A title of 400,000 "/" (1.3 s for 40,000 on the old replace loop, 4x per doubling) parses fast."""
    body = HEAD + (RECORD % 1).replace(b">T<", b">" + b"/" * slashes + b"<") + TAIL
    result, seconds, _ = measure(lambda: feed([body]))
    assert seconds < 3.0  # the old loop: 1.3 s for 40k, 4x per doubling (minutes for 400k)
    assert result.records[0].course_title == "/" * slashes  # type: ignore[attr-defined]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "construct",
    [
        pytest.param(b"<!--" + b"x" * (40 * MIB) + b"-->", id="comment"),
        pytest.param(b'<a b="' + b"x" * (40 * MIB) + b'"/>', id="attribute"),
        pytest.param(b"<" + b"n" * (40 * MIB) + b"/>", id="name"),
        pytest.param(b"<?pi " + b"> " * (20 * MIB) + b"?>", id="pi-full-of-gt"),
    ],
)
def test_one_huge_token_is_refused_in_linear_time(construct: bytes) -> None:
    """A 40 MiB comment, attribute, name or PI (libexpat 2.5 rescans an unfinished token per chunk:
    minutes when fed in 32 KiB slices) is refused after a fraction of a MiB."""
    body = HEAD + b"<result>" + construct + b"</result>" + TAIL
    chunks = [body[i : i + (1 << 16)] for i in range(0, len(body), 1 << 16)]
    result, seconds, peak = measure(lambda: feed(chunks))
    assert isinstance(result, ParseError) and "longer than" in str(result)
    assert seconds < 2.0 and peak < 16


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("opening", "closing"),
    [
        pytest.param(b"<![CDATA[", b"]]>", id="cdata"),
        pytest.param(b"<!--", b"-->", id="comment"),
    ],
)
def test_construct_look_alikes_in_a_cut_run_cost_linear_time(opening: bytes, closing: bytes) -> None:
    """A run cut inside a CDATA section or comment that holds 20,000 "<?" and "<![CDATA[" look-alikes
    (each would scan to the run's end if tried as a construct of its own) is read in linear time."""
    inside = b"</result>" + b"<?<![CDATA[" * 20_000
    title = opening + inside + closing
    body = HEAD + (RECORD % 1).replace(b">T<", b">" + title + b"<") + _records(3) + TAIL
    chunks = [body[i : i + (1 << 14)] for i in range(0, len(body), 1 << 14)]
    result, seconds, _ = measure(lambda: feed(chunks, limits=ParseLimits(max_markup=1 << 22)))
    assert seconds < 3.0
    assert not isinstance(result, Exception), result
    records = result.records  # type: ignore[attr-defined]
    assert len(records) == 4
    assert records[0].course_title == (inside.decode() if opening == b"<![CDATA[" else "")


# --- exactness ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        pytest.param(b"&#x0000000041;", "A", id="hex-leading-zeros"),
        pytest.param(b"&#00000000065;", "A", id="decimal-leading-zeros"),
        pytest.param(b"&#" + b"0" * 5000 + b"65;", "A", id="decimal-5000-zeros"),
        pytest.param(b"&#x" + b"0" * 5000 + b"1F600;", "\U0001f600", id="hex-5000-zeros"),
    ],
)
@pytest.mark.parametrize("chunk", [pytest.param(13, id="small-chunks"), pytest.param(MIB, id="whole")])
def test_padded_character_references_decode_as_expat_does(spelling: bytes, value: str, chunk: int) -> None:
    """A padded character reference in a userId is the character expat says on both routes (it was
    ``A#x0000000041;`` on the fast route: a record's identity silently changed)."""
    body = HEAD + (RECORD % 7).replace(b"u7", b"u" + spelling) + _records(3) + TAIL
    hybrid, reference, fast = both_routes(body, chunk)
    assert hybrid == reference
    assert fast
    assert hybrid[0][0].user_id == "u" + value  # type: ignore[index]


@pytest.mark.parametrize(
    "token",
    [pytest.param(b"a\rb", id="cr"), pytest.param(b"a\r\nb", id="crlf"), pytest.param(b"a\r", id="cr-end")],
)
def test_raw_cr_in_the_token_is_normalised_on_both_routes(token: bytes) -> None:
    """A raw CR in nextPageToken reads as LF, as XML requires, whichever route reads it."""
    body = HEAD + _records(3) + b"</results><nextPageToken>" + token + b"</nextPageToken></response>"
    hybrid, reference, fast = both_routes(body, 1 << 20)
    assert fast and hybrid == reference
    assert hybrid[1] == token.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode()  # type: ignore[index]


# --- the envelope: decompressed bytes, markup, records -------------------------------------------------


def _unknown_text_bomb(elements: int, size: int) -> Iterator[bytes]:
    yield HEAD + b"<result><userId>u</userId>"
    block = b"y" * size
    for i in range(elements):
        yield b"<x%d>" % i
        yield block
        yield b"</x%d>" % i
    yield b"</result>" + TAIL


@pytest.mark.timeout(10)
def test_unknown_elements_text_is_skipped_not_buffered() -> None:
    """1,500 unknown elements of 1 MiB text in one record (1.5 GB of client memory before) end at the
    decompressed-bytes cap, with a few MiB traced."""
    result, seconds, peak = measure(lambda: feed(_unknown_text_bomb(1500, MIB)))
    assert isinstance(result, ParseError) and "decompressed" in str(result)
    assert seconds < 5.0 and peak < 64


@pytest.mark.timeout(20)
def test_unknown_text_under_a_raised_cap_is_still_not_buffered() -> None:
    """With the byte cap raised, 100 MiB of unknown elements' text is read past in bounded memory."""
    limits = ParseLimits(max_body_bytes=200 * MIB)
    result, _seconds, peak = measure(lambda: feed(_unknown_text_bomb(100, MIB), limits=limits))
    assert isinstance(result, ParseError)  # the record lacks required fields: typed, after the skip
    assert "required" in str(result) or "invalid" in str(result)
    assert peak < 16


@pytest.mark.timeout(20)
def test_distinct_element_names_are_bounded_by_the_markup_cap() -> None:
    """3M distinct element names (900 MiB before) end at the markup cap with bounded memory."""

    def names() -> Iterator[bytes]:
        yield HEAD + b"<result>"
        for start in range(0, 3_000_000, 10_000):
            yield b"".join(b"<n%07d/>" % i for i in range(start, start + 10_000))
        yield b"</result>" + TAIL

    result, _seconds, peak = measure(lambda: feed(names()))
    assert isinstance(result, ParseError) and "markup" in str(result)
    assert peak < 64


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "layout",
    [
        pytest.param("flat", id="fast-route-only"),
        pytest.param("switch", id="fast-then-reference"),
        pytest.param("reference", id="reference-only"),
    ],
)
def test_more_records_than_the_page_size_is_refused_across_routes(layout: str) -> None:
    """A page of 1,200 records for a pageSize of 1000 is refused, whichever routes hold its records
    (each route counted alone before: 390,000 passed a 200,000 limit)."""
    records = [RECORD % i for i in range(1200)]
    if layout == "switch":
        records[600] = records[600].replace(b"<result>", b"<result><result></result>")  # declines the page
    elif layout == "reference":
        records[0] = b"<nextPageToken>t</nextPageToken>" + records[0]
    body = HEAD + b"".join(records) + TAIL
    if layout == "reference":
        body = body.replace(
            b"<results><nextPageToken>t</nextPageToken>", b"<nextPageToken>t</nextPageToken><results>"
        )
    with pytest.raises(ParseError, match="more than 1000 records"):
        feed([body[i : i + 16384] for i in range(0, len(body), 16384)], page_size=1000)
    # The same page asked for with pageSize 1200 is fine: the bound is the page size asked for.
    if layout != "switch":
        assert len(feed([body], page_size=1200).records) == 1200  # type: ignore[attr-defined]


def test_the_record_bound_follows_the_page_size_asked_for() -> None:
    """pageSize 10 allows 10 records and refuses 11, on both formats."""
    assert len(feed([HEAD + _records(10) + TAIL], page_size=10).records) == 10  # type: ignore[attr-defined]
    with pytest.raises(ParseError, match="more than 10 records"):
        feed([HEAD + _records(11) + TAIL], page_size=10)
    page = {
        "results": [
            {
                "userId": f"u{i}",
                "courseId": "c",
                "courseTitle": "t",
                "accessDate": "2021-07-28T21:00:00Z",
                "completionStatus": "passed",
                "isOverdue": False,
            }
            for i in range(11)
        ]
    }
    with pytest.raises(ParseError, match="more than 10 records"):
        feed([msgspec.json.encode(page)], fmt=ResponseFormat.JSON, page_size=10)


@pytest.mark.timeout(15)
def test_json_whitespace_bomb_stops_at_the_cap() -> None:
    """250 MB of JSON whitespace (540 MiB peak per request before) stops at the decompressed cap."""

    def whitespace() -> Iterator[bytes]:
        yield b'{"results": ['
        block = b" " * MIB
        for _ in range(250):
            yield block
        yield b"]}"

    result, _seconds, peak = measure(lambda: feed(whitespace(), fmt=ResponseFormat.JSON))
    assert isinstance(result, ParseError) and "decompressed" in str(result)
    assert peak < 64


@pytest.mark.timeout(10)
@pytest.mark.parametrize("depth", [pytest.param(1_000, id="1k"), pytest.param(200_000, id="200k")])
def test_deep_json_is_a_parse_error_not_a_recursion_error(depth: int) -> None:
    """JSON nested 1,000 to 200,000 deep in an unknown member ends in a ParseError."""
    body = b'{"other": ' + b"[" * depth + b"]" * depth + b', "results": []}'
    result, _, _ = measure(lambda: feed([body], fmt=ResponseFormat.JSON))
    assert isinstance(result, ParseError) or (not isinstance(result, Exception))
    assert not isinstance(result, RecursionError)


def test_parse_limits_are_validated() -> None:
    """A nonsensical bound is refused when the limits are made, not at the first page."""
    with pytest.raises(ValueError, match="max_body_bytes"):
        ParseLimits(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_records"):
        ParseLimits(max_records=True)


# --- through real HTTP: a gzip bomb is counted decompressed --------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("fmt", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
async def test_gzip_bomb_over_http_ends_at_the_decompressed_cap(fmt: str) -> None:
    """A 200 MiB body sent as ~200 KiB of gzip is refused by the client at the decompressed cap, with
    bounded memory (aiohttp decompresses; the parser counts what it is fed)."""
    raw = (HEAD + b"<result>" if fmt == "xml" else b'{"results": [') + b" " * (200 * MIB)
    compressed = gzip.compress(raw, compresslevel=9)

    async def bomb(request: web.Request) -> web.StreamResponse:
        content = "application/xml" if fmt == "xml" else "application/json"
        return web.Response(body=compressed, headers={"Content-Encoding": "gzip", "Content-Type": content})

    async with serve({"/learners/results": bomb}) as server:
        limits = ParseLimits(max_body_bytes=8 * MIB)
        async with Client(server.base_url, token="t", response_format=fmt, parse_limits=limits) as client:
            tracemalloc.start()
            with pytest.raises(ParseError, match="decompressed"):
                async for _page in client.result_pages(ResultsQuery()):
                    pass
            peak = tracemalloc.get_traced_memory()[1] / MIB
            tracemalloc.stop()
    assert len(compressed) < MIB
    assert peak < 64
    await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("fmt", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
async def test_a_server_sending_more_records_than_the_page_size_is_refused_over_http(fmt: str) -> None:
    """The client tells the parser the pageSize it asked for: 11 records for pageSize 10 is a ParseError."""

    async def oversized(request: web.Request) -> web.StreamResponse:
        assert request.query["pageSize"] == "10"
        content = "application/xml" if fmt == "xml" else "application/json"
        return web.Response(body=results_body(range(11), None, fmt=fmt), headers={"Content-Type": content})

    async with serve({"/learners/results": oversized}) as server:
        client = Client(server.base_url, token="t", response_format=fmt, page_size=10)
        async with client:
            with pytest.raises(ParseError, match="more than 10 records"):
                async for _page in client.result_pages(ResultsQuery()):
                    pass


def test_client_refuses_parse_limits_of_another_type() -> None:
    """``Client(parse_limits=...)`` takes a ParseLimits, and says so otherwise."""
    with pytest.raises(ConfigurationError, match="parse_limits"):
        Client("http://127.0.0.1:1", token="t", parse_limits={"max_body_bytes": 1})  # type: ignore[arg-type]

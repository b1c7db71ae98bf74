"""The fast route's C pass (``_speedups.c``): built, exact where it answers, safe on any bytes.

Exactness over the grammar is in test_parse_differential.py (every generated page read with the C pass
and with the Python passes alone); here: that the pass really carries the emulator's layouts, that it
declines what needs the reference route's errors, and that bytes nobody wrote — random, or a valid
page with bytes flipped — never crash it or get a value expat and the reference route would not give.
"""

from __future__ import annotations

import os
import random
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ispring_async._config import ResponseFormat
from ispring_async._exceptions import ParseError
from ispring_async._models import LearnerResult
from ispring_async._parse import ParseLimits, _fast, results_parser
from ispring_async._parse._hardening import hardened_expat
from ispring_async._parse._shapes import RESULTS
from ispring_async.emulator import Dataset, EmulatorConfig
from ispring_async.emulator._config import XML_LAYOUTS
from ispring_async.emulator._render import Renderer
from tests._helpers import BOTH_PASSES, both_routes, fast_passes

DECODE = msgspec.json.Decoder(list[LearnerResult], strict=False)
EXAMPLES = int(os.environ.get("ISPRING_FUZZ_EXAMPLES", "100"))
speedups = _fast.speedups
# Without the module only the test that it is built says so (the others would fail on None).
needs_c = pytest.mark.skipif(speedups is None, reason="the C pass was not built")

RECORD = (
    "<result><userId>{user}</userId><courseId>c</courseId><courseTitle>{title}</courseTitle>"
    "<accessDate>2021-07-28T21:00:00+00:00</accessDate><completionStatus>passed</completionStatus>"
    "<isOverdue>0</isOverdue>{extra}</result>"
)


def record(*, user: str = "u", title: str = "T", extra: str = "") -> str:
    return RECORD.format(user=user, title=title, extra=extra)


def rewrite(run: str | bytes, *, max_depth: int = 64, max_text: int = 1 << 20) -> bytes | None:
    data = run.encode() if isinstance(run, str) else run
    json: bytes | None = speedups.records_json(
        data, b"result", RESULTS.field_names, RESULTS.absent_names, max_depth, max_text
    )
    return json


def page(records: str) -> bytes:
    return f"<response><results>{records}</results></response>".encode()


def test_the_c_pass_is_built() -> None:
    """make install compiles the C pass (a machine without a compiler would fall back, silently slower)."""
    assert speedups is not None


@needs_c
@pytest.mark.parametrize("layout", list(XML_LAYOUTS))
def test_the_c_pass_alone_reads_every_emulator_layout(layout: str) -> None:
    """Each layout the emulator renders is read by the C pass, without declining, exactly as the
    reference route reads it: the speed the parse benchmark measures is this pass's."""
    ds = Dataset(EmulatorConfig(results=200, seed=5))
    body = b"".join(
        Renderer(ds, overdue_words=False, layout=XML_LAYOUTS[layout]).results("xml", range(60), "t")
    )
    start = min(i for i in (body.find(b"<result>"), body.find(b"<result ")) if i >= 0)
    run = body[start : body.rfind(b"</result>") + len(b"</result>")]
    json = rewrite(run)
    assert json is not None
    hybrid, reference, fast = both_routes(body, 1 << 20)
    assert fast and isinstance(reference, tuple)
    assert DECODE.decode(json) == reference[0] == hybrid[0]  # type: ignore[index]


@needs_c
@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("&#x0000000041;&#00000000065;", "AA", id="padded-references"),
        pytest.param("&#13;&#xD;&#9;&#10;", "\r\r\t\n", id="control-references-kept"),
        pytest.param("a\r\nb\rc", "a\nb\nc", id="crlf-and-cr"),
        pytest.param("a\r<!--x-->\nb", "a\n\nb", id="cr-then-comment-then-lf"),
        pytest.param("<![CDATA[x\r\ny <&> ]]>&amp;", "x\ny <&> &", id="cdata"),
        pytest.param('\\ " &quot; &apos;', '\\ " " \'', id="json-escapes"),
        pytest.param("é中😀&#x1F600;\u2028", "é中😀😀\u2028", id="non-ascii"),
        pytest.param("a<?pi x?>b<!-- c -->d", "abd", id="pi-and-comment"),
    ],
)
def test_the_c_pass_spells_text_as_xml_reads_it(text: str, value: str) -> None:
    """References (padded, control), CR/CRLF, CDATA, JSON's escapes and non-ASCII: the value expat gives."""
    json = rewrite(record(title=text) * 2)
    assert json is not None
    records = DECODE.decode(json)
    assert [r.course_title for r in records] == [value, value]
    hybrid, reference, _ = both_routes(page(record(title=text) * 2), 1 << 20)
    assert hybrid == reference and reference[0][0].course_title == value  # type: ignore[index]


@needs_c
@pytest.mark.parametrize(
    ("run", "why"),
    [
        pytest.param(record(title="a<b>x</b>"), "an element inside a field", id="element-in-field"),
        pytest.param(record(extra="<x>" * 70 + "</x>" * 70), "deeper than max_depth", id="too-deep"),
        pytest.param(record(title="x" * 300), "text over max_text", id="text-too-long"),
        pytest.param(record() + "<result><userId>u", "cut inside a record", id="cut"),
        pytest.param(record(title="<!-- never ends"), "a comment without its end", id="open-comment"),
        pytest.param(record(title="<![CDATA[ never ends"), "a CDATA without its end", id="open-cdata"),
        pytest.param(record(title="&bogus;"), "an entity XML does not predefine", id="entity"),
        pytest.param(record(title="&#0;"), "a reference to no character", id="nul-reference"),
        pytest.param(record(title="&#xD800;"), "a surrogate", id="surrogate"),
        pytest.param(record(title="&#x110000;"), "past Unicode", id="past-unicode"),
        pytest.param(record(title="&lt"), "a reference without ;", id="no-semicolon"),
        pytest.param(record() + "</results>" + record(), "the container's end", id="container-end"),
        pytest.param(record(title="<!DOCTYPE x>"), "a declaration", id="declaration"),
        pytest.param('<result a="never closed></result>', "an unterminated attribute", id="open-quote"),
        pytest.param("", "no record at all", id="empty"),
    ],
)
def test_the_c_pass_declines_what_needs_a_closer_look(run: str, why: str) -> None:
    """Errors and bounds are the reference route's to raise: the C pass answers None for them."""
    assert rewrite(run, max_depth=64, max_text=200) is None, why


@needs_c
def test_an_element_inside_a_field_is_still_an_error() -> None:
    """Where the C pass declines, the page still fails as the reference route fails it."""
    hybrid, reference, _ = both_routes(page(record() * 40 + record(title="a<b>x</b>")), 1 << 20)
    assert reference is ParseError
    assert hybrid == reference


@needs_c
@pytest.mark.parametrize(
    ("extra", "user"),
    [
        pytest.param("<userId>second</userId>", "second", id="duplicate-field-last-wins"),
        pytest.param("<meta><userId>hidden</userId></meta>", "u", id="known-name-inside-unknown"),
        pytest.param("<customFields><field><name>a</name></field><field/></customFields>", "u", id="nested"),
        pytest.param("<extra/><extra>x</extra>text<!--c-->", "u", id="unknown-leaves-and-text"),
    ],
)
def test_the_c_pass_skips_and_overrides_as_the_reference_route(extra: str, user: str) -> None:
    """Unknown elements with children skipped whole, text outside fields ignored, a repeated field's
    last value kept: what the reference route does."""
    body = page("<between><x/></between>".join([record(extra=extra)] * 3))
    run = body[body.find(b"<result>") : body.rfind(b"</result>") + 9]
    json = rewrite(run)
    assert json is not None
    hybrid, reference, fast = both_routes(body, 1 << 20)
    assert fast and hybrid == reference
    assert [r.user_id for r in DECODE.decode(json)] == [user] * 3
    assert [r.user_id for r in reference[0]] == [user] * 3  # type: ignore[index]


@needs_c
def test_empty_dates_and_numbers_are_absent_and_empty_texts_kept() -> None:
    """``<dueDate/>`` and ``<timeSpent></timeSpent>`` are absent, ``<courseTitle/>`` is ""."""
    run = (
        "<result><userId>u</userId><courseId>c</courseId><courseTitle/><accessDate>2021-07-28T21:00:00Z"
        "</accessDate><completionStatus>passed</completionStatus><isOverdue>0</isOverdue><dueDate/>"
        "<timeSpent><!--none--></timeSpent></result>"
    )
    json = rewrite(run)
    assert json is not None
    (result,) = DECODE.decode(json)
    assert (result.course_title, result.due_date, result.time_spent) == ("", None, None)


@needs_c
@pytest.mark.timeout(60 + EXAMPLES // 20)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_c_pass(data: bytes) -> None:
    """Any bytes at all (no validator before them): None or bytes, never a crash or another type."""
    out = rewrite(b"<result>" + data)
    assert out is None or isinstance(out, bytes)
    out = rewrite(data)
    assert out is None or isinstance(out, bytes)


_SEED_PAGE = page(
    "".join(
        record(user=f"u{i}&amp;&#x41;", title=f'<![CDATA[t{i}]]> "q"', extra='<x a="1"><y/></x><!--c-->')
        for i in range(20)
    )
)


def _failure(result: object) -> object:
    return ParseError if isinstance(result, type) and issubclass(result, ParseError) else result


def _well_formed(body: bytes) -> bool:
    try:
        hardened_expat().Parse(body, True)
    except Exception:
        return False
    return True


@needs_c
@pytest.mark.timeout(60 + EXAMPLES // 5)
@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 6))
def test_pages_with_bytes_flipped_read_alike_on_both_routes(seed: int, flips: int) -> None:
    """A valid page with a few bytes changed to markup-ish ones: if expat still accepts it, the hybrid
    parser (C pass first) gives what the reference route gives; if not, both fail alike."""
    rnd = random.Random(seed)
    body = bytearray(_SEED_PAGE)
    for _ in range(flips):
        body[rnd.randrange(len(body))] = rnd.choice(b"<>/&;#\"'=!?[]-x0\r\n \t")
    hybrid, reference, _ = both_routes(bytes(body), rnd.choice([61, 4096, 1 << 20]))
    # Which ParseError a malformed page raises depends on which check meets it first (the validator
    # before the header's, or after): the same class of failure.
    assert _failure(hybrid) == _failure(reference)
    if not _well_formed(bytes(body)):
        assert not isinstance(hybrid, tuple)


@needs_c
@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "run",
    [
        pytest.param(record(title="<!---->" * 100_000), id="comments"),
        pytest.param(record(title="&#x0041;" * 100_000), id="references"),
        pytest.param(record(extra="<a " + 'b="1" ' * 100_000 + "/>"), id="attributes"),
        pytest.param(record(title="<![CDATA[x]]>" * 100_000), id="cdata"),
        pytest.param(record(extra="<x>" * 60 + "</x>" * 60) * 2_000, id="deep-unknowns"),
        pytest.param(record(title="x" * 500_000), id="one-long-text"),
    ],
)
def test_the_c_pass_is_linear(run: str) -> None:
    """Each construct a megabyte deep: well under a second (a quadratic scan would take minutes)."""
    started = time.perf_counter()
    json = rewrite(run)
    assert time.perf_counter() - started < 1.0
    assert json is not None
    msgspec.json.decode(json)


@needs_c
@pytest.mark.parametrize(
    ("limits", "title"),
    [
        pytest.param(ParseLimits(max_text_bytes=100), "x" * 101, id="max-text"),
        pytest.param(ParseLimits(max_depth=8), "<![CDATA[x]]>", id="max-depth"),
    ],
)
def test_the_parser_hands_its_own_bounds_to_the_c_pass(limits: ParseLimits, title: str) -> None:
    """A custom ParseLimits holds on the C pass too: a text or a depth over it fails the page."""
    extra = "<a><b><c><d><e><f>x</f></e></d></c></b></a>" if limits.max_depth == 8 else ""
    parser = results_parser(ResponseFormat.XML, page="p", limits=limits)
    parser.feed(page(record() * 30 + record(title=title, extra=extra) + record() * 30))
    with pytest.raises(ParseError):
        parser.close()


@BOTH_PASSES
def test_a_token_over_the_text_bound_fails_the_page(c_pass: bool) -> None:
    """The token read from the page's tail is held to ``max_text_bytes`` as the reference route holds it
    (with a small bound only the C pass keeps the page on the fast route, which read it unchecked)."""
    body = page(record()).replace(
        b"</results>", b"</results><nextPageToken>" + b"t" * 200 + b"</nextPageToken>"
    )
    parser = results_parser(ResponseFormat.XML, page="p", limits=ParseLimits(max_text_bytes=100))
    with fast_passes(c_pass):
        parser.feed(body)
        with pytest.raises(ParseError, match="nextPageToken"):
            parser.close()


@BOTH_PASSES
def test_a_text_over_the_bound_in_the_longest_run_fails_the_page(c_pass: bool) -> None:
    """256 KiB pending without a record's end, then a 60 KiB chunk: one run of ~316 KiB, beyond what
    the Python passes were trusted with (their run bound counted one chunk of 32 KiB, not 64)."""
    head = record(title="@").split("@")[0].encode()
    tail = record(title="@").split("@")[1].encode()
    chunks = [b"<response><results>" + head + b"x" * (250 << 10), b"x" * (60 << 10) + tail]
    chunks.append(b"</results></response>")
    parser = results_parser(ResponseFormat.XML, page="p", limits=ParseLimits(max_text_bytes=300 << 10))

    def parse() -> None:
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()

    with fast_passes(c_pass), pytest.raises(ParseError, match="courseTitle"):
        parse()

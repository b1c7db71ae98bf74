"""The fast route: a run of complete records rewritten as JSON, then one ``msgspec`` decode.

Python does a fixed amount of work per *run* of records (at least a 32 KiB slice of the body), not per
element. The rewrite is done by ``one_pass`` — one pass in C over the run (``_speedups.c``), which
applies the reference route's rules itself and so handles every layout alike, about 1 ns a byte —
wherever the C module was built and the pass does not decline. Otherwise it is done by the Python
passes below, each one ``bytes`` or ``re`` call over the run: the same records, the whole parse
1.3-2.5x slower by layout (``python -m benchmarks.parse --layouts 5``, "Python passes"). Worked example (the
Python passes' steps; the C pass writes the same records without the ``"~"`` and ``"/name"`` keys),
two records of an indented page::

    <result>
      <userId>u1</userId>
      <courseTitle><![CDATA[R&D <intro>]]></courseTitle><!-- a comment -->
      <isOverdue>false</isOverdue>
    </result>
    <result>
      <userId>u2</userId>
      ...

``clean`` resolves what XML allows around text — CR/CRLF become LF, comments and processing
instructions go, CDATA becomes escaped text — and ``prepare`` strips attributes::

    <result>\n  <userId>u1</userId>\n  <courseTitle>R&amp;D &lt;intro&gt;</courseTitle>\n  ...

``flat_json`` then escapes ``\\`` and ``"``, makes the item tags record boundaries (the boundary
between two records, with the whitespace around it, replaced everywhere at once), drops the
whitespace between fields where that is exact (``_drop_gaps``), turns every ``<`` into ``","`` and
every ``>`` into ``":"``, escapes control characters and resolves references last::

    [{"~":[""],"~":"","userId":"u1","/userId":"","courseTitle":"R&D <intro>","/courseTitle":"",
      "isOverdue":"false","/isOverdue":""},{"~":"","userId":"u2",...}]

which ``msgspec`` decodes straight into ``LearnerResult`` (keys it does not know are skipped: ``"~"``
holds the text before a record's first field, ``"/name"`` the text after a closing tag; the leading
``"~"`` list, whatever preceded the run's first record).

Where the Python passes' time goes (per 32 KiB run of the compact page, on a 2-core machine: 217 us
for expat alone): validating expat 1.0, msgspec decode 0.35-0.4, the ``<``/``>`` replacements 0.23, the
flatness check (``_tags``, ``_is_flat``) 0.2, fusing items 0.07, references 0.1-0.15, the envelope's
``<`` count 0.06, Python per run ~0.1; indented pages add ``_drop_gaps`` (0.25, which saves more in
the passes after it), attributes ``_strip_values`` (0.5-0.6), comments and CDATA ``clean`` (0.3-0.5).
Every pass is one ``bytes`` method or ``re`` call over the run, chosen so its search has a literal
prefix or a single byte (memchr); two-byte needles whose first byte is ``<`` cost about 1 ns a byte.

Invariants this relies on (each one is what makes a rewrite of XML as text exact):

1. **Every byte was first accepted by a validating expat** (``_xml.py``) that refuses DTDs, so the
   input is well-formed, entities are the five predefined ones or character references, and ``<``
   appears in text only inside CDATA, comments and PIs (which ``clean`` removes first, in document
   order, so ``<!--`` inside CDATA stays text).
2. **Attributes are matched whole** (name, ``=``, a quoted value that may hold ``>``), and cut only
   inside tags: after ``prepare`` every tag is ``<name>``, ``</name>`` or ``<name/>``, or whitespace
   left inside one makes the flatness check fail (and the exact regex pass strips it).
3. **Whitespace is dropped only where it is no value**: inside an item's tags, between items, and
   between a closing tag and the next opening tag — the last only when no identical whitespace
   stands before a closing tag anywhere in the run (where it could be a whitespace-only value).
4. **Flatness is checked, not assumed**: the run reduced to its tag punctuation must read
   ``(<></>)*`` (``/`` in text are dropped: only a tag's ``/`` follows a ``<``). Nesting, mixed
   content, self-closing elements and whitespace inside tags break the pattern; so do unbalanced
   runs. A run that is not flat is cut at its item tags (``split_records``): its flat records still
   decode as one JSON document, and the others — each group balanced on its own, or the page goes to
   the reference route — are read from a C-built tree under the reference route's rules (``_xml.py``)
   and interleaved back in order. Stray elements between records make invalid JSON (they land in the
   ``"~"`` list), never a wrong record; invalid JSON or an invalid value sends the run to the tree,
   which is exact and says where.
5. **References are resolved after the tag rewrite**, so ``&lt;`` can never become a tag; a character
   reference may have any number of leading zeros (``&#x0000000041;`` is ``A``).
6. **Nothing here loops until stable or backtracks**: each pass is one ``bytes`` method call, a
   ``re`` call whose lazy or possessive scans are each bounded by the next terminator (``clean``
   checks first that every construct start has one), or a loop over occurrences that moves forward
   (linear in the run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from typing import Any, Final

import msgspec

from ispring_async._parse._shapes import DeclinedError, Shape

try:
    from ispring_async._parse import _speedups
except ImportError:  # built without a C compiler: the Python passes below do the same work
    speedups: Any = None
else:
    speedups = _speedups
    """The one-pass rewrite in C (``_speedups.c``), or ``None`` (see ``without_c_pass``)."""

__all__ = [
    "Split",
    "UnknownCutter",
    "clean",
    "flat_json",
    "header_ok",
    "one_pass",
    "prepare",
    "split_records",
    "strip_attributes",
    "tail_token",
    "without_c_pass",
]


@contextmanager
def without_c_pass() -> Iterator[None]:
    """Within the block, the fast route as installed where no C compiler was found: its Python passes
    alone. For the tests and benchmarks that compare the two (it sets a module global)."""
    global speedups
    saved, speedups = speedups, None
    try:
        yield
    finally:
        speedups = saved


# -- one pass, in C --------------------------------------------------------------------------------


def one_pass(run: bytes, shape: Shape[Any], *, max_depth: int, max_text: int) -> list[Any] | None:
    """The records of a run of flat records (from an item's opening tag to one's closing tag, not yet
    prepared) rewritten as JSON in one C pass and decoded, or ``None`` where that pass declines (the
    Python passes below then read the run) or the C module was not built.

    The pass applies the reference route's rules itself (``_speedups.c``): comments, PIs, CDATA,
    attributes, CR, references, empty dates and numbers, and unknown elements with children inside
    a record are all read there. It declines on what needs an error or a closer look (an element
    inside a field, a depth or text over the bounds, a run cut inside a record): a JSON document
    that does not decode (a bad value) declines too, and the Python route raises, naming the record.
    """
    if speedups is None:
        return None
    json = speedups.records_json(
        run, shape.item_name, shape.field_names, shape.absent_names, max_depth, max_text
    )
    if json is None:
        return None
    try:
        records: list[Any] = shape.list_decoder.decode(json)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return records


# -- clean: CR, comments, PIs, CDATA -----------------------------------------------------------------


# Comments, PIs and CDATA sections (text captured), in document order: the leftmost construct wins, and
# each lazy scan stops at the first terminator, which is the construct's own end (a comment cannot hold
# "--", a PI "?>", a CDATA section "]]>"). Variants by which markers occur, so the pattern's literal
# prefix is two bytes ("<!" or "<?") where it can be: sre then scans for it in C instead of trying
# every tag.
_CONSTRUCTS: Final = {
    (True, False): re.compile(rb"<!(?:--.*?-->|\[CDATA\[(.*?)\]\]>)", re.DOTALL),
    (False, True): re.compile(rb"<\?.*?\?>()", re.DOTALL),
    (True, True): re.compile(rb"<(?:!--.*?-->|\?.*?\?>|!\[CDATA\[(.*?)\]\]>)", re.DOTALL),
}
_ENDS: Final = {
    (True, False): ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>")),
    (False, True): ((b"<?", b"?>"),),
    (True, True): ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>"), (b"<?", b"?>")),
}


def clean(region: bytes) -> bytes:
    """``region`` with CR normalized, comments and PIs removed and CDATA sections turned into text.

    Raises ``DeclinedError`` on a construct that does not end inside ``region`` (a run cut inside a
    comment or CDATA section that holds ``</result>``).

    One ``re.split`` over the run, C-level, where a loop of ``find`` calls cost about 1.5 us a
    construct (measured: a page with a CDATA title in every record, 0.32 -> 0.12 ms a 32 KiB run).
    The lazy scans are linear only if every construct start has its terminator somewhere after it:
    so the *last* start of each kind must (checked first, with ``rfind``/``find``). A start that does
    not is a construct cut by the run's end, or its look-alike inside another construct (``<?`` in a
    CDATA section): both decline, never scan to the end again and again.
    """
    if b"\r" in region:
        region = region.replace(b"\r\n", b"\n")
        if b"\r" in region:
            region = region.replace(b"\r", b"\n")
    # One-byte searches are memchr; "<!" and "<?" searches cost about 1 ns a byte (measured), as "<"
    # is in every tag. A run with no "!" or no "?" at all has no such construct.
    kind = (b"!" in region, b"?" in region)
    pattern = _CONSTRUCTS.get(kind)
    if pattern is None:
        return region
    for opening, closing in _ENDS[kind]:
        last = region.rfind(opening)
        if last >= 0 and region.find(closing, last + len(opening)) < 0:
            raise DeclinedError
    parts = pattern.split(region)
    if len(parts) == 1:
        return region
    # A CDATA section's text, b"" for a comment or a PI (whose group is None).
    texts = [text or b"" for text in parts[1::2]]
    # Escaped all at once, joined by NUL (which XML text cannot hold) and split back.
    joined = b"\0".join(texts)
    escaped = joined
    if b"&" in escaped:
        escaped = escaped.replace(b"&", b"&amp;")
    if b"<" in escaped:
        escaped = escaped.replace(b"<", b"&lt;")
    if b">" in escaped:
        escaped = escaped.replace(b">", b"&gt;")
    parts[1::2] = texts if escaped is joined else escaped.split(b"\0")
    return b"".join(parts)


# -- attributes --------------------------------------------------------------------------------------

# One tag with whitespace inside (attributes, or a space before ">"): a name, then name="value" pairs
# (values may hold ">"), then an optional "/". Applied only after clean(), when every "<" opens a tag.
# No nested quantifier can backtrack: each repetition is anchored by "=" and a quote.
_TAG: Final = re.compile(rb"<(/?[^\s/>]+)(?=\s)(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>")


def strip_attributes(region: bytes) -> bytes:
    """Every tag of ``region`` reduced to ``<name>``, ``</name>`` or ``<name/>``.

    ``split`` and two list comprehensions rather than ``sub`` with a template, which in Python 3.11
    calls back into Python for every match (measured: 1.5x slower).
    """
    parts = _TAG.split(region)
    if len(parts) == 1:
        return region
    parts[1::3] = [b"<" + name for name in parts[1::3]]
    parts[2::3] = [slash + b">" for slash in parts[2::3]]
    return b"".join(parts)


# An attribute's "=" and quoted value (which may hold ">"). Its literal prefix "=" lets sre scan in C
# (a pattern starting at "<" or at whitespace is tried at every tag: 10-20 ns a byte, measured).
_VALUE: Final = re.compile(rb"""=\s*+(?:"[^"]*+"|'[^']*+')""")


def _strip_values(region: bytes) -> bytes:
    """``strip_attributes`` for a run with attributes, at about 0.3 us an attribute (half the loop
    over ``=`` it replaces, and 10x less than the regex pass over every tag, measured on a page with
    attributes on three elements of each record).

    ``re.split`` cuts out each ``="value"``; the piece before one ends with the attribute's name,
    cut off at its last whitespace (``rsplit``). Every cut must be inside a tag: the piece before it
    opens a tag after its last ``>`` (``<result id``), or, after a first cut, holds no ``>`` at all
    (`` kind`` between two attributes of one tag). A ``="x"`` in text fails that, and the run gets the
    exact regex pass. Whitespace left before a tag's ``>`` (``<a x="1" >``) is found by the
    flatness check, which then asks for the regex pass too. Each quoted value is scanned once, and
    only the last quote of each kind can leave a scan unmatched: linear.
    """
    parts = _VALUE.split(region)
    if len(parts) == 1:
        return region
    heads = parts[:-1]
    first = heads[0]
    inside = [piece.rfind(b"<") >= piece.rfind(b">") for piece in heads]
    if first.rfind(b"<") <= first.rfind(b">") or False in inside:
        return strip_attributes(region)
    names = [piece.rsplit(None, 1) for piece in heads]
    heads = [name[0] if len(name) == 2 else b"" for name in names]
    heads.append(parts[-1])
    return b"".join(heads)


# -- flatness and JSON -------------------------------------------------------------------------------

# Replacement fragments. All text (values and the whitespace between elements) lands inside JSON strings;
# ``<`` and ``>`` of field tags become ``","`` and ``":"``, so a field becomes a string member of its
# record and the text after a closing tag a member keyed "/name" (ignored). The item tags become the
# record boundaries; the text between records sits in a throw-away list, so a stray element between
# records or a nested item yields invalid JSON instead of a wrong record.
_ITEM_OPEN: Final = b'"],"~":"'
_ITEM_CLOSE: Final = b'"},{"~":["'
_PREFIX: Final = b'[{"~":["'
_FUSED: Final = b'"},{"~":"'  # a boundary fused from whitespace-only text: no "~" list needed
_WHITESPACE: Final = b" \t\n"  # XML's, CR normalized away by clean()
_DANGLING: Final = len(b',{"~":["')
# Reduced to tag punctuation: whitespace and text deleted, "</" marked, other "/" (text) dropped.
_DELETE_MARKED: Final = bytes(b for b in range(256) if b not in b" </>\x01\x02")
_SPACE_MAP: Final = bytes.maketrans(b"\t\n", b"  ")
_DELETE_TEXT: Final = bytes(b for b in range(256) if b not in b" </>")
_CLOSE_MARK: Final = b"\x03"
_LEAF: Final = b"<>\x03>"
_ENTITIES: Final = {b"lt": b"<", b"gt": b">", b"amp": b"&", b"quot": b'\\"', b"apos": b"'"}
_JSON_STR: Final = msgspec.json.Encoder()
_NAME: Final = itemgetter(0)
_REST: Final = itemgetter(2)


def _tags(region: bytes) -> bytes | None:
    """The tag punctuation of ``region``, or ``None`` if some tag has whitespace inside it."""
    spaced = region.translate(_SPACE_MAP, _DELETE_TEXT)
    # A "<" is always a tag's, and its name is deleted, so "< " or "</ " is whitespace inside a tag.
    if b"< " in spaced or b"</ " in spaced:
        return None
    return spaced.replace(b" ", b"").replace(b"</", _CLOSE_MARK).replace(b"/", b"")


def _is_flat(tags: bytes) -> bool:
    # LEAF cannot overlap itself, so one non-overlapping pass removes exactly the leaves.
    return not tags.replace(_LEAF, b"")


def _fuse_items(region: bytes, shape: Shape[Any]) -> bytes:
    """Turn the item tags into record boundaries in one pass where records are separated alike.

    ``region`` runs from an opening item tag to a closing one. The boundary between its first two
    records (the whitespace before ``</result>``, it, the whitespace, ``<result>``, the whitespace after
    it) is replaced everywhere at once, the whitespace dropped: text right inside an item's tags, or
    between items, is never a value. A boundary spelled otherwise is left as generic tags, which the
    flatness check rejects, so the caller then falls back to replacing each tag.
    """
    open_item, close_item = shape.open_item, shape.close_item
    cut = region.find(close_item)
    if cut >= 0:
        after = cut + len(close_item)
        following = region.find(open_item, after, after + 64)
        if following >= 0 and not region[after:following].strip(_WHITESPACE):
            low = max(0, cut - 64)
            start = low + len(region[low:cut].rstrip(_WHITESPACE))
            end = following + len(open_item)
            head = region[end : end + 64]
            end += len(head) - len(head.lstrip(_WHITESPACE))
            # The run's own first opening and last closing tag are no boundary: they stay.
            region = region.replace(region[start:end], _FUSED)
    # The text after the first record's opening tag and before the last one's closing tag: no value.
    first, last = len(open_item), len(region) - len(close_item)
    head, tail = region[first : first + 64], region[max(first, last - 64) : last]
    first += len(head) - len(head.lstrip(_WHITESPACE))
    last -= len(tail) - len(tail.rstrip(_WHITESPACE))
    # One copy: join takes the memoryview's slice as it is.
    return b"".join((_ITEM_OPEN, memoryview(region)[first:last], _ITEM_CLOSE))


def _drop_gaps(region: bytes) -> bytes:
    """``region`` (items fused) without the whitespace between a closing tag and the next opening tag,
    where that can be done exactly with one ``replace``.

    Such whitespace is never a value, but whitespace-only text inside a leaf (``<a>\\n  </a>``) is,
    and the two look alike to ``bytes.replace``. So the gap after the first closing tag is taken as
    the layout's, and ``>gap<`` dropped only if ``>gap</`` occurs nowhere: then every ``>gap<`` is
    followed by an opening tag, after a closing tag (junk), an opening one or text (the run is not
    flat then, whatever this does). Indented pages lose about a fifth of their bytes here, and with
    them the ``\\n`` escapes and the ``"/name":"\\n    "`` members msgspec would skip.
    """
    if b"\n" not in region:
        return region  # compact: no gaps (and a memchr decides)
    close = region.find(b"</")
    end = region.find(b">", close) + 1
    following = region.find(b"<", end)
    if close < 0 or following < 0:
        return region
    gap = region[end:following]
    if len(gap) < 2 or gap.strip(_WHITESPACE):
        # A one-byte gap (one element per line) costs as much to drop as to escape (measured).
        return region
    if b">" + gap + b"</" in region:
        return region
    return region.replace(b">" + gap + b"<", b"><")


def _unescape_entities(region: bytes) -> bytes:
    # Cost proportional to the number of "&", not to the size: split once, fix each piece's head.
    pieces = region.split(b"&")
    # Named entities only (the usual case): each piece's head looked up and re-joined by C-level
    # map() calls, about 0.2 us an "&" where the loop below costs 0.8 (measured).
    heads = list(map(bytes.partition, pieces[1:], repeat(b";")))
    values: list[Any] = list(map(_ENTITIES.get, map(_NAME, heads)))
    if None not in values:
        return pieces[0] + b"".join(map(bytes.__add__, values, map(_REST, heads)))
    entities = _ENTITIES
    for i in range(1, len(pieces)):
        piece = pieces[i]
        end = piece.find(b";")
        name = piece[:end]
        value = entities.get(name)
        if value is None:
            if end < 2 or name[:1] != b"#":  # expat accepted the document, so this cannot happen
                raise DeclinedError
            try:
                # Hex has no digit limit in int(); decimal does (4300), so leading zeros go first.
                hexadecimal = name[1:2] in (b"x", b"X")
                code = int(name[2:], 16) if hexadecimal else int(name[1:].lstrip(b"0") or b"0")
                value = _JSON_STR.encode(chr(code))[1:-1]
            except ValueError:
                raise DeclinedError from None
        pieces[i] = value + piece[end + 1 :]
    return b"".join(pieces)


def _escape(region: bytes) -> bytes:
    # Text must not be able to close a JSON string: escape backslash first, then quotes; both before
    # any fragment (which has quotes of its own) is written.
    if b"\\" in region:
        region = region.replace(b"\\", b"\\\\")
    if b'"' in region:
        region = region.replace(b'"', b'\\"')
    return region


def _finish(region: bytes) -> bytes:
    if b"\n" in region:
        region = region.replace(b"\n", b"\\n")
    if b"\t" in region:
        region = region.replace(b"\t", b"\\t")
    region = region.replace(b"<", b'","').replace(b">", b'":"')
    if b"&" in region:
        # Entities are resolved only now, so a decoded "<" can never be taken for a tag.
        region = _unescape_entities(region)
    return b"".join((_PREFIX, memoryview(region)[:-_DANGLING], b"]"))


def prepare(run: bytes) -> bytes:
    """``run`` cleaned (CR, comments, PIs, CDATA) and with its attributes stripped."""
    run = clean(run)
    return _strip_values(run) if b"=" in run else run


def flat_json(
    region: bytes, shape: Shape[Any], *, stripped: bool = False, known_flat: bool = False
) -> bytes | None:
    """JSON for a prepared run of flat records (from an item's opening tag to one's closing tag), or
    ``None`` if some record is not flat. ``known_flat``: ``split_records`` has checked each record."""
    escaped = _escape(region)
    fused = _drop_gaps(_fuse_items(escaped, shape))
    if known_flat and shape.close_item not in fused:
        return _finish(fused)
    tags = _tags(fused)
    if tags is None:
        # Whitespace inside a tag that strip_attributes did not see (``</a >``, ``a = "x"``).
        return None if stripped else flat_json(strip_attributes(region), shape, stripped=True)
    if not _is_flat(tags):
        if shape.close_item not in fused:
            return None  # every boundary was fused, so some record itself is not flat
        # Records not all separated alike: replace each item tag on its own, and judge again.
        fused = _drop_gaps(
            escaped.replace(shape.close_item, _ITEM_CLOSE).replace(shape.open_item, _ITEM_OPEN)
        )
        tags = _tags(fused)
        if tags is None or not _is_flat(tags):
            return None
    return _finish(fused)


class Split:
    """A prepared run cut at its records: the flat ones (to decode at once as JSON) and groups of
    consecutive others (for the tree), with the order to interleave them back in."""

    __slots__ = ("flat", "groups", "order")

    def __init__(self, flat: bytes, groups: list[bytes], order: list[bool]) -> None:
        self.flat = flat
        """The flat records, joined (from the first one's opening tag); ``b""`` if none."""
        self.groups = groups
        """Each group of consecutive records that are not flat."""
        self.order = order
        """Per flat record ``True``, per group ``False``, in document order."""


def split_records(region: bytes, shape: Shape[Any]) -> Split:
    """Cut a prepared run (from an item's opening tag to one's closing tag) at its item tags.

    Raises ``DeclinedError`` if a group of records that are not flat does not balance its own tags
    (an item nested in an unknown element cuts a record in two): the page goes to the reference route.
    """
    close_item, open_item = shape.close_item, shape.open_item
    marked = region.replace(close_item, b"\x02").replace(open_item, b"\x01")
    spaced = marked.translate(_SPACE_MAP, _DELETE_MARKED)
    if b"< " in spaced or b"</ " in spaced:
        # Whitespace inside a tag that prepare() did not strip (``<dueDate >``): the flat records
        # are decoded without a second look, so strip it now.
        region = strip_attributes(region)
        marked = region.replace(close_item, b"\x02").replace(open_item, b"\x01")
        spaced = marked.translate(_SPACE_MAP, _DELETE_MARKED)
    tags = spaced.replace(b" ", b"").replace(b"</", _CLOSE_MARK).replace(b"/", b"")
    flags = tags.replace(_LEAF, b"").split(b"\x02")
    parts = region.split(close_item)
    if len(flags) != len(parts):
        raise DeclinedError
    flat: list[bytes] = []
    groups: list[bytes] = []
    order: list[bool] = []
    pending: list[bytes] = []
    for i in range(len(parts) - 1):  # the piece after the final closing tag is empty
        if flags[i] == b"\x01":
            if pending:
                groups.append(_balanced(close_item.join(pending) + close_item))
                order.append(False)
                pending = []
            flat.append(parts[i])
            order.append(True)
        else:
            pending.append(parts[i])
    if pending:
        groups.append(_balanced(close_item.join(pending) + close_item))
        order.append(False)
    joined = close_item.join(flat) + close_item if flat else b""
    return Split(joined[joined.find(open_item) :] if joined else b"", groups, order)


def _balanced(group: bytes) -> bytes:
    # Opening tags = "<" - "</" - "/>"-closed ones; every one must be closed inside the group. (A
    # literal "/>" in text only makes this decline, never accept wrongly.)
    closes = group.count(b"</")
    if group.count(b"<") != 2 * closes + group.count(b"/>"):
        raise DeclinedError
    return group


# -- prolog and tail -------------------------------------------------------------------------------

_DECLARATION: Final = re.compile(
    rb"(?:\xef\xbb\xbf)?(?:<\?xml(?:\s+version\s*=\s*[\"']1\.[0-9][\"'])"
    rb"(?:\s+encoding\s*=\s*[\"']utf-8[\"'])?(?:\s+standalone\s*=\s*[\"'](?:yes|no)[\"'])?\s*\?>)?",
    re.IGNORECASE,
)


def header_ok(prefix: bytes, shape: Shape[Any]) -> bool:
    """Whether the bytes before a page's first record are a UTF-8 prolog, ``<response>`` and the
    container, with nothing else of meaning (comments, PIs, attributes and whitespace allowed)."""
    declaration = _DECLARATION.match(prefix)
    assert declaration is not None  # every part is optional
    rest = prefix[declaration.end() :]
    if rest[:5].lower() == b"<?xml":
        return False  # a declaration of another encoding: only the reference route decodes it
    try:
        rest = strip_attributes(clean(rest))
    except DeclinedError:
        return False
    return shape.header.fullmatch(rest) is not None


def tail_token(tail: bytes, shape: Shape[Any]) -> tuple[bool, str | None]:
    """``(True, token)`` if ``tail`` (after the last record) is the container's end, an optional plain
    ``nextPageToken`` and the end of ``<response>``; ``(False, None)`` for anything else."""
    try:
        tail = strip_attributes(clean(tail))
    except DeclinedError:
        return False, None
    match = shape.tail.fullmatch(tail)
    if match is None:
        return False, None
    return True, (match.group(1) or b"").decode() or None


# -- unknown elements with children ------------------------------------------------------------------

_MAX_LEARNED: Final = 16  # names an UnknownCutter remembers: a page's few vendor elements, bounded


class UnknownCutter:
    """Cuts unknown elements that have children out of a prepared run, where the reference route
    would skip them, so the records around them can still be rewritten as JSON.

    Cut out only where skipping is what the reference route does: the name is no text field's
    anywhere in the shape (inside a text field an element is an error, not skipped), the tag before
    it is a closing, self-closing or structure tag with only whitespace between (so its parent is not
    a text field holding it alone: a text field holding it beside other elements fails the leaf
    check afterwards), its subtree cannot pass ``max_depth``, and the segment up to its matching
    closing tag (found with ``find``, counting same-name opening tags; no quantifier) balances.
    """

    def __init__(self, structure: Iterable[str], leaves: Iterable[str], *, deepest_child: int) -> None:
        """``structure``: the record's and its structs' and lists' element names; ``leaves``: every
        text field's; ``deepest_child``: the depth at which the deepest structure element's
        children sit (4 for flat records)."""
        names = sorted(structure)
        self._opens = frozenset(f"<{name}>".encode() for name in names)
        self._leaves = frozenset(name.encode() for name in leaves)
        self._deepest_child = deepest_child
        self._learned: set[bytes] = set()
        """Names of elements ``cut`` has cut out (a vendor's ``customFields``), for ``cut_learned``."""
        alternatives = b"|".join(re.escape(name.encode()) for name in names)
        # An opening tag, not a structure tag's, followed (after whitespace) by another opening tag:
        # an element with children. The lookahead's run of whitespace is possessive (linear time).
        self._open = re.compile(rb"<(?!(?:" + alternatives + rb")>)([^\s/<>!?]+)>(?=[ \t\n]*+<[^/])")

    def cut(self, region: bytes, max_depth: int) -> bytes | None:
        """``region`` without its unknown elements that have children, or ``None`` if it holds none,
        or one that cannot be cut out safely (see the class docstring)."""
        pieces: list[bytes] = []
        pos = 0
        while True:
            match = self._open.search(region, pos)
            if match is None:
                break
            name, start = match.group(1), match.start()
            if name in self._leaves:
                return None
            end = self._end_of(region, name, start, match.end(), max_depth)
            if end is None:
                return None
            if len(self._learned) < _MAX_LEARNED:
                self._learned.add(name)
            pieces.append(region[pos:start])
            pos = end
        if not pieces:
            return None
        pieces.append(region[pos:])
        return b"".join(pieces)

    def cut_learned(self, region: bytes, max_depth: int) -> bytes | None:
        """``region`` without the elements named as ones ``cut`` has cut out before (found with
        ``find``, not the pattern, which tries every tag: measured 0.2 ms a 32 KiB run), or ``None``
        if there are no such names yet or one cannot be cut out safely.

        The caller must check the result is flat: an unknown element of a name not learnt yet is
        still in it (and ``cut`` then reads the run).
        """
        if not self._learned:
            return None
        found: list[tuple[int, bytes]] = []
        for name in self._learned:
            opening = b"<" + name + b">"
            at = region.find(opening)
            while at >= 0:
                found.append((at, name))
                at = region.find(opening, at + len(opening))
        if not found:
            return region
        found.sort()
        pieces: list[bytes] = []
        pos = 0
        for start, name in found:
            if start < pos:
                continue  # inside an element cut out already
            end = self._end_of(region, name, start, start + len(name) + 2, max_depth)
            if end is None:
                return None
            pieces.append(region[pos:start])
            pos = end
        pieces.append(region[pos:])
        return b"".join(pieces)

    def _end_of(self, region: bytes, name: bytes, start: int, inside: int, max_depth: int) -> int | None:
        """The end of the unknown element ``<name>`` opening at ``start`` (its opening tag ends at
        ``inside``), or ``None`` if the reference route would not simply skip it (the class docstring)."""
        before = region.rfind(b">", 0, start)
        if before < 0 or region[before + 1 : start].strip():
            return None
        prev = region[region.rfind(b"<", 0, before) : before + 1]
        if prev.find(b">") != len(prev) - 1 or not (
            prev.startswith(b"</") or prev.endswith(b"/>") or prev in self._opens
        ):
            return None
        end = _close_of(region, name, inside)
        if end is None:
            return None
        segment = region[start:end]
        closes = segment.count(b"</")
        opens = segment.count(b"<") - closes
        if opens != closes + segment.count(b"/>") or self._deepest_child + opens > max_depth:
            return None
        return end


def _close_of(region: bytes, name: bytes, pos: int) -> int | None:
    """The end of the closing tag matching an opening ``<name>`` that ends at ``pos`` (``None``: none)."""
    opening, closing = b"<" + name + b">", b"</" + name + b">"
    depth = 1
    while True:
        close = region.find(closing, pos)
        if close < 0:
            return None
        inner = region.find(opening, pos, close)
        while inner >= 0:
            depth += 1
            inner = region.find(opening, inner + len(opening), close)
        depth -= 1
        pos = close + len(closing)
        if depth == 0:
            return pos

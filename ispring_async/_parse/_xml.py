"""One XML list page through two routes: the fast route where it can vouch, the reference route elsewhere.

* **Every byte** goes through a handler-less expat parser that only checks well-formedness and refuses
  DTDs, entity declarations and external references (``_hardening.py``). With no Python callbacks per
  element this runs at expat's floor speed, and it is what the fast route's invariants rest on.
* **The fast route** (``_fast.py``) turns each run of complete records into JSON and decodes it with
  one ``msgspec`` call. The rewrite is one pass in C (``_speedups.c``, applying the reference route's
  rules itself) where the C module was built; where that pass declines, or without it, C-level byte
  passes driven from Python do the same work. Those decline per *record*: records it cannot vouch for (nested
  unknown elements, self-closing fields, mixed content) are read from one C-built ``xml.etree`` tree
  per run under the reference route's rules, and interleaved back in order, while the rest of the
  run stays JSON. A run it cannot cut at its records, or a prolog it does not know, hands the rest of
  the page to the reference route (whose expat then validates alone).
* **The reference route** (``_reference.py``) is the authority: both routes give the same records or
  the same error class for any well-formed page (tests/test_parse_differential.py generates them), and
  every parse error comes from it, with the page and the record or element it concerns.

One ``Envelope`` counts the page's decompressed bytes, markup and records whichever route holds them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Final, Generic, TypeVar

import msgspec

from ispring_async._exceptions import ParseError, UnexpectedContentError
from ispring_async._parse._envelope import Bounds, Envelope
from ispring_async._parse._fast import (
    UnknownCutter,
    clean,
    flat_json,
    header_ok,
    one_pass,
    prepare,
    split_records,
    tail_token,
)
from ispring_async._parse._hardening import hardened_expat, looks_like_html, run_expat
from ispring_async._parse._nested import NestedReferenceParser, NestedShape
from ispring_async._parse._reference import ReferenceParser
from ispring_async._parse._shapes import DeclinedError, Shape

__all__ = ["XmlListParser"]

S = TypeVar("S", bound=msgspec.Struct)

# A single record larger than this without its closing tag is not something the fast route handles:
# the reference route takes over and enforces ``max_text_bytes`` / ``max_depth`` element by element.
_MAX_PENDING_BYTES: Final = 256 << 10
_SLICE: Final = 32 << 10
# The longest run the fast route reads at once, so the longest text in one: up to _MAX_PENDING_BYTES
# pending without a record's end, then one more chunk, which ``feed`` cuts only above 2 slices. The
# Python passes do not count text, so with a ``max_text_bytes`` below this (the default is 1 MiB) they
# cannot vouch for a run (the C pass counts, and declines a text over the bound).
_MAX_RUN_BYTES: Final = _MAX_PENDING_BYTES + 2 * _SLICE


class XmlListParser(Generic[S]):
    """One page of a list endpoint in XML; see the module docstring for the two routes."""

    def __init__(self, shape: Shape[S], *, page: str, bounds: Bounds) -> None:
        self._shape = shape
        self._page = page
        self._bounds = bounds
        self._envelope = Envelope(bounds, page=page)
        self._validator: Any = hardened_expat()
        self._item_start = re.compile(b"<" + re.escape(shape.item.encode()) + rb"[\s>]")
        self._pending = b""
        self._records: list[S] = []
        self._started = False  # the header (prolog, <response>, <container>) was consumed
        self._reference: ReferenceParser[S] | None = None
        # Nested records (users) take the tree on every run: a JSON rewrite must know which
        # elements are lists, and the C tree builder with a walk per record already beats lxml.
        self._nested = shape if isinstance(shape, NestedShape) else None
        # Flat records beside unknown elements with children (<customFields>) are cut free of them.
        self._cutter = UnknownCutter([shape.item], shape.fields, deepest_child=4)
        self._reference_type: type[ReferenceParser[S]] = (
            NestedReferenceParser if self._nested is not None else ReferenceParser
        )
        self._python_passes_bounded = bounds.max_text_bytes >= _MAX_RUN_BYTES  # see _MAX_RUN_BYTES
        self._sniffed = False
        self._fed = 0
        self._mixed = False  # a run had records that are not flat
        self.fallback_runs = 0
        self._unknowns = False  # the last nested run had unknown elements cut out
        """Runs of nested records the JSON rewrite declined, read by handlers instead (tests use this)."""

    @property
    def fast(self) -> bool:
        """Whether the fast route still holds the page (tests use this)."""
        return self._reference is None

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the decompressed body."""
        self._envelope.take(data, markup=True)
        if len(data) > 2 * _SLICE:
            # Work on cache-sized pieces: the fast route makes several passes over each region, and
            # they are cheaper while it stays in cache (measured: 32 KiB beats 8, 16 KiB and whole pages).
            for start in range(0, len(data), _SLICE):
                self._feed(data[start : start + _SLICE])
        else:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not self._sniffed:
            self._sniff(data)
        reference = self._reference
        if reference is not None:
            # The reference route's expat is hardened alike and checks the same bytes: the validator
            # has nothing left to add, and feeding both would double expat's cost.
            reference.feed(data)
            self._check_token(reference.unfinished_token_bytes)
            return
        validator = self._validator
        run_expat(validator, data, False, self._page)
        self._fed += len(data)
        self._check_token(self._fed - max(validator.CurrentByteIndex, 0))
        pending = self._pending + data if self._pending else data
        if len(pending) < _SLICE:
            # Runs of at least a slice: each run costs a fixed ~30 us of Python besides its passes,
            # and a socket's 16 KiB reads would otherwise make twice as many (measured: 4% a page).
            self._pending = pending
            return
        self._flush(pending)

    def _flush(self, pending: bytes) -> None:
        """Read the complete records of ``pending`` on the fast route; keep the rest pending."""
        close_item = self._shape.close_item
        cut = pending.rfind(close_item)
        if cut < 0:
            self._pending = pending
            if len(pending) > _MAX_PENDING_BYTES:
                self._switch()
            return
        end = cut + len(close_item)
        self._pending = pending[end:]
        try:
            self._fast(pending[:end])
        except DeclinedError:
            self._pending = pending
            self._switch()

    def _check_token(self, unfinished: int) -> None:
        # Expat holds an unfinished token (a tag, comment or PI) and scans it again with each chunk:
        # bounded, so one huge comment cannot cost time quadratic in its size.
        if unfinished > self._bounds.max_token_bytes:
            raise ParseError(
                f"an XML tag, comment or PI longer than {self._bounds.max_token_bytes} bytes",
                page=self._page,
            )

    def _sniff(self, data: bytes) -> None:
        if len(data) < 64 and not data.strip():
            return
        self._sniffed = True
        if looks_like_html(data):
            raise UnexpectedContentError(f"the body of {self._page} is an HTML page, not the API's XML")

    def _fast(self, chunk: bytes) -> None:
        shape = self._shape
        match = self._item_start.search(chunk)
        if match is None:
            raise DeclinedError
        start = match.start()
        prefix = chunk[:start]
        if self._started:
            if prefix.strip() and clean(prefix).strip():
                nested = self._nested
                # Unknown elements between runs: the nested rewrite can vouch for skipping them.
                if nested is None or not nested.json.between_records(
                    prepare(prefix), max_depth=self._bounds.max_depth
                ):
                    raise DeclinedError
        elif not header_ok(prefix, shape):
            raise DeclinedError
        first = len(self._records)
        bounds = self._bounds
        if self._nested is not None:
            if not self._python_passes_bounded:
                raise DeclinedError
            records = self._nested_run(chunk[start:], self._nested, first)
        else:
            run = chunk[start:]
            one = one_pass(run, shape, max_depth=bounds.max_depth, max_text=bounds.max_text_bytes)
            if one is None and not self._python_passes_bounded:
                raise DeclinedError
            records = one if one is not None else self._run(prepare(run), first)
        self._envelope.check_records(first + len(records))
        self._records += records
        self._started = True

    def _run(self, region: bytes, first: int) -> list[S]:
        if not self._mixed:
            json = flat_json(region, self._shape)
            if json is not None:
                return self._decode(json, region, first)
            # A page with records that are not flat is likely to have more: later runs are split
            # at once rather than first tried whole.
            self._mixed = True
        cut = self._cutter.cut_learned(region, self._bounds.max_depth)
        if cut is not None:
            # The names cut out of earlier runs, found with ``find``; if anything else is not flat,
            # the pattern below reads the run (and learns the new name).
            json = flat_json(cut, self._shape)
            if json is not None:
                return self._decode(json, region, first)
        cut = self._cutter.cut(region, self._bounds.max_depth)
        if cut is not None:
            # The run with its unknown nested elements cut out, as the reference route skips them;
            # if that is still not flat JSON, the split below reads the run as it came.
            json = flat_json(cut, self._shape)
            if json is not None:
                return self._decode(json, region, first)
        # Some records are not flat: the flat ones still decode as one JSON document, the others are
        # read from one tree, and the two are interleaved back in document order.
        split = split_records(region, self._shape)
        flat: list[S] = []
        if split.flat:
            json = flat_json(split.flat, self._shape, known_flat=True)
            try:
                flat = self._shape.list_decoder.decode(json) if json is not None else []
            except (msgspec.DecodeError, msgspec.ValidationError):
                json = None
            if json is None or len(flat) != split.order.count(True):
                return self._fragment(region, first)
        rows = self._tree_rows(split.groups, first)
        ordered: list[S | list[dict[str, str]]] = []
        flat_iter, rows_iter = iter(flat), iter(rows)
        for is_flat in split.order:
            ordered.append(next(flat_iter) if is_flat else next(rows_iter))
        return self._assemble(ordered, first)

    def _nested_run(self, region: bytes, shape: NestedShape[S], first: int) -> list[S]:
        """A run of nested records: rewritten as JSON where ``NestedJson`` can vouch, else read by the
        reference route's handlers as a fragment (measured: 2x cheaper than an ``xml.etree`` tree of
        a users page, whose per-element objects cost more than the handler calls)."""
        json, self._unknowns = shape.json.json(
            prepare(region), max_depth=self._bounds.max_depth, unknowns=self._unknowns
        )
        if json is not None:
            records = shape.json.decode(json)
            if records is not None:
                return records
        self.fallback_runs += 1
        return shape.convert(self._handler_rows(region, first), self._page, first)

    def _assemble(self, ordered: list[S | list[dict[str, str]]], first: int) -> list[S]:
        """Structs in document order from decoded records and groups of tree rows."""
        shape, page = self._shape, self._page
        rows = [row for item in ordered if isinstance(item, list) for row in item]
        try:
            converted: list[S] = msgspec.convert(rows, shape.list_type, strict=False)
        except msgspec.ValidationError:
            converted = []
        records: list[S] = []
        done = 0
        for item in ordered:
            if not isinstance(item, list):
                records.append(item)
                continue
            if len(converted) == len(rows):
                records += converted[done : done + len(item)]
            else:  # a bad value: convert row by row, so the error names the record's real number
                for row in item:
                    records += shape.convert([row], page, first + len(records))
            done += len(item)
        return records

    def _decode(self, json: bytes, region: bytes, first: int) -> list[S]:
        try:
            records: list[S] = self._shape.list_decoder.decode(json)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # A stray element between records, an empty date, a bad value: the reference route's
            # rules read the run exactly, and raise with the record's number if a value is wrong.
            return self._fragment(region, first)
        return records

    def _fragment(self, region: bytes, first: int) -> list[S]:
        """Every record of ``region`` read from a tree under the reference route's rules."""
        return self._assemble(list(self._tree_rows([region], first)), first)

    def _tree_rows(self, groups: list[bytes], first: int) -> list[list[dict[str, str]]]:
        """The field texts of each group's records, read exactly as the reference route reads them.

        The C tree builder of ``xml.etree`` does the per-element work (3x cheaper than Python
        handlers: this is the cost of every record that is not flat), all groups in one document with
        an ``<_/>`` between them, and the rules of ``ReferenceParser`` are applied to the tree:
        unknown elements skipped, an element inside a known field refused, an empty date or number
        absent, the depth bounded. The bytes are already validated (no DTD can reach here) and
        stripped of attributes; a namespace declaration spelled so that stripping missed it would
        change names, so such groups take the handler parser.
        """
        if not groups:
            return []
        if any(b"xmlns" in group for group in groups):
            return [self._handler_rows(group, first) for group in groups]
        try:
            # S314 does not apply: these bytes passed the hardened validator, which refuses DTDs.
            root = ET.fromstring(b"<r>" + b"<_/>".join(groups) + b"</r>")  # noqa: S314
        except ET.ParseError:
            raise DeclinedError from None  # cut across a nested item: the page goes to the reference route
        shape, page, bounds = self._shape, self._page, self._bounds
        fields, absent, item = shape.fields, shape.empty_is_absent, shape.item
        limit = bounds.max_depth
        out: list[list[dict[str, str]]] = [[]]
        count = first
        for element in root:  # depth 3 of the document
            tag = element.tag
            if tag != item:
                if tag == "_":
                    out.append([])
                elif len(element) and _deeper_than(element, limit - 2):
                    raise ParseError(f"elements nested deeper than {limit}", page=page)
                continue  # an unknown element between records
            if count >= bounds.max_records:
                raise ParseError(f"more than {bounds.max_records} records in one page", page=page)
            count += 1
            row: dict[str, str] = {}
            for child in element:
                name = child.tag
                if name not in fields:
                    if len(child) and _deeper_than(child, limit - 3):
                        raise ParseError(f"elements nested deeper than {limit}", page=page)
                    continue
                if len(child):
                    raise ParseError(f"unexpected element <{child[0].tag}> inside <{name}>", page=page)
                text = child.text or ""
                if text or name not in absent:
                    row[name] = text
            out[-1].append(row)
        if len(out) != len(groups):
            raise DeclinedError  # an element named "_" of the page's own: the reference route reads it
        return out

    def _handler_rows(self, region: bytes, first: int) -> list[dict[str, str]]:
        reference = self._reference_type(
            self._shape, page=self._page, bounds=self._bounds, first_index=first, fragment=True
        )
        reference.feed(region)
        return reference.close_rows()

    def _switch(self) -> None:
        """Hand the unconsumed bytes, and everything after them, to the reference route."""
        reference = self._reference_type(
            self._shape, page=self._page, bounds=self._bounds, first_index=len(self._records)
        )
        if self._started:
            # Records up to here were consumed; re-open the layout they sat in.
            reference.feed(b"<response><" + self._shape.container.encode() + b">")
        reference.feed(self._pending)
        self._pending = b""
        self._reference = reference
        self._validator = None  # from here on the reference route's expat validates (see _feed)

    def close(self) -> tuple[list[S], str | None]:
        """End of body: every record of the page and its ``nextPageToken``."""
        if self._reference is None:
            try:
                run_expat(self._validator, b"", True, self._page)
            finally:
                self._validator = None
            if self._pending:
                self._flush(self._pending)
        if self._reference is None:
            if self._started:
                ok, token = tail_token(self._pending, self._shape)
                # A token over the text bound: the reference route raises for it.
                if ok and (token is None or len(token) <= self._bounds.max_text_bytes):
                    return self._records, token
            self._switch()
        assert self._reference is not None
        records, token = self._reference.close()
        self._envelope.check_records(len(self._records) + len(records))
        return self._records + records, token


def _deeper_than(element: ET.Element, limit: int) -> bool:
    """Whether ``element``'s subtree is more than ``limit`` levels deep (iterative: no recursion)."""
    stack = [(element, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node)
    return False

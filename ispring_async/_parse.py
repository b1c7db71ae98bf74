"""Sans-IO page parsers: body bytes in, msgspec structs out. No sockets, no event loop.

A parser is fed each body chunk as it arrives (``feed``) and returns the whole page at ``close``; a page's
records reach the caller only once the page is complete, so a body that breaks part-way yields nothing and
the transport simply fetches it again.

XML takes two routes through one parser:

* **Every byte** goes through a handler-less expat parser that only checks well-formedness and refuses
  DTDs, entity declarations and external references (as defusedxml does). With no Python callbacks per
  element this runs at expat's floor speed.
* **The fast route** then turns each run of complete ``<result>`` elements into JSON with a handful of
  C-level ``bytes.replace`` passes and decodes it with one ``msgspec.json`` call. Python does nothing per
  element, which is what makes it faster than a tree parser (see benchmarks/). The replacement fragments
  are chosen so that anything but a flat ``<result><field>text</field>...</result>`` sequence (nesting,
  mixed content, self-closing tags, stray elements between records) yields invalid JSON instead of a
  wrong record; a few substring checks send attributes, comments, CDATA, processing instructions and
  whitespace inside tags the same way.
* **The reference route** — a classic expat handler parser — takes over the rest of the page whenever
  the fast route declines. It is the authority: both routes give the same records for any input the fast
  route accepts (tests/test_parse.py checks this property), and every parse error comes from it, with
  the page and the record or element it concerns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Generic, Protocol, TypeVar
from xml.parsers import expat

import msgspec

from ispring_async._config import ResponseFormat
from ispring_async._exceptions import ParseError, UnexpectedContentError, UnsafeXMLError
from ispring_async._models import Department, DepartmentsPage, LearnerResult, ResultsPage

__all__ = [
    "DEFAULT_LIMITS",
    "PageParser",
    "ParseLimits",
    "departments_parser",
    "parse_error_body",
    "results_parser",
]

T_co = TypeVar("T_co", covariant=True)
S = TypeVar("S", bound=msgspec.Struct)


class PageParser(Protocol[T_co]):
    """Feed a body chunk by chunk; ``close`` returns the page (or raises a ``ParseError``)."""

    def feed(self, data: bytes) -> None: ...

    def close(self) -> T_co: ...


class ParseLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds that keep hostile bodies from exhausting memory; exceeding one is a ``ParseError``.

    The API's pages hold at most 1000 records of about half a kilobyte, so the defaults leave a wide
    margin while a 100 MB text node or a million nested elements still fail within a second.
    """

    max_text_bytes: int = 1 << 20
    max_records: int = 200_000
    max_depth: int = 64
    max_json_bytes: int = 256 << 20


DEFAULT_LIMITS: Final = ParseLimits()

# A single record larger than this without its closing tag is not something the fast route handles:
# the reference route takes over and enforces ``max_text_bytes`` / ``max_depth`` element by element.
_MAX_PENDING_BYTES: Final = 4 << 20
_SLICE: Final = 32 << 10
_HTML_SNIFF = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)


# --------------------------------------------------------------------------------------------------
# Hardening shared by both routes


def _refuse_doctype(name: str | None, *_: object) -> None:
    if name and name.lower() == "html":
        raise UnexpectedContentError("the body is an HTML page, not the API's XML")
    raise UnsafeXMLError("the XML declares a DTD, which is refused", where=f"<!DOCTYPE {name}>")


def _refuse_entity(name: str | None, *_: object) -> None:
    raise UnsafeXMLError("the XML declares an entity, which is refused", where=f"<!ENTITY {name}>")


def _refuse_external(*_: object) -> int:
    raise UnsafeXMLError("the XML references an external entity, which is refused")


def _hardened_expat() -> Any:
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def _run_expat(parser: Any, data: bytes, final: bool, page: str) -> None:
    """Feed expat, translating its errors (and the LookupError of an unknown declared encoding)."""
    try:
        parser.Parse(data, final)
    except expat.ExpatError as exc:
        reason = expat.errors.messages[exc.code] if exc.code is not None else str(exc)
        raise ParseError(
            f"malformed XML ({reason})",
            page=page,
            where=f"line {exc.lineno}, column {exc.offset}",
            retryable=True,
        ) from None
    except LookupError as exc:
        raise ParseError(f"the XML declares an encoding Python does not know ({exc})", page=page) from None


# --------------------------------------------------------------------------------------------------
# Struct conversion shared by the routes


class _Shape(Generic[S]):
    """What the parsers need to know about one kind of list page (results or departments)."""

    def __init__(self, struct: type[S], *, container: str, item: str) -> None:
        self.struct = struct
        self.container = container
        self.item = item
        self.list_type: Any = list[struct]  # type: ignore[valid-type]
        self.list_decoder = msgspec.json.Decoder(self.list_type, strict=False)
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        self.fields = frozenset(f.encode_name for f in info.fields)
        # An empty element is "" for a text field but means "absent" for a date or number.
        self.empty_is_absent = frozenset(
            f.encode_name for f in info.fields if not _admits_str(f.type) and not f.required
        )
        head = re.escape(container.encode())
        self.header = re.compile(
            rb"(?:\xef\xbb\xbf)?(?:<\?xml(?:\s+version\s*=\s*[\"']1\.[0-9][\"'])"
            rb"(?:\s+encoding\s*=\s*[\"']utf-8[\"'])?(?:\s+standalone\s*=\s*[\"'](?:yes|no)[\"'])?\s*\?>)?"
            rb"\s*<response>\s*<" + head + rb">\s*",
            re.IGNORECASE,
        )
        self.tail = re.compile(
            rb"\s*</" + head + rb">\s*(?:<nextPageToken>([^<&]*)</nextPageToken>|<nextPageToken/>)?"
            rb"\s*</response>\s*"
        )
        open_item, close_item = f"<{item}>".encode(), f"</{item}>".encode()
        self.open_item, self.close_item = open_item, close_item

    def convert(self, rows: list[dict[str, str]], page: str, first_index: int) -> list[S]:
        try:
            converted: list[S] = msgspec.convert(rows, self.list_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ParseError(
                f"invalid {self.item} ({exc})", page=page, where=_where(exc, self.item, first_index)
            ) from None
        return converted


def _admits_str(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_admits_str(member) for member in t.types)
    return isinstance(t, msgspec.inspect.StrType)


_PATH_INDEX = re.compile(r"\$\[(\d+)\]")


def _where(exc: msgspec.ValidationError, item: str, first_index: int) -> str | None:
    match = _PATH_INDEX.search(str(exc))
    return f"<{item}> #{first_index + int(match.group(1)) + 1} of the page" if match else None


_RESULTS: Final = _Shape(LearnerResult, container="results", item="result")
_DEPARTMENTS: Final = _Shape(Department, container="departments", item="department")


# --------------------------------------------------------------------------------------------------
# The reference route


class _ReferenceParser(Generic[S]):
    """A classic streaming expat handler parser: slow, exact, and the source of every parse error.

    Layout: ``<response>`` → ``<results>`` → ``<result>`` → field elements (text). Unknown elements are
    ignored with everything inside them; text outside fields is ignored; an element inside a known field
    is an error (the value would otherwise be silently partial).
    """

    def __init__(self, shape: _Shape[S], *, page: str, limits: ParseLimits) -> None:
        self._shape = shape
        self._page = page
        self._limits = limits
        self._expat = _hardened_expat()
        self._expat.buffer_text = True
        # Handlers are bound methods; close() drops the expat object so the cycle
        # (self -> expat -> handler -> self) cannot keep finished pages alive until a full GC.
        self._expat.StartElementHandler = self._start
        self._expat.EndElementHandler = self._end
        self._expat.CharacterDataHandler = self._text
        self._path: list[str] = []
        self._row: dict[str, str] | None = None
        self._rows: list[dict[str, str]] = []
        self._field: str | None = None
        self._chunks: list[str] = []
        self._size = 0
        self._seen_container = False
        self._top_text: dict[str, str] = {}
        self._skip_depth = 0

    def feed(self, data: bytes, *, final: bool = False) -> None:
        _run_expat(self._expat, data, final, self._page)

    def _start(self, name: str, attrs: object) -> None:
        path = self._path
        path.append(name)
        depth = len(path)
        if depth > self._limits.max_depth:
            raise ParseError(f"elements nested deeper than {self._limits.max_depth}", page=self._page)
        if self._skip_depth:
            return
        if depth == 1:
            if name.lower() == "html":
                raise UnexpectedContentError("the body is an HTML page, not the API's XML")
            if name != "response":
                raise ParseError(f"unexpected root element <{name}>, expected <response>", page=self._page)
        elif depth == 2:
            if name == self._shape.container:
                self._seen_container = True
            else:
                self._begin_text(name)
        elif depth == 3 and path[1] == self._shape.container:
            if name == self._shape.item:
                if len(self._rows) >= self._limits.max_records:
                    raise ParseError(
                        f"more than {self._limits.max_records} records in one page", page=self._page
                    )
                self._row = {}
            else:
                self._skip_depth = depth
        elif depth == 4 and self._row is not None:
            self._begin_text(name)
        elif depth >= 3:
            if self._field is not None and self._field in self._shape.fields:
                raise ParseError(f"unexpected element <{name}> inside <{self._field}>", page=self._page)
            self._field = None
            self._skip_depth = depth

    def _begin_text(self, name: str) -> None:
        self._field = name
        self._chunks = []
        self._size = 0

    def _text(self, data: str) -> None:
        if self._field is None or self._skip_depth:
            return
        self._size += len(data)
        if self._size > self._limits.max_text_bytes:
            raise ParseError(
                f"text longer than {self._limits.max_text_bytes} characters",
                page=self._page,
                where=f"<{self._field}>",
            )
        self._chunks.append(data)

    def _end(self, name: str) -> None:
        path = self._path
        depth = len(path)
        path.pop()
        if self._skip_depth:
            if depth == self._skip_depth:
                self._skip_depth = 0
            return
        if self._field is not None and depth in (2, 4):
            text = "".join(self._chunks)
            if depth == 2:
                self._top_text[name] = text
            elif self._row is not None and not (text == "" and name in self._shape.empty_is_absent):
                self._row[name] = text
            self._field = None
        elif depth == 3 and self._row is not None:
            self._rows.append(self._row)
            self._row = None

    def close(self, *, first_index: int = 0) -> tuple[list[S], str | None]:
        self.feed(b"", final=True)
        self._expat = None  # break the handler cycle (see __init__)
        if not self._seen_container:
            top = self._top_text
            if "code" in top or "message" in top:
                raise UnexpectedContentError(
                    f"a success status with an error body (code {top.get('code')}: {top.get('message')})"
                )
            raise ParseError(f"no <{self._shape.container}> element in the response", page=self._page)
        records = self._shape.convert(self._rows, self._page, first_index)
        return records, self._top_text.get("nextPageToken") or None


# --------------------------------------------------------------------------------------------------
# The fast route

# Replacement fragments. All text (values and the whitespace between elements) lands inside JSON strings;
# ``<`` and ``>`` of field tags become ``","`` and ``":"`` (two single-byte passes), so a field becomes a
# string member of its record and the text after a closing tag a member keyed "/name" (ignored). The
# item tags become the record boundaries; the text between records sits in a throw-away list, so a stray
# element between records or a nested item yields invalid JSON instead of a wrong record.
_ITEM_OPEN = b'"],"~":"'
_ITEM_CLOSE = b'"},{"~":["'
_PREFIX = b'[{"~":["'
_DANGLING = len(b',{"~":["')
# Flatness: in a copy of the region reduced to its tag punctuation (item tags already replaced), a run
# of leaf fields reads "<></><></>..."; nesting, mixed content or self-closing tags break the pattern.
# Whitespace inside a tag (``<dueDate >``, and every attribute, which needs a space before its name)
# would turn a known field into an unknown key, so it is looked for in the same copy as " >" (names,
# quotes and values are deleted from it). Comments and CDATA (``<!``), processing instructions
# (``<?``) and CR line ends (which XML normalizes) are left to the reference route too.
_REDUCE_MAP = bytes.maketrans(b"\t\n", b"  ")
_REDUCE_DELETE = bytes(b for b in range(256) if b not in b" \t\n</>")
_LEAF = b"<></>"
_RARE = ((b"!", b"<!"), (b"?", b"<?"))
_ENTITIES = {b"lt": b"<", b"gt": b">", b"amp": b"&", b"quot": b'\\"', b"apos": b"'"}
_ENTITY = re.compile(rb"(#x[0-9a-fA-F]+|#[0-9]+);")
_JSON_STR = msgspec.json.Encoder()


class _DeclinedError(Exception):
    """The fast route cannot vouch for this input; the reference route takes over."""


def _unescape_entities(region: bytes) -> bytes:
    # Cost proportional to the number of "&", not to the size: split once, fix each piece's head.
    pieces = region.split(b"&")
    entities = _ENTITIES
    for i in range(1, len(pieces)):
        piece = pieces[i]
        end = piece.find(b";", 0, 12)
        value = entities.get(piece[:end])
        if value is None:
            match = _ENTITY.match(piece)
            if match is None:  # expat accepted the document, so this cannot happen; stay safe anyway
                raise _DeclinedError
            name = match.group(1)
            code = int(name[2:], 16) if name[1:2] in b"xX" else int(name[1:])
            value = _JSON_STR.encode(chr(code))[1:-1]
        pieces[i] = value + piece[end + 1 :]
    return b"".join(pieces)


def _is_flat(region: bytes) -> bool:
    tags = region.translate(_REDUCE_MAP, _REDUCE_DELETE)
    if b" >" in tags:
        return False
    tags = tags.replace(b" ", b"")
    while b">/" in tags:  # a "/" in text sits after a ">"; only "</" belongs to a tag
        tags = tags.replace(b">/", b">")
    return tags == _LEAF * (len(tags) // len(_LEAF)) and len(tags) % len(_LEAF) == 0


def _fuse_items(region: bytes, shape: _Shape[Any]) -> bytes:
    """Turn the item tags into record boundaries in one pass where records are separated alike.

    ``region`` runs from an opening item tag to a closing one. The boundary between its first two
    records (``</result>``, the whitespace after it, ``<result>``) is replaced everywhere at once, the
    whitespace dropped (it would only land in a throw-away string). One multi-byte pass instead of two,
    and usually no newline left to escape. A boundary spelled otherwise is left as generic tags, which
    the flatness check rejects, so the caller then falls back to replacing each tag.
    """
    open_item, close_item = shape.open_item, shape.close_item
    inner = region[len(open_item) : -len(close_item)]
    cut = inner.find(close_item)
    if cut >= 0:
        after = cut + len(close_item)
        following = inner.find(open_item, after, after + 64)
        if following >= 0 and not inner[after:following].strip():
            inner = inner.replace(inner[cut : following + len(open_item)], _ITEM_CLOSE + _ITEM_OPEN)
    return _ITEM_OPEN + inner + _ITEM_CLOSE


def _to_json(region: bytes, shape: _Shape[Any]) -> bytes:
    if b"\r" in region:
        raise _DeclinedError
    for rare, marker in _RARE:
        if rare in region and marker in region:
            raise _DeclinedError
    # Text must not be able to close a JSON string: escape backslash first, then quotes; both before
    # any fragment (which has quotes of its own) is written.
    if b"\\" in region:
        region = region.replace(b"\\", b"\\\\")
    if b'"' in region:
        region = region.replace(b'"', b'\\"')
    fused = _fuse_items(region, shape)
    if _is_flat(fused):
        region = fused
    else:
        # Records not all separated alike (or anything odd): replace each item tag on its own, and
        # let the flatness check judge that.
        region = region.replace(shape.close_item, _ITEM_CLOSE).replace(shape.open_item, _ITEM_OPEN)
        if not _is_flat(region):
            raise _DeclinedError
    if b"\n" in region:
        region = region.replace(b"\n", b"\\n")
    if b"\t" in region:
        region = region.replace(b"\t", b"\\t")
    region = region.replace(b"<", b'","').replace(b">", b'":"')
    if b"&" in region:
        # Entities are resolved only now, so a decoded "<" can never be taken for a tag.
        region = _unescape_entities(region)
    return _PREFIX + region[:-_DANGLING] + b"]"


class _XmlListParser(Generic[S]):
    """One page of a list endpoint in XML; see the module docstring for the two routes."""

    def __init__(self, shape: _Shape[S], *, page: str, limits: ParseLimits) -> None:
        self._shape = shape
        self._page = page
        self._limits = limits
        self._validator = _hardened_expat()
        self._pending = b""
        self._records: list[S] = []
        self._started = False  # the header (prolog, <response>, <container>) was consumed
        self._reference: _ReferenceParser[S] | None = None
        self._sniffed = False

    def feed(self, data: bytes) -> None:
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
        _run_expat(self._validator, data, False, self._page)
        if self._reference is not None:
            self._reference.feed(data)
            return
        pending = self._pending + data if self._pending else data
        cut = pending.rfind(self._shape.close_item)
        if cut < 0:
            self._pending = pending
            if len(pending) > _MAX_PENDING_BYTES:
                self._switch()
            return
        end = cut + len(self._shape.close_item)
        self._pending = pending[end:]
        try:
            self._fast(pending[:end])
        except _DeclinedError:
            self._pending = pending
            self._switch()

    def _sniff(self, data: bytes) -> None:
        if len(data) < 64 and not data.strip():
            return
        self._sniffed = True
        if _HTML_SNIFF.match(data):
            raise UnexpectedContentError(f"the body of {self._page} is an HTML page, not the API's XML")

    def _fast(self, chunk: bytes) -> None:
        shape = self._shape
        start = chunk.find(shape.open_item)
        if start < 0:
            raise _DeclinedError
        if self._started:
            if chunk[:start].strip():
                raise _DeclinedError
        else:
            if not shape.header.fullmatch(chunk, 0, start):
                raise _DeclinedError
        try:
            records = shape.list_decoder.decode(_to_json(chunk[start:], shape))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise _DeclinedError from None
        if len(self._records) + len(records) > self._limits.max_records:
            raise _DeclinedError
        self._records += records
        self._started = True

    def _switch(self) -> None:
        """Hand the unconsumed bytes, and everything after them, to the reference route."""
        reference = _ReferenceParser(self._shape, page=self._page, limits=self._limits)
        if self._started:
            # Records up to here were consumed; re-open the layout they sat in.
            reference.feed(b"<response><" + self._shape.container.encode() + b">")
        reference.feed(self._pending)
        self._pending = b""
        self._reference = reference

    def close(self) -> tuple[list[S], str | None]:
        try:
            _run_expat(self._validator, b"", True, self._page)
        finally:
            self._validator = None
        if self._reference is None:
            tail = self._shape.tail.fullmatch(self._pending) if self._started else None
            if tail is not None:
                return self._records, (tail.group(1) or b"").decode() or None
            self._switch()
        assert self._reference is not None
        records, token = self._reference.close(first_index=len(self._records))
        return self._records + records, token


# --------------------------------------------------------------------------------------------------
# JSON


class _JsonResults(msgspec.Struct):
    results: list[LearnerResult]
    nextPageToken: str | None = None


class _JsonDepartments(msgspec.Struct):
    departments: list[Department]
    nextPageToken: str | None = None


_JSON_RESULTS = msgspec.json.Decoder(_JsonResults, strict=False)
_JSON_DEPARTMENTS = msgspec.json.Decoder(_JsonDepartments, strict=False)


class _JsonParser(Generic[T_co]):
    """JSON pages cannot be decoded incrementally by msgspec; chunks are joined at close (bounded)."""

    def __init__(self, decode: Callable[[bytes], T_co], *, page: str, limits: ParseLimits) -> None:
        self._decode = decode
        self._page = page
        self._limits = limits
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        if not self._chunks and _HTML_SNIFF.match(data):
            raise UnexpectedContentError(f"the body of {self._page} is an HTML page, not the API's JSON")
        self._size += len(data)
        if self._size > self._limits.max_json_bytes:
            raise ParseError(f"JSON body larger than {self._limits.max_json_bytes} bytes", page=self._page)
        self._chunks.append(data)

    def close(self) -> T_co:
        body = b"".join(self._chunks)
        self._chunks = []
        try:
            return self._decode(body)
        except msgspec.ValidationError as exc:
            raise ParseError(f"invalid JSON page ({exc})", page=self._page) from None
        except msgspec.DecodeError as exc:
            raise ParseError(f"malformed JSON ({exc})", page=self._page, retryable=True) from None


def _json_results(body: bytes) -> ResultsPage:
    decoded = _JSON_RESULTS.decode(body)
    return _results_page(decoded.results, decoded.nextPageToken or None)


def _json_departments(body: bytes) -> DepartmentsPage:
    decoded = _JSON_DEPARTMENTS.decode(body)
    return _departments_page(decoded.departments, decoded.nextPageToken or None)


# --------------------------------------------------------------------------------------------------
# Public factories


class _XmlPage(Generic[S, T_co]):
    """Adapts the list parser to a page type (records and token -> ``ResultsPage`` etc.)."""

    def __init__(
        self, shape: _Shape[S], make: Callable[[list[S], str | None], T_co], *, page: str, limits: ParseLimits
    ) -> None:
        self._inner = _XmlListParser(shape, page=page, limits=limits)
        self._make = make
        self.feed = self._inner.feed

    def close(self) -> T_co:
        return self._make(*self._inner.close())


def _results_page(records: list[LearnerResult], token: str | None) -> ResultsPage:
    return ResultsPage(records=records, next_page_token=token)


def _departments_page(departments: list[Department], token: str | None) -> DepartmentsPage:
    return DepartmentsPage(departments=departments, next_page_token=token)


def results_parser(
    fmt: ResponseFormat, *, page: str, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[ResultsPage]:
    """A parser for one ``/learners/results`` page; ``page`` labels errors (never put secrets in it)."""
    if fmt is ResponseFormat.JSON:
        return _JsonParser(_json_results, page=page, limits=limits)
    return _XmlPage(_RESULTS, _results_page, page=page, limits=limits)


def departments_parser(
    fmt: ResponseFormat, *, page: str, limits: ParseLimits = DEFAULT_LIMITS
) -> PageParser[DepartmentsPage]:
    """A parser for one ``/departments`` page."""
    if fmt is ResponseFormat.JSON:
        return _JsonParser(_json_departments, page=page, limits=limits)
    return _XmlPage(_DEPARTMENTS, _departments_page, page=page, limits=limits)


class _ErrorBody(msgspec.Struct):
    code: int | str | None = None
    message: str | None = None


_ERROR_XML = re.compile(rb"<(code|message)>([^<]*)</\1>")


def parse_error_body(body: bytes) -> tuple[int | None, str | None]:
    """The API's ``code`` and ``message`` from an error body in JSON or XML; ``(None, None)`` if absent.

    Never raises: an error body is read only to enrich the exception already being raised. The XML is
    scanned with a pattern rather than parsed, so a hostile error body cannot do harm.
    """
    body = body[:65536]
    code: int | str | None = None
    message: str | None = None
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        try:
            decoded = msgspec.json.decode(stripped, type=_ErrorBody)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None, None
        code, message = decoded.code, decoded.message
    else:
        for name, value in _ERROR_XML.findall(body):
            text = value.decode("utf-8", "replace").strip()
            if name == b"code":
                code = text
            else:
                message = _unescape(text)
    if isinstance(code, str):
        code = int(code) if code.strip().lstrip("-").isdigit() else None
    return code, message


def _unescape(text: str) -> str:
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )

"""The reference route: a classic streaming expat handler parser — exact, and the source of every error.

Layout: ``<response>`` → ``<results>`` → ``<result>`` → field elements (text). Unknown elements are
skipped with everything inside them, their text never buffered; text outside fields is ignored; an
element inside a known field is an error (the value would otherwise be silently partial).

It parses whole pages when the fast route cannot start (an odd prolog, a token before the records), the
rest of a page the fast route left, and, as a *fragment* parser, single groups of records the fast route
declined (``fragment=True``: the bytes are wrapped in ``<response><results>…</results></response>``, and
malformed XML — a group cut across a nested item — declines instead of failing, as the page as a whole
was already found well-formed).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from ispring_async._exceptions import ParseError, UnexpectedContentError
from ispring_async._parse._envelope import Bounds
from ispring_async._parse._hardening import ExpatSyntaxError, hardened_expat, run_expat
from ispring_async._parse._shapes import TOP_FIELDS, DeclinedError, Shape

__all__ = ["ReferenceParser"]

S = TypeVar("S", bound=msgspec.Struct)


class ReferenceParser(Generic[S]):
    """Streams one page (or a fragment of one) through expat handlers into rows, converted at close."""

    def __init__(
        self, shape: Shape[S], *, page: str, bounds: Bounds, first_index: int = 0, fragment: bool = False
    ) -> None:
        self._shape = shape
        self._page = page
        self._bounds = bounds
        # Records already taken from this page by the other route: one count, one limit, per page.
        self._first_index = first_index
        self._fragment = fragment
        self._expat: Any = hardened_expat()
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
        self._fed = 0
        if fragment:
            self.feed(b"<response><" + shape.container.encode() + b">")

    def feed(self, data: bytes, *, final: bool = False) -> None:
        """Parse the next bytes; ``final`` ends the document."""
        self._fed += len(data)
        try:
            run_expat(self._expat, data, final, self._page)
        except ExpatSyntaxError:
            if self._fragment:
                raise DeclinedError from None
            raise

    @property
    def unfinished_token_bytes(self) -> int:
        """Bytes expat holds of a token (tag, comment, PI) it has not seen the end of."""
        return self._fed - max(int(self._expat.CurrentByteIndex), 0)

    def _start(self, name: str, attrs: object) -> None:
        path = self._path
        path.append(name)
        depth = len(path)
        if depth > self._bounds.max_depth:
            raise ParseError(f"elements nested deeper than {self._bounds.max_depth}", page=self._page)
        if self._skip_depth:
            return
        shape = self._shape
        if depth == 1:
            if name.lower() == "html":
                raise UnexpectedContentError("the body is an HTML page, not the API's XML")
            if name != "response":
                raise ParseError(f"unexpected root element <{name}>, expected <response>", page=self._page)
        elif depth == 2:
            if name == shape.container:
                self._seen_container = True
            elif name in TOP_FIELDS:
                self._begin_text(name)
            else:
                self._skip_depth = depth
        elif depth == 3 and path[1] == shape.container:
            if name == shape.item:
                if self._first_index + len(self._rows) >= self._bounds.max_records:
                    raise ParseError(
                        f"more than {self._bounds.max_records} records in one page", page=self._page
                    )
                self._row = {}
            else:
                self._skip_depth = depth
        elif depth == 4 and self._row is not None and name in shape.fields:
            self._begin_text(name)
        elif depth >= 3:
            if self._field is not None and self._field in shape.fields:
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
        if self._size > self._bounds.max_text_bytes:
            raise self._text_too_long(self._field)
        self._chunks.append(data)

    def _text_too_long(self, name: str) -> ParseError:
        # One message for every handler route (flat records here, nested ones in _nested).
        return ParseError(
            f"text longer than {self._bounds.max_text_bytes} characters", page=self._page, where=f"<{name}>"
        )

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

    def close_rows(self) -> list[dict[str, str]]:
        """End a fragment: its records' field texts, unconverted."""
        self.feed(b"</" + self._shape.container.encode() + b"></response>", final=True)
        self._expat = None  # break the handler cycle (see __init__)
        return self._rows

    def close(self) -> tuple[list[S], str | None]:
        """End the document: the records and the ``nextPageToken`` (``None`` if absent or empty)."""
        if self._fragment:
            self.feed(b"</" + self._shape.container.encode() + b"></response>", final=True)
        else:
            self.feed(b"", final=True)
        self._expat = None  # break the handler cycle (see __init__)
        if not self._seen_container:
            top = self._top_text
            if "code" in top or "message" in top:
                raise UnexpectedContentError(
                    f"a success status with an error body (code {top.get('code')}: {top.get('message')})"
                )
            raise ParseError(f"no <{self._shape.container}> element in the response", page=self._page)
        records = self._shape.convert(self._rows, self._page, self._first_index)
        return records, self._top_text.get("nextPageToken") or None

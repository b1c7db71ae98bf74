"""The safety envelope every body goes through, XML or JSON: what a parser is, and how much it may take.

Every bound is checked as the bytes stream in (the transport feeds *decompressed* chunks, so a gzip bomb
is counted at its real size), with C-level work only (``len`` and ``bytes.count``): a page that breaks a
bound fails within a pass over the bytes that broke it, whatever the compression ratio.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeVar

import msgspec

from ispring_async._exceptions import ParseError

__all__ = ["DEFAULT_LIMITS", "DEFAULT_PAGE_SIZE", "Bounds", "Envelope", "PageParser", "ParseLimits"]

T_co = TypeVar("T_co", covariant=True)

DEFAULT_PAGE_SIZE: Final = 1000
"""The API's largest page, assumed when a parser is not told the ``pageSize`` it was asked for."""


class PageParser(Protocol[T_co]):
    """What the transport feeds a body into: ``feed`` each chunk, ``close`` returns the page.

    ``close`` (and ``feed``, as soon as it can tell) raises a ``ParseError`` for a body that is not a
    valid page; nothing of a failed body is returned.
    """

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the (decompressed) body."""

    def close(self) -> T_co:
        """End of body: return the parsed value or raise ``ParseError``."""


class ParseLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds that keep hostile bodies from exhausting time or memory; exceeding one is a ``ParseError``.

    ``None`` derives a bound from the ``pageSize`` the page was asked for: a page may hold at most that
    many records, ``32 KiB`` of body per record (a real record is about half a kilobyte; 32 MiB for a
    1000-record page) and 96 markup constructs (``<``) per record (a real one has 35 to 50; 512 for
    a user, whose real records have 80 to 200). Set on
    ``Client(parse_limits=ParseLimits(...))``.

    >>> ParseLimits(max_body_bytes=8 << 20).bounds(page_size=1000).max_records
    1000
    """

    max_body_bytes: int | None = None
    """Decompressed bytes per body, counted as they stream in."""
    max_records: int | None = None
    """Records per page; ``None``: the ``pageSize`` asked for."""
    max_markup: int | None = None
    """``<`` per body: bounds the elements, and so the distinct element names expat keeps, per page."""
    max_text_bytes: int = 1 << 20
    """Characters of one field's text."""
    max_depth: int = 64
    """Nesting of XML elements."""
    max_token_bytes: int = 256 << 10
    """Bytes of one XML tag, comment or processing instruction. libexpat before 2.6 scans an
    unfinished token again on every chunk, so a token is bounded to keep that cost linear."""

    def __post_init__(self) -> None:
        names = (
            "max_body_bytes",
            "max_records",
            "max_markup",
            "max_text_bytes",
            "max_depth",
            "max_token_bytes",
        )
        for name in names:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"ParseLimits.{name} must be a positive int or None, got {value!r}")
        if self.max_depth < 8:
            # Records sit at depth 3 and their fields at 4: a smaller bound would refuse every page.
            raise ValueError(f"ParseLimits.max_depth must be at least 8, got {self.max_depth}")

    def bounds(self, *, page_size: int | None, markup_per_record: int = 96) -> Bounds:
        """The bounds for one page asked for with ``page_size`` (``None``: the API's largest).

        ``markup_per_record``: the ``<`` a record of this endpoint may hold (96 for a flat result; a
        user, with its profile fields, roles and groups, nests several times that).
        """
        size = DEFAULT_PAGE_SIZE if page_size is None else max(1, page_size)
        return Bounds(
            max_body_bytes=self.max_body_bytes or (size << 15) + (64 << 10),
            max_records=self.max_records or size,
            max_markup=self.max_markup or markup_per_record * size + 1024,
            max_text_bytes=self.max_text_bytes,
            max_depth=self.max_depth,
            max_token_bytes=self.max_token_bytes,
        )


DEFAULT_LIMITS: Final = ParseLimits()


class Bounds(msgspec.Struct, frozen=True, kw_only=True):
    """``ParseLimits`` resolved for one page: every bound a plain int."""

    max_body_bytes: int
    max_records: int
    max_markup: int
    max_text_bytes: int
    max_depth: int
    max_token_bytes: int


class Envelope:
    """Counts one body's bytes (and, for XML, its markup) as they stream; raises past a bound."""

    __slots__ = ("_bounds", "_bytes", "_markup", "_page")

    def __init__(self, bounds: Bounds, *, page: str) -> None:
        self._bounds = bounds
        self._page = page
        self._bytes = 0
        self._markup = 0

    def take(self, data: bytes, *, markup: bool) -> None:
        """Count ``data`` (and its ``<`` if ``markup``), refusing it past a bound."""
        self._bytes += len(data)
        if self._bytes > self._bounds.max_body_bytes:
            raise ParseError(
                f"body larger than {self._bounds.max_body_bytes} bytes (decompressed)", page=self._page
            )
        if markup:
            self._markup += data.count(b"<")
            if self._markup > self._bounds.max_markup:
                raise ParseError(
                    f"more than {self._bounds.max_markup} tags or other markup in one page", page=self._page
                )

    def check_records(self, count: int) -> None:
        """Refuse a page holding more records than it was asked for (counted across routes)."""
        if count > self._bounds.max_records:
            raise ParseError(f"more than {self._bounds.max_records} records in one page", page=self._page)

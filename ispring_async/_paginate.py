"""Page chains: request a page, hand it over, follow its ``nextPageToken``, stop when there is none.

A chain can start from a saved token, so an export that checkpoints each page's ``next_page_token``
resumes exactly after the last page it handled. A chain that would never end is stopped with
``PaginationError`` *before* the offending page is yielded, so a caller never checkpoints it:

- a token the chain has already followed (including the one it started from): the server is looping;
- ``MAX_STALE_PAGES`` pages in a row that add nothing (empty, or the very records of an earlier page
  of the chain) yet carry a next token: a server handing out fresh tokens forever;
- more than ``max_pages`` pages in one chain: the backstop for every other way never to end.

A resumed chain counts again from its saved token, so a ``--resume`` after such an error ends the same
bounded way instead of looping.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Protocol, TypeVar

from ispring_async._exceptions import PaginationError

__all__ = ["DEFAULT_MAX_PAGES", "MAX_STALE_PAGES", "FetchPage", "follow_pages"]

DEFAULT_MAX_PAGES = 100_000
"""Pages one chain may have: 100 million records at the API's largest page size."""

MAX_STALE_PAGES = 20
"""Pages in a row that add nothing new, with a next token, before the chain is taken as endless."""


class _Paged(Protocol):
    @property
    def next_page_token(self) -> str | None: ...


P = TypeVar("P", bound=_Paged)

FetchPage = Callable[[str | None, int], Awaitable[P]]
"""``fetch(page_token, number)``: one page, fetched with ``page_token`` (``None`` for the first)."""

Fingerprint = Callable[[P], Hashable | None]
"""What a page holds, cheaply (``None`` for an empty page): two pages with equal fingerprints repeat."""


async def follow_pages(
    fetch: FetchPage[P],
    *,
    what: str,
    page_token: str | None = None,
    fingerprint: Fingerprint[P] | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> AsyncGenerator[P, None]:
    """Yield pages from ``page_token`` (or the start) until one comes without a next token.

    ``number`` counts pages from 1 in this chain (a resumed chain starts again at 1); ``what`` names the
    chain in errors, e.g. ``"GET /learners/results"``. ``fingerprint`` tells empty and repeated pages
    (without one, every page counts as new); the module docstring lists what raises
    ``PaginationError``. Memory stays bounded: one fingerprint per page, not one entry per record.
    """
    seen: set[str] = set()
    fingerprints: set[Hashable] = set()
    stale = 0
    token = page_token or None
    if token is not None:
        seen.add(token)
    number = 1
    while True:
        page = await fetch(token, number)
        next_token = page.next_page_token or None
        if next_token is not None:
            if next_token in seen:
                raise PaginationError(
                    f"{what} page {number} returned a page token that was already followed; "
                    "the server is repeating pages, stopping instead of looping"
                )
            if number >= max_pages:
                raise PaginationError(
                    f"{what} page {number} still has a next page: the chain exceeds {max_pages:,} pages "
                    "(raise the page limit if this account really is that large)"
                )
            key = fingerprint(page) if fingerprint is not None else number
            if key is None or key in fingerprints:
                stale += 1
                if stale >= MAX_STALE_PAGES:
                    raise PaginationError(
                        f"{what} page {number}: {stale} pages in a row were empty or repeated earlier "
                        "ones, each with a new page token; the server is paging forever, stopping"
                    )
            else:
                stale = 0
                fingerprints.add(key)
        yield page
        if next_token is None:
            return
        seen.add(next_token)
        token = next_token
        number += 1

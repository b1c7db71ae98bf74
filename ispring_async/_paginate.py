"""Page chains: request a page, hand it over, follow its ``nextPageToken``, stop when there is none.

A chain can start from a saved token, so an export that checkpoints each page's ``next_page_token``
resumes exactly after the last page it handled. A token the chain has already followed (including the
one it started from) is an error: the server is looping, and following it would never end or would
deliver records twice.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, TypeVar

from ispring_async._exceptions import PaginationError

__all__ = ["FetchPage", "follow_pages"]


class _Paged(Protocol):
    @property
    def next_page_token(self) -> str | None: ...


P = TypeVar("P", bound=_Paged)

FetchPage = Callable[[str | None, int], Awaitable[P]]
"""``fetch(page_token, number)``: one page, fetched with ``page_token`` (``None`` for the first)."""


async def follow_pages(
    fetch: FetchPage[P], *, what: str, page_token: str | None = None
) -> AsyncGenerator[P, None]:
    """Yield pages from ``page_token`` (or the start) until one comes without a next token.

    ``number`` counts pages from 1 in this chain (a resumed chain starts again at 1); ``what`` names the
    chain in errors, e.g. ``"GET /learners/results"``. A page whose next token was already followed
    raises ``PaginationError`` *before* the page is yielded, so a caller never checkpoints a looping
    token.
    """
    seen: set[str] = set()
    token = page_token or None
    if token is not None:
        seen.add(token)
    number = 1
    while True:
        page = await fetch(token, number)
        next_token = page.next_page_token or None
        if next_token is not None and next_token in seen:
            raise PaginationError(
                f"{what} page {number} returned a page token that was already followed; "
                "the server is repeating pages, stopping instead of looping"
            )
        yield page
        if next_token is None:
            return
        seen.add(next_token)
        token = next_token
        number += 1

"""Page chains: follow tokens to the end, resume from a token, refuse a repeated token or an endless chain."""

from __future__ import annotations

import pytest
from aiohttp import web

from ispring_async import Client, ConfigurationError, PaginationError, ResultsPage
from ispring_async._paginate import MAX_STALE_PAGES, follow_pages
from tests._servers import ident, results_body, serve


class Script:
    """A fake page source: ``tokens[t]`` is the next token of the page fetched with token ``t``."""

    def __init__(self, tokens: dict[str | None, str | None]) -> None:
        self.tokens = tokens
        self.calls: list[tuple[str | None, int]] = []

    async def __call__(self, token: str | None, number: int) -> ResultsPage:
        self.calls.append((token, number))
        return ResultsPage(records=[], next_page_token=self.tokens[token])


async def collect(script: Script, *, page_token: str | None = None) -> list[str | None]:
    """The next tokens of every page the chain yields."""
    return [page.next_page_token async for page in follow_pages(script, what="GET /x", page_token=page_token)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "last",
    [pytest.param(None, id="absent-token"), pytest.param("", id="empty-token")],
)
async def test_follows_tokens_until_none_or_empty(last: str | None) -> None:
    """Tokens are followed in order; an absent or empty token ends the chain."""
    script = Script({None: "a", "a": "b", "b": last})
    assert await collect(script) == ["a", "b", last]
    assert script.calls == [(None, 1), ("a", 2), ("b", 3)]


@pytest.mark.anyio
async def test_resume_from_saved_token() -> None:
    """A chain started from a saved token fetches from that token on, numbering pages from 1."""
    script = Script({None: "a", "a": "b", "b": "c", "c": None})
    assert await collect(script, page_token="b") == ["c", None]
    assert script.calls == [("b", 1), ("c", 2)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tokens", "start", "yielded"),
    [
        pytest.param({None: "a", "a": "a"}, None, ["a"], id="self-loop"),
        pytest.param({None: "a", "a": "b", "b": "a"}, None, ["a", "b"], id="cycle"),
        pytest.param({"s": "t", "t": "s"}, "s", ["t"], id="back-to-resume-token"),
    ],
)
async def test_repeated_token_is_an_error(
    tokens: dict[str | None, str | None], start: str | None, yielded: list[str]
) -> None:
    """A token already followed raises PaginationError, and the page carrying it is not yielded."""
    script = Script(tokens)
    got: list[str | None] = []

    async def run() -> None:
        async for page in follow_pages(script, what="GET /x", page_token=start):
            got.append(page.next_page_token)

    with pytest.raises(PaginationError, match="already followed"):
        await run()
    assert got == yielded
    assert len(script.calls) == len(yielded) + 1


@pytest.mark.anyio
async def test_chain_is_lazy() -> None:
    """No page is fetched before the caller asks for it, so a caller that stops early stops the chain."""
    script = Script({None: "a", "a": "b", "b": None})
    chain = follow_pages(script, what="GET /x")
    assert script.calls == []
    await chain.__anext__()
    await chain.aclose()
    assert script.calls == [(None, 1)]


# -- chains that would never end (real HTTP through the client) ---------------------------------------


class Endless:
    """``/learners/results`` that always has a next page, with a fresh token each time.

    ``mode``: ``empty`` pages; the ``same`` records again; a ``cycle`` of two pages; or ``fresh``
    records forever (only a page cap ends that one).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hits = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        n = self.hits
        indices = {
            "empty": range(0),
            "same": range(3),
            "cycle": range(3) if n % 2 else range(3, 6),
            "fresh": range(3 * n, 3 * n + 3),
        }[self.mode]
        return web.Response(body=results_body(indices, f"token-{n}"), content_type="application/xml")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "limit", "match"),
    [
        pytest.param("empty", 100_000, "empty or repeated", id="empty-pages-with-tokens"),
        pytest.param("same", 100_000, "empty or repeated", id="same-records-again"),
        pytest.param("cycle", 100_000, "empty or repeated", id="two-pages-in-turn"),
        pytest.param("fresh", 40, "exceeds 40 pages", id="page-cap"),
    ],
)
async def test_a_chain_that_never_ends_is_a_pagination_error(mode: str, limit: int, match: str) -> None:
    """Fresh tokens forever end in PaginationError after a bounded number of requests, library-side."""
    endless = Endless(mode)

    async def drain(client: Client) -> None:
        async for _ in client.result_pages():
            pass

    async with serve({"/learners/results": endless}) as server:
        client = Client(server.base_url, token="t", max_pages_per_chain=limit)
        async with client:
            with pytest.raises(PaginationError, match=match):
                await drain(client)
    assert endless.hits <= max(MAX_STALE_PAGES + 2, 40)


@pytest.mark.anyio
async def test_a_few_empty_pages_with_a_token_are_followed() -> None:
    """Fewer than MAX_STALE_PAGES empty pages in a row are followed: only an unbounded run is an error."""
    pages = [range(3), *([range(0)] * (MAX_STALE_PAGES - 1)), range(3, 6)]

    async def handler(request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("pageToken", "0"))
        token = str(number + 1) if number + 1 < len(pages) else None
        return web.Response(body=results_body(pages[number], token), content_type="application/xml")

    async with serve({"/learners/results": handler}) as server, Client(server.base_url, token="t") as client:
        records = [r.user_id async for page in client.result_pages() for r in page.records]
    assert records == [ident(1, i) for i in range(6)]


@pytest.mark.parametrize("value", [pytest.param(0, id="zero"), pytest.param(True, id="bool")])
def test_the_page_cap_must_be_a_positive_int(value: object) -> None:
    """max_pages_per_chain below 1 (or not an int) is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Client("http://127.0.0.1:9", token="t", max_pages_per_chain=value)  # type: ignore[arg-type]

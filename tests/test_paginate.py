"""Page chains: follow tokens to the end, resume from a token, refuse a token that repeats."""

from __future__ import annotations

import pytest

from ispring_async import PaginationError, ResultsPage
from ispring_async._paginate import follow_pages


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

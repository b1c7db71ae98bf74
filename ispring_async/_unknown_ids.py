"""Unknown ids: the API fails a whole request with 400 when one id in a list is unknown; find and skip them.

Production code against the real service batches ``userIds[]`` and, on a 400 ("one or more invalid
user IDs"), retries id by id. Ids come from people (an HR list, a file), and a department can vanish
between ``GET /departments`` and a results call, so a nightly export meets this. The message names the
list at best, never the id, and its wording is not documented, so nothing here reads it.

By default a 400 to a request with id lists is raised as a ``BadRequestError`` naming the lists it
carried. With ``skip=True`` the culprits are isolated by probing (one-record pages):

1. the request without any id list: if that is refused too, the 400 is not about ids and is raised;
2. each id list alone, bisected: a clean half costs one probe, a refused one is halved again, so ``k``
   unknown ids among ``n`` cost at most about ``2 * k * log2(n)`` probes (one when the list is clean).
   An id is taken as unknown only when a probe of that id alone was refused: nothing is inferred from
   a refused whole whose halves pass, because a list can be refused for its length (a URL longer than
   the server's limit answers 400 too), and inferring there would skip known ids;
3. the request is sent again without the unknown ids. They match no row, so the rows are exactly the
   query's. A list left empty means the request matches nothing: the chain ends with an empty page,
   no request is sent (a request without the list would match *everything*).

The unknown ids are kept per client, so every later request (the other windows of a split, a page
after a resume) leaves them out before it is sent; isolation is single-flight, so chains that hit
the same 400 at once wait for one search and then reuse its answer. A chain's page tokens belong to
the narrowed query; a resumed chain narrows its query the same way before following its saved token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from ispring_async._exceptions import BadRequestError
from ispring_async._paginate import FetchPage

__all__ = ["ID_PARAMETERS", "UnknownIds"]

logger = logging.getLogger("ispring_async")

ID_PARAMETERS = (
    "enrollmentIds[]",
    "userIds[]",
    "courseIds[]",
    "departmentIds[]",
    # /learners/modules/results
    "moduleIds[]",
    "courseItemIds[]",
    # /users/v2 (its logins[] and emails[] are no ids: an unknown one matches nothing)
    "departments[]",
    "groups[]",
)
"""The id lists one unknown value of which fails a whole request (of any endpoint)."""


class _Paged(Protocol):
    @property
    def next_page_token(self) -> str | None: ...


P = TypeVar("P", bound=_Paged)
Params = list[tuple[str, str]]
Send = Callable[[Params, "str | None", str], Awaitable[P]]
"""``send(params, page_token, label)``: one request (with the transport's retries) or its error."""

_PAGING = ("pageSize", "pageToken")


def id_lists(params: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The id lists among ``params``, by parameter name, in order."""
    lists: dict[str, list[str]] = {}
    for name, value in params:
        if name in ID_PARAMETERS:
            lists.setdefault(name, []).append(value)
    return lists


def _describe(lists: dict[str, list[str]]) -> str:
    return ", ".join(f"{name} ({len(ids)} id{'s' if len(ids) != 1 else ''})" for name, ids in lists.items())


class UnknownIds:
    """The ids one client found unknown, and the search that finds them (see the module docstring)."""

    def __init__(self, *, skip: bool) -> None:
        self.skip = skip
        self._unknown: dict[str, dict[str, None]] = {}
        self._lock = asyncio.Lock()
        self.probes = 0
        """Requests sent only to find unknown ids."""

    def __repr__(self) -> str:
        return f"UnknownIds(skip={self.skip}, skipped={sum(map(len, self._unknown.values()))})"

    @property
    def skipped(self) -> dict[str, tuple[str, ...]]:
        """The ids skipped so far, by parameter (``"userIds[]"``...), in the order they were found."""
        return {name: tuple(ids) for name, ids in self._unknown.items() if ids}

    def narrow(self, params: Params) -> Params | None:
        """``params`` without the known unknown ids; ``None`` when an id list is left empty."""
        unknown = self._unknown
        if not unknown:
            return params
        kept = [(n, v) for n, v in params if not (n in unknown and v in unknown[n])]
        before, after = id_lists(params), id_lists(kept)
        if any(name not in after for name in before):
            return None
        return kept

    def guard(self, send: Send[P], params: Params, *, what: str, empty: Callable[[], P]) -> FetchPage[P]:
        """A ``fetch(page_token, number)`` for ``follow_pages`` that handles 400s on id lists."""

        async def fetch(token: str | None, number: int) -> P:
            label = f"{what} page {number}"
            while True:
                current = self.narrow(params)
                if current is None:
                    return empty()
                try:
                    return await send(current, token, label)
                except BadRequestError as exc:
                    lists = id_lists(current)
                    if not self.skip:
                        raise BadRequestError(
                            f"{exc}. The request carried {_describe(lists)}; the API refuses a whole "
                            "request when one id in a list is unknown to the account: check the ids, or "
                            "skip unknown ones with skip_unknown_ids=True (--skip-unknown-ids)",
                            status=exc.status,
                            url=exc.url,
                            code=exc.code,
                            api_message=exc.api_message,
                        ) from exc
                    if not await self._isolate(send, current, what):
                        exc.add_note(
                            f"no unknown id found in {_describe(lists)}: the request is refused for "
                            "another reason"
                        )
                        raise

        return fetch

    async def _isolate(self, send: Send[P], current: Params, what: str) -> bool:
        """Find the unknown ids of ``current``; whether any new one was found."""
        async with self._lock:
            if self.narrow(current) != current:
                # Another chain found some of them while this one waited: try again with its answer.
                return True
            base = [(n, v) for n, v in current if n not in ID_PARAMETERS and n not in _PAGING]
            base.append(("pageSize", "1"))
            label = f"{what} (probing for unknown ids)"

            async def accepted(extra: Sequence[tuple[str, str]]) -> bool:
                self.probes += 1
                try:
                    await send([*base, *extra], None, label)
                except BadRequestError:
                    return False
                return True

            async def culprits(name: str, ids: list[str]) -> list[str]:
                if await accepted([(name, i) for i in ids]):
                    return []
                if len(ids) == 1:
                    return ids
                # Both halves are probed even when the left one is clean: the whole may have been refused
                # for its length, not for an id (see the module docstring).
                half = len(ids) // 2
                return await culprits(name, ids[:half]) + await culprits(name, ids[half:])

            if not await accepted([]):
                return False
            found = False
            for name, ids in id_lists(current).items():
                bad = await culprits(name, list(dict.fromkeys(ids)))
                if bad:
                    found = True
                    self._unknown.setdefault(name, {}).update(dict.fromkeys(bad))
                    logger.warning(
                        "%s: skipping %d id(s) in %s unknown to the account: %s",
                        what,
                        len(bad),
                        name,
                        ", ".join(bad),
                    )
            return found

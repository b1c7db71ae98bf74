"""``Stream``: the one lifetime every record stream of the client has (issue 15, part 3).

A stream that fans out runs a task group. Its cancel scope must be entered and left in the caller's task,
around the caller's code, or a cancellation meant for the caller lands in the stream (and the other way
round): the problem PEP 789 describes for async generators that yield inside a task group. So, as httpx's
``client.stream()`` does, a stream is an async context manager, and it is iterated only inside its
``async with`` block::

    async with client.learner_results(query) as results:
        async for result in results:
            ...

Iterating it outside the block raises ``RuntimeError`` saying so, before any request is sent: an
iteration that silently worked until the day a caller stopped early would be worse than one that never
starts. The stream is opened by a factory (an async context manager yielding the batches), so every
stream built on it (learner results, and the others the client offers) gets the same rule by
construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, Self, TypeVar

__all__ = ["Batches", "Stream", "each", "pages_as_batches"]

T = TypeVar("T")
P = TypeVar("P")

Batches = AbstractAsyncContextManager[AsyncIterator[Sequence[T]]]


class Stream(AsyncIterator[T], Generic[T]):
    """Records served from batches that ``open()`` yields while the ``async with`` block lasts.

    Leaving the block (at the end, early with ``break``, or by an error) cancels whatever is still in
    flight and releases its connections before ``async with`` returns. A stream is entered once.
    """

    def __init__(
        self,
        open: Callable[[], Batches[T]],
        *,
        what: str,
        skipped: Callable[[], dict[str, tuple[str, ...]]] = dict,
    ) -> None:
        self._open = open
        self._what = what
        self._skipped = skipped
        self._context: Batches[T] | None = None
        self._batches: AsyncIterator[Sequence[T]] | None = None
        # Records are served from the current batch without another async generator in between:
        # one hop per record instead of two halves the iteration's cost (about 0.2 µs per record).
        self._current: Iterator[T] = iter(())
        self._state = "new"

    @property
    def skipped_ids(self) -> dict[str, tuple[str, ...]]:
        """Ids left out as unknown to the account so far (``Client(skip_unknown_ids=True)``), by
        parameter; the client's, so they include those of its other streams."""
        return self._skipped()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._what} ({self._state})>"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"{self._what} is entered once; this stream is {self._state}")
        self._state = "opening"
        try:
            context = self._open()
            self._batches = await context.__aenter__()
        except BaseException:
            # It never opened, and cannot be entered again: say "closed", not "opening" for ever.
            self._state = "closed"
            raise
        self._context = context
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._state = "closed"
        self._current = iter(())
        context, self._context, self._batches = self._context, None, None
        assert context is not None  # __aexit__ runs only after __aenter__ returned
        return await context.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        for record in self._current:
            return record
        batches = self._batches
        if batches is None:
            raise RuntimeError(
                f"iterate {self._what} inside its 'async with' block (this stream is {self._state}): "
                f"'async with {self._what} as records: async for record in records: ...'"
            )
        while True:
            try:
                batch = await batches.__anext__()
            except Exception as exc:  # cancellation (a BaseException) passes through as itself
                if self._state == "open":
                    raise
                # The block was left while this (another) task waited for a batch: the end of the
                # batches is then the close, not the last record, and must not read as "all delivered".
                raise RuntimeError(f"{self._what} was closed while it was being iterated") from exc
            self._current = iter(batch)
            for record in self._current:
                return record


class each(AsyncIterator[T], Generic[P, T]):  # noqa: N801 - reads as a function at the call site
    """``items(x)`` for each ``x`` of ``source``: a map without an async generator (nothing to close)."""

    def __init__(self, source: AsyncIterator[P], items: Callable[[P], T]) -> None:
        self._source = source
        self._items = items

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return self._items(await self._source.__anext__())


@contextlib.asynccontextmanager
async def pages_as_batches(
    pages: AsyncGenerator[P, None], items: Callable[[P], Sequence[T]]
) -> AsyncGenerator[AsyncIterator[Sequence[T]], None]:
    """One page chain's records as batches, no task group: leaving the block closes the chain at once."""
    async with contextlib.aclosing(pages):
        yield each(pages, items)

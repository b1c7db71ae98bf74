"""Whose bytes the parser takes next when several responses have some waiting: the oldest request's.

Every page of an export is parsed on one event loop, a chunk at a time. Left to the loop, the
concurrent responses are parsed interleaved — each drains what its buffer holds, then waits while
the others drain theirs — so the pages of a batch all finish at about the same moment, every chain
sends its next request at that moment, and the client then idles through the round trip with
nothing to parse (measured at 50 ms latency and concurrency 8: pages arrive in bursts of eight,
the client's core is 45–80% busy). Giving the turn to the oldest request with bytes waiting
finishes the pages one after another instead: the first chain's next request is on the wire while
the later pages are still being parsed, so the parser has work through the round trip.

A response with nothing buffered gives up the turn while it waits for bytes, so a slow, trickling
or stalled server never holds up the others; a request is only ever behind older ones, so none
waits for ever. What waiting costs is memory, bounded: a response waiting for the turn holds the
chunk in hand and lets aiohttp's buffer fill to its high-water mark, after which reading pauses
(and with it the read timeout): ~0.6 MiB per waiting response, measured with 64 concurrent 4 MiB
bodies (38 MiB traced at peak, 11 MiB without turns); at the default 8 chains, a few MiB.
"""

from __future__ import annotations

import asyncio
import itertools

__all__ = ["ParseTurn"]


class ParseTurn:
    """A priority lock over parsing: a ticket per request, the lowest ticket asking holds the turn.

    Used by one event loop; ``take`` waits, ``give_up`` hands the turn to the oldest waiter.
    """

    __slots__ = ("_holder", "_tickets", "_waiting")

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._holder: int | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def ticket(self) -> int:
        """A request's place in line: later requests draw higher tickets."""
        return next(self._tickets)

    def holds(self, ticket: int) -> bool:
        """Whether ``ticket`` holds the turn."""
        return self._holder == ticket

    def older_waiting(self, ticket: int) -> bool:
        """Whether an older request has bytes ready and waits for the turn ``ticket`` holds."""
        return any(other < ticket for other in self._waiting)

    async def take(self, ticket: int) -> None:
        """Hold the turn, once no older request holds it or waits for it."""
        if self._holder is None and not self.older_waiting(ticket):
            self._holder = ticket
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = granted
        try:
            await granted
        except BaseException:
            # Cancelled while waiting, or just after being handed the turn: pass it on.
            self._waiting.pop(ticket, None)
            self.give_up(ticket)
            raise

    def give_up(self, ticket: int) -> None:
        """Let go of the turn (if ``ticket`` holds it), handing it to the oldest waiter."""
        if self._holder != ticket:
            return
        self._holder = None
        while self._waiting:
            oldest = min(self._waiting)
            granted = self._waiting.pop(oldest)
            # A waiter whose task was cancelled has a cancelled future before its task runs again
            # to leave the line: skip it.
            if not granted.done():
                self._holder = oldest
                granted.set_result(None)
                return

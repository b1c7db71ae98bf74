"""A client-side request rate limit shared by every chain of a fan-out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ispring_async._exceptions import ConfigurationError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Spaces requests at least ``1 / rate`` seconds apart, across every task that shares it.

    Each ``acquire()`` books the next free slot and sleeps until it, so waiters are served in the
    order they asked and no burst builds up while the limiter is idle (a server counting requests per
    second never sees more than ``rate`` in any second). ``clock`` and ``sleep`` are injectable for
    tests; by default they are anyio's.

    >>> limiter = RateLimiter(5.0)      # at most 5 requests per second
    >>> await limiter.acquire()         # before each request
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not rate > 0:
            raise ConfigurationError(f"rate limit must be > 0 requests per second, got {rate!r}")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate!r})"

    async def acquire(self) -> None:
        """Wait for this caller's slot. Cancelling the wait gives the slot up to no one (it is spent)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)

"""``RateLimiter``: requests spaced 1/rate apart across every caller, on an injected clock (no real waits)."""

from __future__ import annotations

import math

import anyio
import pytest

from ispring_async import ConfigurationError
from ispring_async._ratelimit import RateLimiter


@pytest.mark.anyio
async def test_rate_limiter_books_slots_in_order() -> None:
    """Callers arriving together are given slots 1/rate apart, first come first served."""
    now = 10.0
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(4.0, clock=lambda: now, sleep=sleep)
    for _ in range(4):
        await limiter.acquire()
    assert slept == [0.25, 0.5, 0.75]
    now = 20.0
    await limiter.acquire()  # idle long enough: no wait, and no burst credit saved up
    await limiter.acquire()
    assert slept[3:] == [0.25]


@pytest.mark.parametrize(
    "rate",
    [pytest.param(0.0, id="zero"), pytest.param(-1.0, id="negative"), pytest.param(math.nan, id="nan")],
)
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    """Zero, negative and NaN rates are a ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match="rate limit must be > 0"):
        RateLimiter(rate)


@pytest.mark.anyio
async def test_a_cancelled_wait_spends_its_slot() -> None:
    """A caller cancelled while waiting does not hand its slot back: the next caller waits past it."""
    now = 0.0
    slept: list[float] = []
    entered = anyio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:
            entered.set()
            await anyio.sleep_forever()

    limiter = RateLimiter(2.0, clock=lambda: now, sleep=sleep)
    await limiter.acquire()  # slot 0: no wait
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # slot 0.5: waits, then is cancelled
        await entered.wait()
        tg.cancel_scope.cancel()
    await limiter.acquire()  # slot 1.0, not 0.5
    assert slept == [0.5, 1.0]

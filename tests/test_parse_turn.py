"""Parse turns: the oldest request with bytes waiting is parsed first; a stalled one holds nobody up.

The lock itself is tested directly (order, cancellation); its use in the transport over real HTTP,
with parsers that record what they were fed and cost CPU like a real parser does.
"""

from __future__ import annotations

import asyncio
import hashlib

import anyio
import pytest
from aiohttp import web

from ispring_async._parse_turn import ParseTurn
from ispring_async._transport import Transport
from tests._helpers import no_wait
from tests._servers import Handler, Server, serve, transport_for

MIB = 1 << 20


@pytest.mark.anyio
async def test_the_oldest_waiter_gets_the_turn_whatever_order_they_asked_in() -> None:
    turn = ParseTurn()
    holder, old, young = turn.ticket(), turn.ticket(), turn.ticket()
    await turn.take(holder)
    order: list[int] = []

    async def wait(ticket: int) -> None:
        await turn.take(ticket)
        order.append(ticket)
        turn.give_up(ticket)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait, young)  # the younger asks first
        await asyncio.sleep(0)
        tasks.start_soon(wait, old)
        await asyncio.sleep(0)
        assert turn.older_waiting(young)
        turn.give_up(holder)
    assert order == [old, young]


@pytest.mark.anyio
@pytest.mark.parametrize("cancel_first", [False, True], ids=["handed-then-cancelled", "cancelled-first"])
async def test_a_waiter_cancelled_around_the_hand_over_passes_the_turn_on(cancel_first: bool) -> None:
    """Handed the turn, then cancelled before it ran: it passes the turn on. Cancelled first (a task's
    cancel cancels the future it awaits at once, its task leaves the line only later): skipped."""
    turn = ParseTurn()
    holder, cancelled, next_ = turn.ticket(), turn.ticket(), turn.ticket()
    await turn.take(holder)
    cancelled_task = asyncio.create_task(turn.take(cancelled))
    next_task = asyncio.create_task(turn.take(next_))
    await asyncio.sleep(0)
    if cancel_first:
        cancelled_task.cancel()
        turn.give_up(holder)  # before the cancelled task has run: the turn goes past it
    else:
        turn.give_up(holder)
        cancelled_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled_task
    await asyncio.wait_for(next_task, 5)
    turn.give_up(next_)
    await asyncio.wait_for(turn.take(turn.ticket()), 5)


@pytest.mark.anyio
async def test_a_waiter_cancelled_while_waiting_leaves_the_line() -> None:
    """The holder's release then reaches nobody stale: the next taker gets the turn at once."""
    turn = ParseTurn()
    holder, waiter = turn.ticket(), turn.ticket()
    await turn.take(holder)
    waiting = asyncio.create_task(turn.take(waiter))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    turn.give_up(holder)
    await asyncio.wait_for(turn.take(turn.ticket()), 5)


class Recording:
    """A page parser that costs CPU per chunk, like a real one, and records when it ended."""

    def __init__(self, name: str, finished: list[str]) -> None:
        self.name = name
        self.finished = finished
        self.size = 0

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        digest = data
        for _ in range(8):  # about a millisecond per 64 KiB, a real parser's order of cost
            digest = hashlib.sha256(digest + data).digest()

    def close(self) -> int:
        self.finished.append(self.name)
        return self.size


def body(size: int, *, stall_after: int = 0, server: list[Server] | None = None) -> Handler:
    """A handler writing ``size`` bytes at once; with ``stall_after``, the rest after the server's release."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/xml"})
        response.content_length = size
        await response.prepare(request)
        if stall_after and server:
            await response.write(b"x" * stall_after)
            await server[0].release.wait()
        await response.write(b"x" * (size - stall_after))
        await response.write_eof()
        return response

    return handler


def start(transport: Transport, path: str, finished: list[str]) -> asyncio.Task[int]:
    """Request ``path`` in a task that has drawn its ticket when this returns."""
    return asyncio.create_task(transport.request("GET", path, lambda: Recording(path, finished), label=path))


@pytest.mark.anyio
async def test_an_older_response_is_parsed_to_its_end_before_a_younger_one() -> None:
    # Both bodies stream at once; interleaved, the younger (a quarter the size) would end first.
    finished: list[str] = []
    async with (
        serve({"/old": body(4 * MIB), "/young": body(MIB)}) as server,
        transport_for(server, retry=no_wait(1)) as transport,
    ):
        with anyio.fail_after(60):
            old = start(transport, "/old", finished)
            await asyncio.sleep(0)
            young = start(transport, "/young", finished)
            assert (await old, await young) == (4 * MIB, MIB)
    assert finished == ["/old", "/young"]


@pytest.mark.anyio
async def test_an_older_response_that_stalls_mid_body_lets_a_younger_one_finish() -> None:
    finished: list[str] = []
    holder: list[Server] = []
    routes = {"/old": body(2 * MIB, stall_after=300_000, server=holder), "/young": body(MIB)}
    async with serve(routes) as server, transport_for(server, retry=no_wait(1)) as transport:
        holder.append(server)
        with anyio.fail_after(60):
            old = start(transport, "/old", finished)
            await asyncio.sleep(0)
            young = start(transport, "/young", finished)
            assert await young == MIB
            assert not old.done()
            server.release.set()
            assert await old == 2 * MIB
    assert finished == ["/young", "/old"]

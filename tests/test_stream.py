"""One stream lifetime (issue 15, part 3): a record stream is iterated inside its ``async with`` block.

Every stream the client offers is a ``ispring_async._stream.Stream``; these tests run each kind (one chain,
a fan-out, the one-call ``fan_out_results``) against the emulator over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from ispring_async import Client, LearnerResult, PartitionError, ResultsQuery, ResultStream, UserStatus
from ispring_async._fanout import FanOutOptions, fan_out_results
from ispring_async._stream import Stream
from ispring_async.emulator import Emulator, EmulatorConfig, running_emulator
from tests._helpers import client_tasks

EVERYONE = [UserStatus.ACTIVE, UserStatus.BLOCKED, UserStatus.TERMINATED]
QUERY = ResultsQuery(user_statuses=EVERYONE, page_size=50)

Open = Callable[[Client], Stream[LearnerResult]]

STREAMS = [
    pytest.param(lambda c: c.learner_results(QUERY, split="none"), id="one-chain"),
    pytest.param(lambda c: c.learner_results(QUERY, split="window", concurrency=4), id="fan-out"),
    pytest.param(lambda c: c.learner_results(QUERY, split="none", rate_limit=1000.0), id="rate-limited"),
    pytest.param(lambda c: fan_out_results(c, QUERY, FanOutOptions(concurrency=3)), id="fan_out_results"),
]


class CallerError(Exception):
    """Raised inside a stream's block by the test itself."""


async def fail_inside(stream: Stream[LearnerResult]) -> None:
    """Raise CallerError from the loop's body at the first record."""
    async with stream as records:
        async for _ in records:
            raise CallerError


async def swallow_loop_error(stream: Stream[LearnerResult], caught: list[Exception]) -> None:
    """Iterate inside the block, keeping what the ``async for`` itself raises in ``caught``."""
    async with stream as records:
        try:
            async for _ in records:
                pass
        except Exception as exc:
            caught.append(exc)


def client_of(emu: Emulator) -> Client:
    return Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret)


@pytest.mark.anyio
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_iterating_outside_the_block_fails_before_any_request(open_stream: Open) -> None:
    """Before ``async with`` and after it, iterating raises RuntimeError naming the block; no request."""
    async with running_emulator(EmulatorConfig(results=300, seed=21)) as emu, client_of(emu) as client:
        stream = open_stream(client)
        with pytest.raises(RuntimeError, match=r"inside its 'async with' block .*new"):
            await anext(stream)
        with pytest.raises(RuntimeError, match="async with"):
            async for _ in stream:
                pass
        assert emu.stats.requests["results"] == 0
        async with stream as records:
            assert (await anext(records)).identity
        with pytest.raises(RuntimeError, match="closed"):
            await anext(stream)
        with pytest.raises(RuntimeError, match="entered once"):
            async with stream:
                pass


@pytest.mark.anyio
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_inside_the_block_every_record_comes_once(open_stream: Open) -> None:
    """Iterated inside its block, each kind of stream yields exactly the emulator's rows."""
    async with running_emulator(EmulatorConfig(results=400, seed=22)) as emu:
        async with client_of(emu) as client, open_stream(client) as records:
            got = [r.identity async for r in records]
        expected = [r.identity for r in emu.expected_results(QUERY.to_params())]
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected)


@pytest.mark.anyio
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_break_cancels_in_flight_before_the_block_returns(open_stream: Open) -> None:
    """Leaving the block after one record leaves no library task behind; the client works on."""
    config = EmulatorConfig(results=1500, seed=23)
    async with running_emulator(config) as emu, client_of(emu) as client:
        async with open_stream(client) as records:
            async for _ in records:
                break
        assert not client_tasks()
        async with client.learner_results(QUERY, split="none") as again:
            assert len([r async for r in again]) == len(emu.expected_results(QUERY.to_params()))


@pytest.mark.anyio
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_an_error_in_the_block_comes_out_as_itself(open_stream: Open) -> None:
    """An exception the caller raises inside the block leaves it unwrapped (no ExceptionGroup)."""
    async with running_emulator(EmulatorConfig(results=600, seed=24)) as emu, client_of(emu) as client:
        with pytest.raises(CallerError):
            await fail_inside(open_stream(client))
        assert not client_tasks()


@pytest.mark.anyio
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_the_callers_cancel_scope_stays_the_callers(open_stream: Open) -> None:
    """Cancelling the caller's scope while it iterates ends the caller's block, not just the stream's."""
    async with running_emulator(EmulatorConfig(results=1500, seed=25)) as emu, client_of(emu) as client:
        seen = 0
        after_cancel = False
        with anyio.CancelScope() as scope:
            async with open_stream(client) as records:
                async for _ in records:
                    seen += 1
                    if seen == 3:
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()  # a checkpoint: the cancellation lands here
                        after_cancel = True
        assert scope.cancelled_caught
        assert not after_cancel
        assert not client_tasks()


@pytest.mark.anyio
async def test_a_failing_chain_raises_in_the_loop_and_again_when_the_block_is_left() -> None:
    """A failed partition raises PartitionError in ``async for``; swallowed, leaving raises it again."""
    emulator = running_emulator(EmulatorConfig(results=300, seed=26))
    async with emulator as emu, Client(emu.base_url, token="not-a-token") as client:
        stream: ResultStream = client.learner_results(QUERY, split="window", concurrency=2)
        caught: list[Exception] = []
        with pytest.raises(PartitionError) as at_exit:
            await swallow_loop_error(stream, caught)
    assert [type(e) for e in caught] == [PartitionError]
    assert at_exit.value is caught[0]

"""Adversarial review of the stream lifetime (issue 15, part 3), against the emulator over real HTTP.

``tests/test_stream.py`` pins the rule; these are the misuses a caller may still try: entering a stream
while it is open, two failing chains at once, another task iterating a stream whose owner leaves the block,
a stream the client outlived, and a stream dropped without ever being entered (warnings are errors here).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import anyio
import pytest

from ispring_async import Client, LearnerResult, PartitionError, ResultsQuery, UserStatus
from ispring_async._fanout import FanOutOptions, fan_out_results
from ispring_async._stream import Stream
from ispring_async.emulator import Emulator, EmulatorConfig, Faults, running_emulator
from tests._helpers import client_tasks

EVERYONE = [UserStatus.ACTIVE, UserStatus.BLOCKED, UserStatus.TERMINATED]
QUERY = ResultsQuery(user_statuses=EVERYONE, page_size=50)

Open = Callable[[Client], Stream[LearnerResult]]

STREAMS = [
    pytest.param(lambda c: c.learner_results(QUERY, split="none"), id="one-chain"),
    pytest.param(lambda c: c.learner_results(QUERY, split="window", concurrency=4), id="fan-out"),
    pytest.param(lambda c: fan_out_results(c, QUERY, FanOutOptions(concurrency=3)), id="fan_out_results"),
]


async def drain(stream: Stream[LearnerResult]) -> None:
    """Iterate ``stream`` to its end inside its block."""
    async with stream as records:
        async for _ in records:
            pass


def client_of(emu: Emulator) -> Client:
    return Client(emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret)


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_entering_an_open_stream_again_fails_and_the_first_block_goes_on(open_stream: Open) -> None:
    """``async with`` on a stream already open raises RuntimeError; the open block still yields every row."""
    async with running_emulator(EmulatorConfig(results=300, seed=31)) as emu, client_of(emu) as client:
        async with open_stream(client) as records:
            with pytest.raises(RuntimeError, match="entered once; this stream is open"):
                async with records:
                    pass
            got = [r.identity async for r in records]
        expected = [r.identity for r in emu.expected_results(QUERY.to_params())]
        assert sorted(got) == sorted(expected)
        assert not client_tasks()


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_several_failing_chains_raise_one_partition_error_not_a_group() -> None:
    """With every chain refused at once, the loop raises one PartitionError (never an ExceptionGroup)."""
    async with (
        running_emulator(EmulatorConfig(results=600, seed=32)) as emu,
        Client(emu.base_url, token="not-a-token") as client,
    ):
        with pytest.raises(PartitionError) as caught:
            await drain(client.learner_results(QUERY, split="window", concurrency=8))
        assert not isinstance(caught.value, BaseExceptionGroup)
        assert "not-a-token" not in str(caught.value)
        assert not client_tasks()


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_another_task_iterating_when_the_owner_leaves_is_told_not_ended(open_stream: Open) -> None:
    """A task still iterating when the block's owner leaves gets RuntimeError, never a clean end that
    would read as "all records delivered"."""
    config = EmulatorConfig(results=3000, seed=33, faults=Faults(latency=0.02))
    async with running_emulator(config) as emu, client_of(emu) as client:
        first = anyio.Event()
        outcome: list[object] = []

        async def consume(records: Stream[LearnerResult]) -> None:
            seen = 0
            try:
                async for _ in records:
                    seen += 1
                    first.set()
                outcome.append(("ended", seen))
            except RuntimeError as exc:
                outcome.append(exc)

        owner: list[RuntimeError] = []
        async with anyio.create_task_group() as tg:
            try:
                async with open_stream(client) as records:
                    tg.start_soon(consume, records)
                    await first.wait()
                # The owner left the block while the consumer waits for the next batch.
            except RuntimeError as exc:
                # One chain is an async generator: the owner cannot close it while the other task
                # runs it, and Python says so (it is closed when that task is done with it).
                owner.append(exc)
        assert all("already running" in str(e) for e in owner)
        assert len(outcome) == 1
        assert isinstance(outcome[0], RuntimeError), outcome
        assert "closed" in str(outcome[0])
        assert not client_tasks()


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("open_stream", STREAMS[:2])
async def test_a_stream_whose_client_closed_fails_to_enter_with_a_clear_error(open_stream: Open) -> None:
    """Entering a stream after its client closed raises RuntimeError naming the client; no request."""
    async with running_emulator(EmulatorConfig(results=100, seed=34)) as emu:
        async with client_of(emu) as client:
            stream = open_stream(client)
        with pytest.raises(RuntimeError, match="Client is closed"):
            await drain(stream)
        assert "(closed)" in repr(stream)
        with pytest.raises(RuntimeError, match="entered once; this stream is closed"):
            await drain(stream)
        assert emu.stats.requests["results"] == 0


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("open_stream", STREAMS)
async def test_a_stream_never_entered_is_collected_without_a_warning(open_stream: Open) -> None:
    """Dropping a stream that was never entered leaves no coroutine un-awaited and no resource open
    (``filterwarnings = error`` turns either into a failure here)."""
    async with running_emulator(EmulatorConfig(results=100, seed=35)) as emu, client_of(emu) as client:
        stream = open_stream(client)
        del stream
        gc.collect()
        async with client.learner_results(QUERY, split="none") as again:
            assert len([r async for r in again]) == len(emu.expected_results(QUERY.to_params()))
    gc.collect()

"""Id lists longer than one request holds: batched, merged exactly, resumable, per-batch unknown ids.

The end-to-end cases send 1,000 user ids and 300 department ids to the real emulator over HTTP
(unbatched, that is a ~68 KB request line, which aiohttp's server refuses at 8190 bytes) and compare
with the emulator's oracle over the whole query.
"""

from __future__ import annotations

import math
import random

import pytest

from ispring_async import ConfigurationError, FanOut, FanOutOptions, ResultsQuery, Split
from ispring_async._batching import (
    MAX_IDS_PER_LIST,
    MAX_IDS_PER_REQUEST,
    BatchToken,
    batching_key,
    id_batches,
)
from ispring_async._models import LearnerResult
from ispring_async.emulator import Emulator, EmulatorConfig, running_emulator
from tests._helpers import assert_exactly_once, drain, known_params, small_page_client, strangers

STATUSES = [1, 3]


def uuids(count: int, seed: int) -> list[str]:
    """``count`` distinct UUID strings drawn from ``seed``."""
    return strangers(count, seed)


@pytest.mark.parametrize(
    ("lengths", "requests"),
    [
        pytest.param({"userIds[]": 50}, 1, id="50-fits"),
        pytest.param({"userIds[]": 51}, 2, id="51-two"),
        pytest.param({"userIds[]": 1000}, 20, id="1000-users"),
        pytest.param({"userIds[]": 1000, "departmentIds[]": 300}, 120, id="users-x-departments"),
        pytest.param({"userIds[]": 3, "courseIds[]": 200}, 4, id="short-list-kept-whole"),
        pytest.param(
            {"enrollmentIds[]": 60, "userIds[]": 60, "courseIds[]": 60, "moduleIds[]": 60},
            81,
            id="four-lists-share-the-budget",
        ),
    ],
)
def test_id_batches_cover_every_combination_once_within_the_limits(
    lengths: dict[str, int], requests: int
) -> None:
    """Each request holds <= 50 ids a list and <= 100 in all; the batches' product is the query exactly."""
    params: list[tuple[str, str]] = [("completionStatuses[]", "failed")]
    for seed, (name, count) in enumerate(lengths.items()):
        params.extend((name, value) for value in uuids(count, seed))
    params.append(("pageSize", "20"))
    batches = id_batches(params)
    assert len(batches) == requests
    cells: set[tuple[frozenset[str], ...]] = set()
    for batch in batches:
        lists: dict[str, list[str]] = {}
        for name, value in batch:
            if name.endswith("Ids[]"):
                lists.setdefault(name, []).append(value)
        assert all(len(ids) <= MAX_IDS_PER_LIST for ids in lists.values())
        assert sum(map(len, lists.values())) <= MAX_IDS_PER_REQUEST
        assert batch[0] == ("completionStatuses[]", "failed")
        assert batch[-1] == ("pageSize", "20")
        assert set(lists) == set(lengths)
        cells.add(tuple(frozenset(lists[name]) for name in lengths))
    # Per list the cuts partition its ids, and every combination of one cut per list is one request,
    # exactly once: so every combination of one id per list (the AND of ORs) is sent exactly once.
    assert len(cells) == len(batches)
    cut_counts = []
    for position, count in enumerate(lengths.values()):
        cuts = {cell[position] for cell in cells}
        assert sum(map(len, cuts)) == count == len(set().union(*cuts))
        cut_counts.append(len(cuts))
    assert len(batches) == math.prod(cut_counts)


def test_batch_tokens_round_trip_and_refuse_foreign_ones() -> None:
    """A batch token keeps the server's token whole (colons too); a plain or mismatched token is refused."""
    token = BatchToken(3, 20, "k1", "b3BhcXVlOmlk:x")
    parsed = BatchToken.parse(str(token), 20, "k1")
    assert (parsed.index, parsed.count, parsed.inner) == (3, 20, "b3BhcXVlOmlk:x")
    assert BatchToken.parse(str(BatchToken(4, 20, "k1", None)), 20, "k1").inner is None
    foreign = ("b3BhcXVl", "ispring-async-batch:x:2:k1:")
    mismatched = (BatchToken(3, 19, "k1", "t"), BatchToken(20, 20, "k1", None), BatchToken(3, 20, "k2", "t"))
    for bad in (*foreign, *map(str, mismatched)):
        with pytest.raises(ConfigurationError):
            BatchToken.parse(bad, 20, "k1")


def test_the_same_ids_in_another_order_refuse_a_saved_batch_token() -> None:
    """Reordered ids make other batches: their key differs, so a saved token cannot resume the wrong one."""
    ids = uuids(120, 4)
    params = [("userIds[]", i) for i in ids]
    reordered = [("userIds[]", i) for i in reversed(ids)]
    assert len(id_batches(params)) == len(id_batches(reordered)) == 3
    assert batching_key(id_batches(params)) != batching_key(id_batches(reordered))
    # The page size is not part of the batching: a resume may use another.
    assert batching_key(id_batches([*params, ("pageSize", "10")])) == batching_key(id_batches(params))


def big_query(emu: Emulator, *, users: int = 1000, departments: int = 300, seed: int = 5) -> ResultsQuery:
    """``users`` of the emulator's users and ``departments`` of its departments, in a shuffled order."""
    rng = random.Random(seed)
    ds = emu.dataset
    return ResultsQuery(
        user_ids=rng.sample(ds.user_ids, users),
        department_ids=rng.sample(ds.department_ids, departments) if departments else None,
        user_statuses=STATUSES,
    )


def config(**overrides: object) -> EmulatorConfig:
    """About 2,500 users in 400 departments."""
    settings: dict[str, object] = {"results": 25_000, "seed": 13, "departments": 400, **overrides}
    return EmulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("split", "subtree"),
    [
        pytest.param("none", False, id="none"),
        pytest.param("adaptive", False, id="adaptive"),
        pytest.param("none", True, id="none-subtree"),
        pytest.param("adaptive", True, id="adaptive-subtree"),
    ],
)
@pytest.mark.anyio
async def test_1000_users_and_300_departments_export_exactly(split: str, subtree: bool) -> None:
    """1,000 user ids x 300 department ids: every row once, as the oracle says, under either matching."""
    async with running_emulator(config(subdepartment_matching=subtree)) as emu:
        query = big_query(emu)
        expected = emu.expected_results(query.to_params())
        assert len(expected) > 2_000
        async with small_page_client(emu) as client:
            records = await drain(client.learner_results(query, split=split, concurrency=8))
        assert_exactly_once(records, expected)
        requests = emu.stats.requests["results"]
        # 120 batches, each paged: at least one request a batch, and splits stay bounded.
        assert 120 <= requests <= 120 + 3 * len(expected) // 40 + 240


@pytest.mark.anyio
async def test_department_split_of_a_batched_query_keeps_groups_within_batches() -> None:
    """A department split of 1,000 users x 300 departments, 50 a partition: 120 chains, every row once."""
    async with running_emulator(config(subdepartment_matching=True)) as emu:
        query = big_query(emu)
        expected = emu.expected_results(query.to_params())
        options = FanOutOptions(split=Split.DEPARTMENT, concurrency=8, departments_per_partition=50)
        async with small_page_client(emu) as client:
            fanout = FanOut(client, query, options)
            async with fanout.run() as batches:
                records = [r async for batch in batches for r in batch.records]
        assert_exactly_once(records, expected)
        stats = fanout.stats
        assert stats.partitions_total == 120
        # Under sub-department matching a parent in one batch returns its children's rows of another.
        assert stats.duplicates_removed > 0
        delivered = len(expected) + stats.duplicates_removed
        assert emu.stats.requests["results"] == stats.requests <= delivered // 40 + 2 * 120


@pytest.mark.anyio
async def test_result_pages_resume_across_batches_from_a_saved_token() -> None:
    """Stopping after any page and resuming from its batch token gives the rest: no row lost or repeated."""
    async with running_emulator(config(results=6_000)) as emu:
        query = big_query(emu, users=400, departments=0)
        expected = emu.expected_results(query.to_params())
        async with small_page_client(emu, page_size=25) as client:
            whole = [page async for page in client.result_pages(query)]
            assert len(whole) > 8
            assert whole[-1].next_page_token is None
            tokens = [page.next_page_token for page in whole[:-1]]
            assert all(t is not None and t.startswith("ispring-async-batch:") for t in tokens)
            for stop in (1, len(whole) // 2, len(whole) - 1):
                before = [r for page in whole[:stop] for r in page.records]
                token = whole[stop - 1].next_page_token
                after = [r async for page in client.result_pages(query, token) for r in page.records]
                assert_exactly_once(before + after, expected)
            with pytest.raises(ConfigurationError, match="batch tokens"):
                client.result_pages(query, "c29tZS10b2tlbg==")
            # The same users in another order: other batches, so the saved token is refused.
            users = tuple(query.user_ids or ())
            reordered = ResultsQuery(user_ids=users[::-1], user_statuses=STATUSES)
            with pytest.raises(ConfigurationError, match="another query"):
                client.result_pages(reordered, tokens[0])


@pytest.mark.parametrize(
    "subtree",
    [pytest.param(False, id="exact"), pytest.param(True, id="subtree")],
)
@pytest.mark.anyio
async def test_fan_out_resume_of_a_batched_query_is_exact(subtree: bool) -> None:
    """A batched fan-out stopped mid-way resumes from state() (and seen=) to exactly the oracle's rows."""
    async with running_emulator(config(subdepartment_matching=subtree)) as emu:
        query = big_query(emu, users=300, departments=120)
        expected = emu.expected_results(query.to_params())
        options = FanOutOptions(concurrency=4)
        async with small_page_client(emu, page_size=20) as client:
            first = FanOut(client, query, options)
            written: list[LearnerResult] = []
            async with first.run() as batches:
                async for batch in batches:
                    written.extend(batch.records)
                    if len(written) >= len(expected) // 2:
                        break
            state = first.state()
            rest = FanOut(client, query, options, resume_state=state, seen=[r.identity for r in written])
            async with rest.run() as batches:
                async for batch in batches:
                    written.extend(batch.records)
        assert_exactly_once(written, expected)


@pytest.mark.anyio
async def test_unknown_ids_are_isolated_per_batch() -> None:
    """Unknown ids scattered through 1,000 user ids are skipped batch by batch; every known row comes once."""
    async with running_emulator(config(unknown_ids="400")) as emu:
        rng = random.Random(3)
        bad = strangers(4, 99)
        users = [*rng.sample(emu.dataset.user_ids, 996), *bad]
        rng.shuffle(users)
        query = ResultsQuery(user_ids=users, user_statuses=STATUSES)
        async with small_page_client(emu, page_size=100, skip_unknown_ids=True) as client:
            records = await drain(client.learner_results(query, concurrency=4))
            probes = client._unknown_ids.probes
        assert_exactly_once(records, emu.expected_results(known_params(emu, query)))
        assert set(client.skipped_ids["userIds[]"]) == set(bad)
        # Bisection runs inside a 50-id batch: log2(50) rounds per unknown id, not log2(1000).
        assert probes <= 4 * 2 * 6 + 2 * 4

"""The department groups' exact identity set in bounded memory: a set, then a temporary SQLite database."""

from __future__ import annotations

import random

import pytest

from ispring_async import FanOut, FanOutOptions, ResultsQuery, Split
from ispring_async._dedupe import Dedupe, Group, IdentitySet
from ispring_async.emulator import EmulatorConfig, running_emulator
from tests._helpers import assert_exactly_once, small_page_client


@pytest.mark.parametrize(
    ("limit", "pages"),
    [
        pytest.param(10, 200, id="spills-early"),
        pytest.param(1_000, 50, id="spills-late"),
        pytest.param(100_000, 50, id="never-spills"),
    ],
)
def test_identity_set_answers_like_a_set_in_bounded_memory(limit: int, pages: int) -> None:
    """Random pages with repeats across and within pages: the same drops as a plain set, memory <= limit."""
    rng = random.Random(limit)
    universe = [f"id-{i}" for i in range(3_000)]
    identities = IdentitySet(memory_limit=limit)
    reference: set[str] = set()
    for _ in range(pages):
        page = [rng.choice(universe) for _ in range(rng.randrange(0, 60))]
        if page and rng.random() < 0.3:
            page.append(page[0])  # a repeat inside the page
        expected = set()
        seen_here: set[str] = set()
        for i, identity in enumerate(page):
            if identity in reference or identity in seen_here:
                expected.add(i)
            seen_here.add(identity)
        probe = [rng.choice(universe) for _ in range(20)]
        assert identities.known(probe) == {i for i, p in enumerate(probe) if p in reference}
        assert identities.add_page(page) == expected
        reference.update(page)
        assert len(identities) == len(reference)
        assert len(identities._memory) <= limit
    if limit < len(reference):
        assert identities._db is not None  # the test reached the database
    identities.clear()
    assert len(identities) == 0 and not identities and identities._db is None
    assert identities.add_page(["id-1"]) == set()


def test_identity_set_seeded_with_many_ids_spills_them() -> None:
    """A resume's ``seen`` larger than the limit goes to disk at once and is still answered exactly."""
    seen = IdentitySet((f"s{i}" for i in range(25_000)), memory_limit=1_000)
    assert len(seen) == 25_000
    assert len(seen._memory) <= 1_000
    assert seen.known(["s0", "s24999", "x", "s12345"]) == {0, 1, 3}
    # Iterating gives every identity once, from memory and disk; a Dedupe takes the set as it is.
    assert sorted(seen) == sorted(f"s{i}" for i in range(25_000))
    assert Dedupe(seen)._seen is seen


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_identity_set_on_disk_stays_flat_whatever_the_page_sizes() -> None:
    """Pages of every length from 1 to 1000 against the database: memory does not grow with them.

    sqlite3 caches up to 128 prepared statements, one per distinct SQL text: an ``IN (?, …)`` sized
    to each page held ~13 MiB of statements after 500 lengths (partial pages of a long export).
    """
    identities = IdentitySet((f"s{i}" for i in range(2_000)), memory_limit=100)
    assert identities._db is not None
    universe = [f"id-{i:040d}" for i in range(1_000)]
    identities.known(universe)  # the statement and the page cache, warmed
    before = _rss_mib()
    for size in range(1, 1_001):
        assert identities.known(universe[:size]) == set()
    assert _rss_mib() - before < 4
    assert identities.known(["s5", "x", "s1999"]) == {0, 2}


@pytest.mark.parametrize(
    "split",
    [pytest.param(Split.DEPARTMENT, id="department"), pytest.param(Split.COMBINED, id="combined")],
)
@pytest.mark.anyio
async def test_department_split_is_exact_with_its_group_on_disk(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sub-department matching, a group limited to 200 identities in memory: every row once, held on disk."""
    monkeypatch.setattr(IdentitySet, "MEMORY_LIMIT", 200)
    groups: list[Group] = []
    original = Group.__init__

    def remember(self: Group, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        groups.append(self)

    monkeypatch.setattr(Group, "__init__", remember)
    config = EmulatorConfig(results=4_000, seed=8, departments=30, subdepartment_matching=True)
    async with running_emulator(config) as emu:
        query = ResultsQuery(user_statuses=[1, 3])
        expected = emu.expected_results(query.to_params())
        async with small_page_client(emu, page_size=100) as client:
            fanout = FanOut(client, query, FanOutOptions(split=split, concurrency=4, windows=3))
            records = []
            peak_memory = on_disk = 0
            async with fanout.run() as batches:
                async for batch in batches:
                    records.extend(batch.records)
                    for group in groups:
                        peak_memory = max(peak_memory, len(group.ids._memory))
                        on_disk = max(on_disk, group.ids._on_disk)
                        assert len(group.ids._memory) <= 200
        assert_exactly_once(records, expected)
        assert fanout.stats.duplicates_removed > 0  # parents returned their subtrees
        assert groups and peak_memory > 0
        assert on_disk > 1_000  # most of the group was on disk

"""Long id lists cut into requests that fit: every ``…Ids[]`` list of a request, batched.

A request line longer than the server reads is refused before any filter is applied (aiohttp's is
8190 bytes, about 150 UUIDs as ``userIds%5B%5D=…``; other front ends are near 8 KiB too), and
production code against the real service sends 50 ``userIds[]`` per request. So a request carrying
more ids than ``MAX_IDS_PER_LIST`` in one list, or than ``MAX_IDS_PER_REQUEST`` in all, is sent as
several: the lists are cut into consecutive batches and every combination of one batch per list is
one request (the filters are ANDed across lists and ORed within one, so the combinations partition
the query's rows exactly: each row has one user, one course, one enrollment, so it matches exactly
one batch of those lists). Department ids are the exception: if ``departmentIds`` matches
sub-departments (the API does not say), a parent in one batch and its child in another both return
the child's rows, so whoever merges department batches must dedupe them (the fan-out does).

This is the request layer's piece, shared by every endpoint with id filters: ``id_batches`` cuts a
parameter list, ``BatchToken`` names a position in a batched chain so a chain of batches resumes
from a saved token like a single one.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from ispring_async._exceptions import ConfigurationError

__all__ = [
    "MAX_IDS_PER_LIST",
    "MAX_IDS_PER_REQUEST",
    "BatchToken",
    "batching_key",
    "id_batches",
    "is_id_list",
]

MAX_IDS_PER_LIST = 50
"""Ids of one list per request: what production code sends to the real service."""
MAX_IDS_PER_REQUEST = 100
"""Ids of all lists per request: about 5.2 KB of request line, well inside 8 KiB with the rest."""

Params = list[tuple[str, str]]


def is_id_list(name: str) -> bool:
    """Whether a parameter is an id list (``userIds[]``, ``departmentIds[]``, ``moduleIds[]``…)."""
    return name.endswith("Ids[]")


def _sizes(lengths: dict[str, int]) -> dict[str, int]:
    """Batch size per list: short lists whole, the long ones sharing what the request has left."""
    budget, left = MAX_IDS_PER_REQUEST, len(lengths)
    sizes = {}
    for name in sorted(lengths, key=lengths.__getitem__):
        size = max(1, min(lengths[name], MAX_IDS_PER_LIST, budget // left))
        sizes[name] = size
        budget -= size
        left -= 1
    return sizes


def id_batches(params: Sequence[tuple[str, str]]) -> list[Params]:
    """``params`` as requests whose id lists fit, in a stable order; ``[params]`` when they already do.

    Every other parameter is repeated in each request, in its place. Ids are batched in the order
    given, so the same parameters always give the same batches (a saved ``BatchToken`` relies on it).
    """
    lists: dict[str, list[str]] = {}
    for name, value in params:
        if is_id_list(name):
            lists.setdefault(name, []).append(value)
    if not lists:
        return [list(params)]
    lengths = {name: len(ids) for name, ids in lists.items()}
    sizes = _sizes(lengths)
    if all(sizes[name] >= length for name, length in lengths.items()):
        return [list(params)]
    cuts = [
        [(name, ids[i : i + sizes[name]]) for i in range(0, len(ids), sizes[name])]
        for name, ids in lists.items()
    ]
    batches = []
    for combination in itertools.product(*cuts):
        chosen = dict(combination)
        batch: Params = []
        for name, value in params:
            if name in chosen:
                # Each list goes where its first id was, so the order of the other parameters holds.
                ids = chosen.pop(name)
                batch.extend((name, i) for i in ids)
            elif not is_id_list(name):
                batch.append((name, value))
        batches.append(batch)
    return batches


_PREFIX = "ispring-async-batch"


def batching_key(batches: Sequence[Sequence[tuple[str, str]]]) -> str:
    """A short digest of the batches (paging left out): a token names its batch by index, so a query
    with the same ids in another order, or other filters, must not accept it."""
    digest = hashlib.blake2s(digest_size=6)
    for batch in batches:
        for name, value in batch:
            if name not in ("pageSize", "pageToken"):
                digest.update(f"{name}={value}&".encode())
        digest.update(b"\n")
    return digest.hexdigest()


class BatchToken:
    """A position in a chain of batches: batch ``index`` of ``count``, after its page token ``inner``.

    Text form ``ispring-async-batch:<index>:<count>:<key>:<inner token or nothing>``: the server's
    token is kept whole (it is opaque, and may hold ``:``), and ``key`` (``batching_key``) pins the
    batches it belongs to, so a token is refused by any other query rather than resuming the wrong
    batch.
    """

    __slots__ = ("count", "index", "inner", "key")

    def __init__(self, index: int, count: int, key: str, inner: str | None) -> None:
        self.index, self.count, self.key, self.inner = index, count, key, inner

    def __str__(self) -> str:
        return f"{_PREFIX}:{self.index}:{self.count}:{self.key}:{self.inner or ''}"

    def __repr__(self) -> str:
        return f"BatchToken(index={self.index}, count={self.count})"

    @classmethod
    def parse(cls, text: str, count: int, key: str) -> BatchToken:
        """The token ``text`` of the chain of ``count`` batches with ``key``, or ``ConfigurationError``."""
        prefix, _, rest = text.partition(":")
        index, _, rest = rest.partition(":")
        saved, _, rest = rest.partition(":")
        saved_key, _, inner = rest.partition(":")
        if prefix != _PREFIX or not index.isdigit() or not saved.isdigit():
            raise ConfigurationError(
                f"this query's id lists are sent in {count} batches, so its page tokens are batch "
                "tokens (ispring-async-batch:…) given back by this client; this one is not"
            )
        if int(saved) != count or int(index) >= count or saved_key != key:
            raise ConfigurationError(
                "the page token was saved for another query (other ids, another order or other "
                f"filters; it is for {saved} batches, this query makes {count}): resume with the "
                "query the token was saved for"
            )
        return cls(int(index), count, key, inner or None)

"""The fan-out's checkpoint format: what ``FanOut.state()`` writes and ``resume_state=`` reads.

A state pins the query by its parameters, holds the planner's settings, and for every partition its
next page token (or ``done``), which of its window edges it shares with a neighbour, the identities of
a kept first page it still expects, and its department group. The identities delivered near each
shared boundary are saved too, so a resumed run drops exactly the rows a run without the interruption
would have dropped. A department group's identities are not saved (they grow with the export):
resuming a department split needs ``seen``, the identities already written, as ``FanOut`` documents.

Page tokens are opaque cursors, not credentials; nothing else secret is in a state. Version 3 changed
the plan (kept first pages, both bounds sent): states of earlier versions are refused with a message
saying so, and the export starts afresh.
"""

from __future__ import annotations

import contextlib

import msgspec

from ispring_async._exceptions import ConfigurationError
from ispring_async._plan import Partition, Split
from ispring_async._query import ResultsQuery

__all__ = [
    "STATE_VERSION",
    "ChainState",
    "PlannerState",
    "State",
    "decode",
    "encode",
    "needs_seen",
    "query_fingerprint",
]

STATE_VERSION = 3


class PlannerState(msgspec.Struct, forbid_unknown_fields=True):
    """The planner's settings (everything but the query, which the state pins by its parameters)."""

    split: Split
    earliest: int
    now: int
    windows: int
    min_window: int
    departments_per_partition: int
    whole_seconds: bool


class ChainState(msgspec.Struct, forbid_unknown_fields=True):
    """One partition: where its chain stands and what its dedupe scope needs."""

    partition: Partition
    token: str | None
    done: bool
    left: bool = False
    right: bool = False
    kept: list[tuple[str, int]] = []
    group: int | None = None


class State(msgspec.Struct, forbid_unknown_fields=True):
    """A whole fan-out checkpoint."""

    version: int
    query: list[tuple[str, str]]
    planner: PlannerState
    chains: list[ChainState] | None
    boundaries: list[tuple[int, list[str]]] = []


encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(State).decode
_version = msgspec.json.Decoder(dict[str, object]).decode


def query_fingerprint(query: ResultsQuery) -> list[tuple[str, str]]:
    """The query's parameters as a state pins them (``pageSize`` left out)."""
    # pageSize changes neither the rows nor the keyset tokens, so a resume may use another one.
    return [(name, value) for name, value in query.to_params() if name != "pageSize"]


def decode(data: bytes, query: ResultsQuery) -> State:
    """A saved state for ``query``; ``ConfigurationError`` for another version, query or garbage."""
    try:
        state = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        version = None
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            version = _version(data).get("version")
        if isinstance(version, int) and version != STATE_VERSION:
            raise ConfigurationError(_old(version)) from None
        raise ConfigurationError(f"not a fan-out state this version can resume: {exc}") from None
    if state.version != STATE_VERSION:
        raise ConfigurationError(_old(state.version))
    if [tuple(pair) for pair in state.query] != query_fingerprint(query):
        raise ConfigurationError("the saved fan-out state is for a different query; start a fresh export")
    return state


def needs_seen(data: bytes) -> bool:
    """Whether resuming ``data`` needs ``seen``: department groups (possibly overlapping chains, whose
    identities the state does not hold) that have delivered something. ``False`` for a state that
    does not decode: ``decode`` says why when the fan-out reads it."""
    try:
        state = _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return _grouped_progress(state)


def _grouped_progress(state: State) -> bool:
    chains = state.chains
    if chains is None:
        return False
    # Finished chains no longer name their group: any progress at all counts.
    grouped = any(c.group is not None for c in chains)
    return grouped and any(c.token is not None or c.done for c in chains)


def _old(version: int) -> str:
    return (
        f"fan-out state version {version} is not {STATE_VERSION} (saved by another version of "
        "ispring_async, whose plan this one does not continue); start a fresh export"
    )

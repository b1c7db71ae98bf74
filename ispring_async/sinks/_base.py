"""What every sink shares: the protocol, the columns, the error, and the open/finish/abort lifecycle.

A sink owns both the output and the checkpoint, so that the records written so far and the exporter's
opaque resume state become durable together (see :class:`Sink`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, Protocol, Self

import msgspec

from ispring_async._exceptions import ISpringError
from ispring_async._models import LearnerResult

__all__ = ["COLUMNS", "Column", "Sink", "SinkError"]

logger = logging.getLogger("ispring_async.sinks")

ColumnKind = Literal["str", "int", "float", "bool", "datetime"]


class SinkError(ISpringError):
    """The output cannot be written, resumed or published (also: a sink used out of order)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: a field of :class:`LearnerResult` under its API name."""

    name: str
    """The API's field name (``userId``), which every format uses as its column name."""
    kind: ColumnKind
    nullable: bool


_KINDS: dict[type[msgspec.inspect.Type], ColumnKind] = {
    msgspec.inspect.StrType: "str",
    msgspec.inspect.IntType: "int",
    msgspec.inspect.FloatType: "float",
    msgspec.inspect.BoolType: "bool",
    msgspec.inspect.DateTimeType: "datetime",
}


def _columns() -> tuple[Column, ...]:
    # Derived from the struct, not listed by hand, so a field added to LearnerResult reaches every format.
    info = msgspec.inspect.type_info(LearnerResult)
    assert isinstance(info, msgspec.inspect.StructType)
    columns = []
    for field in info.fields:
        type_ = field.type
        nullable = False
        if isinstance(type_, msgspec.inspect.UnionType):
            others = [t for t in type_.types if not isinstance(t, msgspec.inspect.NoneType)]
            nullable = len(others) < len(type_.types)
            (type_,) = others
        columns.append(Column(field.encode_name, _KINDS[type(type_)], nullable))
    return tuple(columns)


COLUMNS: tuple[Column, ...] = _columns()
"""Every field of :class:`LearnerResult` in declaration order, under the API's names."""

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)


class Sink(Protocol):
    """An export's output and its checkpoint, made durable together.

    The exporter drives it like this::

        sink = open_sink(Path("results.jsonl"))
        with sink:
            state = sink.open(resume=True)  # None: nothing to resume, start afresh
            seen = set(sink.identities())  # rows kept from the interrupted run
            for page in pages_after(state):
                sink.write(page.records)
                sink.checkpoint(encode(exporter_state))
            sink.finish()  # publish; leaving the block without finish() aborts instead

    Calls must not overlap (one exporter task, or one worker thread at a time). ``write`` and
    ``checkpoint`` block on disk I/O (``checkpoint`` waits for an fsync or a commit).
    """

    format: ClassVar[str]
    """The format's name: ``"jsonl"``, ``"csv"``, ``"parquet"`` or ``"sqlite"``."""

    records_written: int
    """Records in the output so far, including those kept from a resumed run."""

    @property
    def path(self) -> Path:
        """The final output path (it appears, or is updated, only when the export completes)."""
        ...

    def open(self, *, resume: bool) -> bytes | None:
        """Prepare the output; with ``resume=True`` return the state saved by the last checkpoint.

        ``resume=False`` discards whatever an earlier unfinished run left for this path and returns
        ``None``. ``resume=True`` restores the output to its last checkpoint (records written after it
        are dropped) and returns the state saved with it, or ``None`` when there is nothing to resume;
        the caller then starts afresh. A complete output already at :attr:`path` is not an error: it
        stays untouched until :meth:`finish` replaces it, so ``--resume`` is safe on every night.
        """
        ...

    def identities(self) -> Iterator[str]:
        """Identities of the records kept by :meth:`open` (to rebuild the exporter's duplicate filter).

        Call it right after ``open(resume=True)``; after a fresh open it yields nothing.
        """
        ...

    def write(self, records: Sequence[LearnerResult]) -> None:
        """Append a batch (typically a page). Not durable until the next :meth:`checkpoint`."""
        ...

    def checkpoint(self, state: bytes) -> None:
        """Make every record written so far and ``state`` durable, atomically together.

        ``state`` is opaque to the sink and stored as given; nothing else of the exporter's is stored.
        """
        ...

    def finish(self) -> None:
        """Complete the export: publish the output atomically and remove the checkpoint."""
        ...

    def abort(self) -> None:
        """Stop without publishing; keep the output up to the last checkpoint for ``open(resume=True)``."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


State = Literal["new", "open", "finished", "aborted"]


class SinkBase:
    """The lifecycle every sink shares: one ``open``, writes, then one ``finish`` or ``abort``."""

    format: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._state: State = "new"
        self.records_written = 0

    @property
    def path(self) -> Path:
        """The final output path."""
        return self._path

    def __repr__(self) -> str:
        name, path = type(self).__name__, str(self._path)
        return f"<{name} {path!r} {self._state} records_written={self.records_written}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Only an explicit finish() publishes: leaving the block early (an exception, Ctrl-C, a
        # forgotten finish) keeps the checkpointed part for --resume.
        if self._state == "open":
            self.abort()

    def abort(self) -> None:
        """Stop without publishing (each sink says what it keeps for resuming)."""
        raise NotImplementedError

    def _begin(self) -> None:
        if self._state != "new":
            raise SinkError(f"{self!r} was already opened; a sink is opened once")

    def _require_open(self) -> None:
        if self._state != "open":
            raise SinkError(f"{self!r} is not open")

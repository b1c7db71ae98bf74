"""What every sink shares: the protocol, the columns, the error, and the open/finish/abort lifecycle.

A sink owns both the output and the checkpoint, so that the records written so far and the exporter's
opaque resume state become durable together (see :class:`Sink`).

One lock protocol for every format: ``open`` takes an exclusive ``flock`` on ``.<name>.lock`` beside
the output and holds it until ``finish`` or ``abort``, so a second export into an output in use
(a slow night overlapping the next, a manual rerun) is refused at once instead of interleaving its
records or failing the first run's checkpoint. The kernel drops the lock when the process dies, so a
SIGKILLed run never blocks its ``--resume``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

import msgspec

from ispring_async._exceptions import ISpringError
from ispring_async._models import LearnerResult

if TYPE_CHECKING:
    from ispring_async.sinks._datasets import Dataset

__all__ = ["COLUMNS", "Column", "Sink", "SinkError", "columns_of"]

logger = logging.getLogger("ispring_async.sinks")

ColumnKind = Literal["str", "int", "float", "bool", "datetime", "json"]
"""``json``: a nested value (a list, a struct), stored as JSON text by the flat formats."""


class SinkError(ISpringError):
    """The output cannot be written, resumed or published (also: a sink used out of order)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: a field of a record struct (:class:`LearnerResult`, ...) under its API name."""

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
    msgspec.inspect.DateType: "str",  # ISO 8601 text: a calendar date has no instant to convert
}


def _kind(type_: msgspec.inspect.Type) -> ColumnKind:
    if isinstance(type_, msgspec.inspect.EnumType | msgspec.inspect.LiteralType):
        values = [m.value for m in type_.cls] if isinstance(type_, msgspec.inspect.EnumType) else type_.values
        return "int" if all(isinstance(v, int) for v in values) else "str"
    # Anything that is not one scalar (a list, a nested struct, a dict) is one JSON column.
    return _KINDS.get(type(type_), "json")


def columns_of(struct: type[msgspec.Struct]) -> tuple[Column, ...]:
    """The columns of a record struct: every field in declaration order, under the API's names."""
    # Derived from the struct, not listed by hand, so a field added to a struct reaches every format.
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    columns = []
    for field in info.fields:
        type_ = field.type
        nullable = False
        if isinstance(type_, msgspec.inspect.UnionType):
            others = [t for t in type_.types if not isinstance(t, msgspec.inspect.NoneType)]
            nullable = len(others) < len(type_.types)
            type_ = others[0] if len(others) == 1 else msgspec.inspect.AnyType()
        columns.append(Column(field.encode_name, _kind(type_), nullable))
    return tuple(columns)


COLUMNS: tuple[Column, ...] = columns_of(LearnerResult)
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

    @property
    def datasets(self) -> tuple[Dataset, ...]:
        """The datasets this sink writes (``(RESULTS,)`` unless it was made for others)."""
        ...

    @property
    def outputs(self) -> dict[str, Path]:
        """Where each dataset is published, by dataset name (one database for SQLite)."""
        ...

    def counts(self) -> dict[str, int]:
        """Records in the output so far by dataset, including those kept from a resumed run."""
        ...

    def identities(self, dataset: str = "results") -> Iterator[str]:
        """Identities of a dataset's records kept by :meth:`open` (to rebuild the exporter's duplicate
        filter).

        Call it right after ``open(resume=True)``; after a fresh open it yields nothing.
        """
        ...

    def write(self, records: Sequence[Any], dataset: str = "results") -> None:
        """Append a batch (typically a page) of a dataset. Not durable until the next :meth:`checkpoint`."""
        ...

    def checkpoint(self, state: bytes) -> None:
        """Make every record written so far (of every dataset) and ``state`` durable, atomically together.

        ``state`` is opaque to the sink and stored as given; nothing else of the exporter's is stored.
        """
        ...

    def finish(self) -> None:
        """Complete the export: publish every dataset's output and remove the checkpoint.

        Readers never see a part of a run: SQLite publishes all datasets in one transaction; file sinks
        rename each file into place, and a run killed between two renames publishes the rest when it
        is resumed (``open(resume=True)`` then ``finish()``).
        """
        ...

    def abort(self) -> None:
        """Stop without publishing; keep the output up to the last checkpoint for ``open(resume=True)``."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


State = Literal["new", "open", "finished", "aborted"]


class OutputLock:
    """An exclusive, non-blocking lock on ``.<name>.lock`` beside ``output``, held by one export run."""

    def __init__(self, output: Path) -> None:
        self.output = output
        # Named after the file the output really is: a symlink to an output in use (or a path through
        # one) is the same output, and must meet the same lock.
        real = Path(os.path.realpath(output))
        self.path = real.parent / f".{real.name}.lock"
        self.lost = False
        """The lock file was removed and another export took the new one: this run must write nothing."""
        # A file object, not a bare descriptor: if the sink is dropped without finish or abort (a
        # crash in-process), closing it at collection releases the lock as the kernel would.
        self._file: io.FileIO | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`SinkError` naming the process that holds it."""
        if self._file is not None:
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)

        def busy(holder: str) -> SinkError:
            return SinkError(
                f"another export is writing {self.output}{holder}: wait for it to finish (the lock "
                f"{self.path} is released when that process ends, however it ends)"
            )

        self._hold(self._lock_path(busy, failed=f"cannot lock {self.path}"))

    def verify(self) -> None:
        """Check the lock file is still the one held; if someone deleted it, lock the path again.

        A lock on a deleted file protects nothing: the next export would create a new file, lock it
        and write into the same output. Called before every write, so the window is one page. If
        another export got there first, this run stops with :class:`SinkError` and must write nothing.
        """
        held = self._file
        if held is None or _same_file(held, self.path):
            return

        def busy(holder: str) -> SinkError:
            self.lost = True
            return SinkError(
                f"the lock file {self.path} was deleted while this export wrote {self.output}, and "
                f"another export{holder} has locked it since: stopping this one, which writes nothing "
                "more (its checkpoint may no longer match; the other export's run is the one to keep)"
            )

        file = self._lock_path(busy, failed=f"cannot lock {self.path} again")
        logger.warning("the lock file %s was deleted during the export; locked it again", self.path)
        held.close()
        self._hold(file)

    def _lock_path(self, busy: Callable[[str], SinkError], *, failed: str) -> io.FileIO:
        """Lock the file ``self.path`` names now; ``busy(holder)`` is the error when another run holds it."""
        while True:
            file = self._open()
            try:
                _flock(file)
            except BlockingIOError:
                holder = _read_holder(file)
                file.close()
                raise busy(holder) from None
            except OSError as exc:
                file.close()
                raise SinkError(f"{failed}: {exc.strerror or exc}") from None
            # A run that finished between our open and our flock unlinked the file we hold: the lock
            # is only real on the file the path names now.
            if _same_file(file, self.path):
                return file
            file.close()

    def _hold(self, file: io.FileIO) -> None:
        file.truncate(0)
        file.write(f"{os.getpid()}\n".encode())
        self._file = file

    def release(self) -> None:
        """Drop the lock; the file goes first, so nobody can lock the inode being let go."""
        file, self._file = self._file, None
        if file is None:
            return
        if not _same_file(file, self.path):
            # Not ours any more (deleted, maybe re-created and locked by another export): keep off it.
            file.close()
            return
        # A lock file left behind (an unlink that failed) is harmless: the next run locks it.
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        file.close()

    def _open(self) -> io.FileIO:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise SinkError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        return io.FileIO(fd, "r+", closefd=True)


def _read_holder(file: io.FileIO) -> str:
    try:
        file.seek(0)
        pid = file.read(32).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


def _same_file(file: io.FileIO, path: Path) -> bool:
    try:
        held, named = os.fstat(file.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


if sys.platform == "win32":  # pragma: no cover

    def _flock(file: io.FileIO) -> None:
        import msvcrt

        try:
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None

else:
    import fcntl

    def _flock(file: io.FileIO) -> None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


class SinkBase:
    """The lifecycle every sink shares: one ``open``, writes, then one ``finish`` or ``abort``."""

    format: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._state: State = "new"
        self._lock = OutputLock(self._path)
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
        self._lock.release()  # also when open() itself failed

    def abort(self) -> None:
        """Stop without publishing (each sink says what it keeps for resuming)."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Check the lifecycle and take the output's lock, before anything of an earlier run is touched."""
        if self._state != "new":
            raise SinkError(f"{self!r} was already opened; a sink is opened once")
        self._lock.acquire()

    def _end(self, state: State) -> None:
        self._state = state
        self._lock.release()

    def _require_open(self) -> None:
        if self._state != "open":
            raise SinkError(f"{self!r} is not open")
        # Every write, checkpoint and finish passes here: the one place the lock is re-checked.
        self._lock.verify()

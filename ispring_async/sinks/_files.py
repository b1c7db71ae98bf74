"""The machinery of file sinks: partial files beside the outputs, one sidecar checkpoint, an atomic publish.

For an output ``results.jsonl`` (one dataset, one file) the directory holds, while an export runs or
after it was interrupted::

    .results.jsonl.partial      the records so far (only this file is appended to)
    .results.jsonl.checkpoint   {version, format, records, parts, state, publishing, checksum}

For a folder output ``out/`` (several datasets, ``FileSink(path, datasets, folder=True)``) each
dataset has its file ``out/<dataset>.<ext>`` and its partial file ``out/.<dataset>.<ext>.partial``,
and one checkpoint ``out/.export.checkpoint`` covers them all: each part's ``{dataset, columns, offset,
records, data_crc32}`` and the exporter's state, so one run has one resume point.

A checkpoint fsyncs the partial files, then replaces the sidecar atomically (write a temporary file,
fsync it, ``os.replace``). Resuming truncates each partial file to its saved offset, which drops
whatever was written after the checkpoint, torn lines included.

Nothing left behind is trusted blindly: the sidecar carries a SHA-256 of its own fields (a corrupted
state, a hand-edited count) and, per part, a CRC-32 of the partial file's first ``offset`` bytes (a
flipped bit in the data), and each offset must end a line inside its file. A leftover that fails any
check is logged with what is wrong and the export starts afresh, which is always correct (it only costs
time); it never yields a wrong summary or output.

``finish`` first saves the checkpoint marked ``publishing`` (every part's data is durable by then),
then renames each complete partial file to its output, then removes the checkpoint. A run killed
between two renames resumes into ``finish`` alone: a part whose partial file is gone was published, the
others are published now. So an output path only ever holds a complete export, and the files of one
run are all published by the run that wrote them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import msgspec

from ispring_async._exceptions import ConfigurationError, printable
from ispring_async.sinks._base import OutputLock, SinkBase, SinkError, State, logger
from ispring_async.sinks._datasets import RESULTS, Dataset

__all__ = ["FileSink", "iter_line_blocks"]

_CHECKPOINT_VERSION = 3
_WRITE_BUFFER = 1 << 20
_VERIFY_BLOCK = 8 << 20
FOLDER_CHECKPOINT = ".export.checkpoint"


class _PartCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    columns: list[str]
    offset: int
    records: int
    data_crc32: int


class _Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    # Only what resuming needs: where each part's kept data ends, the exporter's opaque state, and the
    # digests that prove both are what the last checkpoint wrote.
    version: int
    format: str
    records: int
    parts: list[_PartCheckpoint]
    state: bytes
    publishing: bool = False
    checksum: str = ""


def _digest(checkpoint: _Checkpoint) -> str:
    # msgspec encodes a struct's fields in declaration order: the same values, the same bytes.
    return hashlib.sha256(msgspec.json.encode(msgspec.structs.replace(checkpoint, checksum=""))).hexdigest()


_checkpoint_decoder = msgspec.json.Decoder(_Checkpoint)


class Part:
    """One dataset's file of a file sink: the partial file appended to and the path it is published to."""

    def __init__(self, dataset: Dataset, output: Path, partial: Path) -> None:
        self.dataset = dataset
        self.output = output
        self.partial = partial
        self.file: BinaryIO | None = None
        self.offset = 0  # bytes handed to the partial file so far
        self.durable_offset = 0  # bytes covered by the last checkpoint
        self.crc = 0  # CRC-32 of the bytes handed to the partial file so far
        self.records = 0
        self.published = False


class FileSink(SinkBase):
    """A sink writing one file per dataset through partial files and one sidecar checkpoint.

    ``folder=False`` (one dataset): ``path`` is the file. ``folder=True``: ``path`` is a folder holding
    ``<dataset>.<extension>`` for each of ``datasets``. Subclasses give the encoding (:meth:`_encode`,
    :meth:`_header`), how to read identities back (:meth:`_read_identities`), and optionally how to
    publish (:meth:`_publish`).
    """

    extension = ""

    def __init__(self, path: Path, datasets: Sequence[Dataset] = (RESULTS,), *, folder: bool = False) -> None:
        super().__init__(path)
        if not datasets or len({d.name for d in datasets}) != len(datasets):
            raise ConfigurationError("a sink needs one or more distinct datasets")
        if not folder and len(datasets) != 1:
            raise ConfigurationError(
                f"{len(datasets)} datasets need a folder as output (one file each), not the file {path}"
            )
        self._folder = folder
        if folder:
            names = [f"{d.name}.{self.extension}" for d in datasets]
            self._parts = [
                Part(d, self._path / name, self._path / f".{name}.partial")
                for d, name in zip(datasets, names, strict=True)
            ]
            self._checkpoint_path = self._path / FOLDER_CHECKPOINT
        else:
            directory, name = self._path.parent, self._path.name
            self._parts = [Part(datasets[0], self._path, directory / f".{name}.partial")]
            self._checkpoint_path = directory / f".{name}.checkpoint"
        self._checkpoint_temporary = self._checkpoint_path.with_name(self._checkpoint_path.name + ".tmp")
        # A folder's files are outputs too: an export of one of them alone (``--output out/users.jsonl``)
        # meets the same lock as the folder's export, so the two never write one file at once.
        self._part_locks = [OutputLock(part.output) for part in self._parts] if folder else []
        self._by_name = {part.dataset.name: part for part in self._parts}
        self._saved_state = b""
        self._publishing = False

    @property
    def datasets(self) -> tuple[Dataset, ...]:
        """The datasets this sink writes, in order."""
        return tuple(part.dataset for part in self._parts)

    @property
    def outputs(self) -> dict[str, Path]:
        """Each dataset's published file, by dataset name."""
        return {part.dataset.name: part.output for part in self._parts}

    def counts(self) -> dict[str, int]:
        """Records in the output so far, by dataset (kept ones included)."""
        return {part.dataset.name: part.records for part in self._parts}

    # -- what a format provides ---------------------------------------------------------------------

    def _header(self, dataset: Dataset) -> bytes:
        return b""

    def _encode(self, dataset: Dataset, records: Sequence[object]) -> bytes:
        raise NotImplementedError

    def _read_identities(self, dataset: Dataset, path: Path, end: int) -> Iterator[str]:
        raise NotImplementedError

    def _leftovers(self) -> list[Path]:
        """Temporary files of an earlier run, besides the partial files and the checkpoint."""
        return []

    def _publish(self, part: Part) -> None:
        os.replace(part.partial, part.output)

    # -- the locks: the output's, and in a folder each file's -------------------------------------------

    def _begin(self) -> None:
        super()._begin()
        try:
            for lock in self._part_locks:
                lock.acquire()
        except BaseException:
            self._release_part_locks()
            self._lock.release()
            raise

    def _release_part_locks(self) -> None:
        for lock in self._part_locks:
            lock.release()

    def _end(self, state: State) -> None:
        self._release_part_locks()
        super()._end(state)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        self._release_part_locks()  # also when open() itself failed

    # -- the protocol -------------------------------------------------------------------------------

    def open(self, *, resume: bool) -> bytes | None:
        """Prepare the partial files; on resume truncate them to the last checkpoint and return its state."""
        self._begin()
        try:
            if self._folder:
                self._path.mkdir(parents=True, exist_ok=True)
            saved = self._load_checkpoint() if resume else None
            if saved is None:
                # The checkpoint goes first: a partial file without one is never resumed.
                for leftover in (self._checkpoint_path, self._checkpoint_temporary, *self._leftovers()):
                    leftover.unlink(missing_ok=True)
            for index, part in enumerate(self._parts):
                self._open_part(part, None if saved is None else saved.parts[index], saved)
        except BaseException:
            self._close_files()
            self._release_part_locks()
            self._lock.release()
            raise
        self._state = "open"
        self.records_written = sum(part.records for part in self._parts)
        if saved is None:
            return None
        self._saved_state = saved.state
        self._publishing = saved.publishing
        return saved.state

    def _open_part(self, part: Part, kept: _PartCheckpoint | None, saved: _Checkpoint | None) -> None:
        if kept is not None:
            part.records = kept.records
            if saved is not None and saved.publishing and not part.partial.exists():
                part.published = True  # renamed into place by the run that was killed while publishing
                return
        offset = 0 if kept is None else kept.offset
        fd = os.open(part.partial, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            os.ftruncate(fd, offset)
            file = open(fd, "r+b", buffering=_WRITE_BUFFER)  # noqa: SIM115  (closed by finish/abort)
        except BaseException:
            os.close(fd)
            raise
        file.seek(offset)
        part.file = file
        part.offset = part.durable_offset = offset
        part.crc = 0 if kept is None else kept.data_crc32
        if kept is None:
            header = self._header(part.dataset)
            file.write(header)
            part.offset += len(header)
            part.crc = zlib.crc32(header)

    def _part(self, dataset: str) -> Part:
        try:
            part = self._by_name[dataset]
        except KeyError:
            raise SinkError(f"{self!r} does not write the dataset {dataset!r}") from None
        if part.file is None:
            raise SinkError(f"{self!r}: the dataset {dataset!r} is already published")
        return part

    def identities(self, dataset: str = RESULTS.name) -> Iterator[str]:
        """Identities of a dataset's records up to the last checkpoint, read back from its partial file."""
        self._require_open()
        part = self._part(dataset)
        return self._read_identities(part.dataset, part.partial, part.durable_offset)

    def write(self, records: Sequence[object], dataset: str = RESULTS.name) -> None:
        """Append a batch to a dataset's partial file (buffered; durable at the next checkpoint)."""
        self._require_open()
        if self._publishing:
            raise SinkError(f"{self!r} was resumed while publishing: finish() is all that is left")
        if not records:
            return
        part = self._part(dataset)
        data = self._encode(part.dataset, records)
        assert part.file is not None
        part.file.write(data)
        part.offset += len(data)
        part.crc = zlib.crc32(data, part.crc)
        part.records += len(records)
        self.records_written += len(records)

    def checkpoint(self, state: bytes) -> None:
        """fsync the partial files, then atomically replace the sidecar with their lengths and ``state``."""
        self._require_open()
        self._sync()
        # No directory fsync: if a power loss undoes the rename, the older checkpoint still describes
        # data that was fsynced before it, so resuming from it stays exact (it only redoes a page).
        self._save(bytes(state), publishing=False)
        self._saved_state = bytes(state)
        for part in self._parts:
            part.durable_offset = part.offset

    def finish(self) -> None:
        """Publish every dataset's file, then remove the checkpoint (resumable if killed in between)."""
        self._require_open()
        self._sync()
        if not self._publishing:
            # From here a resumed run only publishes: every part's data is durable and counted.
            self._save(self._saved_state, publishing=True)
            self._publishing = True
        # Published while the lock is held, so a concurrent run cannot start on a half-published output.
        for part in self._parts:
            if not part.published:
                self._publish(part)
                part.published = True
            if part.file is not None:
                part.file.close()
                part.file = None
        self._checkpoint_path.unlink(missing_ok=True)
        _fsync_directory(self._checkpoint_path.parent)
        if self._folder:
            _fsync_directory(self._path.parent)  # the folder itself may be new
        self._end("finished")

    def abort(self) -> None:
        """Close the partial files without publishing; the checkpoint stays for ``open(resume=True)``."""
        if self._state != "open":
            return
        self._close_files()
        self._end("aborted")

    # -- helpers ------------------------------------------------------------------------------------

    def _sync(self) -> None:
        for part in self._parts:
            if part.file is not None:
                part.file.flush()
                # Data before the checkpoint that describes it: a checkpoint never covers bytes a crash
                # can lose.
                os.fsync(part.file.fileno())

    def _save(self, state: bytes, *, publishing: bool) -> None:
        checkpoint = _Checkpoint(
            version=_CHECKPOINT_VERSION,
            format=self.format,
            records=self.records_written,
            parts=[
                _PartCheckpoint(
                    dataset=part.dataset.name,
                    columns=list(part.dataset.column_names),
                    offset=part.offset,
                    records=part.records,
                    data_crc32=part.crc,
                )
                for part in self._parts
            ],
            state=state,
            publishing=publishing,
        )
        checkpoint = msgspec.structs.replace(checkpoint, checksum=_digest(checkpoint))
        _write_atomically(self._checkpoint_path, self._checkpoint_temporary, msgspec.json.encode(checkpoint))

    def _close_files(self) -> None:
        for part in self._parts:
            file, part.file = part.file, None
            if file is None:
                continue
            if self._lock.lost:
                # Another export now owns the partial file: what the buffer holds must not reach it.
                # /dev/null takes the descriptor's place, so the close below flushes into nothing.
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, file.fileno())
                os.close(null)
            # Whatever the buffer still holds lies past the checkpoint, so a failed flush loses nothing.
            with contextlib.suppress(OSError):
                file.close()

    def _load_checkpoint(self) -> _Checkpoint | None:
        try:
            raw = self._checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        saved = _validate(raw, self.format, self._parts)
        if isinstance(saved, str):
            # Starting afresh is always correct (it only costs time), so a damaged leftover never stops
            # a nightly run; the log says why this export took longer.
            logger.warning("cannot resume the export to %s: %s; starting afresh", self._path, saved)
            return None
        return saved


def _check_partial(path: Path, offset: int) -> int | str:
    """The CRC-32 of a partial file's first ``offset`` bytes, or why they cannot be the checkpoint's."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"the partial file {path} is missing"
    if size < offset:
        return f"the partial file {path} is shorter ({size:,} bytes) than its checkpoint says ({offset:,})"
    if offset == 0:
        return 0
    crc = 0
    last = b""
    with open(path, "rb") as file:
        remaining = offset
        while remaining > 0:
            block = file.read(min(_VERIFY_BLOCK, remaining))
            if not block:
                return f"the partial file {path} could not be read to its checkpoint"
            crc = zlib.crc32(block, crc)
            last = block[-1:]
            remaining -= len(block)
    if last != b"\n":
        return f"the checkpoint's offset {offset:,} does not end a line of {path}"
    return crc


def _validate(raw: bytes, format: str, parts: Sequence[Part]) -> _Checkpoint | str:
    """The checkpoint, or what is wrong with it or with the partial files it describes.

    Raises :exc:`ConfigurationError` (the checkpoint is kept) when it is sound but covers other datasets:
    the rerun asked for something else, which is the caller's to settle, not a reason to start afresh.
    """
    try:
        saved = _checkpoint_decoder.decode(raw)
    except msgspec.DecodeError:
        return "its checkpoint is unreadable"
    if saved.version != _CHECKPOINT_VERSION or saved.format != format:
        return f"its checkpoint is for {printable(saved.format)} v{saved.version}"
    if saved.checksum != _digest(saved):
        return "its checkpoint is damaged (its checksum does not match its contents)"
    names = [part.dataset.name for part in parts]
    if [kept.dataset for kept in saved.parts] != names:
        kept_names = ",".join(printable(kept.dataset) for kept in saved.parts)
        raise ConfigurationError(
            f"the interrupted export covers the datasets {kept_names}, not {','.join(names)}: rerun with "
            f"--include {kept_names}, or without --resume to start afresh"
        )
    if saved.records != sum(kept.records for kept in saved.parts):
        return "its checkpoint's record counts do not add up"
    for part, kept in zip(parts, saved.parts, strict=True):
        if tuple(kept.columns) != part.dataset.column_names:
            return f"the columns of its {part.dataset.name} differ from this version's"
        if kept.offset < 0 or kept.records < 0 or not 0 <= kept.data_crc32 <= 0xFFFFFFFF:
            return "its checkpoint holds a negative offset or count"
        if saved.publishing and not part.partial.exists():
            if not part.output.exists():
                return f"it was publishing, but neither {part.partial} nor {part.output} exists"
            continue
        found = _check_partial(part.partial, kept.offset)
        if isinstance(found, str):
            return found
        if found != kept.data_crc32:
            return (
                f"the partial file {part.partial}'s data differs from what was checkpointed (its CRC-32 "
                "does not match)"
            )
    return saved


def iter_line_blocks(path: Path, end: int, *, block_size: int = 8 << 20) -> Iterator[bytes]:
    """The first ``end`` bytes of ``path`` in blocks of whole lines (for decoding many lines at once)."""
    with path.open("rb") as file:
        remaining = end
        tail = b""
        while remaining > 0:
            chunk = file.read(min(block_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                tail += chunk
                continue
            yield tail + chunk[:cut]
            tail = chunk[cut:]
        if tail:
            yield tail


def _write_atomically(path: Path, temporary: Path, data: bytes) -> None:
    # 0o600: the state is the exporter's business, not every local user's.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def fsync_path(path: Path) -> None:
    """fsync a file that was written through another handle (e.g. by a library)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; Windows cannot open a directory and orders renames anyway.
    if os.name == "posix":
        fsync_path(directory)

"""The machinery of file sinks: a partial file beside the output, a sidecar checkpoint, an atomic publish.

For an output ``results.jsonl`` the directory holds, while an export runs or after it was interrupted::

    .results.jsonl.partial      the records so far (only this file is appended to)
    .results.jsonl.checkpoint   {version, format, columns, offset, records, data_crc32, state, checksum}

A checkpoint fsyncs the partial file, then replaces the sidecar atomically (write a temporary file,
fsync it, ``os.replace``). Resuming truncates the partial file to the saved offset, which drops whatever
was written after the checkpoint, torn lines included.

Nothing left behind is trusted blindly: the sidecar carries a SHA-256 of its own fields (a corrupted
state, a hand-edited count) and a CRC-32 of the partial file's first ``offset`` bytes (a flipped bit
in the data), and the offset must end a line inside the file. A leftover that fails any check is
logged with what is wrong and the export starts afresh, which is always correct (it only costs time);
it never yields a wrong summary or output. ``finish`` renames the complete partial file to
the output path, so the output path only ever holds a complete export.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from ispring_async._exceptions import printable
from ispring_async._models import LearnerResult
from ispring_async.sinks._base import COLUMN_NAMES, SinkBase, logger

__all__ = ["FileSink", "iter_line_blocks"]

_CHECKPOINT_VERSION = 2
_WRITE_BUFFER = 1 << 20
_VERIFY_BLOCK = 8 << 20


class _Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    # Only what resuming needs: where the kept data ends and the exporter's opaque state, and the
    # digests that prove both are what the last checkpoint wrote.
    version: int
    format: str
    columns: list[str]
    offset: int
    records: int
    data_crc32: int
    state: bytes
    checksum: str = ""


def _digest(checkpoint: _Checkpoint) -> str:
    # msgspec encodes a struct's fields in declaration order: the same values, the same bytes.
    return hashlib.sha256(msgspec.json.encode(msgspec.structs.replace(checkpoint, checksum=""))).hexdigest()


_checkpoint_decoder = msgspec.json.Decoder(_Checkpoint)


class FileSink(SinkBase):
    """A sink writing one file through a partial file and a sidecar checkpoint.

    Subclasses give the encoding (:meth:`_encode`, :meth:`_header`), how to read identities back
    (:meth:`_read_identities`), and optionally how to publish (:meth:`_publish`).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        directory, name = self._path.parent, self._path.name
        self._partial = directory / f".{name}.partial"
        self._checkpoint_path = directory / f".{name}.checkpoint"
        self._checkpoint_temporary = directory / f".{name}.checkpoint.tmp"
        self._file: BinaryIO | None = None
        self._offset = 0  # bytes handed to the partial file so far
        self._durable_offset = 0  # bytes covered by the last checkpoint
        self._crc = 0  # CRC-32 of the bytes handed to the partial file so far

    # -- what a format provides ---------------------------------------------------------------------

    def _header(self) -> bytes:
        return b""

    def _encode(self, records: Sequence[LearnerResult]) -> bytes:
        raise NotImplementedError

    def _read_identities(self, path: Path, end: int) -> Iterator[str]:
        raise NotImplementedError

    def _leftovers(self) -> list[Path]:
        """Temporary files of an earlier run, besides the partial file and the checkpoint."""
        return []

    def _publish(self) -> None:
        os.replace(self._partial, self._path)

    # -- the protocol -------------------------------------------------------------------------------

    def open(self, *, resume: bool) -> bytes | None:
        """Prepare the partial file; on resume truncate it to the last checkpoint and return its state."""
        self._begin()
        try:
            fd = os.open(self._partial, os.O_RDWR | os.O_CREAT, 0o666)
        except BaseException:
            self._lock.release()
            raise
        try:
            saved = self._load_checkpoint(fd) if resume else None
            if saved is None:
                # The checkpoint goes first: a partial file without one is never resumed.
                for leftover in (self._checkpoint_path, self._checkpoint_temporary, *self._leftovers()):
                    leftover.unlink(missing_ok=True)
                offset = 0
            else:
                offset = saved.offset
            os.ftruncate(fd, offset)
            file = open(fd, "r+b", buffering=_WRITE_BUFFER)  # noqa: SIM115  (closed by finish/abort)
        except BaseException:
            os.close(fd)
            self._lock.release()
            raise
        file.seek(offset)
        self._file = file
        self._offset = self._durable_offset = offset
        self._crc = 0 if saved is None else saved.data_crc32
        self._state = "open"
        if saved is None:
            header = self._header()
            file.write(header)
            self._offset += len(header)
            self._crc = zlib.crc32(header)
            return None
        self.records_written = saved.records
        return saved.state

    def identities(self) -> Iterator[str]:
        """Identities of the records up to the last checkpoint, read back from the partial file."""
        self._require_open()
        return self._read_identities(self._partial, self._durable_offset)

    def write(self, records: Sequence[LearnerResult]) -> None:
        """Append a batch to the partial file (buffered; durable at the next checkpoint)."""
        self._require_open()
        if not records:
            return
        data = self._encode(records)
        assert self._file is not None
        self._file.write(data)
        self._offset += len(data)
        self._crc = zlib.crc32(data, self._crc)
        self.records_written += len(records)

    def checkpoint(self, state: bytes) -> None:
        """fsync the partial file, then atomically replace the sidecar with its length and ``state``."""
        self._require_open()
        assert self._file is not None
        self._file.flush()
        # Data before the checkpoint that describes it: a checkpoint never covers bytes a crash can lose.
        os.fsync(self._file.fileno())
        checkpoint = _Checkpoint(
            version=_CHECKPOINT_VERSION,
            format=self.format,
            columns=list(COLUMN_NAMES),
            offset=self._offset,
            records=self.records_written,
            data_crc32=self._crc,
            state=bytes(state),
        )
        checkpoint = msgspec.structs.replace(checkpoint, checksum=_digest(checkpoint))
        # No directory fsync: if a power loss undoes the rename, the older checkpoint still describes
        # data that was fsynced before it, so resuming from it stays exact (it only redoes a page).
        _write_atomically(self._checkpoint_path, self._checkpoint_temporary, msgspec.json.encode(checkpoint))
        self._durable_offset = self._offset

    def finish(self) -> None:
        """Publish the complete output atomically, then remove the checkpoint."""
        self._require_open()
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        # Published while the lock is held, so a concurrent run cannot start on a half-published output.
        self._publish()
        self._checkpoint_path.unlink(missing_ok=True)
        _fsync_directory(self._path.parent)
        self._file.close()
        self._file = None
        self._end("finished")

    def abort(self) -> None:
        """Close the partial file without publishing; the checkpoint stays for ``open(resume=True)``."""
        if self._state != "open":
            return
        file, self._file = self._file, None
        if file is not None:
            # Whatever the buffer still holds lies past the checkpoint, so a failed flush loses nothing.
            with contextlib.suppress(OSError):
                file.close()
        self._end("aborted")

    # -- helpers ------------------------------------------------------------------------------------

    def _load_checkpoint(self, fd: int) -> _Checkpoint | None:
        try:
            raw = self._checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        saved = _validate(raw, self.format, lambda offset: _check_partial(fd, self._partial, offset))
        if isinstance(saved, str):
            # Starting afresh is always correct (it only costs time), so a damaged leftover never stops
            # a nightly run; the log says why this export took longer.
            logger.warning("cannot resume the export to %s: %s; starting afresh", self._path, saved)
            return None
        return saved


def _check_partial(fd: int, path: Path, offset: int) -> int | str:
    """The CRC-32 of the partial file's first ``offset`` bytes, or why they cannot be the checkpoint's."""
    size = os.fstat(fd).st_size
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


def _validate(raw: bytes, format: str, check_partial: Callable[[int], int | str]) -> _Checkpoint | str:
    """The checkpoint, or what is wrong with it or with the partial file it describes."""
    try:
        saved = _checkpoint_decoder.decode(raw)
    except msgspec.DecodeError:
        return "its checkpoint is unreadable"
    if saved.version != _CHECKPOINT_VERSION or saved.format != format:
        return f"its checkpoint is for {printable(saved.format)} v{saved.version}"
    if saved.checksum != _digest(saved):
        return "its checkpoint is damaged (its checksum does not match its contents)"
    if tuple(saved.columns) != COLUMN_NAMES:
        return "its columns differ from this version's"
    if saved.offset < 0 or saved.records < 0 or not 0 <= saved.data_crc32 <= 0xFFFFFFFF:
        return "its checkpoint holds a negative offset or count"
    found = check_partial(saved.offset)
    if isinstance(found, str):
        return found
    if found != saved.data_crc32:
        return "the partial file's data differs from what was checkpointed (its CRC-32 does not match)"
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

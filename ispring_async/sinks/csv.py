"""CSV (RFC 4180, UTF-8): a header of the API's field names, then one row per record.

Datetimes are RFC 3339 strings, booleans ``true``/``false``, an absent value an empty field (so an
empty string and an absent value read back alike: a limit of CSV, not of this sink).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ispring_async._models import LearnerResult
from ispring_async.sinks._base import COLUMN_NAMES, COLUMNS
from ispring_async.sinks._files import FileSink

__all__ = ["CsvSink"]

_BOOL_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "bool")
_BOOL_TEXT: dict[bool | None, str | None] = {True: "true", False: "false", None: None}
_USER, _COURSE, _ENROLLMENT = (COLUMN_NAMES.index(n) for n in ("userId", "courseId", "enrollmentId"))


class CsvSink(FileSink):
    """Writes ``.csv``; the header is written once, not again when a run resumes."""

    format = "csv"

    def _header(self) -> bytes:
        return _write_rows([COLUMN_NAMES])

    def _encode(self, records: Sequence[LearnerResult]) -> bytes:
        # to_builtins does the per-field work in C (datetimes become RFC 3339 strings); dicts keep the
        # declaration order, so their values are the row.
        rows: list[dict[str, Any]] = msgspec.to_builtins(records)
        for name in _BOOL_COLUMNS:
            for row in rows:
                row[name] = _BOOL_TEXT[row[name]]
        return _write_rows(row.values() for row in rows)

    def _read_identities(self, path: Path, end: int) -> Iterator[str]:
        rows = csv.reader(_text_lines(path, end))
        next(rows, None)  # the header
        for row in rows:
            # As LearnerResult.identity; an empty field is an absent enrollmentId.
            yield row[_ENROLLMENT] or f"{row[_USER]}/{row[_COURSE]}"


def _write_rows(rows: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _text_lines(path: Path, end: int) -> Iterator[str]:
    # Split on b"\n" (safe in UTF-8); csv.reader joins the lines of a quoted field that spans several.
    with path.open("rb") as file:
        remaining = end
        for line in file:
            if remaining <= 0:
                break
            line = line[:remaining]
            remaining -= len(line)
            yield line.decode()

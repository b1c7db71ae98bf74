"""CSV (RFC 4180, UTF-8): a header of the API's field names, then one row per record.

Datetimes are RFC 3339 strings, booleans ``true``/``false``, an absent value an empty field (so an
empty string and an absent value read back alike: a limit of CSV, not of this sink). A nested field
(a user's ``fields``, ``groups``, ``userRoles``) is one column of JSON text; derived columns (a user's
``login``, ``email``, ``firstName``, ``lastName``) follow the struct's own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ispring_async.sinks._datasets import Dataset
from ispring_async.sinks._files import FileSink

__all__ = ["CsvSink"]

_BOOL_TEXT: dict[bool | None, str | None] = {True: "true", False: "false", None: None}


class CsvSink(FileSink):
    """Writes ``.csv``; the header is written once, not again when a run resumes."""

    format = "csv"
    extension = "csv"

    def _header(self, dataset: Dataset) -> bytes:
        return _write_rows([dataset.column_names])

    def _encode(self, dataset: Dataset, records: Sequence[object]) -> bytes:
        rows = dataset.rows(records)
        for name in (c.name for c in dataset.columns if c.kind == "bool"):
            for row in rows:
                row[name] = _BOOL_TEXT[row[name]]
        return _write_rows(row.values() for row in rows)

    def _read_identities(self, dataset: Dataset, path: Path, end: int) -> Iterator[str]:
        rows = csv.reader(_text_lines(path, end))
        names = next(rows, None)  # the header
        for row in rows:
            yield dataset.row_identity(dict(zip(names or (), row, strict=True)))


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

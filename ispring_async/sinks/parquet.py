"""Parquet (needs the ``parquet`` extra, pyarrow): typed columns, datetimes as ``timestamp[us, UTC]``.

A Parquet file cannot be appended to after a crash (its footer is written last), so the run spools
records as JSON Lines with the file sinks' checkpoints, and :meth:`ParquetSink.finish` converts each
dataset's spool in bounded blocks into a temporary Parquet file that is then renamed to its output path.
A nested field (a user's ``fields``, ``groups``, ``userRoles``) is a string column of JSON text, like
CSV's, so every flat format has the same columns; the spool holds the flat rows.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from ispring_async._exceptions import ConfigurationError, printable
from ispring_async.sinks._base import SinkError
from ispring_async.sinks._datasets import RESULTS, Dataset
from ispring_async.sinks._files import Part, fsync_path, iter_line_blocks
from ispring_async.sinks.jsonl import JsonlSink

__all__ = ["ParquetSink"]

_INSTALL_HINT = "pip install 'ispring-async[parquet]'"
_CONVERT_BLOCK = 32 << 20  # bytes of spool per conversion step (and per row group): bounds memory


def _import_pyarrow() -> Any:
    # Imported here, not at module import, so that the other formats never need pyarrow.
    try:
        import pyarrow
        import pyarrow.json
        import pyarrow.parquet
    except ImportError as exc:
        message = f"writing Parquet needs pyarrow, the 'parquet' extra: {_INSTALL_HINT}"
        raise ConfigurationError(message) from exc
    return SimpleNamespace(pa=pyarrow, json=pyarrow.json, parquet=pyarrow.parquet)


_rows = msgspec.json.Decoder(dict[str, Any])


def arrow_schema(pa: Any, dataset: Dataset = RESULTS) -> Any:
    """The Parquet schema of a dataset: one typed column per field, under the API's names."""
    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.timestamp("us", tz="UTC"),
        "json": pa.string(),
    }
    return pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable) for c in dataset.columns])


class ParquetSink(JsonlSink):
    """Writes ``.parquet``; raises :class:`ConfigurationError` naming the extra when pyarrow is missing."""

    format = "parquet"
    extension = "parquet"

    def __init__(self, path: Path, datasets: Sequence[Dataset] = (RESULTS,), *, folder: bool = False) -> None:
        super().__init__(path, datasets, folder=folder)
        # Fails when the sink is made, before the export has fetched anything.
        self._arrow = _import_pyarrow()

    @staticmethod
    def _converting(part: Part) -> Path:
        return part.output.with_name(f".{part.output.name}.publishing")

    def _leftovers(self) -> list[Path]:
        return [self._converting(part) for part in self._parts]

    def _encode(self, dataset: Dataset, records: Sequence[object]) -> bytes:
        # A flat dataset's records are their rows; others spool the flat rows (nested values as text).
        return super()._encode(dataset, records if dataset.flat else dataset.rows(records))

    def _read_identities(self, dataset: Dataset, path: Path, end: int) -> Iterator[str]:
        if dataset.flat:
            yield from super()._read_identities(dataset, path, end)
            return
        for block in iter_line_blocks(path, end):
            for row in _rows.decode_lines(block):
                yield dataset.row_identity(row)

    def _publish(self, part: Part) -> None:
        arrow = self._arrow
        converting = self._converting(part)
        schema = arrow_schema(arrow.pa, part.dataset)
        parse_options = arrow.json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        try:
            with arrow.parquet.ParquetWriter(converting, schema) as writer:
                for block in iter_line_blocks(part.partial, part.offset, block_size=_CONVERT_BLOCK):
                    # pyarrow's JSON reader parses in C++ and turns any RFC 3339 offset into UTC.
                    table = arrow.json.read_json(io.BytesIO(block), parse_options=parse_options)
                    writer.write_table(table.cast(schema))
        except arrow.pa.ArrowInvalid as exc:
            # Parsed records fit the schema by construction (int64, finite floats); one built by hand
            # may not. The spool and its checkpoint stay, so nothing is lost.
            converting.unlink(missing_ok=True)
            raise SinkError(f"cannot convert the export to Parquet: {printable(str(exc))[:500]}") from None
        fsync_path(converting)
        os.replace(converting, part.output)
        part.partial.unlink()

"""Parquet (needs the ``parquet`` extra, pyarrow): typed columns, datetimes as ``timestamp[us, UTC]``.

A Parquet file cannot be appended to after a crash (its footer is written last), so the run spools
records as JSON Lines with the file sinks' checkpoints, and :meth:`ParquetSink.finish` converts the
spool in bounded blocks into a temporary Parquet file that is then renamed to the output path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ispring_async._exceptions import ConfigurationError, printable
from ispring_async.sinks._base import COLUMNS, SinkError
from ispring_async.sinks._files import fsync_path, iter_line_blocks
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


def arrow_schema(pa: Any) -> Any:
    """The Parquet schema: one typed column per field, under the API's names."""
    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable) for c in COLUMNS])


class ParquetSink(JsonlSink):
    """Writes ``.parquet``; raises :class:`ConfigurationError` naming the extra when pyarrow is missing."""

    format = "parquet"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # Fails when the sink is made, before the export has fetched anything.
        self._arrow = _import_pyarrow()
        self._publishing = self._path.with_name(f".{self._path.name}.publishing")

    def _leftovers(self) -> list[Path]:
        return [self._publishing]

    def _publish(self) -> None:
        arrow = self._arrow
        schema = arrow_schema(arrow.pa)
        parse_options = arrow.json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        try:
            with arrow.parquet.ParquetWriter(self._publishing, schema) as writer:
                for block in iter_line_blocks(self._partial, self._offset, block_size=_CONVERT_BLOCK):
                    # pyarrow's JSON reader parses in C++ and turns any RFC 3339 offset into UTC.
                    table = arrow.json.read_json(io.BytesIO(block), parse_options=parse_options)
                    writer.write_table(table.cast(schema))
        except arrow.pa.ArrowInvalid as exc:
            # Parsed records fit the schema by construction (int64, finite floats); one built by hand
            # may not. The spool and its checkpoint stay, so nothing is lost.
            self._publishing.unlink(missing_ok=True)
            raise SinkError(f"cannot convert the export to Parquet: {printable(str(exc))[:500]}") from None
        fsync_path(self._publishing)
        os.replace(self._publishing, self._path)
        self._partial.unlink()

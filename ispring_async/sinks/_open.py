"""Choosing a sink from the output path or an explicit format."""

from __future__ import annotations

import os
from pathlib import Path

from ispring_async._exceptions import ConfigurationError
from ispring_async.sinks._base import Sink
from ispring_async.sinks.csv import CsvSink
from ispring_async.sinks.jsonl import JsonlSink
from ispring_async.sinks.sqlite import SqliteSink

__all__ = ["FORMATS", "format_for_path", "open_sink"]

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "sqlite")
"""The output formats, as ``--format`` accepts them."""

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
}


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format an output path's extension names (case-insensitive); :exc:`ConfigurationError` if none.

    >>> format_for_path("nightly/results.NDJSON")
    'jsonl'
    """
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        known = ", ".join(sorted(_EXTENSIONS))
        raise ConfigurationError(
            f"cannot tell the output format from {suffix or 'no extension'!r} (known: {known}); "
            f"give the format explicitly (one of {', '.join(FORMATS)})"
        ) from None


def open_sink(path: str | os.PathLike[str], *, format: str | None = None) -> Sink:
    """A sink for ``path`` in ``format`` (default: from the extension), not yet opened.

    >>> sink = open_sink("results.csv")
    >>> with sink:
    ...     state = sink.open(resume=True)
    ...     ...
    ...     sink.finish()

    Raises :exc:`ConfigurationError` for an unknown format, or for Parquet without pyarrow (naming the
    extra to install), before anything is written.
    """
    path = Path(path)
    name = format_for_path(path) if format is None else format.lower()
    if name == "jsonl":
        return JsonlSink(path)
    if name == "csv":
        return CsvSink(path)
    if name == "sqlite":
        return SqliteSink(path)
    if name == "parquet":
        from ispring_async.sinks.parquet import ParquetSink

        return ParquetSink(path)
    raise ConfigurationError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")

"""Choosing a sink from the output path, an explicit format and the datasets to write.

How ``--output`` names the files:

* SQLite (``.sqlite``, ``.sqlite3``, ``.db`` or ``--format sqlite``): one database, one table per
  dataset, whatever the datasets.
* One dataset in a file format and a path with that format's extension (``results.jsonl``,
  ``nightly.csv``): that file, as before datasets existed.
* Otherwise (several datasets, or a path without an output extension): a folder holding one file per
  dataset, ``<folder>/<dataset>.<ext>`` (``out/results.jsonl``, ``out/module-results.jsonl``,
  ``out/users.jsonl``, ``out/departments.jsonl``); the format then comes from ``format``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ispring_async._exceptions import ConfigurationError
from ispring_async.sinks._base import Sink
from ispring_async.sinks._datasets import RESULTS, Dataset
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


def open_sink(
    path: str | os.PathLike[str], *, format: str | None = None, datasets: Sequence[Dataset] = (RESULTS,)
) -> Sink:
    """A sink for ``path`` in ``format`` (default: from the extension) writing ``datasets``, not yet opened.

    >>> sink = open_sink("results.csv")
    >>> with sink:
    ...     state = sink.open(resume=True)
    ...     ...
    ...     sink.finish()

    See the module's docstring for when ``path`` is a file and when a folder. Raises
    :exc:`ConfigurationError` for an unknown format, several datasets in one file, or Parquet without
    pyarrow (naming the extra to install), before anything is written.
    """
    path = Path(path)
    extension = _EXTENSIONS.get(path.suffix.lower())
    if format is not None:
        name = format.lower()
    elif extension is not None:
        name = extension
    else:
        format_for_path(path)  # raises, naming the extensions it knows
        raise AssertionError
    if name not in FORMATS:
        raise ConfigurationError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
    if name == "sqlite":
        return SqliteSink(path, datasets)
    # A path with an output extension is one file (one dataset); one without is a folder of files.
    folder = extension is None
    if len(datasets) > 1 and not folder:
        names = ",".join(d.name for d in datasets)
        raise ConfigurationError(
            f"{len(datasets)} datasets ({names}) cannot go into the one file {path}: give a folder as the "
            f"output (--output {path.parent / path.stem} --format {name}: one file per dataset) or SQLite"
        )
    if name == "jsonl":
        return JsonlSink(path, datasets, folder=folder)
    if name == "csv":
        return CsvSink(path, datasets, folder=folder)
    from ispring_async.sinks.parquet import ParquetSink

    return ParquetSink(path, datasets, folder=folder)

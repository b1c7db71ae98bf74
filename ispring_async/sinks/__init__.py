"""Where exported records go: JSON Lines, CSV, Parquet or SQLite, behind one :class:`Sink` protocol.

A sink owns the output *and* the checkpoint, so the records written so far and the exporter's resume
state become durable together; an interrupted export (Ctrl-C, SIGTERM, SIGKILL) resumes to exactly the
output an uninterrupted one gives, and the output path never holds an incomplete export::

    from ispring_async.sinks import open_sink

    with open_sink("results.parquet") as sink:
        state = sink.open(resume=True)          # None: start afresh
        seen = set(sink.identities())
        for page in pages:                      # the exporter's loop
            sink.write(page.records)
            sink.checkpoint(exporter_state)     # opaque bytes, stored as given
        sink.finish()                           # publish atomically

Several datasets go into one sink: ``open_sink("out.sqlite", datasets=[DEPARTMENTS, RESULTS])``
writes one table each, ``open_sink("out", format="jsonl", datasets=...)`` one file each in ``out/``;
``sink.write(records, dataset="departments")``, and one checkpoint covers them all.
"""

from __future__ import annotations

from ispring_async._public import publish
from ispring_async.sinks._base import COLUMNS, Column, Sink, SinkError, columns_of
from ispring_async.sinks._datasets import (
    DATASETS,
    DEPARTMENTS,
    MODULE_RESULTS,
    RESULTS,
    USERS,
    Dataset,
    Derived,
    dataset_named,
    select_datasets,
)
from ispring_async.sinks._open import FORMATS, format_for_path, open_sink
from ispring_async.sinks.csv import CsvSink
from ispring_async.sinks.jsonl import JsonlSink
from ispring_async.sinks.parquet import ParquetSink
from ispring_async.sinks.sqlite import SqliteSink

__all__ = [
    "COLUMNS",
    "DATASETS",
    "DEPARTMENTS",
    "FORMATS",
    "MODULE_RESULTS",
    "RESULTS",
    "USERS",
    "Column",
    "CsvSink",
    "Dataset",
    "Derived",
    "JsonlSink",
    "ParquetSink",
    "Sink",
    "SinkError",
    "SqliteSink",
    "columns_of",
    "dataset_named",
    "format_for_path",
    "open_sink",
    "select_datasets",
]

publish(globals(), __all__, __name__)
del publish

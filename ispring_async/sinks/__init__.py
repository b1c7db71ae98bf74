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
"""

from __future__ import annotations

from ispring_async._public import publish
from ispring_async.sinks._base import COLUMNS, Column, Sink, SinkError
from ispring_async.sinks._open import FORMATS, format_for_path, open_sink
from ispring_async.sinks.csv import CsvSink
from ispring_async.sinks.jsonl import JsonlSink
from ispring_async.sinks.parquet import ParquetSink
from ispring_async.sinks.sqlite import SqliteSink

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Column",
    "CsvSink",
    "JsonlSink",
    "ParquetSink",
    "Sink",
    "SinkError",
    "SqliteSink",
    "format_for_path",
    "open_sink",
]

publish(globals(), __all__, __name__)
del publish

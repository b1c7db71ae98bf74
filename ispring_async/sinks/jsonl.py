"""JSON Lines: one JSON object per record, keys as the API's, ``null`` for absent values.

Datetimes are RFC 3339 strings with the offset the API sent; booleans are ``true``/``false``; nested
fields (a user's ``fields``, ``groups``, ``userRoles``) stay nested, as the struct encodes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ispring_async.sinks._datasets import Dataset
from ispring_async.sinks._files import FileSink, iter_line_blocks

__all__ = ["JsonlSink"]

_encoder = msgspec.json.Encoder()
_decoders: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {}


def _decoder(dataset: Dataset) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(dataset.type)
    if decoder is None:
        decoder = _decoders[dataset.type] = msgspec.json.Decoder(dataset.type)
    return decoder


class JsonlSink(FileSink):
    """Writes ``.jsonl`` (also ``.ndjson``): one msgspec-encoded line per record."""

    format = "jsonl"
    extension = "jsonl"

    def _encode(self, dataset: Dataset, records: Sequence[object]) -> bytes:
        return _encoder.encode_lines(records)

    def _read_identities(self, dataset: Dataset, path: Path, end: int) -> Iterator[str]:
        decoder = _decoder(dataset)
        for block in iter_line_blocks(path, end):
            # Decoding whole records keeps one definition of identity: the dataset's.
            for record in decoder.decode_lines(block):
                yield dataset.identity(record)

"""JSON Lines: one JSON object per record, keys as the API's, ``null`` for absent values.

Datetimes are RFC 3339 strings with the offset the API sent; booleans are ``true``/``false``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from ispring_async._models import LearnerResult
from ispring_async.sinks._files import FileSink, iter_line_blocks

__all__ = ["JsonlSink"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LearnerResult)


class JsonlSink(FileSink):
    """Writes ``.jsonl`` (also ``.ndjson``): one msgspec-encoded line per record."""

    format = "jsonl"

    def _encode(self, records: Sequence[LearnerResult]) -> bytes:
        return _encoder.encode_lines(records)

    def _read_identities(self, path: Path, end: int) -> Iterator[str]:
        for block in iter_line_blocks(path, end):
            # Decoding whole records keeps one definition of identity: LearnerResult.identity.
            for record in _decoder.decode_lines(block):
                yield record.identity

"""Deterministic benchmark data: the emulator's own dataset and renderer, so every byte a benchmark
parses is a byte the emulator would serve (same escapes, optional fields, Cyrillic, CJK and emoji).
"""

from __future__ import annotations

import functools

from ispring_async._models import LearnerResult
from ispring_async.emulator import Dataset, EmulatorConfig, encode_page_token
from ispring_async.emulator._render import Format, Renderer

__all__ = ["SEED", "dataset", "document", "page", "records"]

SEED = 1
"""The dataset seed every benchmark uses."""


@functools.cache
def dataset(results: int) -> Dataset:
    """The emulator's dataset of ``results`` rows (built once per size and process)."""
    return Dataset(EmulatorConfig(results=results, seed=SEED))


@functools.cache
def _renderer(results: int) -> Renderer:
    return Renderer(dataset(results), overdue_words=False)


def document(fmt: Format, records: int, *, start: int = 0, last: bool = False) -> bytes:
    """``records`` rows from position ``start`` as one response body, exactly as the emulator renders it.

    The body carries a ``nextPageToken`` unless ``last`` (a middle page of an export, the usual case).
    """
    ds = dataset(max(records + start, 1000))
    positions = range(start, start + records)
    token = None if last else encode_page_token(ds.key(start + records - 1))
    return b"".join(_renderer(len(ds)).results(fmt, positions, token))


def page(fmt: Format, *, records: int = 1000) -> bytes:
    """One realistic page (1000 records by default) as the emulator sends it."""
    return document(fmt, records)


def records(count: int) -> list[LearnerResult]:
    """``count`` records as the client decodes them (for the sinks)."""
    ds = dataset(max(count, 1000))
    return [ds.record(pos) for pos in range(count)]

"""A date column's index: each block of row positions sorted by (date, position).

The API orders rows by key, and a row's position is its rank in that order, so a date window's rows
are scattered over the whole key range. A single index sorted by date finds the window but yields it
in date order, and sorting a wide window back into key order costs as much as the window, per page.
Sorting within fixed blocks of positions instead keeps both orders at hand: in block ``b`` (positions
``[b * block, (b + 1) * block)``) two bisections find the window's rows, and since blocks follow each
other in key order, sorting only that block's few hits yields the window in API order. A page after a
token starts at the token's block, so it costs its own rows plus, at worst, two bisections per block
(a quarter of a millisecond at a million rows with 4096-row blocks), and there is no per-window state.

Rows only change in place or at the end, so a mutation dirties one block, rebuilt before the next read.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator

__all__ = ["BLOCK", "DateIndex"]

BLOCK = 4096
"""Positions per block: walking every block of a million rows and sorting half a block both stay
near 0.2 ms (1024 doubles the walk, 8192 quadruples the sort; measured)."""
_SAMPLE_STEP = 16
# A block walk costs about as much as checking this many candidate rows; it makes estimates of a
# sparse window (few rows, every block visited) comparable with a list index's exact sizes.
_BLOCK_COST = 4


class DateIndex:
    """Positions of one ``array`` date column (``0`` = absent), ordered by date within each block.

    ``window(low, high, start)`` yields, in ascending position, every position ``>= start`` whose
    date is within ``[low, high]``. Call ``changed(pos)`` after writing a date in place; appended
    rows are picked up by themselves.
    """

    def __init__(self, column: array[int], *, block: int = BLOCK) -> None:
        """Index ``column`` (the index keeps a reference and follows its growth)."""
        if block <= 0:
            raise ValueError("block must be positive")
        self._column = column
        self._block = block
        self._dates = array("I")
        self._rows = array("I")
        self._size = 0
        self._dirty: set[int] = set()
        self._sync()
        # For estimates only: it ignores later mutations, which can make a choice slower, never wrong.
        self._sample = sorted(column[::_SAMPLE_STEP])

    def changed(self, pos: int) -> None:
        """The date at ``pos`` was written: its block is rebuilt before the next read."""
        self._dirty.add(pos // self._block)

    def estimate(self, low: int, high: int) -> int:
        """Roughly what ``window(low, high, 0)`` costs to walk, in rows (to pick the narrowest index)."""
        low = max(low, 1)
        sample = self._sample
        found = bisect.bisect_right(sample, high) - bisect.bisect_left(sample, low) if low <= high else 0
        blocks = -(-len(self._column) // self._block)
        return found * _SAMPLE_STEP + blocks * _BLOCK_COST

    def window(self, low: int, high: int, start: int) -> Iterator[int]:
        """Positions ``>= start`` whose date ``d`` has ``low <= d <= high``, ascending."""
        self._sync()
        low = max(low, 1)  # 0 is an absent date, which no range matches
        if low > high:
            return
        dates, rows, block, size = self._dates, self._rows, self._block, self._size
        bisect_left, bisect_right = bisect.bisect_left, bisect.bisect_right
        for first in range(start - start % block, size, block):
            end = min(first + block, size)
            i = bisect_left(dates, low, first, end)
            j = bisect_right(dates, high, i, end)
            if i == j:
                continue
            if j - i == end - first:
                # The whole block is in the window: its positions are already in order.
                yield from range(max(first, start), end)
                continue
            chosen = sorted(rows[i:j])
            if first < start:
                del chosen[: bisect_left(chosen, start)]
            yield from chosen

    def _sync(self) -> None:
        """Rebuild dirty blocks and the blocks rows were appended to."""
        size = len(self._column)
        if size == self._size and not self._dirty:
            return
        block = self._block
        grown = range(self._size // block, -(-size // block)) if size > self._size else range(0)
        if size > len(self._rows):
            padding = bytes(4 * (size - len(self._rows)))
            self._rows.frombytes(padding)
            self._dates.frombytes(padding)
        for number in sorted(self._dirty.union(grown)):
            self._build(number * block, min(number * block + block, size))
        self._size = size
        self._dirty.clear()

    def _build(self, first: int, end: int) -> None:
        date_of = self._column.__getitem__
        # sorted() is stable, so rows of equal date stay in position order.
        order = sorted(range(first, end), key=date_of)
        self._rows[first:end] = array("I", order)
        self._dates[first:end] = array("I", map(date_of, order))

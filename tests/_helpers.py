"""What several test modules share (issue 15, part 5): one copy each, and no test module imports another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["client_tasks", "drain"]


async def drain(stream: AbstractAsyncContextManager[AsyncIterator[T]]) -> list[T]:
    """Every item of a record stream, iterated inside its ``async with`` block as the library requires."""
    async with stream as items:
        return [item async for item in items]


def client_tasks() -> set[asyncio.Task[Any]]:
    """Unfinished tasks running client-side library code (the emulator's request handlers excluded)."""
    found = set()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        code = getattr(task.get_coro(), "cr_code", None)
        filename = "" if code is None else code.co_filename
        if not task.done() and "ispring_async" in filename and "emulator" not in filename:
            found.add(task)
    return found

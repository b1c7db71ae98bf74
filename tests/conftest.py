"""Shared test configuration: async tests run on anyio's pytest plugin with the asyncio backend."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (the library targets asyncio and uvloop)."""
    return "asyncio"

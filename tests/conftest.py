"""Shared test configuration: async tests run on anyio's pytest plugin with the asyncio backend."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (the library targets asyncio and uvloop)."""
    return "asyncio"


# Property tests are part of `make test`: derandomized so a run is reproducible (no flaky CI), with no
# example database written into the checkout. Explore more widely by hand with HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

"""pytest fixtures for testing code against the emulator (registered as a ``pytest11`` plugin).

Installing ispring_async makes two fixtures available in any test suite::

    def test_export(ispring_emulator):
        url, client_id = ispring_emulator.base_url, ispring_emulator.client_id
        ...
        assert exported == ispring_emulator.expected_results([("userStatuses[]", "1")])

    @pytest.fixture
    def ispring_emulator_config():  # override to change the data, the API variant or the faults
        return EmulatorConfig(results=500, faults=Faults(seed=3, server_error=0.1))

The server runs in a background thread with its own event loop, so the fixture works from sync
tests and from any async test runner (asyncio, anyio, trio clients over HTTP).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ispring_async.emulator._config import EmulatorConfig
from ispring_async.emulator._server import Emulator, serve_in_thread

__all__ = ["ispring_emulator", "ispring_emulator_config"]


@pytest.fixture
def ispring_emulator_config() -> EmulatorConfig:
    """The configuration ``ispring_emulator`` serves: 2000 results, seed 1, no faults. Override it."""
    return EmulatorConfig(results=2000, seed=1)


@pytest.fixture
def ispring_emulator(ispring_emulator_config: EmulatorConfig) -> Iterator[Emulator]:
    """A running emulator on a free 127.0.0.1 port, fresh for each test."""
    with serve_in_thread(ispring_emulator_config) as emulator:
        yield emulator

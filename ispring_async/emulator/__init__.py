"""A local emulator of the iSpring Learn API, the oracle ispring_async is tested against.

It serves ``POST /api/v3/token``, ``GET /learners/results``, ``GET /learners/modules/results``,
``GET /users/v2`` and ``GET /departments`` over real HTTP from one deterministic dataset, injects
faults reproducibly, and knows the ground truth of every query::

    from ispring_async.emulator import EmulatorConfig, Faults, running_emulator

    config = EmulatorConfig(results=5000, seed=1, faults=Faults(seed=7, server_error=0.05))
    async with running_emulator(config) as emu:
        ...  # point a client at emu.base_url with emu.client_id / emu.client_secret
        expected = emu.expected_results([("userStatuses[]", "1"), ("userStatuses[]", "3")])

From sync code: ``with serve_in_thread(config) as emu: ...``; in its own process (benchmarks):
``with serve_in_process(["--results", "100000"]) as emu: ...``. From a shell:
``ispring-async emulator --port 8080 --results 100000`` (same as ``python -m ispring_async.emulator``).
In pytest: the ``ispring_emulator`` fixture.
"""

from __future__ import annotations

from ispring_async.emulator._config import EmulatorConfig, Fault, Faults, XmlLayout
from ispring_async.emulator._dataset import Dataset
from ispring_async.emulator._process import EmulatorProcess, serve_in_process
from ispring_async.emulator._query import QueryError, decode_page_token, encode_page_token
from ispring_async.emulator._server import Emulator, EmulatorStats, running_emulator, serve_in_thread

__all__ = [
    "Dataset",
    "Emulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorStats",
    "Fault",
    "Faults",
    "QueryError",
    "XmlLayout",
    "decode_page_token",
    "encode_page_token",
    "running_emulator",
    "serve_in_process",
    "serve_in_thread",
]

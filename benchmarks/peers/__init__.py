"""Scenario 6 — peers: dlt's ``rest_api`` source and Airbyte's low-code CDK, beside ours, in one run.

Each peer runs in its own virtualenv (``.venv-dlt``, ``.venv-airbyte``; ``make bench-peers`` creates
them from PyPI, or point ``BENCH_DLT_PYTHON`` / ``BENCH_AIRBYTE_PYTHON`` at other interpreters) from a
script in this folder that imports nothing of ispring_async and talks to the emulator over HTTP only:

* ``dlt-extract`` / ``dlt-load`` — ``dlt_rest_api.py``: ``pipeline.extract`` only (checked from dlt's
  own extracted files), and ``pipeline.run`` into dlt's default duckdb (checked from the table);
* ``airbyte-xml`` / ``airbyte-json`` — ``airbyte_declarative.py``: the CDK's
  ``source-declarative-manifest read`` with ``airbyte_manifest.yaml`` (checked from its RECORD messages).

Ours (CLI and library, XML and JSON, C=8) and the naive clients run in the same rounds, measured and
checked exactly as in the complete-export scenario (``benchmarks.complete``).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from benchmarks._common import REPO
from benchmarks.complete import (
    Identity,
    Latency,
    Tool,
    identity,
    jsonl_identities,
    ours_tools,
    run_rounds,
    targets,
)

__all__ = ["PEERS", "airbyte_identities", "dlt_extracted_identities", "peer_tools", "run"]

HERE = Path(__file__).resolve().parent
PEERS = ("dlt-extract", "dlt-load", "airbyte-xml", "airbyte-json")


class _Record(msgspec.Struct):
    data: Identity


class _Message(msgspec.Struct):
    type: str
    record: _Record | None = None


def airbyte_identities(stdout: Path) -> Iterator[str]:
    """The identity of every RECORD message an Airbyte source wrote to ``stdout`` (other messages skipped)."""
    decoder = msgspec.json.Decoder(_Message)
    with stdout.open("rb") as f:
        for line in f:
            if line.startswith(b"{"):
                message = decoder.decode(line)
                if message.type == "RECORD" and message.record is not None:
                    yield identity(message.record.data)


def dlt_extracted_identities(workdir: Path) -> Iterator[str]:
    """The identity of every row in dlt's extracted ``learner_results`` files (typed JSONL, maybe gzipped).

    Each line of those files holds one JSON object or a JSON array of them.
    """
    files = sorted(workdir.glob("pipelines/*/normalize/extracted/*/new_jobs/learner_results.*"))
    if not files:
        raise FileNotFoundError(f"dlt extracted no learner_results files under {workdir}/pipelines")
    one = msgspec.json.Decoder(Identity)
    many = msgspec.json.Decoder(list[Identity])
    for path in files:
        opener: Any = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for line in f:
                line = line.strip()
                if line.startswith(b"["):
                    yield from (identity(row) for row in many.decode(line))
                elif line:
                    yield identity(one.decode(line))


def _python(venv: str, variable: str) -> str:
    found = os.environ.get(variable) or str(REPO / venv / "bin" / "python")
    if not Path(found).exists():
        raise FileNotFoundError(
            f"{found} not found: run `make bench-peers` (it creates {venv}) or set ${variable}"
        )
    return found


def peer_tools() -> list[Tool]:
    """dlt (extract, load) and Airbyte (XML, JSON), each launched with its own virtualenv's interpreter."""
    dlt, airbyte = _python(".venv-dlt", "BENCH_DLT_PYTHON"), _python(".venv-airbyte", "BENCH_AIRBYTE_PYTHON")
    # No telemetry from dlt: the machine has no network but loopback, and a peer must not wait on one.
    quiet = {"RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_TELEMETRY": "false"}
    tools = []
    for mode in ("extract", "load"):

        def dlt_command(base_url: str, _: Path, mode: str = mode) -> list[str]:
            return [dlt, str(HERE / "dlt_rest_api.py"), mode, "--base-url", base_url]

        def dlt_output(workdir: Path, _: Path, mode: str = mode) -> Iterator[str]:
            if mode == "extract":
                return dlt_extracted_identities(workdir)
            return jsonl_identities(workdir / "out.jsonl")

        tools.append(
            Tool(
                name=f"dlt-{mode}",
                kind="peer",
                format="json",
                concurrency=None,
                command=dlt_command,
                identities=dlt_output,
                env=quiet,
                # Loading to duckdb takes minutes where the rest take seconds, and no target needs it.
                rounds=1 if mode == "load" else None,
            )
        )
    for fmt in ("xml", "json"):

        def airbyte_command(base_url: str, _: Path, fmt: str = fmt) -> list[str]:
            return [airbyte, str(HERE / "airbyte_declarative.py"), fmt, "--base-url", base_url]

        tools.append(
            Tool(
                name=f"airbyte-{fmt}",
                kind="peer",
                format=fmt,
                concurrency=None,
                command=airbyte_command,
                identities=lambda _, stdout: airbyte_identities(stdout),
            )
        )
    return tools


def run(
    *, latencies_ms: tuple[Latency, ...], rounds: int, dataset: int, timeout: float = 1800.0
) -> dict[str, Any]:
    """Peers, ours (CLI and library, XML and JSON, C=8) and naive, interleaved in each round."""
    tools = [*ours_tools(formats=("xml", "json"), concurrency=(8,)), *peer_tools()]
    data = run_rounds(tools, latencies_ms=latencies_ms, rounds=rounds, dataset=dataset, timeout=timeout)
    data["targets"] = targets(data, peers=data)
    return {"latencies_ms": list(latencies_ms), "rounds": rounds, "dataset": dataset, **data}

"""The benchmark runner works end to end on a tiny size (a smoke test; no figure is judged here)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import main
from benchmarks.parse import APPROACHES


def test_tiny_run_writes_results_report_and_plots(tmp_path: Path) -> None:
    """``python -m benchmarks --tiny`` runs every scenario and writes its JSON, the report and the plots."""
    assert main(["--tiny", "--out", str(tmp_path)]) == 0

    parse = json.loads((tmp_path / "parse.json").read_text())
    assert set(parse["approaches"]) == set(APPROACHES)
    assert all(a["records_per_s"]["median"] > 0 for a in parse["approaches"].values())
    assert parse["machine"]["cores"] >= 1
    assert all(r["records"] in (2000, None) for runs in parse["document"]["raw"].values() for r in runs)

    e2e = json.loads((tmp_path / "e2e.json").read_text())
    clients = {(c["client"], c["format"]) for c in e2e["cells"]}
    assert clients == {("naive", "xml"), ("ours", "xml"), ("ours", "json")}
    assert all(r["records"] >= 2000 for r in e2e["raw"])

    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["raw"][0]["records"] == 2000
    assert memory["raw"][0]["peak_rss_bytes"] > 0

    sinks = json.loads((tmp_path / "sinks.json").read_text())
    assert set(sinks["sinks"]) == {"jsonl", "csv", "parquet", "sqlite"}

    report = (tmp_path / "report.md").read_text()
    for heading in (
        "## Machine",
        "## Targets",
        "## 1. Parse",
        "## 2. End to end",
        "## 3. Memory",
        "## 4. Sinks",
    ):
        assert heading in report
    for plot in ("e2e-throughput.png", "parse-ratio.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

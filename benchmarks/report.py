"""The human-readable side of a run: ``report.md`` with every table and target, and the two PNG plots.

Both are built from the JSON files in the results directory, so a partial run (``--only``) refreshes its
own sections and keeps the others (each section says when and in which mode it was measured).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import Summary, read_result
from benchmarks.complete import Latency, describe_latency, entry_label, latency_label, versus

__all__ = ["plot_e2e", "plot_parse", "write_peers", "write_report"]

_SCENARIOS = ("parse", "e2e", "memory", "sinks", "complete", "peers")


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _spread(s: Summary, fmt: Any = _rate) -> str:
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def _ratio(value: float) -> str:
    return f"{value:.2f}×"


def _mib(value: float) -> str:
    return f"{value:.0f}"


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine(data: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(data.values()))
    m = first["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items() if version)
    load = m.get("load_average_at_start")
    lines = [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)",
        f"- {m['implementation']} {m['python']}, {m['libexpat']}, {m['platform']}",
        f"- {packages}",
    ]
    if load:
        lines.append(f"- load average when the run started: {', '.join(f'{v:.2f}' for v in load)}")
    lines += [
        "- The end-to-end and memory scenarios run the emulator and the client as two processes on this "
        "same machine: they compete for its cores, so absolute figures understate what a client gets "
        "against a remote server.",
        "",
        "| scenario | measured | mode |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {d['machine']['date']} | {d.get('mode', '?')} |" for name, d in data.items()]
    return [*lines, ""]


def _targets(data: dict[str, dict[str, Any]]) -> list[str]:
    rows: list[list[str]] = []
    parse = data.get("parse")
    if parse:
        for t in parse["targets"]:
            rows.append(
                [
                    "parse (issue 2)",
                    t["name"],
                    _spread(t["ratio"], _ratio),
                    f"≥ {t['min']}×",
                    _verdict(t["pass"]),
                ]
            )
    e2e = data.get("e2e")
    if e2e:
        for t in e2e["targets"]:
            if "ratio" in t:
                measured = _spread(t["ratio"], _ratio)
            else:
                measured = f"{t['cells_passing']} of {t['cells']} cells"
            rows.append(["end to end (issue 4)", t["name"], measured, f"≥ {t['min']}×", _verdict(t["pass"])])
    for scenario in ("complete", "peers"):
        for t in data.get(scenario, {}).get("targets", []):
            rows.append([f"{scenario} (issue 11)", t["name"], _spread(t["ratio"], _ratio), *_bound(t)])
    if not rows:
        return []
    lines = ["## Targets", "", "Ratios are taken pairwise within a round (or repeat), then their median.", ""]
    lines += _table(["issue", "target", "measured: median (min–max)", "required", "result"], rows, "lllrl")
    return [*lines, ""]


def _bound(target: dict[str, Any]) -> list[str]:
    """The required bound and the verdict, with how close a missed target came."""
    median = target["ratio"]["median"]
    if "min" in target:
        required, close = f"≥ {target['min']}×", median / target["min"]
    else:
        required, close = f"≤ {target['max']}×", target["max"] / median
    verdict = _verdict(target["pass"])
    if target["pass"]:
        return [required, verdict]
    # What this tool's CPU work and the latency allow on this machine (complete.cpu_floor and
    # latency_floor): a miss below its ceiling is scheduling, one at the ceiling is the work itself.
    ceiling, one = target.get("ceiling"), target.get("one_process_ceiling")
    bound = (
        f"; ceiling {_ratio(one['median'])} in one process, {_ratio(ceiling['median'])} on every core"
        if ceiling and one
        else ""
    )
    return [required, f"{verdict} ({close:.0%} of the way{bound})"]


def _parse(parse: dict[str, Any]) -> list[str]:
    page = parse["page"]
    lines = [
        "## 1. Parse",
        "",
        f"One {page['records']}-record page ({page['xml_bytes'] / page['records']:.0f} bytes/record of XML, "
        f"{page['json_bytes'] / page['records']:.0f} of JSON) into `LearnerResult` structs, one core. "
        f"{parse['rounds']} interleaved rounds; median (min–max). Speed vs floor: records/s as a fraction "
        "of bare pyexpat's, per round.",
        "",
    ]
    rows = []
    for name, a in sorted(parse["approaches"].items(), key=lambda kv: -kv[1]["records_per_s"]["median"]):
        rows.append(
            [
                f"`{name}` — {a['description']}",
                _spread(a["records_per_s"]),
                f"{a['us_per_record']['median']:.2f}",
                _spread(a["speed_vs_floor"], _ratio),
            ]
        )
    lines += _table(["approach", "records/s", "µs/record", "speed vs floor"], rows)
    cw = parse["chunked_vs_whole"]
    lines += [
        "",
        f"Feeding 16 KiB chunks vs the whole body: XML {_spread(cw['xml'], _ratio)}, "
        f"JSON {_spread(cw['json'], _ratio)} (the JSON parser joins the chunks before decoding).",
        "",
    ]
    layouts = parse.get("layouts")
    if layouts:
        lines += [
            "### The same page in every layout",
            "",
            f"The 1000 records above as the emulator renders them in each `XmlLayout`; {layouts['rounds']} "
            "interleaved rounds, ratios per round, median (min–max). Target: ≥ 1.0× lxml, ≥ 5× xmltodict.",
            "",
        ]
        rows = []
        for name, entry in layouts["layouts"].items():
            rates = entry["records_per_s"]
            rows.append(
                [
                    name,
                    f"{entry['xml_bytes'] / 1000:.0f}",
                    _spread(rates["ours-xml"]),
                    _spread(rates["ours-xml-python"]) if "ours-xml-python" in rates else "—",
                    _spread(rates["lxml"]),
                    _spread(rates["xmltodict"]),
                    _spread(entry["vs_lxml"], _ratio) + ("" if entry["vs_lxml"]["pass"] else " ✗"),
                    _spread(entry["vs_xmltodict"], _ratio) + ("" if entry["vs_xmltodict"]["pass"] else " ✗"),
                    _spread(entry["floor_vs_xmltodict"], _ratio) if "floor_vs_xmltodict" in entry else "—",
                ]
            )
        lines += _table(
            [
                "layout",
                "bytes/rec",
                "ours rec/s",
                "ours, Python passes only",
                "lxml rec/s",
                "xmltodict rec/s",
                "ours/lxml",
                "ours/xmltodict",
                "expat floor/xmltodict",
            ],
            rows,
            "lrrrrrrrr",
        )
        lines += [
            "",
            "*ours, Python passes only*: the parser as installed where no C compiler was found (the fast "
            "route's rewrite done by byte passes driven from Python instead of its one C pass); no target.",
            "",
            "*expat floor/xmltodict*: bare expat (no handlers, no records: the validation pass every byte "
            "must go through) against xmltodict — the most ours/xmltodict can be on that layout.",
            "",
        ]
    users = parse.get("users")
    if users:
        lines += [
            "### Users pages (nested records, issue 14)",
            "",
            f"1000 `UserV2` profiles per page; {users['rounds']} interleaved rounds, ratios per round, "
            "median (min–max). Target: ≥ 1.0× lxml tree + walk into nested dicts + `msgspec.convert`.",
            "",
        ]
        rows = []
        for name, entry in users["layouts"].items():
            rates = entry["records_per_s"]
            rows.append(
                [
                    name,
                    f"{entry['xml_bytes'] / 1000:.0f}",
                    _spread(rates["ours-xml"]),
                    _spread(rates["lxml"]),
                    _spread(rates["expat-bare"]),
                    _spread(entry["vs_lxml"], _ratio) + ("" if entry["vs_lxml"]["pass"] else " ✗"),
                ]
            )
        lines += _table(
            ["page", "bytes/rec", "ours rec/s", "lxml rec/s", "expat floor rec/s", "ours/lxml"],
            rows,
            "lrrrrr",
        )
        lines.append("")
    doc = parse.get("document")
    if doc:
        lines += [
            f"### One {doc['records']:,}-record document ({doc['bytes']['xml'] / 2**20:.0f} MiB XML, "
            f"{doc['bytes']['json'] / 2**20:.0f} MiB JSON)",
            "",
            "Each approach in a fresh process. *stream*: the file is read in 16 KiB chunks; *whole*: read "
            "into memory and parsed at once. Peak: growth of the process's peak RSS (`VmHWM`, reset after "
            "a warm-up) over its RSS before the work, the body included if held whole; retained: RSS "
            "growth still held at the end (the records).",
            "",
        ]
        rows = []
        for name, a in sorted(doc["approaches"].items(), key=lambda kv: -kv[1]["records_per_s"]["median"]):
            rows.append(
                [
                    f"`{name}`",
                    a["mode"],
                    _spread(a["records_per_s"]),
                    _spread(a["peak_rss_delta_mib"], _mib),
                    _spread(a["retained_rss_delta_mib"], _mib),
                ]
            )
        lines += _table(["approach", "mode", "records/s", "peak +MiB", "retained +MiB"], rows, "llrrr")
        lines.append("")
    return lines


def _e2e(e2e: dict[str, Any]) -> list[str]:
    grid = e2e["grid"]
    lines = [
        "## 2. End to end (partial throughput, a secondary view)",
        "",
        "Each run stops after a fixed number of records, which leaves out the ramp-up and the tail of a "
        "real export: what users wait for is in section 5, complete exports.",
        "",
        f"Client process ↔ emulator process over loopback, pages of 1000, split `{grid['split']}`, "
        f"{grid['repeats']} runs per cell (each a fresh process), about {grid['target_seconds']} s each; "
        "records/s median (min–max). *line*: the target line min(parse ceiling, C × 1000 / latency) with "
        f"the parse ceiling {_rate(e2e['ceiling'])} records/s (our XML parser, scenario 1); the target is "
        "≥ 0.8 of it. *vs naive*: pairwise within a repeat. *CPU*: client / emulator busy time as a share "
        "of one core during the run (near 100 %: that process is the bottleneck).",
        "",
        "![throughput](e2e-throughput.png)",
        "",
    ]
    cells = e2e["cells"]
    for latency in grid["latencies_ms"]:
        naive = [c for c in cells if c["client"] == "naive" and c["latency_ms"] == latency]
        naive_text = f"{_spread(naive[0]['records_per_s'])} records/s, CPU {_cpu(naive[0])}" if naive else "—"
        lines += [f"### {latency} ms latency — naive (requests + ElementTree): {naive_text}", ""]
        rows = []
        for concurrency in grid["concurrency"]:
            row = [str(concurrency)]
            for fmt in ("xml", "json"):
                found = [
                    c
                    for c in cells
                    if c["client"] == "ours"
                    and c["format"] == fmt
                    and c["concurrency"] == concurrency
                    and c["latency_ms"] == latency
                ]
                if not found:
                    row += ["—", "—", "—", "—"]
                    continue
                c = found[0]
                row += [
                    _spread(c["records_per_s"]),
                    f"{c['vs_target_line']['median']:.2f}" + ("" if c["target_line_pass"] else " ✗"),
                    _ratio(c["vs_naive"]["median"]),
                    _cpu(c),
                ]
            rows.append(row)
        lines += _table(
            [
                "C",
                "XML records/s",
                "XML / line",
                "XML vs naive",
                "XML CPU",
                "JSON records/s",
                "JSON / line",
                "JSON vs naive",
                "JSON CPU",
            ],
            rows,
        )
        lines.append("")
    return lines


def _export_table(data: dict[str, Any], latency: Latency, reference: str | None) -> list[str]:
    """One latency's cells: wall time, rates, requests, CPU and memory; ``reference``'s speed-up if given."""
    label = latency_label(latency)
    cells = [c for c in data["cells"] if entry_label(c) == label]
    truth = data["truth_records"][label]
    rows = []
    for c in cells:
        if reference is None:
            vs = _ratio(c["vs_naive"]["median"]) if "vs_naive" in c else "—"
        else:
            ratio = versus(data["raw"], reference, c["tool"], latency)
            vs = _ratio(ratio["median"]) if ratio is not None and c["tool"] != reference else "—"
        unsplit = c.get("requests_vs_unsplit")
        rows.append(
            [
                f"`{c['tool']}`",
                _spread(c["seconds"], lambda v: f"{v:.2f}"),
                _rate(c["records_per_s"]["median"]),
                vs,
                f"{c['requests']['median']:.0f} ({c['requests_per_record']['median'] * 1000:.2f}/1000)",
                _ratio(unsplit["median"]) if unsplit else "—",
                f"{c['cpu_us_per_record']['median']:.1f}",
                _floor(c),
                _rss(c),
            ]
        )
    speed = "speed-up vs naive (same format)" if reference is None else f"`{reference}` faster by"
    header = ["tool", "wall s", "records/s", speed, "requests (per 1000 records)", "requests / unsplit"]
    header += [
        "client CPU µs/record",
        "floors s: one core / all cores / latency (ceilings vs naive)",
        "peak RSS MiB",
    ]
    lines = [f"### {describe_latency(latency)} latency ({truth:,} records, every tool's output exact)", ""]
    return [*lines, *_table(header, rows), ""]


def _rss(cell: dict[str, Any]) -> str:
    largest = _mib(cell["peak_rss_mib"]["median"])
    summed = cell.get("peak_tree_rss_mib")
    return largest if summed is None else f"{largest} / {_mib(summed['median'])}"


def _floor(cell: dict[str, Any]) -> str:
    if "machine_floor_seconds" not in cell:
        return "—"
    names = ("one_core", "machine", "latency")
    floor = " / ".join(f"{cell[f'{name}_floor_seconds']['median']:.2f}" for name in names)
    if "ceiling_vs_naive" not in cell:
        return floor
    one, every = cell["one_process_ceiling_vs_naive"]["median"], cell["ceiling_vs_naive"]["median"]
    return f"{floor} ({_ratio(one)} / {_ratio(every)})"


_EXPORT_NOTES = (
    "*wall*: process start to exit, output published, median (min–max) of the rounds. *requests*: "
    "`/learners/results` requests the emulator counted during the run (token requests not included); "
    "*unsplit*: the naive client's pages, i.e. one chain's. *client CPU*: user + system time of the "
    "client process and its children over the records. *floors*: the least wall time the run's work "
    "allows here — its client CPU on one core (for a client in one process), the client's and the "
    "emulator's CPU spread over every core, and the client's start-up CPU plus its requests, C at a "
    "time, each waiting the median latency; *ceilings*: the naive wall time over the larger of the "
    "first and the last floor (one process), and of the last two (any scheduling): the speed-up "
    "within reach of a tool that costs this much. "
    "*peak RSS*: the client's `ru_maxrss` (its largest process), and the peak of its processes' RSS "
    "summed (sampled every 20 ms). Ratios are pairwise within a round."
)


def _complete(data: dict[str, Any]) -> list[str]:
    grid = data["grid"]
    lines = [
        "## 5. Complete export",
        "",
        f"Every result of active and blocked users from a {grid['dataset']:,}-row emulator in its own "
        f"process, {grid['rounds']} interleaved rounds, each run a fresh process: `cli-*` is "
        "`ispring-async export` to JSONL, `lib-*` consumes `Client.learner_results` and writes JSONL, "
        "`naive-*` is requests + ElementTree (or `reply.json()`), one page after another. " + _EXPORT_NOTES,
        "",
    ]
    for latency in grid["latencies_ms"]:
        lines += _export_table(data, latency, None)
    return lines


_PEERS_REFERENCE = "cli-xml-c8"


def _peers(data: dict[str, Any], heading: str = "## 6. Peers") -> list[str]:
    lines = [
        heading,
        "",
        f"`make bench-peers`: dlt's `rest_api` source (JSON; `dlt-extract` is `pipeline.extract`, "
        "`dlt-load` is `pipeline.run` into its default duckdb) and Airbyte's low-code CDK "
        "(`source-declarative-manifest read`, XmlDecoder and JSON), each in its own virtualenv, configured "
        "as their docs show (OAuth2 client credentials, cursor paginator `nextPageToken` → `pageToken`, "
        "`userStatuses[]=1&userStatuses[]=3`), beside ours and naive in the same "
        f"{data['rounds']} interleaved rounds against a {data['dataset']:,}-row emulator. "
        f"The fourth column: how many times `{_PEERS_REFERENCE}` (our CLI, XML, C=8) is faster; "
        "`dlt-load` runs in the first round only (minutes per run, and no target needs its median). "
        + _EXPORT_NOTES,
        "",
    ]
    for latency in data["latencies_ms"]:
        lines += _export_table(data, latency, _PEERS_REFERENCE)
    return lines


def write_peers(out: Path) -> Path | None:
    """``out/peers.md``: the peers table on its own, with its targets and the machine."""
    data = read_result(out, "peers")
    if data is None:
        return None
    lines = ["# Complete exports: ispring_async beside dlt and Airbyte", ""]
    lines += _machine({"peers": data})
    lines += _targets({"peers": data})
    lines += _peers(data, heading="## Results")
    path = out / "peers.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _cpu(cell: dict[str, Any]) -> str:
    return f"{cell['client_cpu_share']['median']:.0%} / {cell['emulator_cpu_share']['median']:.0%}"


def _memory(memory: dict[str, Any]) -> list[str]:
    lines = [
        "## 3. Memory",
        "",
        f"Peak RSS (`VmHWM`) of the exporting process ({memory['exporter']}) writing JSONL, each run a "
        "fresh process; the first row is a process that only imports the exporter. Records/s here "
        "include process start-up and the output's publication.",
        "",
    ]
    rows = [
        [f"{int(size):,}", _spread(s["peak_rss_mib"], _mib), _spread(s["records_per_s"])]
        for size, s in memory["sizes"].items()
    ]
    if "baseline_rss_mib" in memory:
        rows.insert(0, ["0 (interpreter + imports)", _spread(memory["baseline_rss_mib"], _mib), "—"])
    lines += _table(["records", "peak RSS MiB", "records/s"], rows)
    by_split = memory.get("by_split", {})
    if len(by_split) > 1:
        sizes = list(memory["sizes"])
        header = ["split", *(f"{int(size):,} records, MiB" for size in sizes), "largest / smallest"]
        split_rows = [
            [
                f"`{split}`",
                *(_mib(results[size]["peak_rss_mib"]["median"]) for size in sizes),
                _ratio(memory["peak_growth_by_split"][split]),
            ]
            for split, results in by_split.items()
        ]
        lines += ["", "Peak RSS by split mode (medians):", "", *_table(header, split_rows)]
    return [*lines, ""]


def _sinks(sinks: dict[str, Any]) -> list[str]:
    lines = [
        "## 4. Sinks",
        "",
        f"{sinks['records']:,} records written, checkpoint every {sinks['page']}, `finish` included; "
        f"{sinks['rounds']} interleaved rounds.",
        "",
    ]
    rows = [
        [name, _spread(s["records_per_s"]), f"{s['bytes'] / sinks['records']:.0f}"]
        for name, s in sorted(sinks["sinks"].items(), key=lambda kv: -kv[1]["records_per_s"]["median"])
    ]
    lines += _table(["sink", "records/s", "bytes/record"], rows)
    return [*lines, ""]


def write_report(out: Path) -> Path:
    """``out/report.md`` from every scenario's JSON in ``out``."""
    data = {name: d for name in _SCENARIOS if (d := read_result(out, name)) is not None}
    lines = [
        "# ispring_async benchmarks",
        "",
        "Generated by `python -m benchmarks` (see benchmarks/README.md). Absolute figures depend on the "
        "machine; the ratios, all measured in the same run, are what carries over.",
        "",
    ]
    if data:
        lines += _machine(data)
        lines += _targets(data)
    if "parse" in data:
        lines += _parse(data["parse"])
        lines += ["![parse speed vs the floor](parse-ratio.png)", ""]
    if "e2e" in data:
        lines += _e2e(data["e2e"])
    if "memory" in data:
        lines += _memory(data["memory"])
    if "sinks" in data:
        lines += _sinks(data["sinks"])
    if "complete" in data:
        lines += _complete(data["complete"])
    if "peers" in data:
        lines += _peers(data["peers"])
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- plots -------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _footer(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"{m['cpu']}, {m['cores']} cores, Python {m['python']} — {m['date']}"


def plot_parse(out: Path) -> Path | None:
    """``parse-ratio.png``: each approach's speed on one page as a fraction of bare pyexpat's."""
    parse = read_result(out, "parse")
    if parse is None:
        return None
    plt = _pyplot()
    items = sorted(parse["approaches"].items(), key=lambda kv: kv[1]["speed_vs_floor"]["median"])
    names = [name for name, _ in items]
    medians = [a["speed_vs_floor"]["median"] for _, a in items]
    low = [a["speed_vs_floor"]["median"] - a["speed_vs_floor"]["min"] for _, a in items]
    high = [a["speed_vs_floor"]["max"] - a["speed_vs_floor"]["median"] for _, a in items]
    colors = ["tab:blue" if n.startswith("ours") else "tab:gray" for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6))
    ax.barh(names, medians, xerr=[low, high], color=colors, capsize=3)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle=":")
    for y, value in enumerate(medians):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("records/s as a fraction of bare pyexpat (no handlers) — higher is faster")
    ax.set_title("Parsing one 1000-record page into structs")
    fig.text(0.01, 0.01, _footer(parse), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "parse-ratio.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_e2e(out: Path) -> Path | None:
    """``e2e-throughput.png``: records/s against concurrency, one colour per latency."""
    e2e = read_result(out, "e2e")
    if e2e is None:
        return None
    plt = _pyplot()
    grid = e2e["grid"]
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("viridis")
    concurrency = grid["concurrency"]
    for i, latency in enumerate(grid["latencies_ms"]):
        color = colors(i / max(1, len(grid["latencies_ms"]) - 1) * 0.85)
        for fmt, style in (("xml", "-"), ("json", "--")):
            cells = sorted(
                (
                    c
                    for c in e2e["cells"]
                    if c["client"] == "ours" and c["format"] == fmt and c["latency_ms"] == latency
                ),
                key=lambda c: c["concurrency"],
            )
            xs = [c["concurrency"] for c in cells]
            ys = [c["records_per_s"]["median"] for c in cells]
            err = [
                [c["records_per_s"]["median"] - c["records_per_s"]["min"] for c in cells],
                [c["records_per_s"]["max"] - c["records_per_s"]["median"] for c in cells],
            ]
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                linestyle=style,
                marker="o",
                markersize=3,
                color=color,
                capsize=2,
                label=f"{latency} ms, ours {fmt.upper()}",
            )
        naive = [c for c in e2e["cells"] if c["client"] == "naive" and c["latency_ms"] == latency]
        if naive:
            value = naive[0]["records_per_s"]["median"]
            ax.plot(
                concurrency,
                [value] * len(concurrency),
                linestyle=":",
                marker="x",
                color=color,
                label=f"{latency} ms, naive",
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(concurrency)
    ax.set_xticklabels([str(c) for c in concurrency])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("records/s")
    ax.set_ylim(bottom=0)
    ax.set_title("End to end against the emulator: XML solid, JSON dashed, naive sequential dotted")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.text(0.01, 0.01, _footer(e2e), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "e2e-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

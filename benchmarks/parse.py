"""Scenario 1 — parsing: one realistic 1000-record page into ``LearnerResult`` structs, by every approach a
user might otherwise take; and one large document, each approach in a fresh process for its peak memory.

Every approach that produces records must produce exactly ours (checked before timing), so no baseline is
fast because it skips work. The floor, bare pyexpat, produces nothing: it is what reading the bytes costs.

Rounds interleave the approaches (round ``r`` runs all of them once, in an order rotated by ``r``) so a
noisy moment hits every approach alike; ratios are taken within a round, then their median reported.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import xml.sax.handler
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

import msgspec

from benchmarks import _data
from benchmarks._common import Summary, memory_status, reset_peak_rss, run_child, summarize
from ispring_async._config import ResponseFormat
from ispring_async._models import LearnerResult, User
from ispring_async._parse import ParseLimits, results_parser, users_parser
from ispring_async._parse._fast import without_c_pass
from ispring_async.emulator import XmlLayout, encode_page_token
from ispring_async.emulator._config import XML_LAYOUTS
from ispring_async.emulator._render import Renderer

__all__ = ["APPROACHES", "DOCUMENT_APPROACHES", "LAYOUTS", "TARGETS", "run"]

CHUNK = 16 << 10
"""Bytes per ``feed``: what a socket read typically hands over."""
PAGE_RECORDS = 1000
_LIST = list[LearnerResult]
# A 100k-record document is one body here, beyond the default per-page cap on records.
_DOCUMENT_LIMITS = ParseLimits(max_records=10_000_000, max_body_bytes=4 << 30, max_markup=1 << 31)


class _JsonPage(msgspec.Struct):
    results: list[LearnerResult]
    nextPageToken: str | None = None


Parse = Callable[[bytes], list[LearnerResult] | None]


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def _ours(fmt: ResponseFormat, *, chunked: bool) -> Callable[[bytes], list[LearnerResult]]:
    """ispring_async's parser for ``fmt``, fed 16 KiB chunks as the network delivers them, or whole."""

    def parse(body: bytes) -> list[LearnerResult]:
        parser = results_parser(fmt, page="bench", limits=_DOCUMENT_LIMITS)
        for chunk in _chunks(body) if chunked else (body,):
            parser.feed(chunk)
        return parser.close().records

    return parse


ours_xml = _ours(ResponseFormat.XML, chunked=True)
ours_xml_whole = _ours(ResponseFormat.XML, chunked=False)
ours_json = _ours(ResponseFormat.JSON, chunked=True)
ours_json_whole = _ours(ResponseFormat.JSON, chunked=False)


def ours_xml_python(body: bytes) -> list[LearnerResult]:
    """The XML parser as installed where no C compiler was found: the fast route's Python passes."""
    with without_c_pass():
        return ours_xml(body)


def expat_bare(body: bytes) -> None:
    expat.ParserCreate().Parse(body, True)


def _noop(*_: object) -> None:
    pass


def expat_noop(body: bytes) -> None:
    parser = expat.ParserCreate()
    parser.StartElementHandler = _noop
    parser.EndElementHandler = _noop
    parser.CharacterDataHandler = _noop
    parser.Parse(body, True)


def _rows(results: Any) -> list[dict[str, Any]]:
    # Comments and PIs are children too (lxml), with a function as their tag: skipped.
    return [{field.tag: field.text for field in result if isinstance(field.tag, str)} for result in results]


def etree(body: bytes) -> list[LearnerResult]:
    root = ET.fromstring(body)
    converted: list[LearnerResult] = msgspec.convert(_rows(root.find("results")), _LIST, strict=False)
    return converted


def lxml_tree(body: bytes) -> list[LearnerResult]:
    from lxml import etree as lxml_etree

    root = lxml_etree.fromstring(body)
    converted: list[LearnerResult] = msgspec.convert(_rows(root.find("results")), _LIST, strict=False)
    return converted


def xmltodict_parse(body: bytes) -> list[LearnerResult]:
    import xmltodict

    # Attributes off (they would turn a field into {"@unit": ..., "#text": ...}): the cheaper setting.
    rows = xmltodict.parse(body, xml_attribs=False)["response"]["results"]["result"]
    converted: list[LearnerResult] = msgspec.convert(rows, _LIST, strict=False)
    return converted


class _SaxHandler(xml.sax.handler.ContentHandler):
    """The ContentHandler one writes for this layout: response > results > result > field."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._row: dict[str, str] = {}
        self._text: list[str] = []
        self._depth = 0

    def startElement(self, name: str, attrs: Any) -> None:  # noqa: N802 - the SAX API's name
        self._depth += 1
        if self._depth == 3:
            self._row = {}
        elif self._depth == 4:
            self._text = []

    def characters(self, content: str) -> None:
        if self._depth == 4:
            self._text.append(content)

    def endElement(self, name: str) -> None:  # noqa: N802 - the SAX API's name
        if self._depth == 4:
            self._row[name] = "".join(self._text)
        elif self._depth == 3:
            self.rows.append(self._row)
        self._depth -= 1


def defusedxml_sax(body: bytes) -> list[LearnerResult]:
    import defusedxml.sax

    handler = _SaxHandler()
    defusedxml.sax.parse(io.BytesIO(body), handler)
    converted: list[LearnerResult] = msgspec.convert(handler.rows, _LIST, strict=False)
    return converted


def msgspec_json(body: bytes) -> list[LearnerResult]:
    return msgspec.json.decode(body, type=_JsonPage, strict=False).results


APPROACHES: dict[str, tuple[str, str, Parse]] = {
    # name: (body format, description, function)
    "ours-xml": ("xml", "ispring_async XML parser, fed 16 KiB chunks", ours_xml),
    "ours-xml-whole": ("xml", "ispring_async XML parser, whole body in one feed", ours_xml_whole),
    "ours-json": ("json", "ispring_async JSON parser, fed 16 KiB chunks", ours_json),
    "ours-json-whole": ("json", "ispring_async JSON parser, whole body in one feed", ours_json_whole),
    "expat-bare": ("xml", "pyexpat, no handlers (the floor; no records)", expat_bare),
    "expat-noop": ("xml", "pyexpat, three no-op handlers (no records)", expat_noop),
    "etree": ("xml", "xml.etree.ElementTree.fromstring + iterate + convert", etree),
    "lxml": ("xml", "lxml.etree.fromstring + iterate + convert", lxml_tree),
    "xmltodict": ("xml", "xmltodict.parse + convert (Airbyte's XML decoder path)", xmltodict_parse),
    "defusedxml-sax": ("xml", "defusedxml.sax ContentHandler + convert", defusedxml_sax),
    "msgspec-json": ("json", "msgspec.json.decode(page, type=Page) alone", msgspec_json),
}
FLOOR = "expat-bare"

TARGETS: list[dict[str, Any]] = [
    {"name": "XML parser vs lxml tree + convert", "ours": "ours-xml", "base": "lxml", "min": 1.0},
    {"name": "XML parser vs xmltodict + convert", "ours": "ours-xml", "base": "xmltodict", "min": 5.0},
    {
        "name": "JSON parser vs bare msgspec.json.decode",
        "ours": "ours-json",
        "base": "msgspec-json",
        "min": 0.8,
    },
]

# The large document: streaming approaches read the file in chunks, tree approaches need the body whole.
DOCUMENT_APPROACHES: dict[str, str] = {
    "ours-xml": "stream",
    "ours-json": "stream",
    "expat-bare": "stream",
    "defusedxml-sax": "stream",
    "lxml": "whole",
    "etree": "whole",
    "xmltodict": "whole",
    "msgspec-json": "whole",
}


# -- the page --------------------------------------------------------------------------------------


def _check(bodies: dict[str, bytes]) -> None:
    """Every record-producing approach yields exactly our records, so no baseline skips work."""
    expected = ours_xml_whole(bodies["xml"])
    if len(expected) != PAGE_RECORDS:
        raise AssertionError(f"the page has {len(expected)} records, expected {PAGE_RECORDS}")
    for name, (fmt, _, parse) in APPROACHES.items():
        got = parse(bodies[fmt])
        if got is not None and got != expected:
            raise AssertionError(f"{name} does not produce the same records as ispring_async")


def _time(parse: Callable[[bytes], object], body: bytes, iterations: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(iterations):
        parse(body)
    return (time.perf_counter() - start) / iterations


def page_rounds(*, rounds: int, target_seconds: float) -> dict[str, Any]:
    """Records/s of every approach on one page, ``rounds`` interleaved rounds; per-round ratios."""
    bodies = {"xml": _data.page("xml"), "json": _data.page("json")}
    _check(bodies)
    names = list(APPROACHES)
    iterations: dict[str, int] = {}
    for name in names:
        fmt, _, parse = APPROACHES[name]
        single = min(_time(parse, bodies[fmt], 1) for _ in range(3))
        iterations[name] = max(1, round(target_seconds / single))
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fmt, _, parse = APPROACHES[name]
            rates[name].append(PAGE_RECORDS / _time(parse, bodies[fmt], iterations[name]))
    to_floor = {
        name: summarize([a / f for a, f in zip(rates[name], rates[FLOOR], strict=True)]) for name in names
    }
    targets = []
    for target in TARGETS:
        ratios = [a / b for a, b in zip(rates[target["ours"]], rates[target["base"]], strict=True)]
        summary = summarize(ratios)
        targets.append({**target, "ratio": summary, "pass": summary["median"] >= target["min"]})
    return {
        "page": {
            "records": PAGE_RECORDS,
            "xml_bytes": len(bodies["xml"]),
            "json_bytes": len(bodies["json"]),
            "chunk_bytes": CHUNK,
        },
        "rounds": rounds,
        "iterations": iterations,
        "approaches": {
            name: {
                "format": APPROACHES[name][0],
                "description": APPROACHES[name][1],
                "records_per_s": summarize(rates[name]),
                "us_per_record": summarize([1e6 / rate for rate in rates[name]]),
                "speed_vs_floor": to_floor[name],
                "raw_records_per_s": rates[name],
            }
            for name in names
        },
        "chunked_vs_whole": {
            fmt: summarize(
                [c / w for c, w in zip(rates[f"ours-{fmt}"], rates[f"ours-{fmt}-whole"], strict=True)]
            )
            for fmt in ("xml", "json")
        },
        "targets": targets,
    }


# -- the same page in every layout the emulator renders --------------------------------------------

LAYOUTS = XML_LAYOUTS
"""Layouts of the same 1000 records (``ispring-async emulator --xml-...``)."""
_LAYOUT_APPROACHES: dict[str, Parse] = {
    "ours-xml": ours_xml,
    # What a machine without a C compiler gets (no target: reported beside the others).
    "ours-xml-python": ours_xml_python,
    "lxml": lxml_tree,
    "xmltodict": xmltodict_parse,
    # The floor, no records: every byte through expat is what the safety envelope requires, so
    # expat-bare / xmltodict is the most ours / xmltodict can be on a layout.
    "expat-bare": expat_bare,
}
LAYOUT_TARGETS = {"lxml": 1.0, "xmltodict": 5.0}


def layout_page(layout: XmlLayout) -> bytes:
    """The benchmark's 1000-record page as the emulator renders it in ``layout``."""
    ds = _data.dataset(PAGE_RECORDS)
    renderer = Renderer(ds, overdue_words=False, layout=layout)
    token = encode_page_token(ds.key(PAGE_RECORDS - 1))
    return b"".join(renderer.results("xml", range(PAGE_RECORDS), token))


def layout_rounds(
    *, rounds: int, target_seconds: float, only: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Ours, lxml and xmltodict on every layout (or ``only`` these), interleaved per round; ours/base
    ratios per round."""
    bodies = {name: layout_page(layout) for name, layout in LAYOUTS.items() if only is None or name in only}
    bodies.setdefault("compact", layout_page(LAYOUTS["compact"]))
    expected = ours_xml_whole(bodies["compact"])
    cells = [(layout, approach) for layout in bodies for approach in _LAYOUT_APPROACHES]
    iterations: dict[tuple[str, str], int] = {}
    for layout, approach in cells:
        parse = _LAYOUT_APPROACHES[approach]
        got = parse(bodies[layout])
        if got is not None and got != expected:
            raise AssertionError(f"{approach} reads the {layout!r} layout differently")
        single = _time(parse, bodies[layout], 1)
        iterations[layout, approach] = max(1, round(target_seconds / single))
    rates: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
    for r in range(rounds):
        shift = r % len(cells)
        for cell in cells[shift:] + cells[:shift]:
            layout, approach = cell
            seconds = _time(_LAYOUT_APPROACHES[approach], bodies[layout], iterations[cell])
            rates[cell].append(PAGE_RECORDS / seconds)
    out: dict[str, Any] = {}
    for layout in bodies:
        ours = rates[layout, "ours-xml"]
        entry: dict[str, Any] = {
            "xml_bytes": len(bodies[layout]),
            "records_per_s": {a: summarize(rates[layout, a]) for a in _LAYOUT_APPROACHES},
        }
        for base, minimum in LAYOUT_TARGETS.items():
            ratio = summarize([o / b for o, b in zip(ours, rates[layout, base], strict=True)])
            entry[f"vs_{base}"] = {**ratio, "required": minimum, "pass": ratio["median"] >= minimum}
        floor = rates[layout, "expat-bare"]
        entry["floor_vs_xmltodict"] = summarize(
            [f / x for f, x in zip(floor, rates[layout, "xmltodict"], strict=True)]
        )
        out[layout] = entry
    return {"rounds": rounds, "layouts": out}


# -- users: nested records (issue 14) -----------------------------------------------------------------

_USERS_LIST = list[User]
# The elements of a UserV2 that are wrapped lists (their items are <field>, <id>, <userRole>).
_USER_LISTS = {"fields": "field", "groups": "id", "manageableDepartmentIds": "id", "userRoles": "userRole"}


def _user_row(element: Any) -> dict[str, Any]:
    """What one writes for lxml: leaves to text, wrapped lists to lists, other parents to dicts."""
    row: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # a comment or PI
        item_tag = _USER_LISTS.get(tag)
        if item_tag is not None:
            row[tag] = [
                _user_row(item) if len(item) else (item.text or "") for item in child if item.tag == item_tag
            ]
        elif len(child):
            row[tag] = _user_row(child)
        else:
            row[tag] = child.text or ""
    return row


def ours_users(body: bytes) -> list[User]:
    """``users_parser`` fed 16 KiB chunks."""
    parser = users_parser(ResponseFormat.XML, page="bench", limits=_DOCUMENT_LIMITS)
    for chunk in _chunks(body):
        parser.feed(chunk)
    return parser.close().users


def lxml_users(body: bytes) -> list[User]:
    """lxml's tree, walked into nested dicts, converted by msgspec."""
    from lxml import etree as lxml_etree

    root = lxml_etree.fromstring(body)
    rows = [_user_row(user) for user in root.find("userProfiles") if user.tag == "userProfile"]
    converted: list[User] = msgspec.convert(rows, _USERS_LIST, strict=False)
    return converted


USERS_EMULATOR_LAYOUTS = ("compact", "indented", "indented + 30% cdata + 10% nested", "everything")
"""The emulator's XML layouts the users pages are measured in (``ispring-async emulator --xml-...``)."""


def users_pages() -> dict[str, bytes]:
    """1000 users as the emulator renders them in ``USERS_EMULATOR_LAYOUTS``, and 1000 from the
    OpenAPI-shaped generator of the tests (``UserV2`` with every optional member: 4 to 6 profile
    fields, roles with departments, groups, subordination, leave) compact and indented."""
    import random

    from ispring_async.emulator import Emulator, EmulatorConfig
    from tests._user_pages import Style, render_xml, user_fields

    emulator = Emulator(EmulatorConfig(results=12_000, seed=14))  # over 1000 users
    users = list(range(len(emulator.dataset.user_ids)))[:PAGE_RECORDS]
    assert len(users) == PAGE_RECORDS, len(users)
    pages = {
        f"emulator {name}": b"".join(
            Renderer(emulator.dataset, overdue_words=False, layout=XML_LAYOUTS[name]).users(
                "xml", emulator.directory, users, "tok"
            )
        )
        for name in USERS_EMULATOR_LAYOUTS
    }
    rnd = random.Random(14)
    generated = [user_fields(rnd) for _ in range(PAGE_RECORDS)]
    for name, style in {"generator compact": Style(), "generator indented": Style(indent="  ")}.items():
        pages[name] = render_xml(generated, container="userProfiles", item="userProfile", style=style)
    return pages


_USERS_APPROACHES: dict[str, Callable[[bytes], list[User] | None]] = {
    "ours-xml": ours_users,
    "lxml": lxml_users,
    "expat-bare": expat_bare,
}


def users_rounds(*, rounds: int, target_seconds: float) -> dict[str, Any]:
    """Ours, lxml and bare expat (the floor) on users pages, interleaved per round; ours/lxml per round."""
    bodies = users_pages()
    cells = [(layout, approach) for layout in bodies for approach in _USERS_APPROACHES]
    iterations: dict[tuple[str, str], int] = {}
    for layout, approach in cells:
        parse = _USERS_APPROACHES[approach]
        got = parse(bodies[layout])
        if got is not None and got != lxml_users(bodies[layout]):
            raise AssertionError(f"{approach} reads the {layout!r} users page differently")
        iterations[layout, approach] = max(1, round(target_seconds / _time(parse, bodies[layout], 1)))
    rates: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
    for r in range(rounds):
        shift = r % len(cells)
        for cell in cells[shift:] + cells[:shift]:
            seconds = _time(_USERS_APPROACHES[cell[1]], bodies[cell[0]], iterations[cell])
            rates[cell].append(PAGE_RECORDS / seconds)
    out: dict[str, Any] = {}
    for layout in bodies:
        ours = rates[layout, "ours-xml"]
        ratio = summarize([o / b for o, b in zip(ours, rates[layout, "lxml"], strict=True)])
        out[layout] = {
            "xml_bytes": len(bodies[layout]),
            "records_per_s": {a: summarize(rates[layout, a]) for a in _USERS_APPROACHES},
            "vs_lxml": {**ratio, "required": 1.0, "pass": ratio["median"] >= 1.0},
        }
    return {"rounds": rounds, "layouts": out}


# -- the large document, one fresh process per approach ---------------------------------------------


def _child(approach: str, path: Path, warm_up: Path) -> dict[str, Any]:
    _, _, parse = APPROACHES[approach]
    # Warm up on a small page so lazy imports and type caches are not counted as the document's memory.
    parse(warm_up.read_bytes())
    gc.collect()
    reset = reset_peak_rss()
    before = memory_status("VmRSS")
    start = time.perf_counter()
    if DOCUMENT_APPROACHES[approach] == "stream":
        records = _stream(approach, path)
    else:
        records = parse(path.read_bytes())
    seconds = time.perf_counter() - start
    peak = memory_status("VmHWM")
    return {
        "approach": approach,
        "mode": DOCUMENT_APPROACHES[approach],
        "records": len(records) if records is not None else None,
        "seconds": seconds,
        # Without a reset the peak also covers start-up and the warm-up: an upper bound.
        "peak_rss_delta_bytes": peak - before,
        "peak_exact": reset,
        "retained_rss_delta_bytes": memory_status("VmRSS") - before,
    }


def _stream(approach: str, path: Path) -> list[LearnerResult] | None:
    with path.open("rb") as f:
        if approach == "defusedxml-sax":
            import defusedxml.sax

            handler = _SaxHandler()
            defusedxml.sax.parse(f, handler)
            converted: list[LearnerResult] = msgspec.convert(handler.rows, _LIST, strict=False)
            return converted
        if approach == "expat-bare":
            expat.ParserCreate().ParseFile(f)
            return None
        fmt = ResponseFormat.JSON if approach == "ours-json" else ResponseFormat.XML
        parser = results_parser(fmt, page="bench", limits=_DOCUMENT_LIMITS)
        while chunk := f.read(CHUNK):
            parser.feed(chunk)
        return parser.close().records


def document_runs(*, records: int, repeats: int, timeout: float) -> dict[str, Any]:
    """One ``records``-record document per format; each approach parses it ``repeats`` times, fresh each."""
    with tempfile.TemporaryDirectory(prefix="ispring-bench-") as tmp:
        paths: dict[str, Path] = {}
        warm_up: dict[str, Path] = {}
        for fmt in ("xml", "json"):
            paths[fmt] = Path(tmp) / f"document.{fmt}"
            paths[fmt].write_bytes(_data.document(fmt, records))
            warm_up[fmt] = Path(tmp) / f"warm-up.{fmt}"
            warm_up[fmt].write_bytes(_data.page(fmt, records=50))
        sizes = {fmt: path.stat().st_size for fmt, path in paths.items()}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DOCUMENT_APPROACHES}
        for _ in range(repeats):
            for name in DOCUMENT_APPROACHES:
                fmt = APPROACHES[name][0]
                args = ["--child", name, str(paths[fmt]), str(warm_up[fmt])]
                result = run_child("benchmarks.parse", args, timeout=timeout)
                runs[name].append(result)
    summary: dict[str, dict[str, Summary | str]] = {}
    for name, results in runs.items():
        summary[name] = {
            "mode": DOCUMENT_APPROACHES[name],
            "records_per_s": summarize([records / r["seconds"] for r in results]),
            "peak_rss_delta_mib": summarize([r["peak_rss_delta_bytes"] / 2**20 for r in results]),
            "retained_rss_delta_mib": summarize([r["retained_rss_delta_bytes"] / 2**20 for r in results]),
        }
    return {"records": records, "bytes": sizes, "approaches": summary, "raw": runs}


def run(*, rounds: int, target_seconds: float, document: int, repeats: int) -> dict[str, Any]:
    """The whole scenario: the page in ``rounds`` rounds, then the ``document``-record document."""
    page = page_rounds(rounds=rounds, target_seconds=target_seconds)
    # The tiny smoke run (the test suite's) measures two layouts; every other mode all of them.
    tiny = ("compact", "indented + 30% cdata + 10% nested") if target_seconds < 0.01 else None
    layouts = layout_rounds(rounds=rounds, target_seconds=target_seconds, only=tiny)
    return {
        **page,
        "layouts": layouts,
        "users": users_rounds(rounds=rounds, target_seconds=target_seconds),
        "document": document_runs(records=document, repeats=repeats, timeout=600),
    }


def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description="parse-scenario child process (used by the runner)")
    p.add_argument("--child", nargs=3, metavar=("APPROACH", "FILE", "WARM_UP_FILE"))
    p.add_argument("--layouts", type=int, metavar="ROUNDS", help="only the per-layout rounds, as a table")
    p.add_argument("--users", type=int, metavar="ROUNDS", help="only the users pages' rounds, as a table")
    args = p.parse_args(argv)
    if args.users:
        result = users_rounds(rounds=args.users, target_seconds=0.1)
        for name, entry in result["layouts"].items():
            rates = {a: entry["records_per_s"][a]["median"] / 1000 for a in _USERS_APPROACHES}
            vs = entry["vs_lxml"]
            print(
                f"{name:44s} ours {rates['ours-xml']:5.1f}k  lxml {rates['lxml']:5.1f}k  "
                f"expat floor {rates['expat-bare']:5.1f}k  ours/lxml {vs['median']:.2f} "
                f"[{vs['min']:.2f}-{vs['max']:.2f}]"
            )
        return
    if args.layouts:
        result = layout_rounds(rounds=args.layouts, target_seconds=0.1)
        for name, entry in result["layouts"].items():
            rates = {a: entry["records_per_s"][a]["median"] / 1000 for a in _LAYOUT_APPROACHES}
            print(
                f"{name:36s} ours {rates['ours-xml']:5.0f}k  "
                f"(Python passes {rates['ours-xml-python']:4.0f}k)  lxml {rates['lxml']:5.0f}k  "
                f"xmltodict {rates['xmltodict']:4.0f}k  ours/lxml {entry['vs_lxml']['median']:.2f}  "
                f"ours/xmltodict {entry['vs_xmltodict']['median']:.1f}  "
                f"expat floor/xmltodict {entry['floor_vs_xmltodict']['median']:.1f}"
            )
        return
    if not args.child:
        p.error("--child or --layouts is required")
    approach, path, warm_up = args.child
    print(json.dumps(_child(approach, Path(path), Path(warm_up))))


if __name__ == "__main__":
    _main(sys.argv[1:])

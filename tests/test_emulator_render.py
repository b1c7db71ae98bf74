"""The emulator's renderer: the per-row byte cache (bodies the same with it and without it, updates reach
it), and XML layouts (different bytes, the same records)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from ispring_async import Client, ResponseFormat, ResultsQuery, UserStatus
from ispring_async._parse import results_parser
from ispring_async.emulator import Dataset, EmulatorConfig, XmlLayout, running_emulator
from ispring_async.emulator._cli import build_config, parser
from ispring_async.emulator._config import XML_LAYOUTS
from ispring_async.emulator._query import encode_page_token, parse_results, select_page
from ispring_async.emulator._render import CHUNK_ROWS, Format, Renderer

Params = list[tuple[str, str]]
EVERY_STATUS: Params = [("userStatuses[]", "1"), ("userStatuses[]", "3"), ("userStatuses[]", "5")]
ROWS = 1200
FORMATS: tuple[Format, ...] = ("xml", "json")


def dataset(results: int = ROWS, seed: int = 5) -> Dataset:
    """A small dataset with enough users, courses and departments for every filter to bite."""
    return Dataset(EmulatorConfig(results=results, seed=seed, departments=10, department_depth=3))


DS = dataset()


def queries(ds: Dataset) -> list[Params]:
    """Filtered and unfiltered queries whose pages pick rows scattered over the whole dataset."""
    return [
        [("pageSize", "100")],
        [*EVERY_STATUS, ("pageSize", "77")],
        [("completionStatus", "complete"), ("completionStatus", "failed"), *EVERY_STATUS],
        [("courseIds[]", ds.course_ids[1]), ("courseIds[]", ds.course_ids[3]), *EVERY_STATUS],
        [("departmentIds[]", ds.department_ids[2]), ("pageSize", "40")],
        [("accessDate[startDate]", "2019-01-01T00:00:00Z"), ("accessDate[endDate]", "2021-06-30T00:00:00Z")],
        [("userIds[]", ds.user_ids[0]), ("userIds[]", ds.user_ids[7]), *EVERY_STATUS],
    ]


def pages(
    renderer: Renderer, fmt: Format, params: Params, *, last_token: str | None = None
) -> list[list[bytes]]:
    """Every page of a query as the renderer chunks it, following page tokens as the server does."""
    ds = renderer.ds
    out: list[list[bytes]] = []
    after: Params = []
    while True:
        query = parse_results([*params, *after])
        page, more = select_page(ds, query, subtree=False)
        token = encode_page_token(ds.key(page[-1])) if more else last_token
        out.append(list(renderer.results(fmt, page, token)))
        if not more:
            return out
        after = [("pageToken", token)] if token else []


def render(renderer: Renderer, fmt: Format, positions: Sequence[int]) -> bytes:
    """One page body, whole."""
    return b"".join(renderer.results(fmt, positions, None))


@pytest.mark.parametrize(
    ("fmt", "overdue_words"),
    [
        pytest.param("xml", False, id="xml-digits"),
        pytest.param("xml", True, id="xml-words"),
        pytest.param("json", False, id="json"),
    ],
)
def test_cached_bodies_equal_uncached_chunk_for_chunk(fmt: Format, overdue_words: bool) -> None:
    """Pages assembled from cached rows are byte-identical, chunk for chunk, to freshly rendered ones."""
    plain = Renderer(DS, overdue_words=overdue_words)
    cached = Renderer(DS, overdue_words=overdue_words, row_cache_rows=ROWS)
    for params in queries(DS):
        for last_token in (None, ""):
            expected = pages(plain, fmt, params, last_token=last_token)
            assert pages(cached, fmt, params, last_token=last_token) == expected  # filling
            assert pages(cached, fmt, params, last_token=last_token) == expected  # hitting
    # Rows cached by other queries' pages serve a page that picks them in another combination.
    assert cached.cached_rows(fmt) > ROWS // 2
    scattered = sorted(random.Random(3).sample(range(ROWS), 3 * CHUNK_ROWS + 5))
    assert list(cached.results(fmt, scattered, "t")) == list(plain.results(fmt, scattered, "t"))
    assert plain.cached_rows(fmt) == 0


def test_overdue_styles_sharing_a_dataset_do_not_share_rows() -> None:
    """Two renderers of one dataset (digits and words) each serve their own isOverdue from cache."""
    digits = Renderer(DS, overdue_words=False, row_cache_rows=ROWS)
    words = Renderer(DS, overdue_words=True, row_cache_rows=ROWS)
    everything = range(ROWS)
    render(digits, "xml", everything)
    render(words, "xml", everything)
    from_digits, from_words = render(digits, "xml", everything), render(words, "xml", everything)
    assert b"<isOverdue>1</isOverdue>" in from_digits
    assert b"<isOverdue>true</isOverdue>" not in from_digits
    assert b"<isOverdue>true</isOverdue>" in from_words
    assert b"<isOverdue>1</isOverdue>" not in from_words
    assert from_words == render(Renderer(DS, overdue_words=True), "xml", everything)


@pytest.mark.parametrize("fmt", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
def test_updated_rows_are_rendered_again(fmt: Format) -> None:
    """Dataset.update drops the row's cached bytes: the next page carries the new values."""
    ds = dataset(results=300, seed=9)
    cached = Renderer(ds, overdue_words=False, row_cache_rows=300)
    before = render(cached, fmt, range(300))
    rng = random.Random(1)
    updated = {pos for pos in (ds.update(rng) for _ in range(10)) if pos is not None}
    after = render(cached, fmt, range(300))
    assert after != before
    assert after == render(Renderer(ds, overdue_words=False), fmt, range(300))
    assert cached.cached_rows(fmt) == 300
    original = Renderer(dataset(results=300, seed=9), overdue_words=False)
    for pos in updated:
        assert render(cached, fmt, [pos]) != render(original, fmt, [pos])


@pytest.mark.parametrize(
    ("bound", "cached_rows"),
    [
        pytest.param(0, 0, id="off"),
        pytest.param(100, 100, id="bounded"),
        pytest.param(10**9, 300, id="whole"),
    ],
)
def test_cache_holds_at_most_row_cache_rows(bound: int, cached_rows: int) -> None:
    """Only rows at positions below row_cache_rows are kept; the others (and inserts) render each time."""
    ds = dataset(results=300, seed=9)
    plain = Renderer(ds, overdue_words=False)
    cached = Renderer(ds, overdue_words=False, row_cache_rows=bound)
    for fmt in FORMATS:
        assert render(cached, fmt, range(300)) == render(plain, fmt, range(300))
        assert cached.cached_rows(fmt) == cached_rows
    inserted = [ds.insert(random.Random(2)) for _ in range(3)]
    rows = [*range(250, 300), *inserted]
    for fmt in FORMATS:
        assert render(cached, fmt, rows) == render(plain, fmt, rows)
        assert cached.cached_rows(fmt) == cached_rows


def test_negative_bound_is_refused() -> None:
    """A negative row_cache_rows is a configuration error, in the config and in the renderer."""
    with pytest.raises(ValueError, match="row_cache_rows"):
        EmulatorConfig(row_cache_rows=-1)
    with pytest.raises(ValueError, match="row_cache_rows"):
        Renderer(DS, overdue_words=False, row_cache_rows=-1)


def test_cli_sets_the_row_cache_bound() -> None:
    """--row-cache-rows N lands in EmulatorConfig.row_cache_rows; the default is the config's."""
    assert build_config(parser().parse_args(["--row-cache-rows", "0"])).row_cache_rows == 0
    assert build_config(parser().parse_args([])).row_cache_rows == EmulatorConfig.row_cache_rows


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", [pytest.param("xml", id="xml"), pytest.param("json", id="json")])
async def test_served_page_follows_an_update_of_a_cached_row(
    session: aiohttp.ClientSession, fmt: str
) -> None:
    """Over HTTP: a page served from cache, then Emulator.mutate, then the same page shows the update."""
    config = EmulatorConfig(results=200, seed=4, row_cache_rows=200)
    async with running_emulator(config) as emu:
        headers = {"Authorization": f"Bearer {emu.issue_token()}"}
        if fmt == "json":
            headers["Accept"] = "application/json"
        url = emu.base_url + "/learners/results?userStatuses[]=1&userStatuses[]=3&userStatuses[]=5"

        async def body() -> bytes:
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                return await response.read()

        first = await body()
        assert first == await body()
        changed = emu.mutate(updates=3, seed=8)
        updated = await body()
        assert updated != first
        fresh = Renderer(emu.dataset, overdue_words=False)
        assert updated == render(fresh, "json" if fmt == "json" else "xml", range(200))
        if fmt == "json":
            views = {i: r.get("viewsCount") for i, r in enumerate(json.loads(updated)["results"])}
            assert all(views[pos] == emu.dataset.r_views[pos] for pos in changed)


# --- XML layouts ------------------------------------------------------------------------------------

LAYOUTS = {name: layout for name, layout in XML_LAYOUTS.items() if not layout.compact}


def _parsed(body: bytes) -> object:
    parser = results_parser(ResponseFormat.XML, page="layout", page_size=len(DS))
    parser.feed(body)
    return parser.close()


@pytest.mark.parametrize("layout", [pytest.param(layout, id=name) for name, layout in LAYOUTS.items()])
@pytest.mark.parametrize("overdue_words", [pytest.param(False, id="digits"), pytest.param(True, id="words")])
def test_every_layout_holds_the_same_records(layout: XmlLayout, overdue_words: bool) -> None:
    """Each XmlLayout changes the bytes of a page, never its records or its token."""
    positions = range(0, ROWS, 3)
    compact = render(Renderer(DS, overdue_words=overdue_words), "xml", positions)
    laid_out = render(Renderer(DS, overdue_words=overdue_words, layout=layout), "xml", positions)
    assert laid_out != compact
    assert _parsed(laid_out) == _parsed(compact)


def test_layouts_render_what_they_say() -> None:
    """Each switch shows in the bytes: CDATA, nesting, attributes, comments, CRLF, both spellings."""
    body = render(Renderer(DS, overdue_words=False, layout=LAYOUTS["everything"]), "xml", range(200))
    for marker in (b"<![CDATA[", b"<customFields>\r\n", b'<result id="', b"<!-- row ", b"\r\n      <"):
        assert marker in body
    assert b"<isOverdue>0</isOverdue>" in body and b"<isOverdue>false</isOverdue>" in body
    assert b"\n" not in body.replace(b"\r\n", b"")


def test_json_pages_ignore_the_xml_layout() -> None:
    """The layout is XML's: JSON pages are byte for byte the compact renderer's."""
    positions = range(50)
    plain = render(Renderer(DS, overdue_words=False), "json", positions)
    assert render(Renderer(DS, overdue_words=False, layout=LAYOUTS["everything"]), "json", positions) == plain


def test_cli_sets_the_xml_layout() -> None:
    """The --xml-* switches of `ispring-async emulator` land in EmulatorConfig.xml_layout."""
    args = ["--xml-indent", "2", "--xml-cdata", "0.3", "--xml-nested", "0.1", "--xml-attributes"]
    args += ["--xml-comments", "--xml-crlf", "--xml-mixed-overdue", "--xml-lines"]
    layout = build_config(parser().parse_args(args)).xml_layout
    assert layout == XML_LAYOUTS["everything"]
    assert build_config(parser().parse_args([])).xml_layout.compact


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_an_export_over_http_in_the_hardest_layout_equals_the_ground_truth() -> None:
    """Through real HTTP and the client, a dataset served in every layout switch at once reads back as
    exactly the emulator's ground truth."""
    config = EmulatorConfig(results=1500, seed=3, xml_layout=LAYOUTS["everything"])
    async with running_emulator(config) as emu:
        query = ResultsQuery(user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED, UserStatus.TERMINATED])
        async with Client(
            emu.base_url, client_id=emu.client_id, client_secret=emu.client_secret, page_size=200
        ) as c:
            got = [r async for page in c.result_pages(query) for r in page.records]
        truth = emu.expected_results(query.to_params())
    assert len(got) == len(truth) == 1500
    assert sorted(got, key=lambda r: r.identity) == sorted(truth, key=lambda r: r.identity)


@pytest.mark.anyio
async def test_a_warmed_emulator_serves_the_same_pages_from_a_full_cache(
    session: aiohttp.ClientSession,
) -> None:
    """``Emulator.warm_cache`` fills the row cache of both formats, and the pages it then serves are the
    bytes a cold emulator serves."""
    config = EmulatorConfig(results=ROWS, seed=5, departments=10, department_depth=3)
    bodies: list[list[bytes]] = []
    for warm in (False, True):
        async with running_emulator(config) as emulator:
            if warm:
                emulator.warm_cache()
                assert emulator._renderer.cached_rows("xml") == ROWS
                assert emulator._renderer.cached_rows("json") == ROWS
            served: list[bytes] = []
            for accept in ("application/xml", "application/json"):
                headers = {"Authorization": f"Bearer {emulator.issue_token()}", "Accept": accept}
                url = f"{emulator.base_url}/learners/results"
                async with session.get(url, params=EVERY_STATUS, headers=headers) as response:
                    served.append(await response.read())
            bodies.append(served)
    assert bodies[0] == bodies[1]

"""A second adversarial pass over issue 12's hardening: inputs the first pass did not write.

Each test names the behaviour it pins; servers are on 127.0.0.1, faults are scripted, probes bounded.
"""

from __future__ import annotations

import sqlite3
import types
from pathlib import Path

import pytest
from aiohttp import web

from ispring_async import Client, ISpringError, PaginationError
from ispring_async._paginate import MAX_STALE_PAGES
from ispring_async.sinks import SinkError, open_sink
from tests._helpers import EXTENSIONS, FORMATS, make_records, read_output
from tests._hostile import MALFORMED, SECRET, TOKEN, _token_reply, client_for, reachable
from tests._servers import ident, raw_server, results_body, serve


def frame_locals_shown(exc: BaseException) -> str:
    """``repr`` of every local of every frame in the tracebacks reachable from ``exc`` (what Sentry sends)."""
    shown: list[str] = []
    for error in reachable(exc):
        tb: types.TracebackType | None = error.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                shown.append(f"{tb.tb_frame.f_code.co_name}.{name}={value!r}")
            tb = tb.tb_next
    return "\n".join(shown)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "which", [pytest.param("data", id="results-request"), pytest.param("token", id="token-request")]
)
@pytest.mark.parametrize(
    "malformed",
    [
        *MALFORMED[:3],
        MALFORMED[5],
        pytest.param(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            id="plain-400",
        ),
    ],
)
async def test_traceback_frame_locals_of_a_raised_error_hold_no_secret(which: str, malformed: bytes) -> None:
    """Error trackers record every frame's locals: none of ours may show the token or client secret."""
    bad = malformed

    def reply(head: bytes) -> bytes:
        is_token = head.startswith(b"POST /api/v3/token")
        if which == "token":
            return bad if is_token else _token_reply()
        return _token_reply() if is_token else bad

    async with raw_server(reply) as url, client_for(url) as client:
        with pytest.raises(ISpringError) as caught:
            await anext(client.result_pages())
    shown = frame_locals_shown(caught.value)
    assert "_attempt" in shown or "request" in shown  # the walk did reach our frames
    assert TOKEN not in shown, [line for line in shown.splitlines() if TOKEN in line]
    assert SECRET not in shown, [line for line in shown.splitlines() if SECRET in line]


# -- one export per output, however the output is named or its lock file treated --------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_through_a_symlink_is_refused_while_the_target_is_in_use(tmp_path: Path, fmt: str) -> None:
    """A symlink naming an output in use is the same output: the second export is refused."""
    target = tmp_path / f"real.{EXTENSIONS[fmt]}"
    alias = tmp_path / f"alias.{EXTENSIONS[fmt]}"
    alias.symlink_to(target)
    with open_sink(target) as first:
        first.open(resume=False)
        with pytest.raises(SinkError, match="another export"):
            open_sink(alias).open(resume=False)
        first.write(make_records(2))
        first.checkpoint(b"1")
        first.finish()
    assert read_output(target, fmt)[1] == make_records(2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lock_file_deleted_under_a_running_export_is_taken_back(tmp_path: Path, fmt: str) -> None:
    """An operator deleting the lock file mid-run does not let a second export in: the run re-takes it."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    lock = tmp_path / f".{path.name}.lock"
    with open_sink(path) as first:
        first.open(resume=False)
        first.write(make_records(3))
        lock.unlink()
        first.checkpoint(b"1")  # the next call of the run notices and locks again
        with pytest.raises(SinkError, match="another export"):
            open_sink(path).open(resume=False)
        first.finish()
    assert read_output(path, fmt)[1] == make_records(3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_run_whose_lock_was_taken_by_another_stops_and_leaves_the_others_output_intact(
    tmp_path: Path, fmt: str
) -> None:
    """Lock file deleted and taken by a second export: the first stops typed, writes nothing more."""
    path = tmp_path / f"out.{EXTENSIONS[fmt]}"
    with open_sink(path) as first:
        first.open(resume=False)
        first.write(make_records(5, start=100))
        first.checkpoint(b"1")
        if fmt != "sqlite":  # (SQLite's own write lock would hold the second at the database)
            first.write(make_records(5, start=200))  # buffered, not yet checkpointed
        (tmp_path / f".{path.name}.lock").unlink()
        with open_sink(path) as second:
            second.open(resume=False)
            with pytest.raises(SinkError, match="lock"):
                first.checkpoint(b"2")
            first.abort()  # what leaving its block does; it must not flush into the second's output
            second.write(make_records(1))
            second.checkpoint(b"1")
            second.finish()
    if fmt != "sqlite":
        assert read_output(path, fmt)[1] == make_records(1)
        return
    # SQLite keeps earlier runs' rows by design; the second run is the complete one, the first failed.
    db = sqlite3.connect(path)
    try:
        runs = db.execute("SELECT run_id, status FROM export_runs ORDER BY run_id").fetchall()
        latest = db.execute(
            "SELECT identity FROM learner_results WHERE run_id = ?", (runs[-1][0],)
        ).fetchall()
    finally:
        db.close()
    assert [status for _, status in runs] == ["failed", "complete"]
    assert [identity for (identity,) in latest] == [r.identity for r in make_records(1)]


# -- chains that add almost nothing, forever -----------------------------------------------------------


class Trickle:
    """``/learners/results`` with a fresh token every time, adding one new record every ``every`` pages.

    Between the new records it repeats a page already sent (``same``) or alternates two of them (``ab``),
    so no run of pages that add nothing is ever ``MAX_STALE_PAGES`` long.
    """

    def __init__(self, mode: str, every: int) -> None:
        self.mode = mode
        self.every = every
        self.hits = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        n = self.hits
        if n % self.every == 1 or self.every == 1:
            indices = range(1000 + n, 1001 + n)  # one record never sent before
        elif self.mode == "same" or n % 2:
            indices = range(3)
        else:
            indices = range(3, 6)
        return web.Response(body=results_body(indices, f"tok-{n:08d}"), content_type="application/xml")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "every"),
    [
        pytest.param("same", MAX_STALE_PAGES, id="same-page-19-times-then-one-new-record"),
        pytest.param("ab", MAX_STALE_PAGES, id="alternating-pages-then-one-new-record"),
        pytest.param("same", 3, id="two-repeats-per-new-record"),
    ],
)
async def test_a_chain_of_repeats_broken_by_a_rare_new_record_is_a_pagination_error(
    mode: str, every: int
) -> None:
    """Mostly repeated pages with a rare new record end in PaginationError long before the cap."""
    trickle = Trickle(mode, every)

    async def drain(client: Client) -> None:
        async for _ in client.result_pages():
            pass

    async with serve({"/learners/results": trickle}) as server, Client(server.base_url, token="t") as client:
        with pytest.raises(PaginationError, match="added nothing"):
            await drain(client)
    assert trickle.hits <= 4 * MAX_STALE_PAGES + 2


@pytest.mark.anyio
async def test_a_long_chain_with_a_few_scattered_empty_pages_is_followed() -> None:
    """Empty pages here and there in a long, otherwise healthy chain are followed to its end."""
    # One empty page in every ten: MAX_STALE_PAGES of them in all, never a majority of the chain.
    count = 10 * MAX_STALE_PAGES + 5
    pages = [range(0) if i % 10 == 9 else range(3 * i, 3 * i + 3) for i in range(count)]

    async def handler(request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("pageToken", "0"))
        token = str(number + 1) if number + 1 < len(pages) else None
        return web.Response(body=results_body(pages[number], token), content_type="application/xml")

    async with serve({"/learners/results": handler}) as server, Client(server.base_url, token="t") as client:
        records = [r.user_id async for page in client.result_pages() for r in page.records]
    assert records == [ident(1, i) for page in pages for i in page]

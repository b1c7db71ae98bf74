"""Every fault the emulator injects is observable from the client side, and reproducible from a seed."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from defusedxml import ElementTree as SafeET

from ispring_async.emulator import Emulator, EmulatorConfig, Fault, Faults, running_emulator
from tests._emulator_http import EVERY_STATUS, export, fetch_token, get, parse_xml_page

PAGE = "/learners/results?pageSize=200"


def config(**faults: Any) -> EmulatorConfig:
    """A small dataset with the given faults."""
    return EmulatorConfig(results=400, seed=2, faults=Faults(**faults))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session (not the library's client)."""
    async with aiohttp.ClientSession() as client:
        yield client


async def read_until_broken(
    session: aiohttp.ClientSession, emu: Emulator, path: str
) -> tuple[Any, bytes, Exception]:
    """GET ``path`` and read the body until the transport breaks; returns headers, bytes got, the error."""
    received = bytearray()
    headers: Any = None
    try:
        async with session.get(emu.base_url + path, headers={"Authorization": emu.issue_token()}) as response:
            assert response.status == 200
            headers = response.headers
            async for chunk in response.content.iter_any():
                received.extend(chunk)
    except aiohttp.ClientError as exc:
        return headers, bytes(received), exc
    pytest.fail("the body was read to its end without an error")


@pytest.mark.anyio
async def test_latency_delays_results_but_not_the_token_endpoint(session: aiohttp.ClientSession) -> None:
    """``latency`` + ``latency_jitter`` delay each API request; the token endpoint is left alone."""
    async with running_emulator(config(latency=0.15, latency_jitter=0.05)) as emu:
        started = time.perf_counter()
        status, _, _ = await get(session, emu, PAGE)
        assert status == 200
        assert time.perf_counter() - started >= 0.15
        await fetch_token(session, emu)
        assert emu.stats.faults["latency"] == 1


@pytest.mark.anyio
async def test_trickled_body_arrives_in_small_delayed_chunks(session: aiohttp.ClientSession) -> None:
    """``trickle`` sends the body in trickle_chunk-byte writes; the body is still complete."""
    async with running_emulator(config(trickle=1.0, trickle_chunk=256, trickle_delay=0.002)) as emu:
        chunks = []
        async with session.get(
            emu.base_url + "/learners/results?pageSize=20", headers={"Authorization": emu.issue_token()}
        ) as response:
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
        body = b"".join(chunks)
        assert len(chunks) >= 10
        assert max(len(chunk) for chunk in chunks) <= 4 * 256
        assert len(parse_xml_page(body).fields) == 20
        assert emu.stats.faults["trickle"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["seconds", "http-date"])
async def test_429_carries_retry_after(session: aiohttp.ClientSession, style: str) -> None:
    """A scripted 429 carries Retry-After as delta-seconds or an HTTP date; the next request succeeds."""
    faults = {"script": {("results", 1): Fault.RATE_LIMITED}, "retry_after": 2.0, "retry_after_style": style}
    async with running_emulator(config(**faults)) as emu:
        status, headers, body = await get(session, emu, PAGE)
        assert status == 429
        if style == "seconds":
            assert headers["Retry-After"] == "2"
        else:
            when = email.utils.parsedate_to_datetime(headers["Retry-After"])
            assert 0 < (when - datetime.now(UTC)).total_seconds() <= 3
        assert SafeET.fromstring(body).findtext("code") == "429"
        assert (await get(session, emu, PAGE))[0] == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        pytest.param(Fault.SERVER_ERROR, 500, "application/json", id="500"),
        pytest.param(Fault.BAD_GATEWAY, 502, "text/html", id="502"),
        pytest.param(Fault.UNAVAILABLE, 503, "text/html", id="503"),
    ],
)
async def test_server_errors(
    session: aiohttp.ClientSession, fault: Fault, status: int, content_type: str
) -> None:
    """500 has the API's error body; 502/503 come from a proxy as HTML (503 with Retry-After)."""
    async with running_emulator(config(script={("results", 1): fault})) as emu:
        got, headers, body = await get(session, emu, PAGE, fmt="json")
        assert got == status
        assert headers["Content-Type"].startswith(content_type)
        if status == 500:
            assert json.loads(body) == {"code": 500, "message": "Internal Server Error"}
        if status == 503:
            assert headers["Retry-After"] == "1"
        assert emu.stats.faults[fault.value] == 1
        assert emu.stats.responses[status] == 1


@pytest.mark.anyio
async def test_connection_reset_part_way_through_the_body(session: aiohttp.ClientSession) -> None:
    """``reset`` sends part of a 200 body, then resets the connection; the next request is served."""
    async with running_emulator(config(script={("results", 1): Fault.RESET}, cut_at=0.4)) as emu:
        _, received, error = await read_until_broken(session, emu, PAGE)
        assert isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError)
        assert "reset by peer" in str(error)
        _, _, full = await get(session, emu, PAGE)
        assert 0 < len(received) < len(full)
        assert full.startswith(received[:100])


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["content-length", "chunked"])
async def test_truncated_body(session: aiohttp.ClientSession, style: str) -> None:
    """``truncate`` closes the connection before the announced Content-Length or the final chunk."""
    faults = {"script": {("results", 1): Fault.TRUNCATE}, "truncate_style": style}
    async with running_emulator(config(**faults)) as emu:
        headers, received, error = await read_until_broken(session, emu, PAGE)
        assert isinstance(error, aiohttp.ClientPayloadError)
        _, _, full = await get(session, emu, PAGE)
        assert 0 < len(received) < len(full)
        if style == "content-length":
            assert int(headers["Content-Length"]) == len(full)
        else:
            assert headers["Transfer-Encoding"] == "chunked"


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_malformed_body(session: aiohttp.ClientSession, fmt: str) -> None:
    """``malformed`` answers 200 with a complete body that does not parse."""
    async with running_emulator(config(script={("results", 1): Fault.MALFORMED})) as emu:
        status, _, body = await get(session, emu, PAGE, fmt=fmt)
        assert status == 200
        if fmt == "json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(body)
        else:
            with pytest.raises(SafeET.ParseError):
                SafeET.fromstring(body)


@pytest.mark.anyio
async def test_html_page_with_200(session: aiohttp.ClientSession) -> None:
    """``html`` answers 200 text/html with a web page, on results and departments alike."""
    script = {("results", 1): Fault.HTML, ("departments", 1): Fault.HTML}
    async with running_emulator(config(script=script)) as emu:
        for path in (PAGE, "/departments"):
            status, headers, body = await get(session, emu, path)
            assert status == 200
            assert headers["Content-Type"].startswith("text/html")
            assert body.startswith(b"<!DOCTYPE html>")


@pytest.mark.anyio
async def test_rate_limit_per_token(session: aiohttp.ClientSession) -> None:
    """``rate_limit`` allows N requests/s per token, then 429 with Retry-After until the window passes."""
    async with running_emulator(config(rate_limit=3)) as emu:
        emu.freeze_clock()
        first, second = emu.issue_token(), emu.issue_token()
        assert [(await get(session, emu, PAGE, token=first))[0] for _ in range(3)] == [200] * 3
        status, headers, _ = await get(session, emu, PAGE, token=first)
        assert (status, headers["Retry-After"]) == (429, "1")
        assert (await get(session, emu, PAGE, token=second))[0] == 200
        emu.advance_clock(1.0)
        assert (await get(session, emu, PAGE, token=first))[0] == 200
        assert emu.stats.faults["rate_limit"] == 1


@pytest.mark.anyio
async def test_token_expires_early(session: aiohttp.ClientSession) -> None:
    """``token_expire_after`` kills tokens after N seconds although expires_in announced 1800."""
    async with running_emulator(config(token_expire_after=30)) as emu:
        emu.freeze_clock()
        token = await fetch_token(session, emu)
        emu.advance_clock(29)
        assert (await get(session, emu, PAGE, token=token))[0] == 200
        emu.advance_clock(1)
        assert (await get(session, emu, PAGE, token=token))[0] == 401
        assert emu.stats.faults["token_expire_after"] == 1


@pytest.mark.anyio
async def test_scripted_token_revocation(session: aiohttp.ClientSession) -> None:
    """A scripted EXPIRE_TOKEN revokes the presented token: 401 until a new token is fetched."""
    async with running_emulator(config(script={("results", 2): Fault.EXPIRE_TOKEN})) as emu:
        token = await fetch_token(session, emu)
        statuses = [(await get(session, emu, PAGE, token=token))[0] for _ in range(3)]
        assert statuses == [200, 401, 401]
        assert (await get(session, emu, PAGE, token=await fetch_token(session, emu)))[0] == 200


@pytest.mark.anyio
async def test_rows_inserted_and_updated_while_paging(session: aiohttp.ClientSession) -> None:
    """Mutations change the data between pages: inserts are reached, updated rows may be exported stale."""
    async with running_emulator(config(inserts_per_request=3, updates_per_request=5, seed=4)) as emu:
        before = emu.expected_results(EVERY_STATUS)
        exported = await export(session, emu, EVERY_STATUS, page_size=50)
        after = emu.expected_results(EVERY_STATUS)
        requests = emu.stats.requests["results"]
        assert len(after) == len(before) + 3 * (requests - 1)
        assert {r.identity for r in exported} == {r.identity for r in after}
        assert exported != after
        assert emu.stats.faults["insert"] == 3 * (requests - 1)
        assert emu.stats.faults["update"] == 5 * (requests - 1)


def test_manual_mutation_changes_the_ground_truth() -> None:
    """``Emulator.mutate`` inserts and updates rows now; the ground truth follows."""
    emu = Emulator(EmulatorConfig(results=200, seed=3))
    before = emu.expected_results(EVERY_STATUS)
    changed = emu.mutate(inserts=2, updates=3)
    after = emu.expected_results(EVERY_STATUS)
    assert len(after) == 202
    assert after[:200] != before
    assert {len(after) - 2, len(after) - 1} <= set(changed)


async def _statuses(session: aiohttp.ClientSession, faults: Faults, count: int) -> list[int]:
    async with running_emulator(EmulatorConfig(results=100, faults=faults)) as emu:
        token = emu.issue_token()
        return [
            (await get(session, emu, "/learners/results?pageSize=5", token=token))[0] for _ in range(count)
        ]


@pytest.mark.anyio
async def test_random_faults_are_reproducible_from_the_seed(session: aiohttp.ClientSession) -> None:
    """The same fault seed gives the same faults on the same request numbers; another seed differs."""
    faults = Faults(seed=5, server_error=0.3, bad_gateway=0.1, unavailable=0.1)
    first = await _statuses(session, faults, 20)
    assert first == await _statuses(session, faults, 20)
    assert {200, 500} <= set(first)
    assert first != await _statuses(
        session, Faults(seed=6, server_error=0.3, bad_gateway=0.1, unavailable=0.1), 20
    )


@pytest.mark.anyio
@pytest.mark.parametrize(("on_token", "status"), [(False, 200), (True, 500)], ids=["spared", "on-token"])
async def test_token_endpoint_is_faulted_only_when_asked(
    session: aiohttp.ClientSession, on_token: bool, status: int
) -> None:
    """Random faults skip POST /api/v3/token unless ``on_token``; a script can target it explicitly."""
    async with running_emulator(config(server_error=1.0, on_token=on_token)) as emu:
        form = {
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "grant_type": "client_credentials",
        }
        async with session.post(emu.base_url + "/api/v3/token", data=form) as response:
            assert response.status == status
        assert (await get(session, emu, PAGE))[0] == 500
    async with running_emulator(config(script={("token", 1): Fault.SERVER_ERROR})) as emu:
        form = {
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "grant_type": "client_credentials",
        }
        statuses = []
        for _ in range(2):
            async with session.post(emu.base_url + "/api/v3/token", data=form) as response:
                statuses.append(response.status)
        assert statuses == [500, 200]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"server_error": 1.5}, "server_error", id="probability"),
        pytest.param({"latency": -1}, "latency", id="latency"),
        pytest.param({"cut_at": 1.0}, "cut_at", id="cut-at"),
        pytest.param({"rate_limit": 0}, "rate_limit", id="rate-limit"),
        pytest.param({"script": {("nowhere", 1): Fault.RESET}}, "unknown endpoint", id="script-endpoint"),
        pytest.param({"script": {("results", 0): Fault.RESET}}, "start at 1", id="script-number"),
    ],
)
def test_invalid_fault_options_are_refused(options: dict[str, Any], message: str) -> None:
    """Faults validates its options when built."""
    with pytest.raises(ValueError, match=message):
        Faults(**options)


class _Signal(logging.Handler):
    """Sets an event when a log record containing ``text`` arrives (the handler has run to that point)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        """Set the event on a matching record."""
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "moment",
    [pytest.param("during-latency", id="before-headers"), pytest.param("mid-body", id="mid-body")],
)
async def test_a_client_going_away_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture, moment: str
) -> None:
    """A client that closes its connection before or during the body gets no ERROR logged: the
    emulator stops writing quietly (DEBUG) and serves the next request."""
    if moment == "during-latency":
        faults = Faults(latency=0.3)
    else:
        faults = Faults(trickle=1.0, trickle_chunk=256, trickle_delay=0.002)
    signal = _Signal("client went away")
    emulator_logger = logging.getLogger("ispring_async.emulator")
    emulator_logger.addHandler(signal)
    caplog.set_level(logging.DEBUG, logger="ispring_async.emulator")
    try:
        async with running_emulator(EmulatorConfig(results=400, seed=2, faults=faults)) as emu:
            host, port = emu.base_url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"GET /learners/results?pageSize=200 HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {emu.issue_token()}\r\n\r\n".encode()
            )
            await writer.drain()
            if moment == "mid-body":
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert await reader.read(100)
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(signal.event.wait(), timeout=10)
            async with aiohttp.ClientSession() as session:
                assert (await get(session, emu, "/learners/results?pageSize=2"))[0] == 200
    finally:
        emulator_logger.removeHandler(signal)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]

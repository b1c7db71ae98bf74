"""Parsing in worker processes (``Client(parse_workers=N)``): the same records and the same errors as
in-process, bounded memory, and no process or hang left behind whatever happens to a worker.

Real worker processes and a real emulator throughout. Pools are told to offload pages of any size
(``min_offload_bytes=0``) and tests wait for the workers to be up, so the worker route is the one
taken; each test checks it was (``offloaded``, ``declined``).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web

from ispring_async import (
    Client,
    ConfigurationError,
    ModuleResultsQuery,
    ParseError,
    ParseLimits,
    ResultsQuery,
    RetryEvent,
    RetryPolicy,
    UnexpectedContentError,
    UnsafeXMLError,
    _parse_pool,
)
from ispring_async._app import cli
from ispring_async._parse_pool import ParsePool, default_parse_workers
from ispring_async.emulator import EmulatorConfig, Fault, Faults, running_emulator
from ispring_async.emulator._config import XML_LAYOUTS
from tests._helpers import assert_exactly_once, read_output
from tests._servers import results_body, serve

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
NO_WAIT = RetryPolicy(attempts=2, initial=0, maximum=0, total=60, min_retry_after=0)
MIB = 1 << 20
COMMAND = ["--base-url", "http://127.0.0.1:9", "--output", "out.jsonl"]
CREDENTIALS = {"ISPRING_CLIENT_ID": "id", "ISPRING_CLIENT_SECRET": "s3cret"}


@contextlib.asynccontextmanager
async def opened(base_url: str, workers: int, **options: Any) -> AsyncIterator[Client]:
    """A client whose pool offloads every body and whose workers are up before the first request."""
    async with Client(base_url, parse_workers=workers, **options) as client:
        pool = client._parse_pool
        pool.min_offload_bytes = 0
        with anyio.fail_after(30):
            await pool.wait_started()
        yield client


def encoded(records: list[Any]) -> bytes:
    """Records as sinks see them (offsets and all), not just ``==``: a datetime equal as an instant
    but written with another offset would differ here."""
    return msgspec.json.encode(records)


async def every_record(client: Client, endpoint: str) -> list[Any]:
    """Every record of ``endpoint`` through its page chain, in the API's order."""
    pages: Any
    if endpoint == "results":
        pages = client.result_pages(ResultsQuery())
        return [r async for page in pages for r in page.records]
    if endpoint == "module_results":
        pages = client.module_result_pages(ModuleResultsQuery())
        return [r async for page in pages for r in page.records]
    if endpoint == "users":
        return [u async for page in client.user_pages() for u in page.users]
    return [d async for page in client.department_pages() for d in page.departments]


def test_parse_workers_is_validated() -> None:
    """``parse_workers`` is a whole number 0..32; anything else is a ConfigurationError before any request."""
    for bad in (-1, 33, True, "1", 1.0, None):
        with pytest.raises(ConfigurationError, match="parse_workers"):
            Client("http://127.0.0.1:1", token="t", parse_workers=bad)  # type: ignore[arg-type]
    assert Client("http://127.0.0.1:1", token="t").parse_workers == 0


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (3, 2), (64, 2)])
def test_auto_without_the_c_pass_is_a_worker_per_core_beyond_the_first_and_none_for_json(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    """``--parse-workers auto`` with the Python passes: none for JSON whatever the cores, none on one
    core, at most 2."""
    from ispring_async._config import ResponseFormat
    from ispring_async._parse import _fast

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr(_fast, "speedups", None)
    assert default_parse_workers(ResponseFormat.JSON) == 0
    assert default_parse_workers(ResponseFormat.XML) == workers


@pytest.mark.parametrize("cores", [1, 2, 64])
def test_auto_with_the_c_pass_parses_in_process(monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    """With the C pass built, ``auto`` starts no worker: handing a page over cost more than parsing it."""
    from ispring_async._config import ResponseFormat
    from ispring_async._parse import _fast

    if _fast.speedups is None:
        pytest.skip("the C pass was not built")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert default_parse_workers(ResponseFormat.XML) == 0
    assert default_parse_workers(ResponseFormat.JSON) == 0


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("endpoint", ["results", "module_results", "users", "departments"])
async def test_workers_give_the_records_of_in_process_parsing(endpoint: str, fmt: str) -> None:
    """Every endpoint and format: the records through a worker equal, byte for byte as encoded, the
    in-process ones; JSON is never offloaded."""
    config = EmulatorConfig(results=2500, seed=3)
    async with running_emulator(config) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret, "response_format": fmt}
        async with opened(emu.base_url, 0, **creds) as client:
            expected = await every_record(client, endpoint)
        async with opened(emu.base_url, 1, **creds) as client:
            got = await every_record(client, endpoint)
            pool = client._parse_pool
    assert expected
    assert encoded(got) == encoded(expected)
    assert pool.declined == 0
    assert pool.offloaded >= 1 if fmt == "xml" else pool.offloaded == 0


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in XML_LAYOUTS])
async def test_workers_give_the_records_of_in_process_parsing_on_every_xml_layout(name: str) -> None:
    """Every emulator XML layout (CDATA, comments, CRLF, attributes, nested unknown elements, ...):
    the fan-out's records through one worker equal the in-process ones, and every page went to it."""
    config = EmulatorConfig(results=2000, seed=5, xml_layout=XML_LAYOUTS[name])
    async with running_emulator(config) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret, "page_size": 500}
        async with opened(emu.base_url, 0, **creds) as client:
            expected = [r async for page in client.result_pages() for r in page.records]
        async with opened(emu.base_url, 1, **creds) as client:
            got = [r async for page in client.result_pages() for r in page.records]
            pool = client._parse_pool
    assert encoded(got) == encoded(expected)
    assert pool.offloaded == len(expected) // 500 + (len(expected) % 500 > 0) and pool.local == 0


def _hostile_bodies() -> list[Any]:
    bomb = gzip.compress(b"<?xml version='1.0'?><response><results><result>" + b" " * (64 * MIB), 9)
    cases = [
        ("billion-laughs.xml", UnsafeXMLError),
        ("internal-dtd.xml", UnsafeXMLError),
        ("external-entity-url.xml", UnsafeXMLError),
        ("parameter-entity.xml", UnsafeXMLError),
        ("html-page.xml", UnexpectedContentError),
        ("html-no-doctype.xml", UnexpectedContentError),
        ("malformed-tags.xml", ParseError),
        ("truncated.xml", ParseError),
        ("wrong-types.xml", ParseError),
        ("invalid-utf8.xml", ParseError),
        ("missing-required-fields.xml", ParseError),
    ]
    found = [pytest.param((HOSTILE / file).read_bytes(), {}, error, id=file) for file, error in cases]
    oversized = b"<?xml version='1.0'?><response><results>" + b" " * (3 * MIB)
    found.append(pytest.param(oversized, {}, ParseError, id="over-the-byte-cap"))
    found.append(pytest.param(bomb, {"Content-Encoding": "gzip"}, ParseError, id="gzip-bomb"))
    return found


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("body", "headers", "error"), _hostile_bodies())
async def test_a_hostile_body_raises_the_same_error_with_and_without_workers(
    body: bytes, headers: dict[str, str], error: type[Exception]
) -> None:
    """Hostile, malformed, oversized and gzip-bomb bodies: the same error class, message, page and
    retries (by cause) through a worker as in-process."""

    async def hostile(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": "application/xml", **headers})

    outcomes = []
    limits = ParseLimits(max_body_bytes=2 * MIB)
    async with serve({"/learners/results": hostile}) as server:
        for workers in (0, 1):
            events: list[RetryEvent] = []
            async with opened(server.base_url, workers, token="t", retry=NO_WAIT, parse_limits=limits) as c:
                with pytest.raises(error) as caught:
                    await anext(c.result_pages(on_retry=events.append))
                pool = c._parse_pool
            exc = caught.value
            shown = (type(exc), str(exc), getattr(exc, "page", None), getattr(exc, "retryable", None))
            outcomes.append((shown, [e.cause for e in events], type(exc.__cause__)))
    assert outcomes[0] == outcomes[1]
    if len(body) < 2 * MIB and "Content-Encoding" not in headers:
        # Buffered whole and sent to the worker, which found no page: parsed again here.
        assert pool.declined >= 1


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "fault", [Fault.MALFORMED, Fault.TRUNCATE, Fault.RESET, Fault.HTML, Fault.TRICKLE, Fault.SERVER_ERROR]
)
async def test_faults_mid_export_are_retried_alike_with_workers(fault: Fault) -> None:
    """A scripted fault on the second page (malformed, cut short, reset, HTML, trickled, 500): the
    same retries by cause, or the same error, and the same records with one worker as without."""
    faults = Faults(script={("results", 2): fault}, trickle_chunk=4096, trickle_delay=0.001)
    outcomes = []
    for workers in (0, 1):
        async with running_emulator(EmulatorConfig(results=3000, seed=2, faults=faults)) as emu:
            creds = {"client_id": emu.client_id, "client_secret": emu.client_secret, "retry": NO_WAIT}
            async with opened(emu.base_url, workers, **creds) as client:
                events: list[RetryEvent] = []
                try:
                    records = [
                        r async for page in client.result_pages(on_retry=events.append) for r in page.records
                    ]
                    outcome: object = encoded(records)
                except Exception as exc:
                    # Each run has its own emulator (a scripted fault counts requests), on its own port.
                    outcome = (type(exc), str(exc).replace(emu.base_url, "BASE"))
                outcomes.append((outcome, [e.cause for e in events]))
                assert workers == 0 or client._parse_pool.offloaded >= 1
    assert outcomes[0] == outcomes[1]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_body_bigger_than_the_buffer_is_parsed_here_streaming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body past ``BUFFER_BYTES`` is not held for a worker: it is parsed in-process as it streams,
    with the same records."""
    monkeypatch.setattr(_parse_pool, "BUFFER_BYTES", 64 << 10)
    async with running_emulator(EmulatorConfig(results=2500)) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        async with opened(emu.base_url, 0, **creds) as client:
            expected = await every_record(client, "results")
        async with opened(emu.base_url, 1, **creds) as client:
            got = await every_record(client, "results")
            pool = client._parse_pool
    assert encoded(got) == encoded(expected)
    assert pool.offloaded == 0 and pool.local == 3


def handed_over(pool: ParsePool) -> anyio.Event:
    """An event set once a page has been handed to one of ``pool``'s workers."""
    event = anyio.Event()
    pool.on_handover = event.set
    return event


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["between-pages", "mid-page"])
async def test_a_killed_worker_leaves_its_page_to_this_process(
    when: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL a worker between pages, or while it holds a page: that page and the rest are parsed
    in-process, every record once, a warning says so, and nothing hangs."""
    caplog.set_level(logging.WARNING, logger="ispring_async")
    async with running_emulator(EmulatorConfig(results=4000)) as emu:
        truth = emu.expected_results(ResultsQuery().to_params())
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        async with opened(emu.base_url, 1, **creds) as client:
            pool = client._parse_pool
            (worker,) = pool.processes
            pages = client.result_pages()
            got = list((await anext(pages)).records)
            assert pool.offloaded == 1
            if when == "between-pages":
                worker.kill()
                worker.wait()
            else:
                # Stopped, it cannot read the next page: the exchange is under way when it dies.
                worker.send_signal(signal.SIGSTOP)
                handed = handed_over(pool)
                async with anyio.create_task_group() as tg:

                    async def kill_once_held() -> None:
                        await handed.wait()
                        worker.kill()

                    tg.start_soon(kill_once_held)
                    got.extend((await anext(pages)).records)
            async for page in pages:
                got.extend(page.records)
            assert not pool.running
            assert pool.offloaded == 1
    assert_exactly_once(got, truth)
    assert "parse worker stopped unexpectedly" in caplog.text
    assert worker.poll() is not None


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_cancelling_while_a_worker_holds_the_page_is_prompt_and_leaks_nothing() -> None:
    """Leave a fan-out while a (stopped) worker holds its page: the cancellation returns at once, and
    once the worker can run again, closing the client stops it cleanly."""
    async with running_emulator(EmulatorConfig(results=6000)) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        async with opened(emu.base_url, 1, **creds) as client:
            pool = client._parse_pool
            (worker,) = pool.processes
            worker.send_signal(signal.SIGSTOP)
            handed = handed_over(pool)
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:

                    async def export() -> None:
                        async with client.learner_results(ResultsQuery(), concurrency=4) as results:
                            async for _ in results:
                                pass

                    tg.start_soon(export)
                    await handed.wait()
                    tg.cancel_scope.cancel()
            worker.send_signal(signal.SIGCONT)
    assert worker.poll() == 0


@contextlib.contextmanager
def spawned_worker(cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A worker started as the pool starts one, every pipe ours, once it has said it is ready; killed
    at the end if it is still running."""
    from ispring_async._parse_pool import worker_argv
    from ispring_async._parse_worker import READY, read_frame

    worker = subprocess.Popen(
        worker_argv(), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert worker.stdin is not None and worker.stdout is not None and worker.stderr is not None
    try:
        assert read_frame(worker.stdout) == READY
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pipe in (worker.stdin, worker.stdout, worker.stderr):
            pipe.close()


def test_a_worker_runs_no_module_from_the_folder_the_command_started_in(tmp_path: Path) -> None:
    """A ``types.py`` (or ``json.py``, ``signal.py``) beside a nightly job's scripts is not imported by
    the worker, which ``python -c`` would do (its sys.path starts with the current directory)."""
    marker = tmp_path / "ran"
    for name in ("types", "json", "signal"):
        (tmp_path / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nraise ImportError('{name}')\n"
        )
    with spawned_worker(cwd=tmp_path) as worker:
        assert worker.stdin is not None
        worker.stdin.close()
        assert worker.wait(30) == 0
    assert not marker.exists()


@pytest.mark.anyio
async def test_a_worker_is_in_its_own_process_group() -> None:
    """Ctrl-C and a group's SIGTERM go to the parent, which stops the pool: a worker killed by them
    while starting printed a fatal-error traceback and was reported as stopped unexpectedly."""
    pool = ParsePool(1)
    pool.open()
    try:
        await pool.wait_started()
        (process,) = pool.processes
        assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    finally:
        await pool.aclose()


@pytest.mark.timeout(60)
def test_a_worker_whose_parent_is_gone_mid_page_exits_quietly() -> None:
    """The parent killed while its worker parses (SIGKILL, OOM): the answer meets a closed pipe, and
    the worker exits 0 with nothing on the stderr it shares with the command, not a traceback."""
    from ispring_async._config import ResponseFormat
    from ispring_async._parse import ParseLimits
    from ispring_async._parse_pool import _REQUEST
    from ispring_async._parse_worker import write_frame

    with spawned_worker() as worker:
        assert worker.stdin is not None and worker.stdout is not None and worker.stderr is not None
        # A page whose answer outgrows the pipe's buffer: the worker is writing it when the reader goes.
        body = results_body(range(1000), None)
        request = ("results", ResponseFormat.XML, "page 1", 1000, ParseLimits(), [body])
        write_frame(worker.stdin, _REQUEST.encode(request))
        worker.stdout.close()
        worker.stdin.close()
        assert worker.wait(30) == 0
        stderr = worker.stderr.read()
    assert stderr == b""


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_worker_that_never_answers_is_killed_at_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker stopped for good while it holds an abandoned page: closing the client waits
    ``SHUTDOWN_TIMEOUT``, then kills and reaps it, instead of waiting forever."""
    monkeypatch.setattr(_parse_pool, "SHUTDOWN_TIMEOUT", 0.5)
    async with running_emulator(EmulatorConfig(results=3000)) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        with anyio.fail_after(20):
            async with opened(emu.base_url, 1, **creds) as client:
                pool = client._parse_pool
                (worker,) = pool.processes
                worker.send_signal(signal.SIGSTOP)
                handed = handed_over(pool)
                async with anyio.create_task_group() as tg:

                    async def fetch() -> None:
                        await anext(client.result_pages())

                    tg.start_soon(fetch)
                    await handed.wait()
                    tg.cancel_scope.cancel()
                assert worker.poll() is None
    assert worker.poll() == -signal.SIGKILL


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_worker_that_stops_answering_mid_export_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker stopped (SIGSTOP: alive, never answering) while it holds a page: past
    ``ANSWER_TIMEOUT`` that page and the rest are parsed here, every record once, a warning says so,
    and closing the client kills and reaps the worker instead of waiting for it forever."""
    monkeypatch.setattr(_parse_pool, "ANSWER_TIMEOUT", 0.5)
    monkeypatch.setattr(_parse_pool, "SHUTDOWN_TIMEOUT", 0.5)
    caplog.set_level(logging.WARNING, logger="ispring_async")
    async with running_emulator(EmulatorConfig(results=4000)) as emu:
        truth = emu.expected_results(ResultsQuery().to_params())
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        with anyio.fail_after(30):
            async with opened(emu.base_url, 1, **creds) as client:
                pool = client._parse_pool
                (worker,) = pool.processes
                worker.send_signal(signal.SIGSTOP)
                got = [r async for page in client.result_pages() for r in page.records]
                assert not pool.running
                assert pool.offloaded == 0
                assert worker.poll() is None
    assert_exactly_once(got, truth)
    assert "parse worker gave no answer in 0.5s" in caplog.text
    assert worker.poll() == -signal.SIGKILL


# A stand-in worker that says it is ready, then answers every request with a "page" that is not JSON.
_GARBAGE_WORKER = """\
import sys
source, sink = sys.stdin.buffer, sys.stdout.buffer
def answer(body):
    sink.write(len(body).to_bytes(4, "big") + body)
    sink.flush()
answer(b"R")
while len(head := source.read(4)) == 4:
    source.read(int.from_bytes(head, "big"))
    answer(b"P{not a page")
"""


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_worker_answering_garbage_is_a_broken_worker_not_a_bad_page(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer that does not decode is the worker's fault, not the server's: no error reaches the
    caller (msgspec's least of all), the page is parsed here and the export is exact."""
    monkeypatch.setattr(_parse_pool, "BOOTSTRAP", _GARBAGE_WORKER)
    caplog.set_level(logging.WARNING, logger="ispring_async")
    async with running_emulator(EmulatorConfig(results=3000)) as emu:
        truth = emu.expected_results(ResultsQuery().to_params())
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        async with opened(emu.base_url, 1, **creds) as client:
            pool = client._parse_pool
            (worker,) = pool.processes
            got = [r async for page in client.result_pages() for r in page.records]
            assert not pool.running
            assert pool.offloaded == 0
    assert_exactly_once(got, truth)
    assert "parse worker answered with a frame that is not a page" in caplog.text
    assert worker.poll() == 0


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_workers_stop_when_the_client_closes_even_on_an_error() -> None:
    """Leaving ``async with`` by an exception stops and reaps the workers; a second client in the same
    process has its own, independent ones."""
    async with running_emulator(EmulatorConfig(results=1500)) as emu:
        creds = {"client_id": emu.client_id, "client_secret": emu.client_secret}
        workers: list[subprocess.Popen[bytes]] = []

        async def fail_inside_two_clients() -> None:
            async with opened(emu.base_url, 2, **creds) as first, opened(emu.base_url, 1, **creds) as second:
                workers.extend(first._parse_pool.processes + second._parse_pool.processes)
                await anext(second.result_pages())
                assert second._parse_pool.offloaded == 1
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail_inside_two_clients()
    assert len({w.pid for w in workers}) == 3
    assert all(worker.poll() == 0 for worker in workers)


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_worker_holds_no_secret_in_its_arguments_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's argv and environment hold neither the client secret nor the token, even when the
    secret is in this process's environment (as the export command reads it)."""
    monkeypatch.setenv("ISPRING_CLIENT_SECRET", "emulator-secret")
    async with (
        running_emulator(EmulatorConfig(results=1500)) as emu,
        opened(emu.base_url, 1, client_id=emu.client_id, client_secret=emu.client_secret) as client,
    ):
        await anext(client.result_pages())
        token = await client._auth.token()
        (worker,) = client._parse_pool.processes
        shown = proc_files(worker.pid, "cmdline", "environ")
    for secret in (emu.client_secret, token):
        assert secret.encode() not in shown
    assert b"ISPRING_" not in shown


def proc_files(pid: int, *names: str) -> bytes:
    """The contents of ``/proc/<pid>/<name>`` for each name, joined."""
    return b"".join(Path(f"/proc/{pid}/{name}").read_bytes() for name in names)


def test_a_worker_imports_neither_aiohttp_nor_the_client() -> None:
    """The worker's bootstrap skips the package's ``__init__``: parsers and msgspec only."""
    from ispring_async._parse_worker import BOOTSTRAP

    probe = BOOTSTRAP.replace(
        "main()",
        "print(sorted(m for m in sys.modules if m.startswith(FORBIDDEN)))",
    ).replace(
        "import json, sys, types\n",
        "import json, sys, types\nFORBIDDEN = ('aiohttp', 'anyio', 'ispring_async._client', "
        "'ispring_async._auth', 'ispring_async._transport')\n",
    )
    package = str(Path(_parse_pool.__file__).parent)
    shown = subprocess.run(
        [sys.executable, "-c", probe, package, msgspec.json.encode(sys.path).decode()],
        capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    assert shown.strip() == "[]"


@pytest.mark.timeout(120)
def test_the_export_command_with_a_parse_worker_writes_the_ground_truth(tmp_path: Path) -> None:
    """``ispring-async export --parse-workers 1`` (a child process, as a user runs it) writes every
    record once."""
    from ispring_async.emulator import serve_in_thread

    with serve_in_thread(EmulatorConfig(results=5000, seed=4)) as emu:
        truth = emu.expected_results(ResultsQuery().to_params())
        output = tmp_path / "out.jsonl"
        env = {**os.environ, "ISPRING_CLIENT_ID": emu.client_id, "ISPRING_CLIENT_SECRET": emu.client_secret}
        done = subprocess.run(
            [sys.executable, "-m", "ispring_async", "export", "--base-url", emu.base_url, "--output",
             str(output), "--parse-workers", "1", "--progress", "off", "--quiet"],
            env=env, capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, records = read_output(output, "jsonl")
    assert_exactly_once(records, truth)


@pytest.mark.parametrize(
    ("argv", "env", "fmt", "workers"),
    [
        pytest.param([], {}, "xml", None, id="default-auto"),
        pytest.param([], {}, "json", 0, id="auto-json-none"),
        pytest.param(["--parse-workers", "2"], {}, "xml", 2, id="argv"),
        pytest.param([], {"ISPRING_PARSE_WORKERS": "1"}, "xml", 1, id="env"),
        pytest.param(["--parse-workers", "0"], {"ISPRING_PARSE_WORKERS": "1"}, "xml", 0, id="argv-over-env"),
        pytest.param(["--parse-workers", "auto"], {}, "xml", None, id="auto"),
    ],
)
def test_the_export_command_resolves_parse_workers_from_its_layers(
    argv: list[str], env: dict[str, str], fmt: str, workers: int | None
) -> None:
    """``--parse-workers N|auto`` (or ``$ISPRING_PARSE_WORKERS``) becomes ``Client(parse_workers=)``;
    ``auto`` is ``default_parse_workers`` of the response format."""
    from ispring_async._config import ResponseFormat

    namespace = vars(cli.export_parser().parse_args([*COMMAND, "--response-format", fmt, *argv]))
    settings = cli.resolve_settings(namespace, {**CREDENTIALS, **env})[0]
    expected = default_parse_workers(ResponseFormat(fmt)) if workers is None else workers
    assert settings.parse_workers == expected


@pytest.mark.parametrize("value", ["-1", "33", "many", "1.5"])
def test_a_bad_parse_workers_value_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A value that is neither 0..32 nor ``auto`` exits 2 naming ``--parse-workers``, before any request."""
    from ispring_async._app.export import ExitCode

    assert cli.main(["export", *COMMAND, "--parse-workers", value]) == ExitCode.USAGE
    assert "--parse-workers" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_pool_of_no_workers_parses_here() -> None:
    """``ParsePool(0)`` hands out the in-process parser itself: no process, no buffering."""
    from ispring_async._config import ResponseFormat
    from ispring_async._parse import results_parser

    pool = ParsePool(0)
    pool.open()
    parser: Callable[..., Any] = pool.parser
    made = parser(results_parser, ResponseFormat.XML, page="p", page_size=10, limits=ParseLimits())
    assert not isinstance(made, _parse_pool.OffloadedParser)
    await pool.aclose()
    assert pool.processes == []


def session_processes(session: int) -> list[str]:
    """The command lines of every live process in ``session`` (its id is its leader's pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # The fields after the command name (which may hold spaces) start at its closing ")".
            fields = stat.rpartition(")")[2].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_export_and_its_workers_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's whole process group) mid-export with a parse worker: exit 130,
    the resume hint and no traceback from any process, and no process of the export left."""
    from ispring_async._app.export import ExitCode
    from ispring_async.emulator import serve_in_thread
    from tests._helpers import checkpointed

    config = EmulatorConfig(results=20_000, seed=6, faults=Faults(latency=0.05))
    with serve_in_thread(config) as emu:
        output = tmp_path / "out.jsonl"
        env = {**os.environ, "ISPRING_CLIENT_ID": emu.client_id, "ISPRING_CLIENT_SECRET": emu.client_secret}
        process = subprocess.Popen(
            [sys.executable, "-m", "ispring_async", "export", "--base-url", emu.base_url, "--output",
             str(output), "--parse-workers", "1", "--concurrency", "2", "--progress", "log"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            with anyio.from_thread.start_blocking_portal() as portal:

                async def until_running() -> None:
                    with anyio.fail_after(60):
                        while checkpointed(output) < 1000 or not any(
                            "_parse_worker" in line for line in session_processes(process.pid)
                        ):
                            assert process.poll() is None
                            await anyio.sleep(0.01)

                portal.call(until_running)
            os.killpg(process.pid, signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == ExitCode.SIGINT, err
    assert "resume with" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert session_processes(process.pid) == []

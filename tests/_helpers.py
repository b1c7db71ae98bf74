"""What several test modules share (issue 15, part 5): one copy each, and no test module imports another."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
import pytest

from ispring_async import Client, DateRange, ISpringError, ResultsQuery, RetryPolicy, UserStatus
from ispring_async._models import CompletionStatus, LearnerResult
from ispring_async._parse import DEFAULT_LIMITS
from ispring_async._parse._fast import without_c_pass
from ispring_async._parse._reference import ReferenceParser
from ispring_async._parse._shapes import RESULTS
from ispring_async._parse._xml import XmlListParser
from ispring_async.emulator import Emulator

T = TypeVar("T")

__all__ = [
    "API_NAMES",
    "EXTENSIONS",
    "FORMATS",
    "ROOT",
    "assert_exactly_once",
    "checkpointed",
    "client_tasks",
    "drain",
    "make_records",
    "read_output",
    "read_records",
    "spawn",
]


async def drain(stream: AbstractAsyncContextManager[AsyncIterator[T]]) -> list[T]:
    """Every item of a record stream, iterated inside its ``async with`` block as the library requires."""
    async with stream as items:
        return [item async for item in items]


def no_wait(attempts: int) -> RetryPolicy:
    """A retry policy of ``attempts`` attempts that never sleeps between them (tests wait on events)."""
    return RetryPolicy(attempts=attempts, wait_scale=0)


def client_tasks() -> set[asyncio.Task[Any]]:
    """Unfinished tasks running client-side library code (the emulator's request handlers excluded)."""
    found = set()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        code = getattr(task.get_coro(), "cr_code", None)
        filename = "" if code is None else code.co_filename
        if not task.done() and "ispring_async" in filename and "emulator" not in filename:
            found.add(task)
    return found


# -- exactly once --------------------------------------------------------------------------------------


def _key(item: LearnerResult | str) -> str:
    return item if isinstance(item, str) else item.identity


def assert_exactly_once(got: Iterable[LearnerResult | str], expected: Iterable[LearnerResult | str]) -> None:
    """``got`` holds exactly ``expected``, each once: nothing lost, nothing twice, nothing else.

    Records are compared by value as well as identity; identity strings by identity only.
    """
    got = list(got)
    identities = [_key(item) for item in got]
    twice = len(identities) - len(set(identities))
    assert twice == 0, f"{twice} record(s) delivered twice"
    have = {_key(item): item for item in got}
    want = {_key(item): item for item in expected}
    lost, unexpected = len(want.keys() - have.keys()), len(have.keys() - want.keys())
    assert not lost and not unexpected, f"{lost} lost, {unexpected} unexpected"
    assert have == want


# -- the export command as a child process ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def spawn(base_url: str, output: Path, *extra: str, client_id: str, secret: str) -> subprocess.Popen[str]:
    """``python -m ispring_async export`` as a child; the secret travels in its environment, never argv."""
    env = {**os.environ, "ISPRING_CLIENT_ID": client_id, "ISPRING_CLIENT_SECRET": secret}
    env.pop("ISPRING_TOKEN", None)
    command = [
        sys.executable, "-m", "ispring_async", "export", "--base-url", base_url, "--output", str(output),
        "--page-size", "50", "--progress", "log", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def checkpointed(output: Path) -> int:
    """Records the output's last checkpoint covers (0 before the first), for every output format."""
    if output.suffix == ".sqlite":
        if not output.exists():
            return 0
        db = sqlite3.connect(output, timeout=5)
        try:
            row = db.execute("SELECT max(records) FROM export_checkpoint").fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0
        finally:
            db.close()
        return int(row[0] or 0)
    try:
        return int(json.loads((output.parent / f".{output.name}.checkpoint").read_bytes())["records"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


# -- reading outputs back -----------------------------------------------------------------------------

API_NAMES = [f.encode_name for f in msgspec.structs.fields(LearnerResult)]


def _present(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def read_output(path: Path, fmt: str) -> tuple[list[str], list[LearnerResult]]:
    """The column names and the records of a published output, read with each format's own tools."""
    if fmt == "jsonl":
        rows = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
        assert all(list(row) == API_NAMES for row in rows)
        return API_NAMES, [msgspec.convert(row, LearnerResult) for row in rows]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as file:
            header, *values = list(csv.reader(file))
        dicts = [{k: v for k, v in zip(header, row, strict=True) if v != ""} for row in values]
        return header, [msgspec.convert(row, LearnerResult, strict=False) for row in dicts]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.schema.names, [
            msgspec.convert(_present(row), LearnerResult) for row in table.to_pylist()
        ]
    db = sqlite3.connect(path)
    try:
        cursor = db.execute("SELECT * FROM learner_results ORDER BY rowid")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor]
    finally:
        db.close()
    columns = [n for n in names if n not in {"identity", "run_id"}]
    records = [
        msgspec.convert(_present({k: row[k] for k in columns}), LearnerResult, strict=False) for row in rows
    ]
    assert [row["identity"] for row in rows] == [r.identity for r in records]
    return columns, records


def read_records(path: Path, fmt: str) -> list[LearnerResult]:
    """Every record of a published output, read back with the format's own tools."""
    return read_output(path, fmt)[1]


# -- records for the sinks ----------------------------------------------------------------------------

EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "sqlite": "sqlite"}
FORMATS = [pytest.param(name, id=name) for name in EXTENSIONS]

_BASE = datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
_ZONES = (UTC, timezone(timedelta(hours=3)), timezone(-timedelta(hours=5, minutes=30)))
_STATUSES = list(CompletionStatus)


def make_records(n: int, *, start: int = 0, revision: int = 0) -> list[LearnerResult]:
    """Deterministic records covering absent values, offsets, microseconds, CSV-hostile text, identities."""
    records = []
    for i in range(start, start + n):
        full = i % 3 != 0
        title = f'Курс {i % 7}, "intro"\nline two' if i % 5 == 0 else f"Course {i % 7}"
        records.append(
            LearnerResult(
                user_id=f"user-{i // 4}",
                course_id=f"course-{i % 4}",
                course_title=title + (f" (rev {revision})" if revision else ""),
                access_date=(_BASE + timedelta(minutes=i, microseconds=i * 7919 % 1_000_000)).astimezone(
                    _ZONES[i % 3]
                ),
                completion_status=_STATUSES[(i + revision) % len(_STATUSES)].value,
                is_overdue=(i + revision) % 2 == 1,
                enrollment_id=f"enr-{i}" if i % 4 != 3 else None,
                session_id=f"session-{i}" if full else None,
                due_date=_BASE + timedelta(days=i % 30) if full else None,
                expiration_date=None if i % 2 else _BASE + timedelta(days=365),
                completion_date=_BASE + timedelta(hours=i) if full else None,
                duration=3600 + i if full else None,
                time_spent=i * 13 + revision if full else None,
                progress=(9.09, 100.0, 0.1 + 0.2, 0.0)[(i + revision) % 4],
                awarded_score=i / 7 if full else None,
                passing_score=80.0 if full else None,
                views_count=i % 11 if full else None,
            )
        )
    return records


U1 = "85077abc-2639-11ea-8e3f-0a580af40c09"


U2 = "114dba08-a75e-11eb-b4e5-0242ac13002a"


C1 = "f0e7400a-ca31-11e9-b6fc-0a580af40a22"


D1 = "f0b2d3c0-aded-11e9-bfe6-0a580af40906"


E1 = "b9b41af0-f062-11eb-a99d-0242ac190033"


SEED_TOKEN = "MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def seed_query() -> ResultsQuery:
    """The ResultsQuery that corresponds to the seed's sample request."""
    return ResultsQuery(
        user_ids=[U1],
        course_ids=[C1],
        access_date=DateRange(start=utc(2019, 12, 24, 21), end=utc(2020, 12, 30, 3)),
        due_date=DateRange(start=utc(2019, 8, 30, 3), end=utc(2019, 12, 30, 3)),
        completion_date=DateRange(start=utc(2019, 8, 30, 3), end=utc(2019, 12, 30, 3)),
        completion_statuses=[CompletionStatus.FAILED],
        department_ids=[D1],
        user_statuses=[UserStatus.ACTIVE],
        page_size=33,
    )


def seed_params() -> Counter[tuple[str, str]]:
    """The seed's parameters, with ``completionStatus`` spelled as the parameter table says."""
    params = [
        ("completionStatuses[]", value) if name == "completionStatus" else (name, value)
        for name, value in parse_qsl(SEED_QUERY, keep_blank_values=True)
        if name != "pageToken"
    ]
    return Counter(params)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Raw:
    """A parser that returns the body as bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> bytes:
        return b"".join(self.chunks)


# The fast route with its C pass, and as installed without a C compiler: both must read alike.
BOTH_PASSES = pytest.mark.parametrize(
    "c_pass", [pytest.param(True, id="c-pass"), pytest.param(False, id="python-passes")]
)


def fast_passes(c_pass: bool) -> AbstractContextManager[None]:
    """The fast route with its C pass (``True``: as installed), or its Python passes alone."""
    return nullcontext() if c_pass else without_c_pass()


def both_routes(body: bytes, chunk: int, *, c_pass: bool = True) -> tuple[object, object, bool]:
    """The hybrid parser's and the reference route's outcome, and whether the fast route held;
    ``c_pass=False``: the fast route's Python passes only."""
    hybrid = XmlListParser(RESULTS, page="p", bounds=BOUNDS)

    def run_hybrid() -> object:
        with fast_passes(c_pass):
            for start in range(0, len(body), chunk):
                hybrid.feed(body[start : start + chunk])
            return hybrid.close()

    def run_reference() -> object:
        reference = ReferenceParser(RESULTS, page="p", bounds=BOUNDS)
        reference.feed(body)
        return reference.close()

    return outcome(run_hybrid), outcome(run_reference), hybrid.fast


def strangers(count: int, seed: int) -> list[str]:
    """``count`` random UUIDs no dataset holds (drawn from ``seed``)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def known_params(emu: Emulator, query: ResultsQuery) -> list[tuple[str, str]]:
    """The query's parameters without the ids the account does not know (the rows it really holds)."""
    ds = emu.dataset
    index = {
        "userIds[]": ds.user_index,
        "courseIds[]": ds.course_index,
        "departmentIds[]": ds.department_index,
    }
    return [(n, v) for n, v in query.to_params() if n not in index or v in index[n]]


SEED_QUERY = (
    "userIds[]=85077abc-2639-11ea-8e3f-0a580af40c09&courseIds[]=f0e7400a-ca31-11e9-b6fc-0a580af40a22"
    "&accessDate[startDate]=2019-12-24T21:00:00Z&accessDate[endDate]=2020-12-30T03:00:00Z"
    "&dueDate[startDate]=2019-08-30T03:00:00Z&dueDate[endDate]=2019-12-30T03:00:00Z"
    "&completionDate[startDate]=2019-08-30T03:00:00Z&completionDate[endDate]=2019-12-30T03:00:00Z"
    "&completionStatus=failed&departmentIds[]=f0b2d3c0-aded-11e9-bfe6-0a580af40906&userStatuses[]=1"
    "&pageSize=33&pageToken=MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj"
)


BOUNDS = DEFAULT_LIMITS.bounds(page_size=None)


def outcome(run: object) -> object:
    try:
        return run()  # type: ignore[operator]
    except ISpringError as exc:
        return type(exc)


@asynccontextmanager
async def small_page_client(emu: Emulator, page_size: int = 40, **options: object) -> AsyncIterator[Client]:
    """A client of ``emu`` with small pages, so every batch pages."""
    async with Client(
        emu.base_url,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        page_size=page_size,
        **options,  # type: ignore[arg-type]
    ) as client:
        yield client

"""The emulator's HTTP side: the aiohttp application, its fault injection, and ways to run it.

A request goes through: count it → plan its faults (from ``(seed, endpoint, n)``) → wait the planned
latency → proxy-level faults (429/5xx/HTML) → authentication → rate limit → mutations → validation
(unknown ids too, under ``unknown_ids="400"``) → select the page → stream the body (trickled, cut,
reset or corrupted when planned).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import dataclasses
import email.utils
import functools
import hmac
import logging
import math
import random
import secrets
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict, TypeVar

import msgspec
from aiohttp import web

from ispring_async._models import (
    Department,
    LearnerModuleResult,
    LearnerResult,
    User,
    UserField,
    UserRole,
    UserSubordination,
)
from ispring_async.emulator._config import EmulatorConfig, Fault
from ispring_async.emulator._dataset import STATUSES, Dataset, _utc
from ispring_async.emulator._modules import ModuleCatalog
from ispring_async.emulator._query import (
    ModuleResultsFilter,
    QueryError,
    ResultsFilter,
    UsersFilter,
    encode_module_page_token,
    encode_page_token,
    module_unknown_ids_message,
    page_params,
    parse_module_results,
    parse_page,
    parse_results,
    parse_users,
    select_all,
    select_all_modules,
    select_all_users,
    select_module_page,
    select_page,
    select_users_page,
    unknown_ids_message,
    users_unknown_ids_message,
)
from ispring_async.emulator._render import Format, Renderer, error_body, html_page
from ispring_async.emulator._users import FIELD_NAMES, ROLES, UserDirectory

__all__ = ["Emulator", "EmulatorStats", "running_emulator", "serve_in_thread"]

Q = TypeVar("Q")

logger = logging.getLogger("ispring_async.emulator")

Params = Sequence[tuple[str, str]] | Mapping[str, str]

_XML = "application/xml; charset=utf-8"
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_STATUS_FAULTS = (Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.BAD_GATEWAY, Fault.UNAVAILABLE, Fault.HTML)
_BODY_FAULTS = (Fault.RESET, Fault.TRUNCATE, Fault.MALFORMED)


class _DateFilterSwitches(TypedDict):
    lenient: bool
    max_page_size: int
    one_sided_ranges: bool
    exclusive_end: bool


@dataclasses.dataclass
class EmulatorStats:
    """What an emulator has seen and done, for tests to assert on.

    ``requests`` counts requests by endpoint (``"token"``, ``"results"``, ``"module_results"``,
    ``"users"``, ``"departments"``),
    ``responses`` counts responses by HTTP status, ``faults`` counts injected faults by kind: the
    ``Fault`` values, plus ``"latency"``, ``"rate_limit"`` (the per-token limiter),
    ``"token_expire_after"`` (an early-expired token refused), ``"insert"`` and ``"update"`` (rows),
    ``"unknown_ids"`` (a 400 for an id the account does not know, under ``unknown_ids="400"``).
    """

    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    responses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass(frozen=True)
class _Plan:
    delay: float
    fault: Fault | None
    trickle: bool


@dataclasses.dataclass
class _Token:
    client_id: str
    issued: float
    expires: float


class Emulator:
    """An emulated iSpring Learn API: ``POST /api/v3/token``, ``GET /learners/results``,
    ``GET /learners/modules/results``, ``GET /users/v2`` and ``GET /departments``.

    Build it with a config, then serve it with ``running_emulator`` (async), ``serve_in_thread``
    (sync) or ``start``/``close``. The object is also the oracle: ``expected_results`` says exactly
    which records the API holds for a query (``expected_module_results``, ``expected_users`` for the
    other endpoints).

    >>> async with running_emulator(EmulatorConfig(results=5000)) as emu:
    ...     url = emu.base_url + "/learners/results"
    """

    def __init__(self, config: EmulatorConfig | None = None, *, dataset: Dataset | None = None) -> None:
        """Build the dataset (or reuse ``dataset``, which mutations then change) and the application."""
        self.config = config or EmulatorConfig()
        self.dataset = dataset if dataset is not None else Dataset(self.config)
        self.stats = EmulatorStats()
        self._renderer = Renderer(
            self.dataset,
            overdue_words=self.config.overdue_style == "words",
            row_cache_rows=self.config.row_cache_rows,
            layout=self.config.xml_layout,
        )
        self._clients = {self.config.client_id: self.config.client_secret, **self.config.extra_clients}
        self._tokens: dict[str, _Token] = {}
        self._hits: dict[str, collections.deque[float]] = {}
        self._counters: collections.Counter[str] = collections.Counter()
        self._clock_offset = 0.0
        self._frozen: float | None = None
        ds = self.dataset
        self._department_keys = [
            int(ds.department_ids[d].replace("-", ""), 16) for d in ds.departments_in_order
        ]
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.app = web.Application()
        prefix = self.config.path_prefix
        self.app.router.add_post(self.config.token_path, self._token)
        self.app.router.add_get(prefix + "/learners/results", self._results)
        self.app.router.add_get(prefix + "/departments", self._departments)
        self.app.router.add_get(prefix + "/learners/modules/results", self._module_results)
        self.app.router.add_get(prefix + "/users/v2", self._users)

    def __repr__(self) -> str:
        return f"Emulator(base_url={self._base_url!r}, results={len(self.dataset)}, seed={self.config.seed})"

    # -- public helpers ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server, then ``EmulatorConfig.path_prefix`` (no
        trailing slash): the data endpoints are ``base_url + "/learners/results"`` and so on."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not running")
        return self._base_url + self.config.path_prefix

    @property
    def token_url(self) -> str:
        """The token endpoint's URL: ``http://host:port`` + ``EmulatorConfig.token_path``."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not running")
        return self._base_url + self.config.token_path

    @property
    def client_id(self) -> str:
        """The configured client id."""
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        """The configured client secret."""
        return self.config.client_secret

    def issue_token(self, client_id: str | None = None) -> str:
        """A valid access token, as ``POST /api/v3/token`` would issue, without a request."""
        client = client_id or self.config.client_id
        if client not in self._clients:
            raise ValueError("unknown client id")
        token = secrets.token_urlsafe(32)
        now = self.now()
        lifetime = self.config.token_lifetime
        expire_after = self.config.faults.token_expire_after
        expires = now + (lifetime if expire_after is None else min(lifetime, expire_after))
        self._tokens[token] = _Token(client, now, expires)
        return token

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (the next request with one gets ``401``)."""
        self._tokens.clear()

    def now(self) -> float:
        """The emulator's clock (monotonic seconds) that token lifetimes and the rate limit use."""
        return (time.monotonic() if self._frozen is None else self._frozen) + self._clock_offset

    def freeze_clock(self) -> None:
        """Stop the emulator's clock, so rate-limit windows and token lifetimes only move by
        ``advance_clock`` (deterministic tests)."""
        self._frozen = time.monotonic()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens expire and rate-limit windows pass, without sleeping."""
        self._clock_offset += seconds

    def warm_cache(self) -> None:
        """Render every result row once in each format, filling the row cache
        (``EmulatorConfig.row_cache_rows``), so the first client served is not the one that pays for
        rendering: benchmarks compare tools against a server whose cost per page does not depend on
        which tool came first."""
        positions = range(len(self.dataset))
        for fmt in ("xml", "json"):
            for _ in self._renderer.results(fmt, positions, None):
                pass

    def expected_results(self, params: Params = ()) -> list[LearnerResult]:
        """Every record the API holds for a query, all pages, in API order.

        ``params`` are the query's ``(name, value)`` pairs exactly as on the wire (``pageSize`` and
        ``pageToken`` are ignored). Invalid parameters raise ``ValueError`` with the API's message.
        """
        ds = self.dataset
        return [ds.record(pos) for pos in self._select_all(params)]

    def write_expected_results(self, params: Params, path: str | Path) -> int:
        """Write ``expected_results(params)`` as JSONL (API field names); returns the record count."""
        encoder = msgspec.json.Encoder()
        ds = self.dataset
        positions = self._select_all(params)
        buffer = bytearray()
        with Path(path).open("wb") as out:
            for pos in positions:
                encoder.encode_into(ds.record(pos), buffer, -1)
                buffer.extend(b"\n")
                if len(buffer) > 1 << 20:
                    out.write(buffer)
                    buffer.clear()
            out.write(buffer)
        return len(positions)

    def departments(self) -> list[Department]:
        """Every department, in the order ``/departments`` pages them (vanished ones included)."""
        return self.dataset.departments()

    @functools.cached_property
    def modules(self) -> ModuleCatalog:
        """The modules of the dataset's courses, and the values of every module result."""
        return ModuleCatalog(self.dataset)

    @functools.cached_property
    def directory(self) -> UserDirectory:
        """The profiles of the dataset's users (built on first use: about 3 us a user)."""
        return UserDirectory(self.dataset)

    def expected_module_results(self, params: Params = ()) -> list[LearnerModuleResult]:
        """Every record ``/learners/modules/results`` holds for a query, all pages, in API order
        (``params`` as for ``expected_results``)."""
        return [self._module_record(pos, k) for pos, k in self._select_all_modules(params)]

    def write_expected_module_results(self, params: Params, path: str | Path) -> int:
        """Write ``expected_module_results(params)`` as JSONL (API field names); returns the count."""
        return _write_jsonl(
            path, (self._module_record(pos, k) for pos, k in self._select_all_modules(params))
        )

    def expected_users(self, params: Params = ()) -> list[User]:
        """Every profile ``/users/v2`` holds for a query (``departments[]``, ``userIds[]``,
        ``logins[]``, ``emails[]``, ``groups[]``), all pages, in API order."""
        return [self._user_record(user) for user in self._select_all_users(params)]

    def write_expected_users(self, params: Params, path: str | Path) -> int:
        """Write ``expected_users(params)`` as JSONL (API field names); returns the count."""
        return _write_jsonl(path, (self._user_record(user) for user in self._select_all_users(params)))

    def mutate(self, *, inserts: int = 0, updates: int = 0, seed: int = 0) -> list[int]:
        """Insert and update rows now (as ``Faults.inserts_per_request`` does); returns their positions."""
        rng = random.Random(f"{self.config.faults.seed}:manual:{seed}")
        return self._mutate(rng, inserts, updates)

    # -- running ------------------------------------------------------------------------------------

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (``0``: a free port) and return the base URL."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def close(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- internals ----------------------------------------------------------------------------------

    def _truth_query(
        self,
        params: Params,
        parse: Callable[[Iterable[tuple[str, str]]], Q],
        unknown: Callable[[Q], str | None],
    ) -> Q:
        """A ground-truth query parsed and checked exactly as its endpoint would (``pageSize`` and
        ``pageToken`` ignored); an invalid one raises ``QueryError`` with the API's message."""
        query = parse(_without_page(params))
        if self.config.unknown_ids == "400":
            message = unknown(query)
            if message is not None:
                raise QueryError(message)
        return query

    def _select_all(self, params: Params) -> list[int]:
        query = self._truth_query(params, self._parse_results, self._unknown_results)
        return select_all(self.dataset, query, subtree=self.config.subdepartment_matching)

    def _select_all_modules(self, params: Params) -> list[tuple[int, int]]:
        query = self._truth_query(params, self._parse_module_results, self._unknown_module_results)
        return select_all_modules(
            self.dataset, self.modules, query, subtree=self.config.subdepartment_matching
        )

    def _select_all_users(self, params: Params) -> list[int]:
        query = self._truth_query(params, self._parse_users, self._unknown_users)
        return select_all_users(
            self.dataset, self.directory, query, subtree=self.config.subdepartment_matching
        )

    def _module_record(self, pos: int, k: int) -> LearnerModuleResult:
        """A module result as the client should decode it, built from the values, not the page text."""
        ds, catalog = self.dataset, self.modules
        module = catalog.modules_of(pos)[k]
        v = catalog.values(pos, k)
        return LearnerModuleResult(
            user_id=ds.user_ids[ds.r_user[pos]],
            course_id=ds.course_ids[ds.r_course[pos]],
            module_id=catalog.module_ids[module],
            module_title=catalog.module_titles[module],
            course_item_id=catalog.course_item_ids[module],
            enrollment_id=ds.enrollment_id(pos) if ds.r_flags[pos] & 1 else None,
            access_date=_utc(v.access),
            due_date=_utc(v.due) if v.due else None,
            expiration_date=_utc(v.expiration) if v.expiration else None,
            completion_date=_utc(v.completion) if v.completion else None,
            time_spent=v.spent,
            completion_status=STATUSES[v.status],
            awarded_score=v.awarded / 100 if v.awarded >= 0 else None,
            passing_score=catalog.module_passing[module] / 100 if v.awarded >= 0 else None,
            progress=v.progress / 100,
            is_overdue=catalog.is_overdue(v),
            views_count=v.views,
        )

    def _user_record(self, user: int) -> User:
        """A profile as the client should decode it, built from the directory, not the page text."""
        ds, directory = self.dataset, self.directory
        role = directory.role[user]
        dept = ds.department_ids[ds.user_dept[user]]
        manageable = (dept,) if ROLES[role] == "department_administrator" else ()
        last_login = directory.last_login[user]
        return User(
            user_id=ds.user_ids[user],
            department_id=dept,
            status=ds.user_status[user],
            role=ROLES[role],
            role_id=directory.role_ids[role],
            fields=tuple(
                UserField(name=name, value=value)
                for name, value in zip(FIELD_NAMES, directory.field_values[user], strict=True)
            ),
            added_date=_utc(directory.added[user]),
            last_login_date=_utc(last_login) if last_login else None,
            groups=tuple(directory.group_ids[g] for g in directory.groups[user]),
            manageable_department_ids=manageable,
            user_roles=(
                UserRole(
                    role_id=directory.role_ids[role],
                    role_type=ROLES[role],
                    manageable_department_ids=manageable,
                ),
            ),
            subordination=UserSubordination(subordination_type="inherit"),
            co_subordination=UserSubordination(subordination_type="no_supervisor"),
        )

    def _mutate(self, rng: random.Random, inserts: int, updates: int) -> list[int]:
        changed = []
        for _ in range(inserts):
            changed.append(self.dataset.insert(rng))
            self.stats.faults["insert"] += 1
        for _ in range(updates):
            pos = self.dataset.update(rng)
            if pos is not None:
                changed.append(pos)
                self.stats.faults["update"] += 1
        return changed

    def _plan(self, endpoint: str) -> tuple[int, _Plan]:
        self._counters[endpoint] += 1
        number = self._counters[endpoint]
        self.stats.requests[endpoint] += 1
        faults = self.config.faults
        scripted = faults.script.get((endpoint, number))
        randomised = endpoint != "token" or faults.on_token
        rng = random.Random(f"{faults.seed}:{endpoint}:{number}")
        delay = 0.0
        fault: Fault | None = None if scripted is None else Fault(scripted)
        trickle = fault is Fault.TRICKLE
        if randomised:
            delay = faults.latency + (rng.random() * faults.latency_jitter if faults.latency_jitter else 0.0)
            candidates = (
                (Fault.RATE_LIMITED, faults.rate_limited),
                (Fault.SERVER_ERROR, faults.server_error),
                (Fault.BAD_GATEWAY, faults.bad_gateway),
                (Fault.UNAVAILABLE, faults.unavailable),
                (Fault.RESET, faults.reset),
                (Fault.TRUNCATE, faults.truncate),
                (Fault.MALFORMED, faults.malformed),
                (Fault.HTML, faults.html),
            )
            for kind, probability in candidates:
                if probability and rng.random() < probability and fault is None:
                    fault = kind
            if faults.trickle and rng.random() < faults.trickle:
                trickle = True
            if faults.latency_median:
                # Drawn last, so adding a tail leaves every other draw of this request as it was.
                delay += _lognormal(rng, faults.latency_median, faults.latency_p99)
        return number, _Plan(delay, fault, trickle)

    def _retry_after(self) -> str:
        faults = self.config.faults
        seconds = math.ceil(faults.retry_after)
        if faults.retry_after_style == "http-date":
            return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)
        return str(seconds)

    def _reply(
        self, status: int, fmt: Format, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self.stats.responses[status] += 1
        return web.Response(
            status=status,
            body=error_body(fmt, status, message),
            content_type=_JSON if fmt == "json" else "application/xml",
            charset=None if fmt == "json" else "utf-8",
            headers=headers,
        )

    def _proxy_fault(self, fault: Fault | None, fmt: Format) -> web.Response | None:
        """Faults answered before the API looks at the request (a proxy or gateway in front of it)."""
        if fault not in _STATUS_FAULTS:
            return None
        assert fault is not None
        self.stats.faults[fault.value] += 1
        if fault is Fault.RATE_LIMITED:
            return self._reply(429, fmt, "Too Many Requests", {"Retry-After": self._retry_after()})
        if fault is Fault.SERVER_ERROR:
            return self._reply(500, fmt, "Internal Server Error")
        status, reason = {
            Fault.BAD_GATEWAY: (502, "Bad Gateway"),
            Fault.UNAVAILABLE: (503, "Service Temporarily Unavailable"),
            Fault.HTML: (200, "OK"),
        }[fault]
        headers = {"Retry-After": self._retry_after()} if status == 503 else {}
        self.stats.responses[status] += 1
        body = html_page(status, reason) if status != 200 else _wrong_path_page()
        return web.Response(status=status, body=body, headers={**headers, "Content-Type": _HTML})

    def _authenticate(
        self, request: web.Request, fmt: Format, fault: Fault | None
    ) -> tuple[str | None, web.Response | None]:
        header = request.headers.get("Authorization", "").strip()
        token = header[7:].strip() if header[:7].lower() == "bearer " else header
        if fault is Fault.EXPIRE_TOKEN:
            self.stats.faults[fault.value] += 1
            self._tokens.pop(token, None)
        unauthorized = {"WWW-Authenticate": "Bearer"}
        if not token:
            return None, self._reply(401, fmt, "Authorization header is missing", unauthorized)
        entry = self._tokens.get(token)
        if entry is None:
            return None, self._reply(401, fmt, "Invalid access token", unauthorized)
        now = self.now()
        if now >= entry.expires:
            del self._tokens[token]
            if entry.expires < entry.issued + self.config.token_lifetime:
                self.stats.faults["token_expire_after"] += 1
            return None, self._reply(401, fmt, "Access token expired", unauthorized)
        return token, None

    def _rate_limited(self, token: str, fmt: Format) -> web.Response | None:
        limit = self.config.faults.rate_limit
        if limit is None:
            return None
        now = self.now()
        hits = self._hits.setdefault(token, collections.deque())
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) + 1 > limit:
            self.stats.faults["rate_limit"] += 1
            wait = max(1, math.ceil(hits[0] + 1.0 - now)) if hits else 1
            return self._reply(429, fmt, "Too Many Requests", {"Retry-After": str(wait)})
        hits.append(now)
        return None

    async def _send(
        self, request: web.Request, plan: _Plan, content_type: str, chunks: Iterable[bytes], fmt: Format
    ) -> web.StreamResponse:
        """Write a 200 body, applying the plan's body faults."""
        self.stats.responses[200] += 1
        faults = self.config.faults
        fault = plan.fault if plan.fault in _BODY_FAULTS else None
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        if fault is not None:
            self.stats.faults[fault.value] += 1
            body = b"".join(chunks)
            if fault is Fault.MALFORMED:
                chunks = [_corrupt(body, fmt)]
            else:
                cut = max(1, int(len(body) * faults.cut_at))
                if fault is Fault.TRUNCATE and faults.truncate_style == "content-length":
                    response.content_length = len(body)
                else:
                    response.enable_chunked_encoding()
                with _client_gone(request):
                    await response.prepare(request)
                    await response.write(body[:cut])
                    await _break_connection(request, reset=fault is Fault.RESET)
                return response
        if plan.trickle:
            self.stats.faults[Fault.TRICKLE.value] += 1
            chunks = _rechunk(chunks, faults.trickle_chunk)
        with _client_gone(request):
            await response.prepare(request)
            for chunk in chunks:
                await response.write(chunk)
                if plan.trickle:
                    await asyncio.sleep(faults.trickle_delay)
        return response

    async def _begin(
        self, request: web.Request, endpoint: str, fmt: Format
    ) -> tuple[int, _Plan, web.Response | None]:
        number, plan = self._plan(endpoint)
        if plan.delay:
            self.stats.faults["latency"] += 1
            await asyncio.sleep(plan.delay)
        return number, plan, self._proxy_fault(plan.fault, fmt)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        fmt: Format = "xml" if "xml" in accept and "json" not in accept else "json"
        _, plan, early = await self._begin(request, "token", fmt)
        if early is not None:
            return early
        if plan.fault is Fault.EXPIRE_TOKEN:
            self.stats.faults[plan.fault.value] += 1
            self.revoke_tokens()
        form = await request.post()
        fields = {name: form.get(name) for name in ("client_id", "client_secret", "grant_type")}
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
        if missing:
            return self._reply(400, fmt, f"Missing required parameter(s): {', '.join(missing)}")
        if fields["grant_type"] != "client_credentials":
            return self._reply(400, fmt, "Unsupported grant_type: only client_credentials is supported")
        client_id, client_secret = str(fields["client_id"]), str(fields["client_secret"])
        expected = self._clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), client_secret.encode()):
            return self._reply(401, fmt, "Invalid client credentials")
        token = self.issue_token(client_id)
        expires_in = int(self.config.token_lifetime)
        if fmt == "json":
            body = msgspec.json.encode(
                {"access_token": token, "expires_in": expires_in, "token_type": "bearer"}
            )
            return await self._send(request, plan, _JSON, [body], fmt)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<response><access_token>'
            f"{token}</access_token><expires_in>{expires_in}</expires_in>"
            "<token_type>bearer</token_type></response>\n"
        )
        return await self._send(request, plan, _XML, [xml.encode()], fmt)

    async def _admit(
        self, request: web.Request, endpoint: str
    ) -> tuple[Format, int, _Plan, web.StreamResponse | None]:
        """Latency, proxy faults, authentication and the rate limit, as every data endpoint applies
        them: ``(format, request number, fault plan, the early response or None)``."""
        fmt = _negotiate(request)
        number, plan, early = await self._begin(request, endpoint, fmt)
        if early is not None:
            return fmt, number, plan, early
        token, refused = self._authenticate(request, fmt, plan.fault)
        if refused is not None:
            return fmt, number, plan, refused
        assert token is not None
        return fmt, number, plan, self._rate_limited(token, fmt)

    async def _serve_page(
        self,
        request: web.Request,
        endpoint: str,
        parse: Callable[[Iterable[tuple[str, str]]], Q],
        unknown: Callable[[Q], str | None],
        page: Callable[[Format, Q], Iterable[bytes]],
        *,
        mutate: bool = False,
    ) -> web.StreamResponse:
        """One page of a filtered endpoint, as every one answers: admission (latency, proxy faults,
        authentication, rate limit), mutations (results only), validation, unknown ids, the body."""
        fmt, number, plan, early = await self._admit(request, endpoint)
        if early is not None:
            return early
        faults = self.config.faults
        if mutate and number > 1 and (faults.inserts_per_request or faults.updates_per_request):
            rng = random.Random(f"{faults.seed}:mutate:{number}")
            self._mutate(rng, faults.inserts_per_request, faults.updates_per_request)
        try:
            query = parse(request.query.items())
        except QueryError as exc:
            return self._reply(400, fmt, str(exc))
        if self.config.unknown_ids == "400":
            message = unknown(query)
            if message is not None:
                self.stats.faults["unknown_ids"] += 1
                return self._reply(400, fmt, message)
        return await self._send(request, plan, _JSON if fmt == "json" else _XML, page(fmt, query), fmt)

    def _next_token(self, more: bool, token: Callable[[], str]) -> str | None:
        """The page's ``nextPageToken``: ``token()`` when more rows follow, else none (or ``""``)."""
        if more:
            return token()
        return "" if self.config.empty_last_token else None

    async def _results(self, request: web.Request) -> web.StreamResponse:
        ds, subtree = self.dataset, self.config.subdepartment_matching

        def page(fmt: Format, query: ResultsFilter) -> Iterable[bytes]:
            positions, more = select_page(ds, query, subtree=subtree)
            token = self._next_token(more, lambda: encode_page_token(ds.key(positions[-1])))
            return self._renderer.results(fmt, positions, token)

        return await self._serve_page(
            request, "results", self._parse_results, self._unknown_results, page, mutate=True
        )

    async def _module_results(self, request: web.Request) -> web.StreamResponse:
        ds, catalog, subtree = self.dataset, self.modules, self.config.subdepartment_matching

        def page(fmt: Format, query: ModuleResultsFilter) -> Iterable[bytes]:
            items, more = select_module_page(ds, catalog, query, subtree=subtree)
            token = self._next_token(
                more, lambda: encode_module_page_token(ds.key(items[-1][0]), items[-1][1])
            )
            return self._renderer.module_results(fmt, catalog, items, token)

        return await self._serve_page(
            request, "module_results", self._parse_module_results, self._unknown_module_results, page
        )

    async def _users(self, request: web.Request) -> web.StreamResponse:
        ds, directory, subtree = self.dataset, self.directory, self.config.subdepartment_matching

        def page(fmt: Format, query: UsersFilter) -> Iterable[bytes]:
            users, more = select_users_page(ds, directory, query, subtree=subtree)
            token = self._next_token(
                more, lambda: encode_page_token(int(ds.user_ids[users[-1]].replace("-", ""), 16))
            )
            return self._renderer.users(fmt, directory, users, token)

        return await self._serve_page(request, "users", self._parse_users, self._unknown_users, page)

    # The query parsers and unknown-id checks of the three filtered endpoints, with this config's
    # switches: the handlers and the ground truth (``_select_all*``) use the same ones.

    def _parse_results(self, params: Iterable[tuple[str, str]]) -> ResultsFilter:
        return parse_results(params, **self._date_filter_switches())

    def _parse_module_results(self, params: Iterable[tuple[str, str]]) -> ModuleResultsFilter:
        return parse_module_results(params, **self._date_filter_switches())

    def _date_filter_switches(self) -> _DateFilterSwitches:
        """The switches of the two endpoints with date filters (results and module results)."""
        config = self.config
        return {
            "lenient": config.lenient_lists,
            "max_page_size": config.max_page_size,
            "one_sided_ranges": config.one_sided_ranges,
            "exclusive_end": config.exclusive_end,
        }

    def _parse_users(self, params: Iterable[tuple[str, str]]) -> UsersFilter:
        return parse_users(params, lenient=self.config.lenient_lists, max_page_size=self.config.max_page_size)

    def _unknown_results(self, query: ResultsFilter) -> str | None:
        return unknown_ids_message(self.dataset, query)

    def _unknown_module_results(self, query: ModuleResultsFilter) -> str | None:
        return module_unknown_ids_message(self.dataset, self.modules, query)

    def _unknown_users(self, query: UsersFilter) -> str | None:
        return users_unknown_ids_message(self.dataset, self.directory, query)

    async def _departments(self, request: web.Request) -> web.StreamResponse:
        fmt, _, plan, early = await self._admit(request, "departments")
        if early is not None:
            return early
        try:
            size, after = parse_page(
                page_params(request.query.items()), max_page_size=self.config.max_page_size
            )
        except QueryError as exc:
            return self._reply(400, fmt, str(exc))
        keys = self._department_keys
        start = 0 if after is None else bisect.bisect_right(keys, after)
        order = self.dataset.departments_in_order
        chosen = order[start : start + size]
        more = start + size < len(order)
        next_token = encode_page_token(keys[start + size - 1]) if more else None
        if next_token is None and self.config.empty_last_token:
            next_token = ""
        content_type = _JSON if fmt == "json" else _XML
        return await self._send(
            request, plan, content_type, [self._renderer.departments(fmt, chosen, next_token)], fmt
        )


def _without_page(params: Params) -> list[tuple[str, str]]:
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return [(k, v) for k, v in pairs if k not in ("pageSize", "pageToken")]


def _write_jsonl(path: str | Path, records: Iterable[msgspec.Struct]) -> int:
    """Write records as JSONL (API field names, as the structs encode them); returns the count."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    count = 0
    with Path(path).open("wb") as out:
        for record in records:
            encoder.encode_into(record, buffer, -1)
            buffer.extend(b"\n")
            count += 1
            if len(buffer) > 1 << 20:
                out.write(buffer)
                buffer.clear()
        out.write(buffer)
    return count


@contextlib.contextmanager
def _client_gone(request: web.Request) -> Iterator[None]:
    """Stop writing quietly when the client has gone away: a cancelled request is no server error.

    aiohttp raises ``ClientConnectionResetError`` ("Cannot write to closing transport", a
    ``ConnectionResetError``) from ``prepare`` or ``write`` once the client closed the socket, e.g.
    during a planned latency, and logs it at ERROR if the handler lets it escape. A cancellation
    (aiohttp's ``handler_cancellation``) propagates, as cancellations must; aiohttp logs it at DEBUG.
    """
    try:
        yield
    except ConnectionError as exc:
        logger.debug("client went away from %s %s: %s", request.method, request.path, exc)
    except asyncio.CancelledError:
        logger.debug("request %s %s cancelled while writing", request.method, request.path)
        raise


# The standard normal's 99th percentile: a lognormal with median m and 99th percentile p has
# sigma = ln(p / m) / Z99.
_Z99 = 2.3263478740408408


def _lognormal(rng: random.Random, median: float, p99: float | None) -> float:
    """A wait from the lognormal distribution with this median and 99th percentile (default 4x)."""
    p99 = 4 * median if p99 is None else p99
    sigma = math.log(p99 / median) / _Z99 if p99 > median else 0.0
    return median * math.exp(sigma * rng.gauss(0.0, 1.0))


def _negotiate(request: web.Request) -> Format:
    """XML is the API's default; ``Accept: application/json`` selects JSON."""
    return "json" if "application/json" in request.headers.get("Accept", "") else "xml"


def _wrong_path_page() -> bytes:
    return (
        b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>iSpring Learn</title></head>'
        b'<body><div id="app">Loading iSpring Learn&hellip;</div></body></html>\n'
    )


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def _corrupt(body: bytes, fmt: Format) -> bytes:
    """The body with one closing tag (or brace) dropped near its middle: complete, but not well-formed."""
    middle = len(body) // 2
    needle = b"}" if fmt == "json" else b"</result>"
    at = body.find(needle, middle)
    if at < 0:
        at = body.rfind(needle)
    if at < 0:
        needle = b"</response>" if fmt == "xml" else b"]"
        at = body.rfind(needle)
    if at < 0:
        return body[: len(body) // 2]
    return body[:at] + body[at + len(needle) :]


async def _break_connection(request: web.Request, *, reset: bool) -> None:
    """Close the connection after what was written reached the socket: RST when ``reset``, else FIN."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(1000):
        if not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.001)
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 makes close() send RST instead of FIN: the client sees a connection reset.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


@contextlib.asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    dataset: Dataset | None = None,
) -> AsyncIterator[Emulator]:
    """Serve an emulator for the duration of an ``async with`` block (port ``0``: a free port).

    >>> async with running_emulator(EmulatorConfig(results=1000, seed=3)) as emu:
    ...     emu.base_url, emu.client_id, emu.expected_results([("userStatuses[]", "1")])
    """
    emulator = Emulator(config, dataset=dataset)
    await emulator.start(host=host, port=port)
    try:
        yield emulator
    finally:
        await emulator.close()


@contextlib.contextmanager
def serve_in_thread(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    dataset: Dataset | None = None,
) -> Iterator[Emulator]:
    """Serve an emulator from a background thread with its own event loop (for sync code).

    The dataset is built in the calling thread before the server starts. For benchmarks that must
    not share the GIL with the client, run ``python -m ispring_async.emulator`` in another process.

    >>> with serve_in_thread(EmulatorConfig(results=1000)) as emu:
    ...     requests.get(emu.base_url + "/departments", headers={"Authorization": emu.issue_token()})
    """
    emulator = Emulator(config, dataset=dataset)
    started = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            await emulator.start(host=host, port=port)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await emulator.close()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="ispring-emulator", daemon=True
    )
    thread.start()
    started.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield emulator
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()

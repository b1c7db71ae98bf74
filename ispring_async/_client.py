"""``Client``: the one object a caller holds. It owns the session, the credentials and the defaults."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Self, TypeVar, cast

import aiohttp
import msgspec

from ispring_async._auth import ClientCredentialsAuth, StaticTokenAuth, resolve_token_url
from ispring_async._batching import BatchToken, batching_key, id_batches
from ispring_async._config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECTION_LIMITS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    MAX_PAGE_SIZE,
    Limits,
    ResponseFormat,
    RetryPolicy,
    Timeouts,
)
from ispring_async._exceptions import ConfigurationError
from ispring_async._fanout import ChainPages, FanOutOptions, Split, fan_out_batches
from ispring_async._models import (
    Department,
    DepartmentsPage,
    LearnerModuleResult,
    LearnerResult,
    ModuleResultsPage,
    ResultsPage,
    User,
    UsersPage,
    UserStatus,
)
from ispring_async._paginate import DEFAULT_MAX_PAGES, follow_pages
from ispring_async._parse import DEFAULT_LIMITS as DEFAULT_PARSE_LIMITS
from ispring_async._parse import (
    PageParser,
    ParseLimits,
    departments_parser,
    module_results_parser,
    results_parser,
    users_parser,
)
from ispring_async._parse_pool import MAX_PARSE_WORKERS, ParsePool
from ispring_async._query import ModuleResultsQuery, ResultsQuery, UsersQuery
from ispring_async._stream import Batches, Stream, pages_as_batches
from ispring_async._transport import OnRetry, Transport
from ispring_async._unknown_ids import UnknownIds, id_lists
from ispring_async._version import VERSION

__all__ = ["DEFAULT_USER_AGENT", "Client", "ResultStream"]

RESULTS_PATH = "/learners/results"
MODULE_RESULTS_PATH = "/learners/modules/results"
USERS_PATH = "/users/v2"
DEPARTMENTS_PATH = "/departments"
USERS_SPLIT_AFTER = 1
"""Pages ``users(split="adaptive")`` reads in one chain before it splits by department: an account
whose users fit in one page never splits. A department split refetches every user (the pages read
first only help to drop duplicates), so reading more pages first only delays it; measured with
``python -m benchmarks.datasets --datasets users`` (10k users, 200 ms a request, C=8, load ~5 on 2
cores): one page first 1.19x one chain, four pages first 0.84x, a department split from the start
1.43x. It does not pay where the CPU is the limit, not the round trip."""

Paged = TypeVar("Paged", ResultsPage, ModuleResultsPage, UsersPage, DepartmentsPage)
T = TypeVar("T")
Page = TypeVar("Page")

DEFAULT_USER_AGENT = f"ispring-async/{VERSION} aiohttp/{aiohttp.__version__}"

# XML is the API's default, so for XML the client sends aiohttp's ``Accept: */*`` as every working
# integration does; JSON must be asked for.
_ACCEPT = {ResponseFormat.XML: {}, ResponseFormat.JSON: {"Accept": "application/json"}}


class Client:
    """An iSpring Learn API client: one aiohttp session, authenticated, with retries.

    Give the base URL and either ``client_id`` + ``client_secret`` (tokens are obtained and refreshed
    as needed) or a ready ``token``. Use it as an async context manager::

        async with Client("https://api-learn.ispringlearn.com", client_id=..., client_secret=...) as client:
            query = ResultsQuery()  # active and blocked users
            async with client.learner_results(query) as results:
                async for result in results:
                    ...

    ``page_size`` is the default for queries that set none. ``parse_limits`` bounds each body (bytes,
    records, markup; see ``ParseLimits``: by default derived from the page size).
    ``allow_insecure_http`` permits ``http://`` to a non-loopback host (tokens would travel in clear
    text). TLS certificates are always verified. ``max_pages_per_chain`` bounds one page chain
    (``PaginationError`` beyond it), as do empty or repeated pages that keep coming with new tokens
    (see ``ispring_async._paginate``).

    The base URL may carry a path (``https://acme.ispringlearn.com/api/v2``): the data endpoints are
    under it, while tokens come from ``token_url``, by default ``/api/v3/token`` at the base URL's
    host root; give a path there (``"/oauth2/token"``) or an absolute URL for another one.

    The API refuses a whole request when one id in ``user_ids`` (``course_ids``, ``department_ids``,
    ``enrollment_ids``) is unknown. By default that ``BadRequestError`` is raised, naming the lists;
    ``skip_unknown_ids=True`` finds the unknown ids (a few one-record requests, bisecting the list),
    leaves them out, exports every row of the others and reports them in ``skipped_ids``.

    ``parse_workers=N`` parses XML pages in N worker processes (started at ``async with``, stopped at
    its exit) instead of on the event loop: a 1000-result page costs ~16 ms of CPU to parse, which
    then runs on another core and no longer blocks the loop. It pays when the client is bound by its
    own CPU (a fast API, many chains) and a core is free; 0 (the default) parses in this process.
    The byte cap, every error and its retry are the same either way (see ``ispring_async._parse_pool``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        token: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        limits: Limits = DEFAULT_CONNECTION_LIMITS,
        retry: RetryPolicy = DEFAULT_RETRY,
        page_size: int = DEFAULT_PAGE_SIZE,
        response_format: ResponseFormat | str = ResponseFormat.XML,
        allow_insecure_http: bool = False,
        user_agent: str = DEFAULT_USER_AGENT,
        token_url: str | None = None,
        skip_unknown_ids: bool = False,
        max_pages_per_chain: int = DEFAULT_MAX_PAGES,
        parse_limits: ParseLimits = DEFAULT_PARSE_LIMITS,
        parse_workers: int = 0,
    ) -> None:
        self._transport = Transport(
            base_url,
            timeouts=timeouts,
            limits=limits,
            retry=retry,
            user_agent=user_agent,
            allow_insecure_http=allow_insecure_http,
        )
        has_credentials = client_id is not None or client_secret is not None
        if has_credentials == (token is not None):
            raise ConfigurationError(
                "give either client_id and client_secret, or token (exactly one of them)"
            )
        self._auth: ClientCredentialsAuth | StaticTokenAuth
        if token is not None:
            if not token:
                raise ConfigurationError("token is empty")
            self._auth = StaticTokenAuth(token)
        else:
            if not client_id or not client_secret:
                raise ConfigurationError("client_id and client_secret must both be given and non-empty")
            self._auth = ClientCredentialsAuth(
                self._transport,
                client_id=client_id,
                client_secret=client_secret,
                token_url=resolve_token_url(
                    self._transport.base_url, token_url, allow_insecure_http=allow_insecure_http
                ),
            )
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= MAX_PAGE_SIZE
        ):
            raise ConfigurationError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        try:
            self.response_format = ResponseFormat(response_format)
        except ValueError:
            raise ConfigurationError(
                f"response_format must be 'xml' or 'json', got {response_format!r}"
            ) from None
        if token is not None and token_url is not None:
            raise ConfigurationError("token_url is for client credentials; a ready token needs none")
        if not isinstance(skip_unknown_ids, bool):
            raise ConfigurationError(f"skip_unknown_ids must be True or False, got {skip_unknown_ids!r}")
        self._unknown_ids = UnknownIds(skip=skip_unknown_ids)
        if (
            isinstance(max_pages_per_chain, bool)
            or not isinstance(max_pages_per_chain, int)
            or max_pages_per_chain < 1
        ):
            raise ConfigurationError(f"max_pages_per_chain must be >= 1, got {max_pages_per_chain!r}")
        self.page_size = page_size
        self.max_pages_per_chain = max_pages_per_chain
        if not isinstance(parse_limits, ParseLimits):
            raise ConfigurationError(f"parse_limits must be a ParseLimits, got {parse_limits!r}")
        self.parse_limits = parse_limits
        if (
            isinstance(parse_workers, bool)
            or not isinstance(parse_workers, int)
            or not 0 <= parse_workers <= MAX_PARSE_WORKERS
        ):
            raise ConfigurationError(f"parse_workers must be 0..{MAX_PARSE_WORKERS}, got {parse_workers!r}")
        self.parse_workers = parse_workers
        self._parse_pool = ParsePool(parse_workers)
        self._state = "new"

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return str(self._transport.base_url)

    @property
    def skipped_ids(self) -> dict[str, tuple[str, ...]]:
        """Ids this client left out as unknown to the account (``skip_unknown_ids=True``), by
        parameter: ``{"userIds[]": ("...", ...), "departmentIds[]": (...)}``."""
        return self._unknown_ids.skipped

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, response_format={self.response_format.value!r})"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"a Client can be opened once; this one is {self._state}")
        await self._transport.open()
        # Started, not waited for: pages are parsed here until a worker is up (see ParsePool).
        self._parse_pool.open()
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session; ``async with`` does this for you."""
        self._state = "closed"
        try:
            await self._parse_pool.aclose()
        finally:
            await self._transport.aclose()

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"this Client is {self._state}: use it inside 'async with Client(...) as client:'"
            )

    def result_pages(
        self,
        query: ResultsQuery | None = None,
        page_token: str | None = None,
        *,
        on_retry: OnRetry | None = None,
    ) -> AsyncGenerator[ResultsPage, None]:
        """Every page of ``GET /learners/results`` for ``query``, starting after ``page_token`` if given.

        Each page is yielded only once it has been received and parsed whole; save its
        ``next_page_token`` after handling it to resume there later. ``on_retry`` is called with a
        ``RetryEvent`` for every retried attempt.

        Id lists longer than one request holds (``_batching``: 50 ids a list, 100 in all) are sent
        as consecutive batches, one chain each; the tokens are then batch tokens, valid only with
        the same query. Department batches may repeat rows if ``departmentIds`` matches
        sub-departments; ``learner_results`` removes those, this method does not.
        """
        self._check_open()
        query = query or ResultsQuery()
        params = query.to_params()
        if query.page_size is None:
            params.append(("pageSize", str(self.page_size)))
        empty = functools.partial(ResultsPage, records=[])
        return self._pages(RESULTS_PATH, params, results_parser, page_token, on_retry, empty=empty)

    def learner_results(
        self,
        query: ResultsQuery | None = None,
        *,
        split: Split | str = Split.ADAPTIVE,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limit: float | None = None,
    ) -> ResultStream:
        """Every record of ``query``, each exactly once, fetched by up to ``concurrency`` chains at once.

        ``split`` says how the query is cut into independent page chains (``"adaptive"``: date windows
        bisected while they are longer than a page; ``"window"``, ``"department"``, ``"combined"``;
        ``"none"``: one chain, records in the API's order). ``rate_limit`` caps requests per second
        across all chains. Records of different chains interleave; duplicates are removed by identity.

        The stream is iterated inside its ``async with`` block, as httpx's ``stream()`` is; leaving
        the block (at the end, by ``break`` or an error) cancels the requests in flight at once::

            async with client.learner_results(query) as results:
                async for result in results:
                    ...

        Iterating it outside the block raises ``RuntimeError`` before any request is sent: the chains
        run in a task group whose cancel scope must be the caller's, around the caller's code (PEP 789).
        """
        self._check_open()
        # FanOutOptions validates the values and turns a split name into a Split.
        options = FanOutOptions(split=cast(Split, split), concurrency=concurrency, rate_limit=rate_limit)
        batches = self._fanned_out(query, options, self.result_pages, _records_of)
        return ResultStream(batches, what="client.learner_results(...)", skipped=lambda: self.skipped_ids)

    def _fanned_out(
        self,
        query: ResultsQuery | None,
        options: FanOutOptions,
        chain: Callable[..., AsyncGenerator[Page, None]],
        records_of: Callable[[Page], Sequence[T]],
    ) -> Callable[[], Batches[T]]:
        """How a stream over ``chain``'s pages opens: one chain read directly, or the fan-out.

        Every record stream of the client (results, module results, users) opens through here, so
        they share the fan-out, its deduplication, its cancellation and its stream lifetime.
        """
        # One chain unless the id lists need batches: department batches may overlap (sub-department
        # matching), and the fan-out dedupes them.
        one_request = query is None or len(query.batches()) == 1
        if options.split is Split.NONE and options.rate_limit is None and one_request:

            def batches() -> Batches[T]:
                # The chain is made when the block is entered: a stream never entered holds nothing.
                return pages_as_batches(chain(query), records_of)

            return batches
        # The fan-out reads a page's records and next token, and a record's identity and accessDate:
        # module results have all four, users' pages are given the first two (see ChainPages).
        pages = None if chain == self.result_pages else cast(ChainPages, chain)

        def fanned_out() -> Batches[T]:
            # Checked here, as the one chain does: a client closed before the block is entered is the
            # caller's error, not a "partition failed" with the real cause one level down.
            self._check_open()
            return cast(Batches[T], fan_out_batches(self, query, options, pages=pages))

        return fanned_out

    def module_result_pages(
        self,
        query: ModuleResultsQuery | None = None,
        page_token: str | None = None,
        *,
        on_retry: OnRetry | None = None,
    ) -> AsyncGenerator[ModuleResultsPage, None]:
        """Every page of ``GET /learners/modules/results`` for ``query``, after ``page_token`` if given
        (as ``result_pages``: each page whole, its ``next_page_token`` a place to resume)."""
        self._check_open()
        query = query or ModuleResultsQuery()
        params = query.to_params()
        if query.page_size is None:
            params.append(("pageSize", str(self.page_size)))
        empty = functools.partial(ModuleResultsPage, records=[])
        return self._pages(
            MODULE_RESULTS_PATH, params, module_results_parser, page_token, on_retry, empty=empty
        )

    def learner_module_results(
        self,
        query: ModuleResultsQuery | None = None,
        *,
        split: Split | str = Split.ADAPTIVE,
        concurrency: int = 8,
        rate_limit: float | None = None,
    ) -> Stream[LearnerModuleResult]:
        """Every module result of ``query``, each exactly once, as ``learner_results`` fetches results.

        The same splits (module results have their own ``accessDate``, so date windows cut them as
        they cut results; ``"department"`` lists ``/departments``), concurrency, rate limit, retries,
        unknown-id handling and stream lifetime::

            async with client.learner_module_results(ModuleResultsQuery(course_ids=[...])) as modules:
                async for module in modules:
                    print(module.user_id, module.module_title, module.completion_status)

        Duplicates are removed by ``LearnerModuleResult.identity`` (enrollment and course item).
        """
        self._check_open()
        options = FanOutOptions(split=cast(Split, split), concurrency=concurrency, rate_limit=rate_limit)
        if query is not None and not isinstance(query, ModuleResultsQuery):
            raise ConfigurationError("learner_module_results takes a ModuleResultsQuery")
        batches = self._fanned_out(query, options, self.module_result_pages, _module_records_of)
        return Stream(batches, what="client.learner_module_results(...)", skipped=lambda: self.skipped_ids)

    def user_pages(
        self,
        query: UsersQuery | None = None,
        page_token: str | None = None,
        *,
        on_retry: OnRetry | None = None,
    ) -> AsyncGenerator[UsersPage, None]:
        """Every page of ``GET /users/v2`` for ``query``, after ``page_token`` if given."""
        self._check_open()
        query = query or UsersQuery()
        params = query.to_params()
        if query.page_size is None:
            params.append(("pageSize", str(self.page_size)))
        empty = functools.partial(UsersPage, users=[])
        return self._pages(USERS_PATH, params, users_parser, page_token, on_retry, empty=empty)

    def users(
        self,
        query: UsersQuery | None = None,
        *,
        split: Split | str = Split.NONE,
        concurrency: int = 8,
        rate_limit: float | None = None,
    ) -> Stream[User]:
        """Every user of ``query`` (every status: ``/users/v2`` has no status filter), each once.

        ``split``: ``"none"`` (the default: one chain, the API's order), ``"department"`` (one chain per
        department of ``/departments``, or of ``query.department_ids``), or ``"adaptive"``: up to
        ``USERS_SPLIT_AFTER`` pages in one chain, and only if more follow, the department split for
        the rest (the users already read are not delivered twice). Users have no dates, so
        ``"window"`` and ``"combined"`` are refused. The stream is iterated inside ``async with``, as
        ``learner_results``'s is::

            async with client.users() as users:
                async for user in users:
                    print(user.user_id, user.login, user.full_name, user.department_id)

        One chain is the default because it is the only split that is exact whatever ``/departments``
        says: a department split finds only users of departments ``/departments`` lists, so a user of
        a department missing there (removed or added between the calls) would be silently left out.
        A users list is per account (a page holds 1000), so the chain is short next to results; ask for
        ``"department"`` or ``"adaptive"`` on an account with many pages of users and a stable tree.
        """
        self._check_open()
        options = FanOutOptions(split=cast(Split, split), concurrency=concurrency, rate_limit=rate_limit)
        if options.split in (Split.WINDOW, Split.COMBINED):
            raise ConfigurationError(f"users have no dates to split by: split={options.split.value!r}")
        if query is not None and not isinstance(query, UsersQuery):
            raise ConfigurationError("users takes a UsersQuery")
        users_query = query or UsersQuery()
        # The fan-out plans over a ResultsQuery: this one carries only the departments to split by
        # (its statuses are never sent; they are given so no default is relied on).
        carrier = ResultsQuery(department_ids=users_query.department_ids, user_statuses=tuple(UserStatus))

        def chain(
            part: ResultsQuery | None = None,
            page_token: str | None = None,
            *,
            on_retry: OnRetry | None = None,
        ) -> AsyncGenerator[_UserRecords, None]:
            narrowed = users_query
            if part is not None and part.department_ids != users_query.department_ids:
                narrowed = dataclasses.replace(users_query, department_ids=part.department_ids)
            return _as_records(self.user_pages(narrowed, page_token, on_retry=on_retry))

        if options.split is Split.ADAPTIVE:
            departments = dataclasses.replace(options, split=Split.DEPARTMENT)
            batches: Callable[[], Batches[User]] = functools.partial(
                self._users_adaptive, users_query, carrier, departments, chain
            )
        else:
            batches = self._fanned_out(carrier, options, chain, _user_records_of)
        return Stream(batches, what="client.users(...)", skipped=lambda: self.skipped_ids)

    @contextlib.asynccontextmanager
    async def _users_adaptive(
        self,
        query: UsersQuery,
        carrier: ResultsQuery,
        options: FanOutOptions,
        chain: Callable[..., AsyncGenerator[_UserRecords, None]],
    ) -> AsyncGenerator[AsyncIterator[Sequence[User]], None]:
        """Up to ``USERS_SPLIT_AFTER`` pages in one chain; if more follow, the department split, which
        skips the users already read."""
        first: list[User] = []
        more = False
        pages = self.user_pages(query)
        async with contextlib.aclosing(pages):
            async for page in pages:
                first.extend(page.users)
                more = bool(page.next_page_token)
                if len(first) >= USERS_SPLIT_AFTER * (query.page_size or self.page_size):
                    break
        if not more:
            yield _Then(first, None)
            return
        seen = [user.identity for user in first]
        open_rest = cast(
            Callable[..., Batches[User]],
            functools.partial(
                fan_out_batches, self, carrier, options, pages=cast(ChainPages, chain), seen=seen
            ),
        )
        async with open_rest() as rest:
            yield _Then(first, rest)

    def department_pages(
        self, page_token: str | None = None, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[DepartmentsPage, None]:
        """Every page of ``GET /departments``, starting after ``page_token`` if given."""
        self._check_open()
        params = [("pageSize", str(self.page_size))]
        return self._pages(DEPARTMENTS_PATH, params, departments_parser, page_token, on_retry)

    def _pages(
        self,
        path: str,
        params: list[tuple[str, str]],
        parser: Callable[..., PageParser[Paged]],
        page_token: str | None,
        on_retry: OnRetry | None,
        *,
        empty: Callable[[], Paged] | None = None,
    ) -> AsyncGenerator[Paged, None]:
        transport, auth, fmt, pool = self._transport, self._auth, self.response_format, self._parse_pool
        headers = _ACCEPT[fmt]
        what = f"GET {path}"

        # The parser is told the page size asked for: a page holding more records is refused.
        page_size = int(dict(params).get("pageSize", self.page_size))
        limits = self.parse_limits

        async def send(params: list[tuple[str, str]], token: str | None, label: str) -> Paged:
            return await transport.request(
                "GET",
                path,
                lambda: pool.parser(parser, fmt, page=label, page_size=page_size, limits=limits),
                label=label,
                params=params if token is None else [*params, ("pageToken", token)],
                headers=headers,
                auth=auth,
                on_retry=on_retry,
            )

        def chain(params: list[tuple[str, str]], token: str | None) -> AsyncGenerator[Paged, None]:
            if empty is not None and id_lists(params):
                # Id lists: a 400 may mean one unknown id (see _unknown_ids); an emptied list ends
                # the chain.
                fetch = self._unknown_ids.guard(send, params, what=what, empty=empty)
            else:

                async def fetch(token: str | None, number: int) -> Paged:
                    return await send(params, token, f"{what} page {number}")

            return follow_pages(
                fetch,
                what=what,
                page_token=token,
                fingerprint=_fingerprint,
                max_pages=self.max_pages_per_chain,
            )

        batches = id_batches(params)
        if len(batches) == 1:
            return chain(params, page_token)
        # Validated here, not at the first page: a wrong token is the caller's error, raised at once.
        key = batching_key(batches)
        start = BatchToken.parse(page_token, len(batches), key) if page_token else None
        return _batched(chain, batches, key, start)

    def departments(self) -> Stream[Department]:
        """Every department of the account, across all pages, iterated inside ``async with`` as every
        record stream of the client is::

            async with client.departments() as departments:
                names = {d.department_id: d.name async for d in departments}
        """
        self._check_open()

        def batches() -> Batches[Department]:
            return pages_as_batches(self.department_pages(), _departments_of)

        return Stream(batches, what="client.departments()", skipped=lambda: self.skipped_ids)


class ResultStream(Stream[LearnerResult]):
    """The records of ``Client.learner_results``: an async context manager, iterated inside its block
    (see ``ispring_async._stream``); leaving the block cancels the requests in flight."""


def _records_of(page: ResultsPage) -> list[LearnerResult]:
    return page.records


def _module_records_of(page: ModuleResultsPage) -> list[LearnerModuleResult]:
    return page.records


def _user_records_of(page: _UserRecords) -> list[User]:
    return page.records


def _departments_of(page: DepartmentsPage) -> list[Department]:
    return page.departments


@dataclasses.dataclass(frozen=True)
class _UserRecords:
    """A users page as the fan-out reads pages: ``records`` and ``next_page_token``."""

    records: list[User]
    next_page_token: str | None


async def _as_records(pages: AsyncGenerator[UsersPage, None]) -> AsyncGenerator[_UserRecords, None]:
    # aclosing: the fan-out closes this generator, which must close the page chain at once.
    async with contextlib.aclosing(pages):
        async for page in pages:
            yield _UserRecords(page.users, page.next_page_token)


class _Then(AsyncIterator[Sequence[T]]):
    """One batch, then the batches of ``rest`` (if any)."""

    def __init__(self, first: Sequence[T], rest: AsyncIterator[Sequence[T]] | None) -> None:
        self._first: Sequence[T] | None = first
        self._rest = rest

    def __aiter__(self) -> _Then[T]:
        return self

    async def __anext__(self) -> Sequence[T]:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._rest is None:
            raise StopAsyncIteration
        return await self._rest.__anext__()


async def _batched(
    chain: Callable[[list[tuple[str, str]], str | None], AsyncGenerator[Paged, None]],
    batches: list[list[tuple[str, str]]],
    key: str,
    start: BatchToken | None,
) -> AsyncGenerator[Paged, None]:
    """The chains of ``batches`` one after another, as one chain whose tokens are ``BatchToken``s."""
    count = len(batches)
    first = start.index if start is not None else 0
    for index in range(first, count):
        pages = chain(batches[index], start.inner if start is not None and index == first else None)
        async with contextlib.aclosing(pages):
            async for page in pages:
                inner = page.next_page_token
                if inner:
                    token: str | None = str(BatchToken(index, count, key, inner))
                elif index + 1 < count:
                    # The batch is done: the next position is the start of the next batch.
                    token = str(BatchToken(index + 1, count, key, None))
                else:
                    token = None
                yield msgspec.structs.replace(page, next_page_token=token)


def _fingerprint(
    page: ResultsPage | ModuleResultsPage | UsersPage | DepartmentsPage,
) -> tuple[int, str, str] | None:
    """Length and first and last identities: equal only for a page that repeats an earlier one."""
    if isinstance(page, ResultsPage | ModuleResultsPage):
        if not page.records:
            return None
        return len(page.records), page.records[0].identity, page.records[-1].identity
    if isinstance(page, UsersPage):
        if not page.users:
            return None
        return len(page.users), page.users[0].identity, page.users[-1].identity
    if not page.departments:
        return None
    return len(page.departments), page.departments[0].department_id, page.departments[-1].department_id

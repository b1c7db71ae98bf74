"""``Client``: the one object a caller holds. It owns the session, the credentials and the defaults."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Self, TypeVar, cast

import aiohttp
import msgspec

from ispring_async._auth import ClientCredentialsAuth, StaticTokenAuth, resolve_token_url
from ispring_async._batching import BatchToken, batching_key, id_batches
from ispring_async._config import (
    DEFAULT_LIMITS,
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
from ispring_async._fanout import FanOutOptions, Split, fan_out_batches
from ispring_async._models import Department, DepartmentsPage, LearnerResult, ResultsPage
from ispring_async._paginate import DEFAULT_MAX_PAGES, follow_pages
from ispring_async._parse import DEFAULT_LIMITS as DEFAULT_PARSE_LIMITS
from ispring_async._parse import PageParser, ParseLimits, departments_parser, results_parser
from ispring_async._query import ResultsQuery
from ispring_async._transport import OnRetry, Transport
from ispring_async._unknown_ids import UnknownIds, id_lists
from ispring_async._version import VERSION

__all__ = ["DEFAULT_USER_AGENT", "Client", "ResultStream"]

RESULTS_PATH = "/learners/results"
DEPARTMENTS_PATH = "/departments"

P = TypeVar("P")
R = TypeVar("R")
Paged = TypeVar("Paged", ResultsPage, DepartmentsPage)

DEFAULT_USER_AGENT = f"ispring-async/{VERSION} aiohttp/{aiohttp.__version__}"

# XML is the API's default, so for XML the client sends aiohttp's ``Accept: */*`` as every working
# integration does; JSON must be asked for.
_ACCEPT = {ResponseFormat.XML: {}, ResponseFormat.JSON: {"Accept": "application/json"}}


class Client:
    """An iSpring Learn API client: one aiohttp session, authenticated, with retries.

    Give the base URL and either ``client_id`` + ``client_secret`` (tokens are obtained and refreshed
    as needed) or a ready ``token``. Use it as an async context manager::

        async with Client("https://api-learn.ispringlearn.com", client_id=..., client_secret=...) as client:
            query = ResultsQuery(user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED])
            async for result in client.learner_results(query):
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
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        token: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        limits: Limits = DEFAULT_LIMITS,
        retry: RetryPolicy = DEFAULT_RETRY,
        page_size: int = DEFAULT_PAGE_SIZE,
        response_format: ResponseFormat | str = ResponseFormat.XML,
        allow_insecure_http: bool = False,
        user_agent: str = DEFAULT_USER_AGENT,
        token_url: str | None = None,
        skip_unknown_ids: bool = False,
        max_pages_per_chain: int = DEFAULT_MAX_PAGES,
        parse_limits: ParseLimits = DEFAULT_PARSE_LIMITS,
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
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session; ``async with`` does this for you."""
        self._state = "closed"
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
        concurrency: int = 8,
        rate_limit: float | None = None,
    ) -> ResultStream:
        """Every record of ``query``, each exactly once, fetched by up to ``concurrency`` chains at once.

        ``split`` says how the query is cut into independent page chains (``"adaptive"``: date windows
        bisected while they are longer than a page; ``"window"``, ``"department"``, ``"combined"``;
        ``"none"``: one chain, records in the API's order). ``rate_limit`` caps requests per second
        across all chains. Records of different chains interleave; duplicates are removed by identity.

        Iterate it directly, or, if you may stop early, inside ``async with`` so the requests still in
        flight are cancelled at once rather than when the iterator is garbage-collected::

            async with client.learner_results(query) as results:
                async for result in results:
                    ...
        """
        self._check_open()
        # FanOutOptions validates the values and turns a split name into a Split.
        options = FanOutOptions(split=cast(Split, split), concurrency=concurrency, rate_limit=rate_limit)
        # One chain unless the id lists need batches: department batches may overlap, and the fan-out
        # dedupes them.
        one_request = len((query or ResultsQuery()).batches()) == 1
        if options.split is Split.NONE and rate_limit is None and one_request:
            batches = _batches(self.result_pages(query), lambda page: page.records)
        else:
            batches = fan_out_batches(self, query, options)
        return ResultStream(batches, skipped=lambda: self.skipped_ids)

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
        transport, auth, fmt = self._transport, self._auth, self.response_format
        headers = _ACCEPT[fmt]
        what = f"GET {path}"

        # The parser is told the page size asked for: a page holding more records is refused.
        page_size = int(dict(params).get("pageSize", self.page_size))
        limits = self.parse_limits

        async def send(params: list[tuple[str, str]], token: str | None, label: str) -> Paged:
            return await transport.request(
                "GET",
                path,
                lambda: parser(fmt, page=label, page_size=page_size, limits=limits),
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

    def departments(self) -> AsyncGenerator[Department, None]:
        """Every department of the account, across all pages."""
        return _records(self.department_pages(), lambda page: page.departments)


class ResultStream(AsyncIterator[LearnerResult]):
    """The records of ``Client.learner_results``: an async iterator, and an async context manager that
    closes it (cancelling requests in flight) when the block is left."""

    def __init__(
        self,
        batches: AsyncGenerator[list[LearnerResult], None],
        *,
        skipped: Callable[[], dict[str, tuple[str, ...]]] = dict,
    ) -> None:
        # Records are served from the current batch without another async generator in between:
        # one hop per record instead of two halves the iteration's cost (about 0.2 µs per record).
        self._batches = batches
        self._current: Iterator[LearnerResult] = iter(())
        self._skipped = skipped

    @property
    def skipped_ids(self) -> dict[str, tuple[str, ...]]:
        """Ids left out as unknown to the account so far (``Client(skip_unknown_ids=True)``), by
        parameter; the client's, so they include those of its other streams."""
        return self._skipped()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LearnerResult:
        for record in self._current:
            return record
        while True:
            self._current = iter(await self._batches.__anext__())
            for record in self._current:
                return record

    async def aclose(self) -> None:
        """Stop early: cancel whatever is in flight and release its connections."""
        self._current = iter(())
        await self._batches.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _batches(
    pages: AsyncGenerator[P, None], items: Callable[[P], list[R]]
) -> AsyncGenerator[list[R], None]:
    # aclosing: a caller that stops early closes the page chain at once, not at garbage collection.
    async with contextlib.aclosing(pages):
        async for page in pages:
            yield items(page)


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


def _fingerprint(page: ResultsPage | DepartmentsPage) -> tuple[int, str, str] | None:
    """Length and first and last identities: equal only for a page that repeats an earlier one."""
    if isinstance(page, ResultsPage):
        if not page.records:
            return None
        return len(page.records), page.records[0].identity, page.records[-1].identity
    if not page.departments:
        return None
    return len(page.departments), page.departments[0].department_id, page.departments[-1].department_id


async def _records(pages: AsyncGenerator[P, None], items: Callable[[P], list[R]]) -> AsyncGenerator[R, None]:
    # aclosing: a caller that stops early closes the page chain at once, not at garbage collection.
    async with contextlib.aclosing(pages):
        async for page in pages:
            for item in items(page):
                yield item

"""ispring_async: a high-throughput asyncio export client for iSpring Learn learner results.

>>> async with Client(base_url, client_id=..., client_secret=...) as client:
...     query = ResultsQuery(user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED])
...     async with client.learner_results(query, concurrency=8) as results:
...         async for result in results:
...             ...
"""

from ispring_async._client import Client, ResultStream
from ispring_async._config import Limits, ResponseFormat, RetryPolicy, Timeouts
from ispring_async._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ISpringError,
    NotFoundError,
    PaginationError,
    ParseError,
    PartitionError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    ResponseError,
    ServerError,
    TransportError,
    UnexpectedContentError,
    UnsafeXMLError,
)
from ispring_async._fanout import Batch, FanOut, FanOutOptions, FanOutStats, PartitionProgress, Split
from ispring_async._models import (
    CompletionStatus,
    Department,
    DepartmentsPage,
    LearnerModuleResult,
    LearnerResult,
    ModuleResultsPage,
    ResultsPage,
    User,
    UserField,
    UserRole,
    UsersPage,
    UserStatus,
    UserSubordination,
    WorkLeaveStatus,
)
from ispring_async._parse import ParseLimits
from ispring_async._query import DateRange, ModuleResultsQuery, ResultsQuery, UsersQuery
from ispring_async._stream import Stream
from ispring_async._transport import RetryEvent

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "Client",
    "CompletionStatus",
    "ConfigurationError",
    "DateRange",
    "Department",
    "DepartmentsPage",
    "FanOut",
    "FanOutOptions",
    "FanOutStats",
    "ISpringError",
    "LearnerModuleResult",
    "LearnerResult",
    "Limits",
    "ModuleResultsPage",
    "ModuleResultsQuery",
    "NotFoundError",
    "PaginationError",
    "ParseError",
    "ParseLimits",
    "PartitionError",
    "PartitionProgress",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "ResponseError",
    "ResponseFormat",
    "ResultStream",
    "ResultsPage",
    "ResultsQuery",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "Split",
    "Stream",
    "Timeouts",
    "TransportError",
    "UnexpectedContentError",
    "UnsafeXMLError",
    "User",
    "UserField",
    "UserRole",
    "UserStatus",
    "UserSubordination",
    "UsersPage",
    "UsersQuery",
    "WorkLeaveStatus",
]

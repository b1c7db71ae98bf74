"""ispring_async: a high-throughput asyncio export client for iSpring Learn learner results.

>>> async with Client(base_url, client_id=..., client_secret=...) as client:
...     async for result in client.learner_results(ResultsQuery(page_size=1000)):
...         ...
"""

from ispring_async._client import Client
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
from ispring_async._models import (
    CompletionStatus,
    Department,
    DepartmentsPage,
    LearnerResult,
    ResultsPage,
    UserStatus,
)
from ispring_async._query import DateRange, ResultsQuery
from ispring_async._transport import RetryEvent

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "CompletionStatus",
    "ConfigurationError",
    "DateRange",
    "Department",
    "DepartmentsPage",
    "ISpringError",
    "LearnerResult",
    "Limits",
    "NotFoundError",
    "PaginationError",
    "ParseError",
    "PartitionError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "ResponseError",
    "ResponseFormat",
    "ResultsPage",
    "ResultsQuery",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "Timeouts",
    "TransportError",
    "UnexpectedContentError",
    "UnsafeXMLError",
    "UserStatus",
]

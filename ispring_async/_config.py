"""Options as small frozen value objects with production defaults. Durations are seconds (floats)."""

from __future__ import annotations

import dataclasses
import enum

from ispring_async._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECTION_LIMITS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "MAX_PAGE_SIZE",
    "Limits",
    "ResponseFormat",
    "RetryPolicy",
    "Timeouts",
]

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
#: Requests in flight of a fan-out unless told otherwise (about 8 hide 50 ms of latency).
DEFAULT_CONCURRENCY = 8


def _number(owner: str, name: str, value: object) -> float:
    """``value`` as a float, or ConfigurationError naming the field (a bool or a string is no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN != NaN
        raise ConfigurationError(f"{owner}.{name} must be a number, got {value!r}")
    return float(value)


def _whole(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{owner}.{name} must be a whole number, got {value!r}")
    return value


class ResponseFormat(enum.StrEnum):
    """The body format asked of the API. XML is the API's default; JSON is cheaper to parse."""

    XML = "xml"
    JSON = "json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeouts:
    """How long each stage of one request may take.

    ``read`` bounds the silence between two chunks of a body, so a server that stalls mid-body fails
    the attempt (and it is retried) instead of hanging the export.
    """

    connect: float = 10.0
    read: float = 60.0
    request: float = 300.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if _number("Timeouts", field.name, getattr(self, field.name)) <= 0:
                raise ConfigurationError(f"Timeouts.{field.name} must be > 0 seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Connection pool limits of the client's one aiohttp session."""

    max_connections: int = 32
    keepalive_expiry: float = 30.0

    def __post_init__(self) -> None:
        if _whole("Limits", "max_connections", self.max_connections) < 1:
            raise ConfigurationError("Limits.max_connections must be >= 1")
        if _number("Limits", "keepalive_expiry", self.keepalive_expiry) < 0:
            raise ConfigurationError("Limits.keepalive_expiry must be >= 0 seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter for retryable failures.

    Retried: 429 (honouring ``Retry-After``), 500/502/503/504, connection errors, read timeouts and
    bodies that break part-way. Never retried: 400, 403, 404. ``attempts`` counts the first try;
    ``total`` bounds the time from the first attempt of one request to the start of its last retry.
    ``RetryPolicy(wait_scale=0)`` keeps the retry logic but never sleeps (for tests).

    A ``Retry-After`` is honoured up to ``max_retry_after``; one below ``min_retry_after`` (``0``, a
    negative number, a date already past) is raised to it, so a server that asks for an immediate
    retry still gets a pause between attempts.
    """

    attempts: int = 8
    initial: float = 0.5
    maximum: float = 30.0
    total: float = 300.0
    max_retry_after: float = 120.0
    min_retry_after: float = 1.0
    wait_scale: float = 1.0

    def __post_init__(self) -> None:
        if _whole("RetryPolicy", "attempts", self.attempts) < 1:
            raise ConfigurationError("RetryPolicy.attempts must be >= 1")
        for name in ("initial", "maximum", "total", "max_retry_after", "min_retry_after", "wait_scale"):
            if _number("RetryPolicy", name, getattr(self, name)) < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be >= 0")

    def backoff(self, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``jitter`` is uniform in [0, 1)."""
        return float(min(self.maximum, self.initial * 2.0 ** (retry - 1)) * jitter * self.wait_scale)


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_CONNECTION_LIMITS = Limits()
DEFAULT_RETRY = RetryPolicy()

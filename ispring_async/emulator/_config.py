"""What an emulator run serves (``EmulatorConfig``) and how it misbehaves (``Faults``)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Literal

__all__ = ["ENDPOINTS", "XML_LAYOUTS", "EmulatorConfig", "Fault", "Faults", "XmlLayout"]

ENDPOINTS = ("token", "results", "module_results", "users", "departments")
"""Endpoint names used by ``Faults.script``, ``Faults.on_token`` and ``Emulator.stats``."""


class Fault(enum.StrEnum):
    """A fault that can be scripted on the Nth request of an endpoint (see ``Faults.script``).

    The value is also the key under which ``Emulator.stats.faults`` counts it.
    """

    RATE_LIMITED = "429"
    """``429 Too Many Requests`` with ``Retry-After`` (``Faults.retry_after`` / ``retry_after_style``)."""
    SERVER_ERROR = "500"
    """``500`` with the API's error body in the requested format."""
    BAD_GATEWAY = "502"
    """``502`` with a proxy's HTML page (as a load balancer in front of the API would send)."""
    UNAVAILABLE = "503"
    """``503`` with a proxy's HTML page and ``Retry-After: 1``-style header from ``Faults.retry_after``."""
    RESET = "reset"
    """The connection is reset (TCP RST) part-way through a ``200`` body (at ``Faults.cut_at``)."""
    TRUNCATE = "truncate"
    """A ``200`` body ends early: the socket closes cleanly after ``Faults.cut_at`` of the body, short of
    the announced ``Content-Length`` (or without the final chunk, per ``Faults.truncate_style``)."""
    MALFORMED = "malformed"
    """A complete ``200`` body that is not well-formed (a ``</result>`` or ``}`` dropped mid-body)."""
    HTML = "html"
    """``200`` with ``Content-Type: text/html`` and an HTML page, as a wrong base path answers."""
    EXPIRE_TOKEN = "expire_token"  # noqa: S105 - a fault name, not a secret
    """The presented access token is revoked before the request is checked, so it gets ``401``
    (on the token endpoint: every issued token is revoked, and the request succeeds)."""
    TRICKLE = "trickle"
    """The body is sent in ``Faults.trickle_chunk``-byte pieces ``Faults.trickle_delay`` seconds apart."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Faults:
    """Every way an emulator run can misbehave, reproducible from ``seed``.

    Probabilities are per request, drawn from a generator seeded with ``(seed, endpoint, request
    number)``, so the Nth request of an endpoint meets the same fault in every run whatever the
    concurrency. At most one of the status/body faults hits a request; they are tried in the order
    ``rate_limited, server_error, bad_gateway, unavailable, reset, truncate, malformed, html``.
    Latency, trickle, the rate limit and mutations combine with them.

    Random faults hit ``/learners/results`` and ``/departments`` only, never the token endpoint
    unless ``on_token=True``. ``script`` injects an exact fault on the Nth request (1-based) of any
    endpoint, token included, for deterministic tests::

        Faults(script={("results", 2): Fault.RESET, ("results", 3): Fault.RATE_LIMITED})

    The default ``Faults()`` injects nothing.
    """

    seed: int = 0
    """Seed of the per-request fault draws."""
    on_token: bool = False
    """Also inject random faults (and latency) into ``POST /api/v3/token``."""
    script: Mapping[tuple[str, int], Fault] = dataclasses.field(default_factory=dict)
    """``{(endpoint, n): fault}``: the nth request (1-based) of ``endpoint`` gets ``fault``.
    Endpoints: ``"token"``, ``"results"``, ``"module_results"``, ``"users"``, ``"departments"``."""

    latency: float = 0.0
    """Seconds every request waits before it is answered."""
    latency_jitter: float = 0.0
    """Extra wait drawn uniformly from ``[0, latency_jitter]`` per request."""
    latency_median: float = 0.0
    """Median of an extra wait with a long tail, drawn per request from a lognormal distribution
    (seeded like the faults) whose median is this and whose 99th percentile is ``latency_p99``.
    Real API calls are slow and uneven (integrations set 120-300 s timeouts); ``0``: none."""
    latency_p99: float | None = None
    """99th percentile of the lognormal wait (``None``: ``4 * latency_median``); at least the median."""

    trickle: float = 0.0
    """Probability that a ``200`` body is trickled (see ``Fault.TRICKLE``)."""
    trickle_chunk: int = 64
    """Bytes per write of a trickled body."""
    trickle_delay: float = 0.01
    """Seconds between the writes of a trickled body."""

    rate_limited: float = 0.0
    """Probability of ``429`` with ``Retry-After``."""
    retry_after: float = 1.0
    """The delay ``429`` and ``503`` announce, in seconds (rounded up to whole seconds on the wire)."""
    retry_after_style: Literal["seconds", "http-date"] = "seconds"
    """``Retry-After`` as delta-seconds (``"2"``) or as an HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``)."""
    server_error: float = 0.0
    """Probability of ``500`` (the API's error body)."""
    bad_gateway: float = 0.0
    """Probability of ``502`` (a proxy's HTML page)."""
    unavailable: float = 0.0
    """Probability of ``503`` (a proxy's HTML page and ``Retry-After``)."""

    reset: float = 0.0
    """Probability of a connection reset part-way through a ``200`` body."""
    truncate: float = 0.0
    """Probability of a ``200`` body cut short with a clean close."""
    truncate_style: Literal["content-length", "chunked"] = "content-length"
    """How a truncated body is framed: a ``Content-Length`` larger than what is sent, or chunked
    transfer encoding without the terminating chunk."""
    cut_at: float = 0.5
    """Fraction of the body sent before a reset or truncation, in ``(0, 1)``."""
    malformed: float = 0.0
    """Probability of a ``200`` body that is not well-formed XML (or JSON)."""
    html: float = 0.0
    """Probability of ``200`` with an HTML page instead of XML/JSON."""

    rate_limit: float | None = None
    """At most this many requests per second per access token on ``/learners/results`` and
    ``/departments``; beyond it ``429`` with ``Retry-After`` (seconds until the window frees).
    ``None``: no limit."""
    token_expire_after: float | None = None
    """Access tokens stop working this many seconds after they were issued, whatever ``expires_in``
    announced (a token revoked early). ``None``: tokens live ``EmulatorConfig.token_lifetime``."""

    inserts_per_request: int = 0
    """Rows inserted before each ``/learners/results`` request after the first (new enrollments; they
    sort after every existing row, so an export in progress reaches them)."""
    updates_per_request: int = 0
    """Rows updated in place before each ``/learners/results`` request after the first (status,
    progress, dates move forward; rows already exported are not revisited)."""

    def __post_init__(self) -> None:
        probabilities = ("trickle", "rate_limited", "server_error", "bad_gateway", "unavailable")
        for name in (*probabilities, "reset", "truncate", "malformed", "html"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be a probability in [0, 1], got {value!r}")
        for name in ("latency", "latency_jitter", "latency_median", "trickle_delay", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"Faults.{name} must be >= 0 seconds")
        if self.latency_p99 is not None and not self.latency_p99 >= self.latency_median > 0:
            raise ValueError("Faults.latency_p99 needs a latency_median > 0 and must be >= it")
        if self.trickle_chunk < 1:
            raise ValueError("Faults.trickle_chunk must be >= 1 byte")
        if not 0.0 < self.cut_at < 1.0:
            raise ValueError("Faults.cut_at must be in (0, 1)")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("Faults.rate_limit must be > 0 requests per second")
        if self.token_expire_after is not None and self.token_expire_after < 0:
            raise ValueError("Faults.token_expire_after must be >= 0 seconds")
        if self.inserts_per_request < 0 or self.updates_per_request < 0:
            raise ValueError("Faults.inserts_per_request and updates_per_request must be >= 0")
        if self.retry_after_style not in ("seconds", "http-date"):
            raise ValueError("Faults.retry_after_style must be 'seconds' or 'http-date'")
        if self.truncate_style not in ("content-length", "chunked"):
            raise ValueError("Faults.truncate_style must be 'content-length' or 'chunked'")
        for (endpoint, number), fault in self.script.items():
            if endpoint not in ENDPOINTS:
                raise ValueError(f"Faults.script: unknown endpoint {endpoint!r}; use one of {ENDPOINTS}")
            if number < 1:
                raise ValueError("Faults.script: request numbers start at 1")
            Fault(fault)


@dataclasses.dataclass(frozen=True, kw_only=True)
class XmlLayout:
    """How XML result pages are laid out; the records (and the ground truth) are the same in every layout.

    The real API's byte layout is unknown beyond the seed sample (one element per line, ``isOverdue``
    as ``0``), so each plausible variant is a switch. Which records get a CDATA title or a nested
    element is a function of the row, so a layout is reproducible::

        XmlLayout(indent=2, cdata_share=0.3, nested_share=0.1)   # the parser's hardest benchmark page
    """

    lines: bool = False
    """One element per line, as the seed sample writes pages (``False``: one record per line)."""
    indent: int = 0
    """Spaces per nesting level (implies ``lines``)."""
    cdata_share: float = 0.0
    """Share of records whose ``courseTitle`` is a CDATA section."""
    nested_share: float = 0.0
    """Share of records carrying an unknown nested element (``<customFields><field>...``)."""
    attributes: bool = False
    """Attributes on ``<result>``, ``<timeSpent>`` and ``<progress>``."""
    comments: bool = False
    """A comment inside every record and a processing instruction before the results."""
    crlf: bool = False
    """CRLF line ends."""
    mixed_overdue: bool = False
    """``isOverdue`` spelled ``0``/``1`` in some records and ``false``/``true`` in others."""

    def __post_init__(self) -> None:
        if self.indent < 0:
            raise ValueError("XmlLayout.indent must be >= 0")
        if not (0 <= self.cdata_share <= 1 and 0 <= self.nested_share <= 1):
            raise ValueError("XmlLayout shares must be within 0..1")

    @property
    def compact(self) -> bool:
        """Whether this is the default layout (one record per line, nothing else)."""
        return self == XmlLayout()


XML_LAYOUTS: Mapping[str, XmlLayout] = {
    "compact": XmlLayout(),
    "lines (seed sample)": XmlLayout(lines=True),
    "indented": XmlLayout(indent=2),
    "cdata titles": XmlLayout(cdata_share=1.0),
    "nested unknown 10%": XmlLayout(nested_share=0.1),
    "attributes": XmlLayout(attributes=True),
    "comments": XmlLayout(comments=True),
    "crlf lines": XmlLayout(lines=True, crlf=True),
    "mixed isOverdue": XmlLayout(mixed_overdue=True),
    "indented + 30% cdata + 10% nested": XmlLayout(indent=2, cdata_share=0.3, nested_share=0.1),
    "everything": XmlLayout(
        lines=True,
        indent=2,
        cdata_share=0.3,
        nested_share=0.1,
        attributes=True,
        comments=True,
        crlf=True,
        mixed_overdue=True,
    ),
}
"""Named layouts the parse benchmark and the tests render the same records in."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """The dataset, credentials and API variant an emulator run serves.

    The dataset is a pure function of the sizes and ``seed``::

        EmulatorConfig(results=5000, seed=1, faults=Faults(seed=7, server_error=0.05))

    Users are derived: each has 1 to ``2 * enrollments_per_user - 1`` enrollments (one result each)
    in distinct courses, and users are added until exactly ``results`` rows exist.
    """

    results: int = 10_000
    """Exactly this many result rows (one per enrollment)."""
    seed: int = 1
    """Seed of the dataset."""
    departments: int = 40
    """Departments in the tree, the root included."""
    department_depth: int = 4
    """Levels of the department tree, the root being level 1."""
    courses: int | None = None
    """Courses; ``None`` derives ``clamp(results // 400, 12, 2000)``."""
    enrollments_per_user: int = 10
    """Mean enrollments per user (capped at the number of courses)."""
    blocked_user_share: float = 0.1
    """Share of users with status 3 (blocked)."""
    terminated_user_share: float = 0.02
    """Share of users with status 5 (terminated); the rest are active (1)."""

    client_id: str = "emulator-client"
    """The client credentials ``POST /api/v3/token`` accepts."""
    client_secret: str = dataclasses.field(default="emulator-secret", repr=False)
    """Secret of ``client_id``; never shown in reprs."""
    extra_clients: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """More ``{client_id: client_secret}`` pairs to accept."""
    token_lifetime: float = 1800.0
    """Seconds an access token lives; announced as ``expires_in`` (rounded down)."""

    max_page_size: int = 1000
    """Largest ``pageSize`` honoured; larger values are clamped to it. Also the default page size."""
    subdepartment_matching: bool = False
    """``departmentIds`` also matches users of every sub-department (default: the exact department)."""
    overdue_style: Literal["digits", "words"] = "digits"
    """``isOverdue`` in XML as ``1``/``0`` (``"digits"``) or ``true``/``false`` (``"words"``)."""
    empty_last_token: bool = False
    """The last page carries an empty ``<nextPageToken/>`` (JSON ``""``) instead of no token."""
    lenient_lists: bool = False
    """Bare repeated list parameters (``userIds=a&userIds=b``) collect every value; by default the
    last one wins, as a PHP backend parses them. ``userIds[]=`` always collects."""
    one_sided_ranges: bool = True
    """A date range may give only ``startDate`` or only ``endDate``. ``False`` answers 400 to a range
    with one bound, as the vendor's OpenAPI (both bounds marked required) would have it."""
    exclusive_end: bool = False
    """A date range's ``endDate`` is exclusive (rows strictly before it). The API does not say; by
    default it is inclusive, as the project's notes guess."""

    xml_layout: XmlLayout = dataclasses.field(default_factory=XmlLayout)
    """How XML result pages are laid out (compact by default); never changes the records."""

    unknown_ids: Literal["match-nothing", "400"] = "match-nothing"
    """What a ``userIds[]``, ``courseIds[]``, ``departmentIds[]`` or ``enrollmentIds[]`` value the
    account does not know does: match nothing (the default), or fail the whole request with ``400``
    and the API's error body ("One or more invalid user IDs", naming no id), as production code that
    retries id by id after a 400 shows the real service does."""
    vanished_departments: int = 0
    """Departments that ``/departments`` lists but ``/learners/results`` no longer knows, as if
    deleted between the two calls: they hold no users, so they match nothing, or answer ``400`` under
    ``unknown_ids="400"``. The rest of the dataset is the same as without them."""
    path_prefix: str = ""
    """Serve ``/learners/results`` and ``/departments`` under this path (``"/api/v2"``, as account
    domains do); ``base_url`` then ends with it. The token stays at ``token_path``."""
    token_path: str = "/api/v3/token"  # noqa: S105 - a URL path, not a password
    """Where ``POST`` gets a token; at the host root by default whatever ``path_prefix`` is."""

    row_cache_rows: int = 500_000
    """Keep the rendered bytes of rows at positions below this, per format, once a page has sent
    them, so a later page over them costs a join (0.2-0.8 ms of CPU per 1000 records) instead of a
    render (about 3-3.5 ms). ``0`` turns it off. A cached row costs about 570 bytes in XML and 445 in
    JSON (500/375 of body plus ~70 of object and slot): the default holds at most ~0.5 GB with both
    formats fully served, so a 1M-row emulator stays under 1 GB; the slots of rows not yet served
    cost 8 bytes each. Bodies are the same either way."""

    faults: Faults = dataclasses.field(default_factory=Faults)
    """What goes wrong, and how often."""

    def __post_init__(self) -> None:
        if self.results < 0:
            raise ValueError("EmulatorConfig.results must be >= 0")
        if self.departments < 1 or self.department_depth < 1:
            raise ValueError("EmulatorConfig.departments and department_depth must be >= 1")
        if self.department_depth > self.departments:
            raise ValueError("EmulatorConfig.department_depth cannot exceed departments")
        if self.courses is not None and self.courses < 1:
            raise ValueError("EmulatorConfig.courses must be >= 1")
        if self.enrollments_per_user < 1:
            raise ValueError("EmulatorConfig.enrollments_per_user must be >= 1")
        shares = self.blocked_user_share + self.terminated_user_share
        if self.blocked_user_share < 0 or self.terminated_user_share < 0 or shares > 1:
            raise ValueError("EmulatorConfig user shares must be >= 0 and sum to at most 1")
        if self.token_lifetime <= 0:
            raise ValueError("EmulatorConfig.token_lifetime must be > 0 seconds")
        if self.max_page_size < 1:
            raise ValueError("EmulatorConfig.max_page_size must be >= 1")
        if self.row_cache_rows < 0:
            raise ValueError("EmulatorConfig.row_cache_rows must be >= 0 (0: no row cache)")
        if self.overdue_style not in ("digits", "words"):
            raise ValueError("EmulatorConfig.overdue_style must be 'digits' or 'words'")
        if self.unknown_ids not in ("match-nothing", "400"):
            raise ValueError("EmulatorConfig.unknown_ids must be 'match-nothing' or '400'")
        if self.vanished_departments < 0:
            raise ValueError("EmulatorConfig.vanished_departments must be >= 0")
        prefix = self.path_prefix
        if prefix and (not prefix.startswith("/") or prefix.endswith("/") or "?" in prefix or "#" in prefix):
            raise ValueError("EmulatorConfig.path_prefix must be '' or a path like '/api/v2' (no trailing /)")
        if not self.token_path.startswith("/") or "?" in self.token_path or "#" in self.token_path:
            raise ValueError("EmulatorConfig.token_path must be a path starting with '/'")
        data_paths = ("/learners/results", "/learners/modules/results", "/users/v2", "/departments")
        if self.token_path in tuple(prefix + path for path in data_paths):
            raise ValueError("EmulatorConfig.token_path must not be a data endpoint's path")

    @property
    def course_count(self) -> int:
        """The number of courses, derived from ``results`` when ``courses`` is ``None``."""
        if self.courses is not None:
            return self.courses
        return min(2000, max(12, self.results // 400))

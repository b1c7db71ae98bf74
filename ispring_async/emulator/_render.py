"""Response bodies: result, module result, user and department pages in XML and JSON, error bodies,
the HTML page.

Bodies are produced as a sequence of chunks (about ``CHUNK_ROWS`` records each) so the server writes
a page while rendering it. Everything that repeats — a user's id element, a course's id and escaped
title, date texts, score texts — is rendered once per dataset and concatenated per row, which keeps a
1000-record XML page to a few milliseconds of CPU. Optionally (``row_cache_rows``) each row's bytes
are kept once rendered, so a page over rows already served is assembled by a join instead.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from ispring_async.emulator._config import XmlLayout
from ispring_async.emulator._dataset import REFERENCE_NOW, STATUSES, Dataset
from ispring_async.emulator._modules import ModuleCatalog
from ispring_async.emulator._users import FIELD_NAMES, ROLES, UserDirectory

__all__ = ["CHUNK_ROWS", "XML_DECLARATION", "Renderer", "error_body", "html_page"]

CHUNK_ROWS = 32
"""Records per chunk written to the socket (about 16 KiB of XML)."""
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_XML_HEAD = (XML_DECLARATION + "<response>\n<results>\n").encode()
_DAY = 86400
_FIRST_TABLE_DAY = 10957  # 2000-01-01
_LAST_TABLE_DAY = 47482  # 2100-01-01

Format = Literal["xml", "json"]

_UUID = "%08x-%04x-%04x-%04x-%012x"
"""%-formatting prints a row's key as a UUID faster than f-strings or uuid.UUID (measured, 1M rows)."""


@dataclasses.dataclass(frozen=True)
class _Syntax:
    """How one format spells a row: per-entity fragments, and %-templates for per-row values.

    One row renderer and one page loop serve both formats; only this table differs.
    """

    users: list[str]
    courses: list[str]
    sessions: list[list[str]]
    durations: list[str]
    passing: list[str]
    statuses: list[str]
    overdue: tuple[str, str]
    enrollment: str
    dates: tuple[str, str, str, str]
    """accessDate, dueDate, expirationDate, completionDate."""
    numbers: tuple[str, str, str, str]
    """timeSpent, progress, awardedScore, viewsCount."""
    row_end: str
    page_head: bytes
    separator: bytes
    results_end: bytes
    token: Callable[[str], bytes]
    page_end: bytes


def xml_escape(text: str) -> str:
    """Escape the three characters XML text may not hold literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def json_string(text: str) -> str:
    """A JSON string literal."""
    return msgspec.json.encode(text).decode("utf-8")


@functools.cache
def _day_texts() -> list[str]:
    return [
        datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%d")
        for day in range(_FIRST_TABLE_DAY, _LAST_TABLE_DAY)
    ]


@functools.cache
def _time_texts() -> list[str]:
    return [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00" for s in range(_DAY)]


def date_text(seconds: int) -> str:
    """RFC 3339 with ``+00:00``, as the vendor's sample writes dates."""
    day = seconds // _DAY - _FIRST_TABLE_DAY
    if 0 <= day < _LAST_TABLE_DAY - _FIRST_TABLE_DAY:
        return _day_texts()[day] + _time_texts()[seconds % _DAY]
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def hundredths_text(value: int) -> str:
    """``100``, ``9.09``, ``9.1``: a score or progress stored in hundredths, as the API prints it."""
    whole, frac = divmod(value, 100)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:02d}".rstrip("0")


def error_body(fmt: Format, code: int, message: str) -> bytes:
    """The API's error body: ``<response><code/><message/></response>`` or ``{"code", "message"}``."""
    if fmt == "json":
        return msgspec.json.encode({"code": code, "message": message})
    return (
        f"{XML_DECLARATION}<response><code>{code}</code><message>{xml_escape(message)}</message></response>\n"
    ).encode()


def html_page(status: int, title: str) -> bytes:
    """An HTML page such as a proxy or a wrong base path answers with."""
    return (
        "<!DOCTYPE html>\n<html><head><title>"
        f"{status} {title}</title></head><body><center><h1>{status} {title}</h1></center>"
        "<hr><center>nginx</center></body></html>\n"
    ).encode()


_DATE_FIELDS = ("accessDate", "dueDate", "expirationDate", "completionDate")
_NUMBER_FIELDS = ("timeSpent", "progress", "awardedScore", "viewsCount")


def _xml_token(token: str) -> bytes:
    return f"<nextPageToken>{token}</nextPageToken>\n".encode() if token else b"<nextPageToken/>\n"


def _templates(pattern: str, names: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
    first, second, third, fourth = (pattern.format(name) for name in names)
    return first, second, third, fourth


class Renderer:
    """Renders pages of one dataset in one API variant (``overdue_words``), caching what repeats.

    With ``row_cache_rows > 0`` the bytes of each row at a position below it are kept, per format,
    once a page has rendered them, so a later page over those rows is a join. A cached row costs
    its bytes plus about 70 bytes of object and slot (see ``EmulatorConfig.row_cache_rows``).
    Rows that ``Dataset.update`` changes are dropped from the cache before the next page starts.

    >>> renderer = Renderer(Dataset(EmulatorConfig(results=100)), overdue_words=False, row_cache_rows=100)
    >>> body = b"".join(renderer.results("xml", range(10), None))
    """

    def __init__(
        self, ds: Dataset, *, overdue_words: bool, row_cache_rows: int = 0, layout: XmlLayout | None = None
    ) -> None:
        """Prepare the fragments of ``ds``; ``row_cache_rows`` ``0`` caches no row."""
        if row_cache_rows < 0:
            raise ValueError("row_cache_rows must be >= 0")
        self.ds = ds
        # The XML layout is applied to each compact row once rendered (and cached as laid out), and
        # to the page's head and tail; the compact layout costs nothing.
        self._layout = None if layout is None or layout.compact else _Layout(layout, overdue_words)
        self._users_layout = (
            None
            if layout is None or layout.compact
            else _Layout(layout, overdue_words, list_tag="userProfiles")
        )
        self._overdue_words = overdue_words
        self.row_cache_rows = row_cache_rows
        # Per format, the rendered bytes of row ``pos`` (``None``: not rendered since the last change).
        # One renderer holds one variant, so XML rows of the two overdue styles never share a cache.
        self._row_cache: dict[Format, list[bytes | None]] = {}
        self._updates_seen = len(ds.updated_rows)
        scores = self._scores = [hundredths_text(v) for v in range(10001)]
        titles = ds.course_titles
        self._syntax: dict[Format, _Syntax] = {
            "xml": _Syntax(
                users=[f"<result><userId>{uid}</userId>" for uid in ds.user_ids],
                courses=[
                    f"<courseId>{cid}</courseId><courseTitle>{xml_escape(titles[c])}</courseTitle>"
                    for c, cid in enumerate(ds.course_ids)
                ],
                sessions=[[f"<sessionId>{s}</sessionId>" for s in sessions] for sessions in ds.session_ids],
                durations=[f"<duration>{d}</duration>" if d >= 0 else "" for d in ds.course_duration],
                passing=[
                    f"<passingScore>{scores[p]}</passingScore>" if p >= 0 else "" for p in ds.course_passing
                ],
                statuses=[f"<completionStatus>{s}</completionStatus>" for s in STATUSES],
                overdue=(
                    ("<isOverdue>false</isOverdue>", "<isOverdue>true</isOverdue>")
                    if overdue_words
                    else ("<isOverdue>0</isOverdue>", "<isOverdue>1</isOverdue>")
                ),
                enrollment=f"<enrollmentId>{_UUID}</enrollmentId>",
                dates=_templates("<{0}>%s</{0}>", _DATE_FIELDS),
                numbers=_templates("<{0}>%s</{0}>", _NUMBER_FIELDS),
                row_end="</result>\n",
                page_head=_XML_HEAD,
                separator=b"",
                results_end=b"</results>\n",
                token=lambda t: (
                    f"<nextPageToken>{t}</nextPageToken>\n".encode() if t else b"<nextPageToken/>\n"
                ),
                page_end=b"</response>\n",
            ),
            "json": _Syntax(
                users=[f'{{"userId":"{uid}"' for uid in ds.user_ids],
                courses=[
                    f',"courseId":"{cid}","courseTitle":{json_string(titles[c])}'
                    for c, cid in enumerate(ds.course_ids)
                ],
                sessions=[[f',"sessionId":"{s}"' for s in sessions] for sessions in ds.session_ids],
                durations=[f',"duration":{d}' if d >= 0 else "" for d in ds.course_duration],
                passing=[f',"passingScore":{scores[p]}' if p >= 0 else "" for p in ds.course_passing],
                statuses=[f',"completionStatus":"{s}"' for s in STATUSES],
                overdue=(',"isOverdue":false', ',"isOverdue":true'),
                enrollment=f',"enrollmentId":"{_UUID}"',
                dates=_templates(',"{0}":"%s"', _DATE_FIELDS),
                numbers=_templates(',"{0}":%s', _NUMBER_FIELDS),
                row_end="}",
                page_head=b'{"results":[',
                separator=b",",
                results_end=b"]",
                token=lambda t: f',"nextPageToken":"{t}"'.encode(),
                page_end=b"}",
            ),
        }
        _day_texts()
        _time_texts()

    # -- results --------------------------------------------------------------------------------

    def results(self, fmt: Format, positions: Sequence[int], token: str | None) -> Iterator[bytes]:
        """A results page in chunks; ``token`` ``None`` omits ``nextPageToken``, ``""`` sends it empty."""
        # Here, not in the generators: a page must not start from bytes that an update made stale.
        self._forget_updated_rows()
        return self._results(fmt, positions, token)

    def cached_rows(self, fmt: Format) -> int:
        """How many rows of ``fmt`` have their bytes cached now."""
        cache = self._row_cache.get(fmt)
        return 0 if cache is None else len(cache) - cache.count(None)

    def _cache(self, fmt: Format) -> list[bytes | None]:
        # Allocated on the first page of a format: a run that serves only XML pays nothing for JSON.
        cache = self._row_cache.get(fmt)
        if cache is None:
            cache = self._row_cache[fmt] = [None] * min(self.row_cache_rows, len(self.ds))
        return cache

    def _forget_updated_rows(self) -> None:
        updated = self.ds.updated_rows
        if len(updated) == self._updates_seen:
            return
        fresh = updated[self._updates_seen :]
        self._updates_seen = len(updated)
        for cache in self._row_cache.values():
            for pos in fresh:
                if pos < len(cache):
                    cache[pos] = None

    def _results(self, fmt: Format, positions: Sequence[int], token: str | None) -> Iterator[bytes]:
        syntax = self._syntax[fmt]
        render, cache, separator = self._row_renderer(syntax), self._cache(fmt), syntax.separator
        layout = self._layout if fmt == "xml" else None
        cached = len(cache)
        out = [syntax.page_head if layout is None else layout.head]
        for n, pos in enumerate(positions, 1):
            row = cache[pos] if pos < cached else None
            if row is None:
                row = render(pos)
                if layout is not None:
                    row = layout.row(row, pos)
                if pos < cached:
                    cache[pos] = row
            if n > 1 and separator:
                out.append(separator)
            out.append(row)
            if n % CHUNK_ROWS == 0:
                yield b"".join(out)
                out.clear()
        if layout is not None:
            out.append(layout.tail(syntax.token(token) if token is not None else b""))
        else:
            out.append(syntax.results_end)
            if token is not None:
                out.append(syntax.token(token))
            out.append(syntax.page_end)
        yield b"".join(out)

    def _row_renderer(self, syntax: _Syntax) -> Callable[[int], bytes]:
        """A function rendering one row in ``syntax`` from the columns as they are now."""
        ds = self.ds
        r_user, r_course, r_flags, lo, hi = ds.r_user, ds.r_course, ds.r_flags, ds.lo, ds.hi
        r_access, r_due, r_expiration, r_completion = ds.r_access, ds.r_due, ds.r_expiration, ds.r_completion
        r_spent, r_status, r_progress, r_awarded, r_views = (
            ds.r_spent,
            ds.r_status,
            ds.r_progress,
            ds.r_awarded,
            ds.r_views,
        )
        days, times, scores = _day_texts(), _time_texts(), self._scores
        users, courses, sessions = syntax.users, syntax.courses, syntax.sessions
        durations, passing, statuses, overdue = (
            syntax.durations,
            syntax.passing,
            syntax.statuses,
            syntax.overdue,
        )
        enrollment, row_end = syntax.enrollment, syntax.row_end
        access_t, due_t, expiration_t, completion_t = syntax.dates
        spent_t, progress_t, awarded_t, views_t = syntax.numbers
        base = _FIRST_TABLE_DAY

        def date(seconds: int) -> str:
            return days[seconds // _DAY - base] + times[seconds % _DAY]

        def render(pos: int) -> bytes:
            course = r_course[pos]
            flags = r_flags[pos]
            out = [users[r_user[pos]], courses[course]]
            if flags & 2:
                out.append(sessions[course][lo[pos] & 3])
            if flags & 1:
                high, low = hi[pos], lo[pos]
                out.append(
                    enrollment
                    % (high >> 32, (high >> 16) & 0xFFFF, high & 0xFFFF, low >> 48, low & 0xFFFFFFFFFFFF)
                )
            out.append(access_t % date(r_access[pos]))
            due = r_due[pos]
            if due:
                out.append(due_t % date(due))
            value = r_expiration[pos]
            if value:
                out.append(expiration_t % date(value))
            completion = r_completion[pos]
            if completion:
                out.append(completion_t % date(completion))
            out.append(durations[course])
            value = r_spent[pos]
            if value >= 0:
                out.append(spent_t % value)
            out.append(statuses[r_status[pos]])
            value = r_progress[pos]
            if value >= 0:
                out.append(progress_t % scores[value])
            value = r_awarded[pos]
            if value >= 0:
                out.append(awarded_t % scores[value])
                out.append(passing[course])
            is_overdue = (completion > due if completion else due < REFERENCE_NOW) if due else False
            out.append(overdue[is_overdue])
            value = r_views[pos]
            if value >= 0:
                out.append(views_t % value)
            out.append(row_end)
            return "".join(out).encode()

        return render

    # -- departments ----------------------------------------------------------------------------

    def departments(self, fmt: Format, indexes: Sequence[int], token: str | None) -> bytes:
        """A departments page (small, so rendered whole)."""
        ds = self.ds
        if fmt == "json":
            items = []
            for index in indexes:
                item: dict[str, object] = {
                    "departmentId": ds.department_ids[index],
                    "name": ds.department_names[index],
                }
                parent = ds.department_parent[index]
                if parent >= 0:
                    item["parentDepartmentId"] = ds.department_ids[parent]
                code = ds.department_codes[index]
                if code is not None:
                    item["code"] = code
                item["subordination"] = {"subordinationType": "inherit" if parent >= 0 else "no_supervisor"}
                item["coSubordination"] = {"subordinationType": "no_supervisor"}
                items.append(item)
            page: dict[str, object] = {"departments": items}
            if token is not None:
                page["nextPageToken"] = token
            return msgspec.json.encode(page)
        out = [XML_DECLARATION, "<response>\n<departments>\n"]
        for index in indexes:
            parent = ds.department_parent[index]
            out.append(f"<department><departmentId>{ds.department_ids[index]}</departmentId>")
            out.append(f"<name>{xml_escape(ds.department_names[index])}</name>")
            if parent >= 0:
                out.append(f"<parentDepartmentId>{ds.department_ids[parent]}</parentDepartmentId>")
            code = ds.department_codes[index]
            if code is not None:
                out.append(f"<code>{xml_escape(code)}</code>")
            kind = "inherit" if parent >= 0 else "no_supervisor"
            out.append(f"<subordination><subordinationType>{kind}</subordinationType></subordination>")
            out.append(
                "<coSubordination><subordinationType>no_supervisor</subordinationType></coSubordination>"
            )
            out.append("</department>\n")
        out.append("</departments>\n")
        if token is not None:
            out.append(f"<nextPageToken>{token}</nextPageToken>\n" if token else "<nextPageToken/>\n")
        out.append("</response>\n")
        return "".join(out).encode()

    # -- module results -------------------------------------------------------------------------

    def module_results(
        self, fmt: Format, catalog: ModuleCatalog, items: Sequence[tuple[int, int]], token: str | None
    ) -> Iterator[bytes]:
        """A module results page in chunks (``items`` are ``(position, module index)``); ``token`` as
        in ``results``. XML layouts apply as to results pages: the record element is ``<result>``."""
        layout = self._layout if fmt == "xml" else None
        render = self._module_xml if fmt == "xml" else self._module_json
        out = [(_XML_HEAD if layout is None else layout.head) if fmt == "xml" else b'{"results":[']
        for n, (pos, k) in enumerate(items, 1):
            row = render(catalog, pos, k)
            if layout is not None:
                # A row's variant is picked by a hash of its place, so every module gets its own.
                row = layout.row(row, pos * 8 + k)
            if n > 1 and fmt == "json":
                out.append(b",")
            out.append(row)
            if n % CHUNK_ROWS == 0:
                yield b"".join(out)
                out.clear()
        out.append(self._tail(fmt, layout, token, "results"))
        yield b"".join(out)

    def _tail(self, fmt: Format, layout: _Layout | None, token: str | None, list_tag: str) -> bytes:
        if fmt == "json":
            return b"]" + (f',"nextPageToken":"{token}"'.encode() if token is not None else b"") + b"}"
        token_element = _xml_token(token) if token is not None else b""
        if layout is not None:
            return layout.tail(token_element)
        return f"</{list_tag}>\n".encode() + token_element + b"</response>\n"

    def _module_fields(self, catalog: ModuleCatalog, pos: int, k: int) -> list[tuple[str, str, bool]]:
        """``(name, text, is_string)`` of one module result, in the schema's order."""
        ds, scores = self.ds, self._scores
        module = catalog.modules_of(pos)[k]
        v = catalog.values(pos, k)
        fields = [
            ("userId", ds.user_ids[ds.r_user[pos]], True),
            ("courseId", ds.course_ids[ds.r_course[pos]], True),
            ("moduleId", catalog.module_ids[module], True),
            ("moduleTitle", catalog.module_titles[module], True),
            ("courseItemId", catalog.course_item_ids[module], True),
        ]
        if ds.r_flags[pos] & 1:
            fields.append(("enrollmentId", ds.enrollment_id(pos), True))
        fields.append(("accessDate", date_text(v.access), True))
        for name, value in (
            ("dueDate", v.due),
            ("expirationDate", v.expiration),
            ("completionDate", v.completion),
        ):
            if value:
                fields.append((name, date_text(value), True))
        fields.append(("timeSpent", str(v.spent), False))
        fields.append(("completionStatus", STATUSES[v.status], True))
        if v.awarded >= 0:
            fields.append(("awardedScore", scores[v.awarded], False))
            fields.append(("passingScore", scores[catalog.module_passing[module]], False))
        fields.append(("progress", scores[v.progress], False))
        overdue = catalog.is_overdue(v)
        fields.append(("isOverdue", "true" if overdue else "false", False))
        fields.append(("viewsCount", str(v.views), False))
        return fields

    def _module_xml(self, catalog: ModuleCatalog, pos: int, k: int) -> bytes:
        out = ["<result>"]
        for name, text, _ in self._module_fields(catalog, pos, k):
            if name == "isOverdue" and not self._overdue_words:
                text = "1" if text == "true" else "0"
            out.append(f"<{name}>{xml_escape(text)}</{name}>")
        out.append("</result>\n")
        return "".join(out).encode()

    def _module_json(self, catalog: ModuleCatalog, pos: int, k: int) -> bytes:
        fields = self._module_fields(catalog, pos, k)
        return msgspec.json.encode(
            {name: text if quoted else msgspec.Raw(text.encode()) for name, text, quoted in fields}
        )

    # -- users ----------------------------------------------------------------------------------

    def users(
        self, fmt: Format, directory: UserDirectory, users: Sequence[int], token: str | None
    ) -> Iterator[bytes]:
        """A ``/users/v2`` page in chunks: ``<userProfiles><userProfile>`` (JSON ``userProfiles``),
        each with its ``fields`` as name/value pairs, ``groups`` and ``userRoles`` as wrapped lists."""
        layout = self._users_layout if fmt == "xml" else None
        head = f"{XML_DECLARATION}<response>\n<userProfiles>\n".encode()
        out = [(head if layout is None else layout.head) if fmt == "xml" else b'{"userProfiles":[']
        for n, user in enumerate(users, 1):
            if fmt == "xml":
                row = self._user_xml(directory, user)
                if layout is not None:
                    row = layout.row(row, user)
            else:
                if n > 1:
                    out.append(b",")
                row = msgspec.json.encode(self._user_object(directory, user))
            out.append(row)
            if n % CHUNK_ROWS == 0:
                yield b"".join(out)
                out.clear()
        out.append(self._tail(fmt, layout, token, "userProfiles"))
        yield b"".join(out)

    def _user_object(self, directory: UserDirectory, user: int) -> dict[str, object]:
        """One profile in the API's names and nesting (the JSON object; XML follows it element by element)."""
        ds = self.ds
        dept = ds.department_ids[ds.user_dept[user]]
        role = directory.role[user]
        profile: dict[str, object] = {
            "userId": ds.user_ids[user],
            "role": ROLES[role],
            "roleId": directory.role_ids[role],
            "departmentId": dept,
            "status": ds.user_status[user],
            "fields": [
                {"name": name, "value": value}
                for name, value in zip(FIELD_NAMES, directory.field_values[user], strict=True)
            ],
            "addedDate": date_text(directory.added[user]),
        }
        if directory.last_login[user]:
            profile["lastLoginDate"] = date_text(directory.last_login[user])
        user_role: dict[str, object] = {"roleId": directory.role_ids[role], "roleType": ROLES[role]}
        if ROLES[role] == "department_administrator":
            profile["manageableDepartmentIds"] = [dept]
            user_role["manageableDepartmentIds"] = [dept]
        profile["userRoles"] = [user_role]
        profile["groups"] = [directory.group_ids[g] for g in directory.groups[user]]
        profile["subordination"] = {"subordinationType": "inherit"}
        profile["coSubordination"] = {"subordinationType": "no_supervisor"}
        return profile

    def _user_xml(self, directory: UserDirectory, user: int) -> bytes:
        out = ["<userProfile>"]
        _xml_value(out, self._user_object(directory, user), _USER_LIST_ITEMS)
        out.append("</userProfile>\n")
        return "".join(out).encode()


# A tag (whose quoted attribute values may hold ">"), or text. Only over rows this module rendered.
_TOKENS = re.compile(r"<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>|[^<]+")
# The first title (or, in a user profile, the first field value) of a row becomes CDATA.
_TITLE = re.compile(r"<(courseTitle|moduleTitle|value)>([^<]*)</\1>")
_NESTED = (
    "<customFields><field><name>region</name><value>EU &amp; APAC</value></field>"
    "<field><name>cost center</name><value>42</value></field></customFields>"
)


def _picked(pos: int, share: float, salt: int) -> bool:
    """Whether row ``pos`` gets a variant taken by ``share`` of the rows: a hash, so reproducible."""
    return ((pos * 2654435761 + salt * 40503) & 0xFFFFFFFF) < share * 4294967296.0


class _Layout:
    """Rewrites a compact XML row (``<result>...</result>\\n``) into one ``XmlLayout``."""

    def __init__(self, layout: XmlLayout, overdue_words: bool, *, list_tag: str = "results") -> None:
        self.layout = layout
        self._swap = (
            (
                ("<isOverdue>false</isOverdue>", "<isOverdue>0</isOverdue>"),
                ("<isOverdue>true</isOverdue>", "<isOverdue>1</isOverdue>"),
            )
            if overdue_words
            else (
                ("<isOverdue>0</isOverdue>", "<isOverdue>false</isOverdue>"),
                ("<isOverdue>1</isOverdue>", "<isOverdue>true</isOverdue>"),
            )
        )
        pad = " " * layout.indent
        lines = layout.lines or layout.indent > 0
        nl = "\n" if lines else ""
        pi = f"<?ispring-emulator layout?>{nl or chr(10)}" if layout.comments else ""
        self.head = self._ends(f"{XML_DECLARATION}<response>\n{pi}{pad}<{list_tag}>\n".encode())
        self._results_end = f"{pad}</{list_tag}>\n"
        self._pad = pad

    def _ends(self, data: bytes) -> bytes:
        return data.replace(b"\n", b"\r\n") if self.layout.crlf else data

    def tail(self, token: bytes) -> bytes:
        """``</results>``, the token element (``token`` as the compact layout spells it) and the end."""
        return self._ends(
            self._results_end.encode() + (self._pad.encode() + token if token else b"") + b"</response>\n"
        )

    def row(self, row: bytes, pos: int) -> bytes:
        layout = self.layout
        text = row.decode()
        if layout.mixed_overdue and _picked(pos, 0.5, 1):
            for old, new in self._swap:
                text = text.replace(old, new)
        if layout.nested_share and _picked(pos, layout.nested_share, 2):
            cut = text.index("</userId>") + len("</userId>")
            text = text[:cut] + _NESTED + text[cut:]
        if layout.attributes:
            text = text.replace("<result>", f"<result id=\"{pos}\" kind='row'>", 1)
            text = text.replace("<userProfile>", f'<userProfile id="{pos}">', 1)
            text = text.replace("<timeSpent>", '<timeSpent unit="s">').replace(
                "<progress>", '<progress unit="%" max=">100">'
            )
        if layout.comments:
            text = text.replace(">", f"><!-- row {pos} -->", 1)
        if layout.lines or layout.indent:
            text = self._lines(text)
        if layout.cdata_share and _picked(pos, layout.cdata_share, 3):
            text = _TITLE.sub(_cdata, text, count=1)
        return self._ends(text.encode())

    def _lines(self, text: str) -> str:
        """One element per line, children indented: a leaf element stays whole on its line."""
        pad, depth, out = self._pad, 2, []
        previous_closed = True
        for token in _TOKENS.findall(text.rstrip("\n")):
            if token.startswith("</"):
                depth -= 1
                if previous_closed:
                    out.append("\n" + pad * depth)
                out.append(token)
                previous_closed = True
            elif token.startswith(("<!", "<?")):
                out.append(token)
            elif token.startswith("<"):
                out.append("\n" + pad * depth + token)
                depth += 1
                previous_closed = False
            else:
                out.append(token)
        return "".join(out).lstrip("\n") + "\n"


def _cdata(match: re.Match[str]) -> str:
    tag = match.group(1)
    title = match.group(2).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    if "]]>" in title:
        return match.group(0)
    return f"<{tag}><![CDATA[{title}]]></{tag}>"


# How a list inside a user profile is spelt in XML: the element of each item (the OpenAPI's ``xml``
# names: ``ArrayOfIds`` items are ``<id>``, ``UserRole`` is ``<userRole>``).
_USER_LIST_ITEMS = {
    "fields": "field",
    "groups": "id",
    "manageableDepartmentIds": "id",
    "userRoles": "userRole",
}


def _xml_value(out: list[str], value: dict[str, object], items: dict[str, str]) -> None:
    """Append the elements of a JSON-shaped object: nested objects as child elements, lists as a
    wrapper holding one ``items[name]`` element per item."""
    for name, child in value.items():
        if isinstance(child, dict):
            out.append(f"<{name}>")
            _xml_value(out, child, items)
            out.append(f"</{name}>")
        elif isinstance(child, list):
            if not child:
                out.append(f"<{name}/>")
                continue
            out.append(f"<{name}>")
            item = items[name]
            for entry in child:
                if isinstance(entry, dict):
                    out.append(f"<{item}>")
                    _xml_value(out, entry, items)
                    out.append(f"</{item}>")
                else:
                    out.append(f"<{item}>{xml_escape(str(entry))}</{item}>")
            out.append(f"</{name}>")
        else:
            out.append(f"<{name}>{xml_escape(str(child))}</{name}>")

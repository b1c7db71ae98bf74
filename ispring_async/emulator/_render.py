"""Response bodies: result and department pages in XML and JSON, error bodies, the HTML page.

Bodies are produced as a sequence of chunks (about ``CHUNK_ROWS`` records each) so the server writes
a page while rendering it. Everything that repeats — a user's id element, a course's id and escaped
title, date texts, score texts — is rendered once per dataset and concatenated per row, which keeps a
1000-record XML page to a few milliseconds of CPU. Optionally (``row_cache_rows``) each row's bytes
are kept once rendered, so a page over rows already served is assembled by a join instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from ispring_async.emulator._dataset import REFERENCE_NOW, STATUSES, Dataset

__all__ = ["CHUNK_ROWS", "XML_DECLARATION", "Renderer", "error_body", "html_page"]

CHUNK_ROWS = 32
"""Records per chunk written to the socket (about 16 KiB of XML)."""
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_XML_HEAD = (XML_DECLARATION + "<response>\n<results>\n").encode()
_DAY = 86400
_FIRST_TABLE_DAY = 10957  # 2000-01-01
_LAST_TABLE_DAY = 47482  # 2100-01-01

Format = Literal["xml", "json"]

# %-formatting prints a row's key as a UUID faster than f-strings or uuid.UUID (measured, 1M rows).
_ENROLLMENT_XML = "<enrollmentId>%08x-%04x-%04x-%04x-%012x</enrollmentId>"
_ENROLLMENT_JSON = ',"enrollmentId":"%08x-%04x-%04x-%04x-%012x"'


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


class Renderer:
    """Renders pages of one dataset in one API variant (``overdue_words``), caching what repeats.

    With ``row_cache_rows > 0`` the bytes of each row at a position below it are kept, per format,
    once a page has rendered them, so a later page over those rows is a join. A cached row costs
    its bytes plus about 70 bytes of object and slot (see ``EmulatorConfig.row_cache_rows``).
    Rows that ``Dataset.update`` changes are dropped from the cache before the next page starts.

    >>> renderer = Renderer(Dataset(EmulatorConfig(results=100)), overdue_words=False, row_cache_rows=100)
    >>> body = b"".join(renderer.results("xml", range(10), None))
    """

    def __init__(self, ds: Dataset, *, overdue_words: bool, row_cache_rows: int = 0) -> None:
        """Prepare the fragments of ``ds``; ``row_cache_rows`` ``0`` caches no row."""
        if row_cache_rows < 0:
            raise ValueError("row_cache_rows must be >= 0")
        self.ds = ds
        self.row_cache_rows = row_cache_rows
        # Per format, the rendered bytes of row ``pos`` (``None``: not rendered since the last change).
        # One renderer holds one variant, so XML rows of the two overdue styles never share a cache.
        self._row_cache: dict[Format, list[bytes | None]] = {}
        self._updates_seen = len(ds.updated_rows)
        self._overdue_xml = (
            ("<isOverdue>false</isOverdue>", "<isOverdue>true</isOverdue>")
            if overdue_words
            else ("<isOverdue>0</isOverdue>", "<isOverdue>1</isOverdue>")
        )
        self._scores = [hundredths_text(v) for v in range(10001)]
        self._user_xml = [f"<result><userId>{uid}</userId>" for uid in ds.user_ids]
        self._user_json = [f'{{"userId":"{uid}"' for uid in ds.user_ids]
        ds_titles = ds.course_titles
        self._course_xml = [
            f"<courseId>{cid}</courseId><courseTitle>{xml_escape(ds_titles[c])}</courseTitle>"
            for c, cid in enumerate(ds.course_ids)
        ]
        self._course_json = [
            f',"courseId":"{cid}","courseTitle":{json_string(ds_titles[c])}'
            for c, cid in enumerate(ds.course_ids)
        ]
        self._session_xml = [[f"<sessionId>{s}</sessionId>" for s in sessions] for sessions in ds.session_ids]
        self._session_json = [[f',"sessionId":"{s}"' for s in sessions] for sessions in ds.session_ids]
        self._duration_xml = [f"<duration>{d}</duration>" if d >= 0 else "" for d in ds.course_duration]
        self._duration_json = [f',"duration":{d}' if d >= 0 else "" for d in ds.course_duration]
        self._passing_xml = [
            f"<passingScore>{self._scores[p]}</passingScore>" if p >= 0 else "" for p in ds.course_passing
        ]
        self._passing_json = [
            f',"passingScore":{self._scores[p]}' if p >= 0 else "" for p in ds.course_passing
        ]
        _day_texts()
        _time_texts()

    # -- results --------------------------------------------------------------------------------

    def results(self, fmt: Format, positions: Sequence[int], token: str | None) -> Iterator[bytes]:
        """A results page in chunks; ``token`` ``None`` omits ``nextPageToken``, ``""`` sends it empty."""
        # Here, not in the generators: a page must not start from bytes that an update made stale.
        self._forget_updated_rows()
        return self._results_xml(positions, token) if fmt == "xml" else self._results_json(positions, token)

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

    def _results_xml(self, positions: Sequence[int], token: str | None) -> Iterator[bytes]:
        render, cache = self._xml_row(), self._cache("xml")
        cached = len(cache)
        out = [_XML_HEAD]
        for n, pos in enumerate(positions, 1):
            row = cache[pos] if pos < cached else None
            if row is None:
                row = render(pos)
                if pos < cached:
                    cache[pos] = row
            out.append(row)
            if n % CHUNK_ROWS == 0:
                yield b"".join(out)
                out.clear()
        out.append(b"</results>\n")
        if token is not None:
            out.append(
                f"<nextPageToken>{token}</nextPageToken>\n".encode() if token else b"<nextPageToken/>\n"
            )
        out.append(b"</response>\n")
        yield b"".join(out)

    def _results_json(self, positions: Sequence[int], token: str | None) -> Iterator[bytes]:
        render, cache = self._json_row(), self._cache("json")
        cached = len(cache)
        out = [b'{"results":[']
        for n, pos in enumerate(positions, 1):
            row = cache[pos] if pos < cached else None
            if row is None:
                row = render(pos)
                if pos < cached:
                    cache[pos] = row
            if n > 1:
                out.append(b",")
            out.append(row)
            if n % CHUNK_ROWS == 0:
                yield b"".join(out)
                out.clear()
        out.append(b"]")
        if token is not None:
            out.append(f',"nextPageToken":"{token}"'.encode())
        out.append(b"}")
        yield b"".join(out)

    def _xml_row(self) -> Callable[[int], bytes]:
        """A function rendering one row's ``<result>...</result>\\n`` from the columns as they are now."""
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
        days, times = _day_texts(), _time_texts()
        scores, overdue = self._scores, self._overdue_xml
        user_xml, course_xml = self._user_xml, self._course_xml
        session_xml, duration_xml, passing_xml = self._session_xml, self._duration_xml, self._passing_xml
        status_xml = [f"<completionStatus>{s}</completionStatus>" for s in STATUSES]
        base = _FIRST_TABLE_DAY

        def date(seconds: int) -> str:
            return days[seconds // _DAY - base] + times[seconds % _DAY]

        def render(pos: int) -> bytes:
            course = r_course[pos]
            flags = r_flags[pos]
            out = [user_xml[r_user[pos]], course_xml[course]]
            if flags & 2:
                out.append(session_xml[course][lo[pos] & 3])
            if flags & 1:
                high, low = hi[pos], lo[pos]
                out.append(
                    _ENROLLMENT_XML
                    % (high >> 32, (high >> 16) & 0xFFFF, high & 0xFFFF, low >> 48, low & 0xFFFFFFFFFFFF)
                )
            value = r_access[pos]
            out.append(f"<accessDate>{days[value // _DAY - base]}{times[value % _DAY]}</accessDate>")
            due = r_due[pos]
            if due:
                out.append(f"<dueDate>{date(due)}</dueDate>")
            value = r_expiration[pos]
            if value:
                out.append(f"<expirationDate>{date(value)}</expirationDate>")
            completion = r_completion[pos]
            if completion:
                out.append(f"<completionDate>{date(completion)}</completionDate>")
            out.append(duration_xml[course])
            value = r_spent[pos]
            if value >= 0:
                out.append(f"<timeSpent>{value}</timeSpent>")
            out.append(status_xml[r_status[pos]])
            value = r_progress[pos]
            if value >= 0:
                out.append(f"<progress>{scores[value]}</progress>")
            value = r_awarded[pos]
            if value >= 0:
                out.append(f"<awardedScore>{scores[value]}</awardedScore>")
                out.append(passing_xml[course])
            is_overdue = (completion > due if completion else due < REFERENCE_NOW) if due else False
            out.append(overdue[is_overdue])
            value = r_views[pos]
            if value >= 0:
                out.append(f"<viewsCount>{value}</viewsCount>")
            out.append("</result>\n")
            return "".join(out).encode()

        return render

    def _json_row(self) -> Callable[[int], bytes]:
        """A function rendering one row's JSON object (no separator) from the columns as they are now."""
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
        days, times = _day_texts(), _time_texts()
        scores = self._scores
        user_json, course_json = self._user_json, self._course_json
        session_json, duration_json, passing_json = (
            self._session_json,
            self._duration_json,
            self._passing_json,
        )
        status_json = [f',"completionStatus":"{s}"' for s in STATUSES]
        base = _FIRST_TABLE_DAY

        def date(seconds: int) -> str:
            return days[seconds // _DAY - base] + times[seconds % _DAY]

        def render(pos: int) -> bytes:
            course = r_course[pos]
            flags = r_flags[pos]
            out = [user_json[r_user[pos]], course_json[course]]
            if flags & 2:
                out.append(session_json[course][lo[pos] & 3])
            if flags & 1:
                high, low = hi[pos], lo[pos]
                out.append(
                    _ENROLLMENT_JSON
                    % (high >> 32, (high >> 16) & 0xFFFF, high & 0xFFFF, low >> 48, low & 0xFFFFFFFFFFFF)
                )
            value = r_access[pos]
            out.append(f',"accessDate":"{days[value // _DAY - base]}{times[value % _DAY]}"')
            due = r_due[pos]
            if due:
                out.append(f',"dueDate":"{date(due)}"')
            value = r_expiration[pos]
            if value:
                out.append(f',"expirationDate":"{date(value)}"')
            completion = r_completion[pos]
            if completion:
                out.append(f',"completionDate":"{date(completion)}"')
            out.append(duration_json[course])
            value = r_spent[pos]
            if value >= 0:
                out.append(f',"timeSpent":{value}')
            out.append(status_json[r_status[pos]])
            value = r_progress[pos]
            if value >= 0:
                out.append(f',"progress":{scores[value]}')
            value = r_awarded[pos]
            if value >= 0:
                out.append(f',"awardedScore":{scores[value]}')
                out.append(passing_json[course])
            is_overdue = (completion > due if completion else due < REFERENCE_NOW) if due else False
            out.append(',"isOverdue":true' if is_overdue else ',"isOverdue":false')
            value = r_views[pos]
            if value >= 0:
                out.append(f',"viewsCount":{value}')
            out.append("}")
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

"""Build ``/learners/results`` XML pages for parser tests, with the records they must parse to.

Independent of the emulator on purpose: the parser is checked against records built here, in Python,
so a bug shared by the emulator's renderer and the parser cannot hide.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from ispring_async._models import LearnerResult

STATUSES = ("not_started", "in_progress", "pending", "complete", "passed", "accepted", "incomplete", "failed")
TITLES = (
    "Course 1",
    "Safety & Health",
    "<Onboarding>",
    "Продажи 101",
    'Say "hi"',
    "Q1/Q2 review",
    "E = mc²",
    "Manager's guide",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "emoji 🎓",
    "",
)


def record_fields(rnd: random.Random, *, titles: Sequence[str] = TITLES) -> dict[str, object]:
    """One result as API field name -> Python value (absent optional fields left out)."""
    offset = rnd.choice([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))])
    base = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(200_000_000))
    fields: dict[str, object] = {
        "userId": _uuid(rnd),
        "courseId": _uuid(rnd),
        "courseTitle": rnd.choice(titles),
        "accessDate": base.astimezone(offset),
        "completionStatus": rnd.choice(STATUSES),
        "isOverdue": rnd.random() < 0.3,
    }
    optional: dict[str, object] = {
        "enrollmentId": _uuid(rnd),
        "sessionId": _uuid(rnd),
        "dueDate": base + timedelta(days=rnd.randrange(1, 90)),
        "expirationDate": base + timedelta(days=rnd.randrange(90, 400)),
        "completionDate": base + timedelta(hours=rnd.randrange(1, 2000)),
        "duration": rnd.randrange(0, 36000),
        "timeSpent": rnd.randrange(0, 100000),
        "progress": rnd.choice([0.0, 9.09, 55.5, 100.0]),
        "awardedScore": float(rnd.randrange(0, 101)),
        "passingScore": float(rnd.randrange(50, 90)),
        "viewsCount": rnd.randrange(0, 60),
    }
    for name, value in optional.items():
        if rnd.random() < 0.6:
            fields[name] = value
    return fields


def _uuid(rnd: random.Random) -> str:
    value = f"{rnd.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def expected(fields: dict[str, object]) -> LearnerResult:
    """The struct a record must parse to."""
    return msgspec.convert(fields, LearnerResult)


def escape_text(text: str, rnd: random.Random | None = None) -> str:
    """XML-escape text; with ``rnd``, vary the legal spellings (raw or escaped > " ', numeric refs)."""
    out = []
    for char in text:
        if char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">" and rnd is None:
            out.append("&gt;")  # as libxml2 and PHP write it
        elif char == "\r":
            out.append("&#13;")
        elif rnd is not None and char in ">\"'" and rnd.random() < 0.5:
            out.append({">": "&gt;", '"': "&quot;", "'": "&apos;"}[char])
        elif rnd is not None and rnd.random() < 0.02:
            out.append(f"&#{ord(char)};" if rnd.random() < 0.5 else f"&#x{ord(char):x};")
        else:
            out.append(char)
    return "".join(out)


def _wire(value: object, rnd: random.Random | None) -> str:
    if isinstance(value, bool):
        return rnd.choice(["1", "true"] if value else ["0", "false"]) if rnd else ("1" if value else "0")
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.replace("+00:00", "Z") if rnd and rnd.random() < 0.5 else text
    if isinstance(value, float) and value.is_integer() and (rnd is None or rnd.random() < 0.5):
        return str(int(value))
    return escape_text(str(value), rnd)


def render_page(
    records: Sequence[dict[str, object]],
    token: str | None = "MmEzZTBiMjAtYmNmYi0xMWU5LTk2ODUtMGE1ODBhZjQwOTVj",
    *,
    rnd: random.Random | None = None,
    separator: str = "\n",
) -> bytes:
    """A page in the seed's layout; ``rnd`` varies the legal spellings of values."""
    sep = separator
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>{sep}<response>{sep}<results>{sep}']
    for fields in records:
        parts.append(f"<result>{sep}")
        for name, value in fields.items():
            parts.append(f"<{name}>{_wire(value, rnd)}</{name}>{sep}")
        parts.append(f"</result>{sep}")
    parts.append(f"</results>{sep}")
    if token is not None:
        parts.append(f"<nextPageToken>{token}</nextPageToken>{sep}")
    parts.append("</response>\n")
    return "".join(parts).encode()

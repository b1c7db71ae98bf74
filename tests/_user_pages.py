"""Build ``/users/v2`` and ``/learners/modules/results`` pages (XML and JSON) from the OpenAPI's shapes.

Independent of the emulator on purpose (as ``_pages.py``): records are built here as Python values,
rendered here, and the parser is checked against the structs they must become.

``UserV2`` in XML, as the OpenAPI lays it out (``xml: name`` of each schema)::

    <response><userProfiles><userProfile>
      <userId>…</userId><role>learner</role><roleId>…</roleId><departmentId>…</departmentId>
      <status>1</status>
      <fields><field><name>LOGIN</name><value>jdoe</value></field>…</fields>
      <addedDate>…</addedDate><lastLoginDate>…</lastLoginDate>
      <manageableDepartmentIds><id>…</id></manageableDepartmentIds>
      <userRoles><userRole><roleId>…</roleId><roleType>…</roleType>
        <manageableDepartmentIds><id>…</id></manageableDepartmentIds></userRole></userRoles>
      <groups><id>…</id></groups>
      <subordination><subordinationType>manual</subordinationType><supervisorId>…</supervisorId></subordination>
      <coSubordination>…</coSubordination>
      <workLeaveStatus><workLeaveReason>OnVacation</workLeaveReason><startDate>2024-01-01</startDate>
        </workLeaveStatus>
    </userProfile></userProfiles><nextPageToken>…</nextPageToken></response>
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec

from ispring_async import LearnerModuleResult, User
from tests._pages import STATUSES, TITLES, _uuid, _wire, escape_text

FIELD_NAMES = ("LOGIN", "EMAIL", "FIRST_NAME", "LAST_NAME", "PHONE", "POSITION", "cost center")
NAMES = ("Jane", "Иван", "O'Brien", "Zoë", "<b>", "A & B", "", "tab\there", "李")
ROLES = ("learner", "administrator", "department_administrator", "publisher", "custom")
LEAVES = ("OutOfTheOffice", "OnVacation", "OnSickLeave", "OnMaternityLeave")

# What a nested list or struct is in XML: field name -> item element (lists) or None (structs).
_ITEMS = {"fields": "field", "groups": "id", "manageableDepartmentIds": "id", "userRoles": "userRole"}


def _when(rnd: random.Random) -> datetime:
    offset = rnd.choice([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))])
    return (datetime(2019, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(200_000_000))).astimezone(
        offset
    )


def user_fields(rnd: random.Random, *, extra_fields: int | None = None) -> dict[str, Any]:
    """One user as API name -> Python value (nested dicts and lists; absent optional members left out)."""
    login = f"user{rnd.randrange(10**6)}"
    profile = [
        {"name": "LOGIN", "value": login},
        {"name": "EMAIL", "value": f"{login}@example.com"},
        {"name": "FIRST_NAME", "value": rnd.choice(NAMES)},
        {"name": "LAST_NAME", "value": rnd.choice(NAMES)},
    ]
    for _ in range(rnd.randrange(3) if extra_fields is None else extra_fields):
        profile.append({"name": rnd.choice(FIELD_NAMES[4:]), "value": rnd.choice(TITLES)})
    user: dict[str, Any] = {
        "userId": _uuid(rnd),
        "role": rnd.choice(ROLES),
        "roleId": _uuid(rnd),
        "departmentId": _uuid(rnd),
        "status": rnd.choice([1, 3, 5]),
        "fields": profile,
        "addedDate": _when(rnd),
    }
    optional: dict[str, Any] = {
        "lastLoginDate": _when(rnd),
        "manageableDepartmentIds": [_uuid(rnd) for _ in range(rnd.randrange(3))],
        "userRoles": [
            {
                "roleId": _uuid(rnd),
                "roleType": rnd.choice(ROLES),
                "manageableDepartmentIds": [_uuid(rnd) for _ in range(rnd.randrange(3))],
            }
            for _ in range(rnd.randrange(1, 3))
        ],
        "groups": [_uuid(rnd) for _ in range(rnd.randrange(4))],
        "subordination": {"subordinationType": "manual", "supervisorId": _uuid(rnd)},
        "coSubordination": {"subordinationType": rnd.choice(["inherit", "no_supervisor"])},
        "workLeaveStatus": {
            "workLeaveReason": rnd.choice(LEAVES),
            "startDate": date(2024, 1, 1) + timedelta(days=rnd.randrange(300)),
            **({"endDate": date(2025, 1, 1)} if rnd.random() < 0.5 else {}),
        },
        "securityPolicyAcceptanceDate": _when(rnd),
        "privacyPolicyConsentAcceptanceDate": _when(rnd),
    }
    for name, value in optional.items():
        if rnd.random() < 0.7:
            user[name] = value
    return user


def module_result_fields(rnd: random.Random) -> dict[str, Any]:
    """One module result as API name -> Python value (absent optional fields left out)."""
    base = _when(rnd)
    fields: dict[str, Any] = {
        "userId": _uuid(rnd),
        "courseId": _uuid(rnd),
        "moduleId": _uuid(rnd),
        "moduleTitle": rnd.choice(TITLES),
        "courseItemId": _uuid(rnd),
        "accessDate": base,
        "completionStatus": rnd.choice(STATUSES),
        "isOverdue": rnd.random() < 0.3,
    }
    optional: dict[str, Any] = {
        "enrollmentId": _uuid(rnd),
        "dueDate": base + timedelta(days=rnd.randrange(1, 90)),
        "expirationDate": base + timedelta(days=rnd.randrange(90, 400)),
        "completionDate": base + timedelta(hours=rnd.randrange(1, 2000)),
        "timeSpent": rnd.randrange(0, 100000),
        "awardedScore": float(rnd.randrange(0, 101)),
        "passingScore": float(rnd.randrange(50, 90)),
        "progress": rnd.choice([0.0, 9.09, 55.5, 100.0]),
        "viewsCount": rnd.randrange(0, 60),
    }
    for name, value in optional.items():
        if rnd.random() < 0.6:
            fields[name] = value
    return fields


def expected_user(fields: dict[str, Any]) -> User:
    """The struct a user record must parse to."""
    return msgspec.convert(fields, User)


def expected_module_result(fields: dict[str, Any]) -> LearnerModuleResult:
    """The struct a module result record must parse to."""
    return msgspec.convert(fields, LearnerModuleResult)


class Style:
    """How a page is spelled: indentation, and (from ``rnd``) comments, CDATA, attributes, unknown
    elements, varied value spellings. The logical values never change."""

    def __init__(
        self, rnd: random.Random | None = None, *, indent: str = "", noise: float = 0.0, tricky: bool = True
    ) -> None:
        self.rnd = rnd
        self.indent = indent
        self.noise = noise
        self.tricky = tricky
        """Comments hold a record's closing tag (a run cut there must not be read as one)."""

    def _roll(self) -> bool:
        return self.rnd is not None and self.rnd.random() < self.noise

    def open(self, name: str) -> str:
        if self._roll():
            return f'<{name} xml:lang="en" note="a&gt;b">'
        return f"<{name}>"

    def gap(self, depth: int) -> str:
        out = f"\n{self.indent * depth}" if self.indent else ""
        if self._roll():
            out += "<!-- </userProfile> -->" if self.tricky else "<!-- generated -->"
        if depth > 1 and self._roll():  # not around the container: the API's own header is plain
            out += "<unknownNested><a><b>x</b></a><id>not an id</id></unknownNested>"
        return out

    def text(self, value: object) -> str:
        text = _wire(value, self.rnd)
        if isinstance(value, str) and value and self._roll() and "]]>" not in value and "\r" not in value:
            return f"<![CDATA[{value}]]>"
        return text


def _element(name: str, value: object, style: Style, depth: int) -> str:
    if isinstance(value, dict):
        inner = "".join(_element(k, v, style, depth + 1) for k, v in value.items())
        return f"{style.gap(depth)}{style.open(name)}{inner}{style.gap(depth)}</{name}>"
    if isinstance(value, list):
        item = _ITEMS[name]
        inner = "".join(_element(item, v, style, depth + 1) for v in value)
        if not value and style.rnd is not None and style.rnd.random() < 0.5:
            return f"{style.gap(depth)}<{name}/>"
        return f"{style.gap(depth)}{style.open(name)}{inner}{style.gap(depth)}</{name}>"
    return f"{style.gap(depth)}{style.open(name)}{style.text(value)}</{name}>"


def render_xml(
    records: Sequence[dict[str, Any]],
    *,
    container: str,
    item: str,
    token: str | None = "dG9rZW4",
    style: Style | None = None,
) -> bytes:
    """A page of ``records`` in XML (``container``/``item``: ``userProfiles``/``userProfile``, or
    ``results``/``result`` for module results)."""
    style = style or Style()
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><response>{style.gap(1)}<{container}>']
    parts += [_element(item, record, style, 2) for record in records]
    parts.append(f"{style.gap(1)}</{container}>")
    if token is not None:
        parts.append(f"{style.gap(1)}<nextPageToken>{escape_text(token)}</nextPageToken>")
    parts.append("\n</response>\n")
    return "".join(parts).encode()


def render_json(records: Sequence[dict[str, Any]], *, container: str, token: str | None = "dG9rZW4") -> bytes:
    """A page of ``records`` in JSON (dates in ISO 8601)."""
    body: dict[str, Any] = {container: records}
    if token is not None:
        body["nextPageToken"] = token
    return json.dumps(body, default=lambda v: v.isoformat(), ensure_ascii=False).encode()

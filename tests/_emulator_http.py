"""Talking to the emulator over raw HTTP (no client in between): what the emulator's test modules share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
import msgspec
from defusedxml import ElementTree as SafeET

from ispring_async._models import LearnerResult
from ispring_async.emulator import Emulator

SCHEMAS = Path(__file__).parent / "schemas"


Params = list[tuple[str, str]]


EVERY_STATUS: Params = [("userStatuses[]", "1"), ("userStatuses[]", "3"), ("userStatuses[]", "5")]


def schema(name: str) -> dict[str, Any]:
    """A JSON schema copied from the vendor's OpenAPI into tests/schemas."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def validate(instance: object, name: str) -> None:
    """Validate against a copied schema, formats (uuid) included."""
    jsonschema.validate(instance, schema(name), format_checker=jsonschema.FormatChecker())


def record_from_fields(fields: dict[str, Any]) -> LearnerResult:
    """A record as a client decodes it (strings converted leniently, as XML carries only text)."""
    return msgspec.convert(fields, LearnerResult, strict=False)


class Page(msgspec.Struct):
    """One parsed page: records' fields in document order, and the token as sent."""

    fields: list[dict[str, str]]
    token: str | None
    token_present: bool


def parse_xml_page(body: bytes) -> Page:
    """Parse an XML results page; the token must come after the results."""
    root = SafeET.fromstring(body)
    assert root.tag == "response"
    children = [child.tag for child in root]
    assert children[0] == "results"
    assert children in (["results"], ["results", "nextPageToken"])
    records = [{field.tag: field.text or "" for field in result} for result in root.find("results") or []]
    token_element = root.find("nextPageToken")
    token = None if token_element is None else (token_element.text or "")
    return Page(fields=records, token=token, token_present=token_element is not None)


def token_form(emu: Emulator) -> dict[str, str]:
    """The client-credentials form for the emulator's configured client."""
    return {
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "grant_type": "client_credentials",
    }


async def fetch_token(session: aiohttp.ClientSession, emu: Emulator) -> str:
    """A token from the token endpoint, with the configured credentials."""
    async with session.post(emu.base_url + "/api/v3/token", data=token_form(emu)) as response:
        assert response.status == 200
        token: str = (await response.json())["access_token"]
        return token


async def get(
    session: aiohttp.ClientSession,
    emu: Emulator,
    path_and_query: str,
    *,
    token: str | None = None,
    fmt: str = "xml",
    bare: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """GET a path (query string as given) and return status, headers and body."""
    headers = {} if fmt == "xml" else {"Accept": "application/json"}
    token = token if token is not None else emu.issue_token()
    headers["Authorization"] = token if bare else f"Bearer {token}"
    async with session.get(emu.base_url + path_and_query, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def query(params: Sequence[tuple[str, str]]) -> str:
    """A query string with PHP-style names left readable and values encoded (``+`` as %2B)."""
    return "&".join(f"{quote(name, safe='[]')}={quote(value, safe='')}" for name, value in params)


async def export(
    session: aiohttp.ClientSession, emu: Emulator, params: Params, *, page_size: int, fmt: str = "xml"
) -> list[LearnerResult]:
    """Page through /learners/results like a client would and return every record."""
    records: list[LearnerResult] = []
    token: str | None = None
    seen_tokens: set[str] = set()
    while True:
        page_params = [*params, ("pageSize", str(page_size))]
        if token:
            page_params.append(("pageToken", token))
        status, headers, body = await get(session, emu, "/learners/results?" + query(page_params), fmt=fmt)
        assert status == 200, body
        if fmt == "json":
            document = json.loads(body)
            validate(document, "learners-results-response.json")
            records += [record_from_fields(item) for item in document["results"]]
            token = document.get("nextPageToken")
        else:
            assert headers["Content-Type"].startswith("application/xml")
            page = parse_xml_page(body)
            records += [record_from_fields(fields) for fields in page.fields]
            token = page.token
        if not token:
            return records
        assert token not in seen_tokens
        seen_tokens.add(token)

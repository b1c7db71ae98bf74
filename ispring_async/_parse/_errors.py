"""The API's ``code`` and ``message`` from an error body, read only to enrich an error being raised."""

from __future__ import annotations

import re

import msgspec

__all__ = ["parse_error_body"]


class _ErrorBody(msgspec.Struct):
    code: int | str | None = None
    message: str | None = None


_ERROR_XML = re.compile(rb"<(code|message)>([^<]*)</\1>")


def parse_error_body(body: bytes) -> tuple[int | None, str | None]:
    """The API's ``code`` and ``message`` from an error body in JSON or XML; ``(None, None)`` if absent.

    Never raises: an error body is read only to enrich the exception already being raised. The XML is
    scanned with a pattern rather than parsed, so a hostile error body cannot do harm.
    """
    body = body[:65536]
    code: int | str | None = None
    message: str | None = None
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        try:
            decoded = msgspec.json.decode(stripped, type=_ErrorBody)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return None, None
        code, message = decoded.code, decoded.message
    else:
        for name, value in _ERROR_XML.findall(body):
            text = value.decode("utf-8", "replace").strip()
            if name == b"code":
                code = text
            else:
                message = _unescape(text)
    if isinstance(code, str):
        code = int(code) if code.strip().lstrip("-").isdigit() and len(code) < 20 else None
    return code, message


def _unescape(text: str) -> str:
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )

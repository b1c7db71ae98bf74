"""Hardening shared by every XML route: a refusing expat, typed expat errors, the HTML sniff.

DTDs, entity declarations and external references are refused outright (a DTD is what every XML bomb
needs), with defusedxml's own exception types as the cause, so a caller who knows defusedxml sees the
policy it expects. Plain pyexpat handlers are used rather than defusedxml's reader: the refusal costs
nothing per element, while defusedxml's SAX and ElementTree layers cost 2-3x (benchmarks/).
"""

from __future__ import annotations

import re
from typing import Any, Final
from xml.parsers import expat

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from ispring_async._exceptions import ParseError, UnexpectedContentError, UnsafeXMLError

__all__ = ["hardened_expat", "looks_like_html", "run_expat"]


def _refuse_doctype(name: str | None, sysid: str | None, pubid: str | None, *_: object) -> None:
    if name and name.lower() == "html":
        raise UnexpectedContentError("the body is an HTML page, not the API's XML")
    raise UnsafeXMLError("the XML declares a DTD, which is refused", where=f"<!DOCTYPE {name}>") from (
        DTDForbidden(name, sysid, pubid)
    )


def _refuse_entity(name: str | None, *args: Any) -> None:
    # EntityDeclHandler(name, is_parameter, value, base, sysid, pubid, notation) and
    # UnparsedEntityDeclHandler(name, base, sysid, pubid, notation): keep what defusedxml reports.
    cause = EntitiesForbidden(name, None, None, None, None, None)
    raise UnsafeXMLError("the XML declares an entity, which is refused", where=f"<!ENTITY {name}>") from cause


def _refuse_external(context: str | None, base: str | None, sysid: str | None, pubid: str | None) -> int:
    cause = ExternalReferenceForbidden(context, base, sysid, pubid)
    raise UnsafeXMLError("the XML references an external entity, which is refused") from cause


def hardened_expat() -> Any:
    """A pyexpat parser that refuses DTDs, entity declarations and external references."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


class ExpatSyntaxError(ParseError):
    """Internal: expat found the bytes malformed (a ``ParseError`` users see as such)."""


def run_expat(parser: Any, data: bytes, final: bool, page: str) -> None:
    """Feed expat, translating its errors (and the LookupError of an unknown declared encoding)."""
    try:
        parser.Parse(data, final)
    except expat.ExpatError as exc:
        reason = expat.errors.messages[exc.code] if exc.code is not None else str(exc)
        raise ExpatSyntaxError(
            f"malformed XML ({reason})",
            page=page,
            where=f"line {exc.lineno}, column {exc.offset}",
            retryable=True,
        ) from None
    except LookupError as exc:
        raise ParseError(f"the XML declares an encoding Python does not know ({exc})", page=page) from None
    except RecursionError:
        raise ParseError("the XML is nested too deeply", page=page) from None


_SPACE: Final = re.compile(rb"\s*")
_SNIFF_BYTES: Final = 4096


def looks_like_html(data: bytes) -> bool:
    """Whether a body starts (after whitespace and comments) like an HTML page.

    A loop of ``find`` calls rather than one pattern: ``\\s*(?:<!--.*?-->\\s*)*`` backtracks
    exponentially on a run of comments (280 bytes froze the event loop for 9 s). Each comment here is
    passed over once, and only the first few KiB are looked at.
    """
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    pos = _SPACE.match(head).end()  # type: ignore[union-attr]  # \s* always matches
    while head.startswith(b"<!--", pos):
        end = head.find(b"-->", pos + 4)
        if end < 0:
            return False
        pos = _SPACE.match(head, end + 3).end()  # type: ignore[union-attr]
    start = head[pos : pos + 15].lower()
    if start.startswith(b"<!doctype") and start[9:].lstrip().startswith(b"html"):
        return True
    return start.startswith(b"<html") and (len(start) == 5 or start[5:6] in b" \t\r\n>")

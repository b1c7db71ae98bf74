"""What the parsers know about one kind of list page, and the one struct conversion both XML routes use."""

from __future__ import annotations

import re
from typing import Any, Final, Generic, TypeVar

import msgspec

from ispring_async._exceptions import ParseError
from ispring_async._models import Department, LearnerModuleResult, LearnerResult

__all__ = [
    "DEPARTMENTS",
    "MODULE_RESULTS",
    "RESULTS",
    "TOP_FIELDS",
    "DeclinedError",
    "Shape",
    "admits_str",
    "where",
]

S = TypeVar("S", bound=msgspec.Struct)

# Elements directly under <response> whose text a page may need: the token, and an error body's
# code and message (a 200 with an error body). Every other element there is skipped unread.
TOP_FIELDS: Final = frozenset({"nextPageToken", "code", "message"})


class DeclinedError(Exception):
    """Internal: the fast route cannot vouch for this input; the reference route takes over."""


class Shape(Generic[S]):
    """One kind of list page (results or departments): its element names and its struct."""

    def __init__(self, struct: type[S], *, container: str, item: str, markup_per_record: int = 96) -> None:
        self.struct = struct
        self.markup_per_record = markup_per_record
        """The ``<`` one record may hold before a page counts as hostile (``ParseLimits.max_markup``)."""
        self.container = container
        self.item = item
        self.list_type: Any = list[struct]  # type: ignore[valid-type]
        self.list_decoder = msgspec.json.Decoder(self.list_type, strict=False)
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        self.fields = frozenset(f.encode_name for f in info.fields)
        # An empty element is "" for a text field but means "absent" for a date or number.
        self.empty_is_absent = frozenset(
            f.encode_name for f in info.fields if not admits_str(f.type) and not f.required
        )
        # The same names as the C pass takes them (_speedups.c).
        self.item_name = item.encode()
        self.field_names = tuple(sorted(name.encode() for name in self.fields))
        self.absent_names = tuple(sorted(name.encode() for name in self.empty_is_absent))
        head = re.escape(container.encode())
        # Matched against prologs and tails already cleaned of comments, PIs and attributes (_fast.py).
        self.header = re.compile(rb"\s*<response>\s*<" + head + rb">\s*")
        self.tail = re.compile(
            rb"\s*</" + head + rb">\s*(?:<nextPageToken>([^<&]*)</nextPageToken>|<nextPageToken/>)?"
            rb"\s*</response>\s*"
        )
        self.open_item = f"<{item}>".encode()
        self.close_item = f"</{item}>".encode()

    def convert(self, rows: list[dict[str, str]], page: str, first_index: int) -> list[S]:
        """Rows of field texts to structs; a bad value names the page, the record and the field."""
        try:
            converted: list[S] = msgspec.convert(rows, self.list_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ParseError(
                f"invalid {self.item} ({exc})", page=page, where=where(exc, self.item, first_index)
            ) from None
        return converted


def admits_str(t: msgspec.inspect.Type) -> bool:
    """Whether a value of type ``t`` may be a string (an empty element is then ``""``, not absent)."""
    if isinstance(t, msgspec.inspect.UnionType):
        return any(admits_str(member) for member in t.types)
    return isinstance(t, msgspec.inspect.StrType)


_PATH_INDEX = re.compile(r"\$\[(\d+)\]")


def where(exc: msgspec.ValidationError, item: str, first_index: int) -> str | None:
    """``<result> #N of the page`` from a msgspec error path like ``$[3].timeSpent``."""
    match = _PATH_INDEX.search(str(exc))
    return f"<{item}> #{first_index + int(match.group(1)) + 1} of the page" if match else None


RESULTS: Final = Shape(LearnerResult, container="results", item="result")
DEPARTMENTS: Final = Shape(Department, container="departments", item="department")
MODULE_RESULTS: Final = Shape(LearnerModuleResult, container="results", item="result")

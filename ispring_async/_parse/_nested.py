"""Nested record shapes (users): the element tree a record may hold, read the same way by both routes.

A flat record (results, departments) is a row of texts. A nested one (``UserV2``) also holds structs
(``<subordination>``), wrapped lists of texts (``<groups><id>…</id></groups>``) and wrapped lists of
structs (``<fields><field><name>…</name><value>…</value></field></fields>``). What each element is, is
derived from the msgspec struct (``Node``), plus the one thing a struct cannot say: the item element of
each wrapped list (the OpenAPI's ``xml: name``).

The rules, one set for both routes (``tests/test_parse_differential.py`` holds them to it):

* an unknown element is skipped with everything inside it (the depth still bounded);
* text between the elements of a record, a struct or a list is ignored;
* an element inside a text field is an error (the value would otherwise be silently partial);
* an empty text element is ``""`` for a text field and *absent* for an optional date or number;
* an optional struct element with no child elements at all (``<workLeaveStatus/>``) is absent;
* a wrapped list with no items is an empty list; a field given twice keeps its last value.

``tree_rows`` applies them to a C-built ``xml.etree`` tree (the fast route: the per-element work is
the tree builder's); ``NestedReferenceParser`` applies them from expat handlers (the reference route).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec

from ispring_async._exceptions import ParseError
from ispring_async._models import User
from ispring_async._parse._envelope import Bounds
from ispring_async._parse._reference import ReferenceParser
from ispring_async._parse._shapes import Shape, admits_str

__all__ = ["USERS", "NestedReferenceParser", "NestedShape", "Node", "tree_rows"]

S = TypeVar("S", bound=msgspec.Struct)

LEAF: Final = 0
STRUCT: Final = 1
LIST: Final = 2


class Node:
    """What one element is: a text (``LEAF``), a ``STRUCT`` of named children, or a wrapped ``LIST``."""

    __slots__ = ("absent", "children", "item", "kind", "of")

    def __init__(
        self,
        kind: int,
        *,
        absent: bool = False,
        children: dict[str, Node] | None = None,
        item: str = "",
        of: Node | None = None,
    ) -> None:
        self.kind = kind
        self.absent = absent
        """An empty element means "absent" (a leaf: no text; a struct: no child elements)."""
        self.children: dict[str, Node] = children or {}
        self.item = item
        """A list's item element name."""
        self.of = of
        """A list's item node."""

    @classmethod
    def of_struct(
        cls, struct: type[msgspec.Struct], items: Mapping[str, str], *, absent: bool = False
    ) -> Node:
        """The node of ``struct``'s element; ``items`` names the item element of each wrapped list field."""
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        children = {
            f.encode_name: _node(f.type, f.encode_name, items, optional=not f.required) for f in info.fields
        }
        return cls(STRUCT, absent=absent, children=children)


def _node(t: msgspec.inspect.Type, name: str, items: Mapping[str, str], *, optional: bool) -> Node:
    if isinstance(t, msgspec.inspect.UnionType):
        members = [m for m in t.types if not isinstance(m, msgspec.inspect.NoneType)]
        if len(members) == 1:
            return _node(members[0], name, items, optional=True)
        return Node(LEAF, absent=optional and not admits_str(t))
    if isinstance(t, msgspec.inspect.StructType):
        return Node.of_struct(t.cls, items, absent=optional)
    if isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
        # Items of a wrapped list are never absent: an empty <id/> is one empty id.
        return Node(LIST, item=items[name], of=_node(t.item_type, items[name], items, optional=False))
    return Node(LEAF, absent=optional and not admits_str(t))


class NestedShape(Shape[S]):
    """A list page whose records nest (see the module docstring); ``items`` as for ``Node.of_struct``."""

    def __init__(
        self,
        struct: type[S],
        *,
        container: str,
        item: str,
        items: Mapping[str, str],
        markup_per_record: int,
    ) -> None:
        super().__init__(struct, container=container, item=item, markup_per_record=markup_per_record)
        self.root = Node.of_struct(struct, items)


# -- the fast route's tree --------------------------------------------------------------------------


def tree_rows(
    root: ET.Element, shape: NestedShape[Any], *, page: str, bounds: Bounds, first: int
) -> list[Any]:
    """The rows of the records that are children of ``root`` (depth 3 of the document), by the rules above.

    Unknown elements between records are skipped (depth-checked); ``_`` separators are not expected here.
    """
    item, node, limit = shape.item, shape.root, bounds.max_depth
    rows: list[Any] = []
    count = first
    for element in root:
        if element.tag != item:
            if len(element) and _deeper_than(element, limit - 2):
                raise ParseError(f"elements nested deeper than {limit}", page=page)
            continue
        if count >= bounds.max_records:
            raise ParseError(f"more than {bounds.max_records} records in one page", page=page)
        count += 1
        rows.append(_struct(element, node, 4, page, limit))
    return rows


def _struct(element: ET.Element, node: Node, depth: int, page: str, limit: int) -> dict[str, Any]:
    """``element``'s known children, which sit at ``depth``."""
    row: dict[str, Any] = {}
    children = node.children
    for child in element:
        name = child.tag
        sub = children.get(name)
        if sub is None:
            if len(child) and _deeper_than(child, limit - depth):
                raise ParseError(f"elements nested deeper than {limit}", page=page)
            continue
        kind = sub.kind
        if kind == LEAF:
            if len(child):
                raise ParseError(f"unexpected element <{child[0].tag}> inside <{name}>", page=page)
            text = child.text or ""
            if text or not sub.absent:
                row[name] = text
        elif kind == LIST:
            row[name] = _list(child, sub, depth + 1, page, limit)
        elif len(child) or not sub.absent:
            row[name] = _struct(child, sub, depth + 1, page, limit)
    return row


def _list(element: ET.Element, node: Node, depth: int, page: str, limit: int) -> list[Any]:
    item, of = node.item, node.of
    assert of is not None
    values: list[Any] = []
    for child in element:
        if child.tag != item:
            if len(child) and _deeper_than(child, limit - depth):
                raise ParseError(f"elements nested deeper than {limit}", page=page)
            continue
        if of.kind == LEAF:
            if len(child):
                raise ParseError(f"unexpected element <{child[0].tag}> inside <{item}>", page=page)
            values.append(child.text or "")
        elif of.kind == STRUCT:
            values.append(_struct(child, of, depth + 1, page, limit))
        else:
            values.append(_list(child, of, depth + 1, page, limit))
    return values


def _deeper_than(element: ET.Element, limit: int) -> bool:
    """Whether ``element``'s subtree is more than ``limit`` levels deep (iterative: no recursion)."""
    stack = [(element, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node)
    return False


# -- the reference route ----------------------------------------------------------------------------


class _Frame:
    """One open known element inside a record: its node, its value so far, whether it had children."""

    __slots__ = ("chunks", "elements", "name", "node", "size", "value")

    def __init__(self, node: Node, name: str, value: Any) -> None:
        self.node = node
        self.name = name
        self.value = value
        self.elements = False
        self.chunks: list[str] = []
        self.size = 0


class NestedReferenceParser(ReferenceParser[S]):
    """The reference route for nested records: the flat parser's page layout, frames inside records."""

    def __init__(
        self, shape: Shape[S], *, page: str, bounds: Bounds, first_index: int = 0, fragment: bool = False
    ) -> None:
        assert isinstance(shape, NestedShape)
        self._root = shape.root
        self._frames: list[_Frame] = []
        super().__init__(shape, page=page, bounds=bounds, first_index=first_index, fragment=fragment)

    def _start(self, name: str, attrs: object) -> None:
        # Outside records (and in skipped elements) the flat parser's rules are the page's rules.
        if self._skip_depth or self._row is None or len(self._path) < 3:
            super()._start(name, attrs)
            if self._row is not None and not self._frames:
                self._frames.append(_Frame(self._root, name, self._row))
            return
        path = self._path
        path.append(name)
        depth = len(path)
        if depth > self._bounds.max_depth:
            raise ParseError(f"elements nested deeper than {self._bounds.max_depth}", page=self._page)
        top = self._frames[-1]
        node = top.node
        top.elements = True
        if node.kind == LEAF:
            raise ParseError(f"unexpected element <{name}> inside <{top.name}>", page=self._page)
        sub = node.children.get(name) if node.kind == STRUCT else node.of if name == node.item else None
        if sub is None:
            self._skip_depth = depth
            return
        value: Any = {} if sub.kind == STRUCT else [] if sub.kind == LIST else None
        self._frames.append(_Frame(sub, name, value))

    def _text(self, data: str) -> None:
        frames = self._frames
        if not frames or self._skip_depth:
            super()._text(data)
            return
        top = frames[-1]
        if top.node.kind != LEAF:
            return
        top.size += len(data)
        if top.size > self._bounds.max_text_bytes:
            raise ParseError(
                f"text longer than {self._bounds.max_text_bytes} characters",
                page=self._page,
                where=f"<{top.name}>",
            )
        top.chunks.append(data)

    def _end(self, name: str) -> None:
        if self._skip_depth or self._row is None or len(self._path) <= 3:
            super()._end(name)
            if self._row is None:
                self._frames.clear()
            return
        self._path.pop()
        frame = self._frames.pop()
        parent = self._frames[-1]
        node = frame.node
        if node.kind == LEAF:
            text = "".join(frame.chunks)
            if parent.node.kind == LIST:
                parent.value.append(text)
            elif text or not node.absent:
                parent.value[name] = text
        elif parent.node.kind == LIST:
            parent.value.append(frame.value)
        elif frame.elements or not node.absent:
            parent.value[name] = frame.value


USERS: Final = NestedShape(
    User,
    container="userProfiles",
    item="userProfile",
    # The OpenAPI's item names: UserProfileField is <field>, ArrayOfIds items are <id>, UserRole <userRole>.
    items={"fields": "field", "groups": "id", "manageableDepartmentIds": "id", "userRoles": "userRole"},
    markup_per_record=512,
)

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
* a wrapped list with no items is an empty list; a field given twice keeps its last value;
* inside ``<fields>``, a text-only child other than ``<field>`` is one name/value pair (the OpenAPI's
  ``UserProfileFields`` object form, ``<login>jdoe</login>``), in document order with the pairs.

``NestedReferenceParser`` applies them from expat handlers (the reference route, and the fast route's
fallback for a run it cannot vouch for); ``NestedJson`` is the fast route's rewrite of a run as JSON,
which yields the same records or declines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec

from ispring_async._exceptions import ParseError
from ispring_async._models import User
from ispring_async._parse._envelope import Bounds
from ispring_async._parse._fast import (
    _CLOSE_MARK,
    _DANGLING,
    _LEAF,
    _PREFIX,
    _SPACE_MAP,
    UnknownCutter,
    _escape,
    _unescape_entities,
)
from ispring_async._parse._reference import ReferenceParser
from ispring_async._parse._shapes import Shape, admits_str

__all__ = ["USERS", "NestedJson", "NestedReferenceParser", "NestedShape", "Node"]

S = TypeVar("S", bound=msgspec.Struct)

LEAF: Final = 0
STRUCT: Final = 1
LIST: Final = 2


class Node:
    """What one element is: a text (``LEAF``), a ``STRUCT`` of named children, or a wrapped ``LIST``."""

    __slots__ = ("absent", "children", "item", "kind", "of", "pairs")

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
        self.pairs = False
        """A list of name/value structs that may also come in the OpenAPI's object form: each child
        element other than the item holding text only (``<fields><login>jdoe</login></fields>``) is
        one pair; one holding elements is unknown, and skipped."""

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
        pairs: tuple[str, ...] = (),
    ) -> None:
        super().__init__(struct, container=container, item=item, markup_per_record=markup_per_record)
        self.root = Node.of_struct(struct, items)
        for name in pairs:
            self.root.children[name].pairs = True
        self.json = NestedJson(self)


_PAIR: Final = Node(LEAF)
"""The node of one ``<name>value</name>`` child of a ``pairs`` list."""


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
        if node is _PAIR:
            # Not an object-form field after all but an unknown element with children: skipped whole,
            # as any unknown element inside a list is.
            self._frames.pop()
            self._skip_depth = depth - 1
            return
        if node.kind == LEAF:
            raise ParseError(f"unexpected element <{name}> inside <{top.name}>", page=self._page)
        sub = node.children.get(name) if node.kind == STRUCT else node.of if name == node.item else None
        if sub is None and node.pairs:
            sub = _PAIR
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
            raise self._text_too_long(top.name)
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
            if node is _PAIR:
                parent.value.append({"name": name, "value": text})
            elif parent.node.kind == LIST:
                parent.value.append(text)
            elif text or not node.absent:
                parent.value[name] = text
        elif parent.node.kind == LIST:
            parent.value.append(frame.value)
        elif frame.elements or not node.absent:
            parent.value[name] = frame.value


# -- the fast route's JSON rewrite --------------------------------------------------------------------


def _trie(entries: dict[bytes, bytes]) -> bytes:
    """A pattern matching any key of ``entries`` followed by its value (a pattern), factored by common
    prefixes. No key is a prefix of another (each ends at its tag's ``>``)."""

    def node(words: list[bytes], depth: int) -> bytes:
        if len(words) == 1:
            word = words[0]
            return re.escape(word[depth:]) + entries[word]
        groups: dict[bytes, list[bytes]] = {}
        for word in words:
            assert len(word) > depth, word  # no key is a prefix of another
            groups.setdefault(word[depth : depth + 1], []).append(word)
        if len(groups) == 1:
            ((char, group),) = groups.items()
            return re.escape(char) + node(group, depth + 1)
        branches = [re.escape(char) + node(group, depth + 1) for char, group in sorted(groups.items())]
        return b"(?:" + b"|".join(branches) + b")"

    return node(sorted(entries), 0)


def _escape_text_gt(region: bytes) -> bytes:
    """``region`` with each ``>`` that is text (legal raw in XML) written ``&gt;``.

    In a prepared run every ``<`` opens a tag whose first ``>`` closes it, so in each piece after a
    ``<`` a ``>`` past the first is text. Only runs where the counts of ``<`` and ``>`` differ come
    here, and only pieces holding two or more are rewritten.
    """
    pieces = region.split(b"<")
    for i, piece in enumerate(pieces):
        if piece.count(b">") > 1 or (i == 0 and b">" in piece):
            cut = piece.find(b">") + 1 if i else 0
            pieces[i] = piece[:cut] + piece[cut:].replace(b">", b"&gt;")
    return b"<".join(pieces)


def _deepest(node: Node, depth: int) -> int:
    """The depth of the deepest element ``node``'s children can hold, its children at ``depth``."""
    deepest = depth
    for child in node.children.values():
        if child.kind == STRUCT:
            deepest = max(deepest, _deepest(child, depth + 1))
        elif child.kind == LIST and child.of is not None:
            item = child.of
            deepest = max(deepest, depth + 1 if item.kind == LEAF else _deepest(item, depth + 2))
    return deepest


# Structure-tag spellings NestedJson remembers (the ~40 of the schema and the indentations seen).
_MAX_SPELLINGS: Final = 512


class NestedJson:
    """Rewrites a run of nested records as JSON with C-level byte passes, as ``_fast.flat_json`` does
    for flat ones; ``None`` where it cannot vouch for the result (the tree then reads the run).

    One pattern finds the structure tags (a record's, a struct's, a wrapped list's and its items'):
    a list's opening tag fused with its first item's, an item's closing tag with the next one's or
    the list's, with the whitespace between them, so JSON's commas come out right. Every other
    element must be a leaf: the run with its structure tags cut out, reduced to its tag punctuation,
    must hold leaves only. JSON's nesting then mirrors the XML's, and msgspec skips unknown keys
    (nested or not) as the tree skips unknown elements; anything else — an empty date, an empty
    struct, text beside items, a leaf where a list belongs — fails to decode, and the tree reads the
    run exactly.
    """

    def __init__(self, shape: NestedShape[Any]) -> None:
        lists: dict[str, Node] = {}
        structs: set[str] = set()
        stack = [shape.root]
        while stack:
            node = stack.pop()
            for name, child in node.children.items():
                if child.kind == LIST:
                    assert lists.get(name, child).item == child.item, name
                    lists[name] = child
                    assert child.of is not None
                    assert child.of.kind != LIST
                    if child.of.kind == STRUCT:
                        stack.append(child.of)
                elif child.kind == STRUCT:
                    structs.add(name)
                    stack.append(child)
        assert not structs & set(lists), "a name is a list in one place and a struct in another"
        # XML spelling (whitespace removed) -> JSON fragment. Text before a tag is always inside an
        # open JSON string (a value, or a junk "/name" or "~" member), so each fragment closes it first.
        fragments: dict[bytes, str] = {
            shape.open_item: '"],"~":"',
            shape.close_item: '"},{"~":["',
        }
        # The first tag of each structure token -> what may follow it (after whitespace) to make the
        # token; b"" for a tag that is a token alone.
        tokens: dict[bytes, list[bytes]] = {shape.open_item: [b""], shape.close_item: [b""]}
        for name, node in sorted(lists.items()):
            item = node.item
            assert node.of is not None
            struct_items = node.of.kind == STRUCT
            op, cl, io, ic = (f"<{name}>", f"</{name}>", f"<{item}>", f"</{item}>")
            fragments[f"<{name}/>".encode()] = fragments[(op + cl).encode()] = f'","{name}":[],"/{name}":"'
            fragments[(op + io).encode()] = f'","{name}":[{{"~":"' if struct_items else f'","{name}":["'
            fragments[(ic + cl).encode()] = f'"}}],"/{name}":"' if struct_items else f'"],"/{name}":"'
            fragments[(ic + io).encode()] = '"},{"~":"' if struct_items else '","'
            tokens.setdefault(f"<{name}/>".encode(), []).append(b"")
            for opening in (op, ic):
                tokens.setdefault(opening.encode(), []).extend([cl.encode(), io.encode()])
        for name in sorted(structs):
            fragments[f"<{name}>".encode()] = f'","{name}":{{"~":"'
            fragments[f"</{name}>".encode()] = f'"}},"/{name}":"'
            tokens.setdefault(f"<{name}>".encode(), []).append(b"")
            tokens.setdefault(f"</{name}>".encode(), []).append(b"")
        self._fragments = {xml: fragment.encode() for xml, fragment in fragments.items()}
        suffixes: dict[bytes, bytes] = {}
        for first, follows in tokens.items():
            assert b"" not in follows or len(set(follows)) == 1, first  # a tag is a token alone or never
            if follows != [b""]:
                # possessive: each run of whitespace is consumed once (linear time)
                suffixes[first] = (
                    rb"[ \t\n]*+(?:" + b"|".join(re.escape(f) for f in sorted(set(follows))) + b")"
                )
            else:
                suffixes[first] = b""
        # One trie over the first tags: at each "<" of a run the pattern fails after a character or
        # two, where a flat alternation of the 28 tokens tried each in turn (measured: 2-3x slower).
        self._structure = re.compile(b"(" + _trie(suffixes) + b")")
        self._delete = bytes(b for b in range(256) if b not in b" </>\x04")
        self._decoder = shape.list_decoder
        self._close_item = shape.close_item
        structure = sorted(
            {*lists, *structs, *(n.item for n in lists.values() if n.of and n.of.kind == STRUCT), shape.item}
        )
        leaves: set[str] = set()
        stack = [shape.root]
        while stack:
            node = stack.pop()
            for name, child in node.children.items():
                if child.kind == LEAF:
                    leaves.add(name)
                elif child.kind == STRUCT:
                    stack.append(child)
                elif child.of is not None:
                    if child.of.kind == LEAF:
                        leaves.add(child.item)
                    else:
                        stack.append(child.of)
        # How deep a child of the deepest structure element sits (users: response > userProfiles >
        # userProfile > userRoles > userRole > manageableDepartmentIds > id, 7): an unknown element
        # cut out there adds its own depth, which the reference route would bound.
        self._cutter = UnknownCutter(structure, leaves, deepest_child=_deepest(shape.root, 4))

    def json(self, region: bytes, *, max_depth: int, unknowns: bool = False) -> tuple[bytes | None, bool]:
        """JSON for a prepared run (``_fast.prepare``: cleaned, attributes stripped), or ``None``; and
        whether unknown elements were cut out.

        A run holding unknown elements with children (a ``<customFields>`` the vendor added) is
        read with them cut out (``_skip_unknown``), as the reference route skips them; ``unknowns``
        (the page's previous run had some) tries that first rather than after a failed rewrite.
        """
        if region.count(b">") != region.count(b"<"):
            region = _escape_text_gt(region)
        if not unknowns:
            json = self._rewrite(region)
            if json is not None:
                return json, False
        skipped = self._cutter.cut(region, max_depth)
        if skipped is not None:
            return self._rewrite(skipped), True
        return (self._rewrite(region) if unknowns else None), False

    def between_records(self, prefix: bytes, *, max_depth: int) -> bool:
        """Whether a prepared ``prefix`` between two runs holds only unknown elements the reference
        route would skip (and whitespace)."""
        close = self._close_item
        skipped = self._cutter.cut(close + prefix, max_depth)
        return skipped is not None and not skipped[len(close) :].strip()

    def _rewrite(self, region: bytes) -> bytes | None:
        parts = self._structure.split(_escape(region))
        # The structure tags cut out (one marker byte each): what is left must be leaves only.
        spaced = b"\x04".join(parts[::2]).translate(_SPACE_MAP, self._delete)
        if b"< " in spaced or b"</ " in spaced:
            return None  # whitespace inside a tag that stripping did not see: the tree reads it
        tags = spaced.replace(b" ", b"").replace(b"</", _CLOSE_MARK).replace(b"/", b"").replace(_LEAF, b"")
        if b"<" in tags or b">" in tags:
            return None  # an element other than a leaf that is not a structure tag
        fragments = self._fragments
        tags_found = parts[1::2]
        unknown = set(tags_found).difference(fragments)
        if len(unknown) + len(fragments) <= _MAX_SPELLINGS:
            # Spellings with whitespace inside (indentation) are learnt once per layout, up to a bound
            # a hostile page cannot pass; every match of the pattern is a key, whitespace removed.
            for tag in unknown:
                fragments[tag] = fragments[tag.translate(None, b" \t\n")]
            parts[1::2] = [fragments[tag] for tag in tags_found]
        else:
            parts[1::2] = [
                fragments.get(tag) or fragments[tag.translate(None, b" \t\n")] for tag in tags_found
            ]
        json = b"".join(parts)
        if b"\n" in json:
            json = json.replace(b"\n", b"\\n")
        if b"\t" in json:
            json = json.replace(b"\t", b"\\t")
        json = json.replace(b"<", b'","').replace(b">", b'":"')
        if b"&" in json:
            json = _unescape_entities(json)
        return _PREFIX + json[:-_DANGLING] + b"]"

    def decode(self, json: bytes) -> list[Any] | None:
        """The records of ``json``, or ``None`` if it does not decode (the tree then reads the run)."""
        try:
            records: list[Any] = self._decoder.decode(json)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return records


USERS: Final = NestedShape(
    User,
    container="userProfiles",
    item="userProfile",
    # The OpenAPI's item names: UserProfileField is <field>, ArrayOfIds items are <id>, UserRole <userRole>.
    items={"fields": "field", "groups": "id", "manageableDepartmentIds": "id", "userRoles": "userRole"},
    markup_per_record=512,
    # The OpenAPI's UserV2 declares ``fields`` as UserProfileFields, an object (<login>, <email>, …),
    # where the vendor's pages send <field> pairs: both read as pairs, so no login is silently lost.
    pairs=("fields",),
)

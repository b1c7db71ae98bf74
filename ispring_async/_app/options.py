"""The export command's options, declared once (issue 15, part 1).

``ExportOptions`` is the one declaration: each field's type, bounds and default (the defaults are the
library's named constants), its help text and how it appears on the command line and in the environment.
Every layer is derived from it:

- the argparse parser (``add_arguments``): one option a field, in its group, with its help and metavar;
- the environment (``env_layer``): the fields that name an ``ISPRING_*`` variable;
- the TOML file (``config_layer``): any field by name; an unknown key is refused;

and the layers are merged in precedence (command line > environment > config file > defaults, see
``merge``) and converted once with ``msgspec.convert(strict=False)`` (``convert``), whose error path names
the key, reported as the layer shows it (``--page-size``, ``$ISPRING_SKIP_UNKNOWN_IDS``, ``page_size in
the config file c.toml``). What is not a matter of types (reading files, ids and statuses, date bounds,
credentials) is done by ``ispring_async._app.cli.resolve_settings`` on the converted options.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ispring_async._app.progress import ProgressMode
from ispring_async._config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_RETRY,
    MAX_PAGE_SIZE,
    ResponseFormat,
)
from ispring_async._models import CompletionStatus
from ispring_async._paginate import DEFAULT_MAX_PAGES
from ispring_async._parse_pool import MAX_PARSE_WORKERS
from ispring_async._plan import Split
from ispring_async.sinks import DATASETS, FORMATS

__all__ = [
    "DEFAULT_PROGRESS_INTERVAL",
    "FIELDS",
    "Bound",
    "ExportOptions",
    "Layer",
    "OptionsError",
    "add_arguments",
    "command_line_layer",
    "config_layer",
    "convert",
    "env_layer",
    "flag_label",
    "merge",
]

DEFAULT_PROGRESS_INTERVAL = 10.0

ENV_PREFIX = "ISPRING_"


class OptionsError(Exception):
    """An option the layers give cannot be used; the message names it as its layer shows it."""


@dataclasses.dataclass(frozen=True)
class Cli:
    """How a field appears outside the struct: on the command line, in the environment."""

    help: str
    group: str
    metavar: str | None = None
    flag: str | None = None
    """The long option, when it is not the field's name (``--user-id`` appends to ``user_ids``)."""
    short: str | None = None
    argv: bool = True
    """False for secrets: they exist on the command line only to be refused (see cli.py)."""
    env: bool = False
    """Read from ``ISPRING_<NAME>`` too."""
    path: bool = False
    """A path: relative to the config file when it comes from one."""
    together: str | None = None
    """Fields with the same name here come from one layer together (an id list and its file)."""


def _cli(help: str, group: str, **options: Any) -> msgspec.Meta:
    return msgspec.Meta(description=help, extra={"cli": Cli(help, group, **options)})


class Bound:
    """A date bound as given: an aware or naive date-time, or a bare date (a ``*_to`` date means its end).

    A plain class, not a dataclass or struct, so ``convert`` hands the raw value (a string, or TOML's own
    date) to ``_dec_hook`` instead of reading it as fields.
    """

    __slots__ = ("value",)

    def __init__(self, value: datetime | date) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Bound({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bound) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


_WHEN = "DATETIME"
_CONNECTION = "connection"
_FILTERS = "filters (AND across filters, OR within one)"
_FANOUT = "fan-out"
_OUTPUT = "output"
_DISPLAY = "display"


class ExportOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Every option of ``ispring-async export``, with its default. See the module docstring."""

    base_url: Annotated[str | None, _cli("API base URL", _CONNECTION, metavar="URL", env=True)] = None
    client_id: Annotated[str | None, _cli("client id", _CONNECTION, metavar="ID", env=True)] = None
    client_secret: Annotated[
        str | None, _cli("the client secret", _CONNECTION, argv=False, env=True, together="credentials")
    ] = None
    client_secret_file: Annotated[
        str | None,
        _cli(
            "file holding the client secret", _CONNECTION, metavar="FILE", path=True, together="credentials"
        ),
    ] = None
    token: Annotated[
        str | None, _cli("a ready access token", _CONNECTION, argv=False, env=True, together="credentials")
    ] = None
    token_file: Annotated[
        str | None,
        _cli(
            "file holding a ready access token",
            _CONNECTION,
            metavar="FILE",
            path=True,
            together="credentials",
        ),
    ] = None
    token_url: Annotated[
        str | None,
        _cli(
            "token endpoint: a path at the base URL's host root or an absolute URL "
            "(default /api/v3/token at the host root)",
            _CONNECTION,
            metavar="URL",
            env=True,
        ),
    ] = None
    allow_insecure_http: Annotated[
        bool, _cli("allow http:// to a non-loopback host (credentials travel in clear text)", _CONNECTION)
    ] = False

    enrollment_ids: Annotated[
        list[str] | None,
        _cli("enrollment id (repeatable)", _FILTERS, metavar="UUID", flag="--enrollment-id", together="e"),
    ] = None
    enrollment_ids_file: Annotated[
        str | None,
        _cli("enrollment ids, one per line (# comments)", _FILTERS, metavar="FILE", path=True, together="e"),
    ] = None
    user_ids: Annotated[
        list[str] | None,
        _cli("user id (repeatable)", _FILTERS, metavar="UUID", flag="--user-id", together="u"),
    ] = None
    user_ids_file: Annotated[
        str | None,
        _cli("user ids, one per line (# comments)", _FILTERS, metavar="FILE", path=True, together="u"),
    ] = None
    course_ids: Annotated[
        list[str] | None,
        _cli("course id (repeatable)", _FILTERS, metavar="UUID", flag="--course-id", together="c"),
    ] = None
    course_ids_file: Annotated[
        str | None,
        _cli("course ids, one per line (# comments)", _FILTERS, metavar="FILE", path=True, together="c"),
    ] = None
    department_ids: Annotated[
        list[str] | None,
        _cli("department id (repeatable)", _FILTERS, metavar="UUID", flag="--department-id", together="d"),
    ] = None
    department_ids_file: Annotated[
        str | None,
        _cli("department ids, one per line (# comments)", _FILTERS, metavar="FILE", path=True, together="d"),
    ] = None
    skip_unknown_ids: Annotated[
        bool,
        _cli(
            "the API fails a request with 400 on one unknown id: find such ids, skip them, export the "
            "rest and report them (default: fail naming the list)",
            _FILTERS,
            env=True,
        ),
    ] = False
    completion_statuses: Annotated[
        list[str] | None,
        _cli(
            f"repeatable; one of {', '.join(CompletionStatus)}",
            _FILTERS,
            metavar="STATUS",
            flag="--completion-status",
        ),
    ] = None
    user_statuses: Annotated[
        list[str | int] | None,
        _cli(
            "repeatable: 1/active, 3/blocked, 5/terminated (default: 1 and 3)",
            _FILTERS,
            metavar="STATUS",
            flag="--user-status",
        ),
    ] = None
    access_date_from: Annotated[
        Bound | None, _cli("access date at or after", _FILTERS, metavar="DATETIME")
    ] = None
    access_date_to: Annotated[
        Bound | None, _cli("access date at or before", _FILTERS, metavar="DATETIME")
    ] = None
    due_date_from: Annotated[Bound | None, _cli("due date at or after", _FILTERS, metavar=_WHEN)] = None
    due_date_to: Annotated[Bound | None, _cli("due date at or before", _FILTERS, metavar=_WHEN)] = None
    completion_date_from: Annotated[
        Bound | None, _cli("completion date at or after", _FILTERS, metavar="DATETIME")
    ] = None
    completion_date_to: Annotated[
        Bound | None, _cli("completion date at or before", _FILTERS, metavar="DATETIME")
    ] = None

    split: Annotated[Split, _cli("how to partition (default adaptive)", _FANOUT)] = Split.ADAPTIVE
    concurrency: Annotated[
        int,
        msgspec.Meta(ge=1),
        _cli(f"requests in flight (default {DEFAULT_CONCURRENCY})", _FANOUT, metavar="N"),
    ] = DEFAULT_CONCURRENCY
    earliest: Annotated[
        Bound | None,
        _cli("where date windows start cutting (default 2000-01-01)", _FANOUT, metavar="DATETIME"),
    ] = None
    rate_limit: Annotated[
        Annotated[float, msgspec.Meta(gt=0)] | None,
        _cli("at most this many requests per second", _FANOUT, metavar="REQ/S"),
    ] = None
    page_size: Annotated[
        int,
        msgspec.Meta(ge=1, le=MAX_PAGE_SIZE),
        _cli(f"records per page, 1..{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})", _FANOUT, metavar="N"),
    ] = DEFAULT_PAGE_SIZE
    response_format: Annotated[ResponseFormat, _cli("default xml", _FANOUT)] = ResponseFormat.XML
    retry_attempts: Annotated[
        int,
        msgspec.Meta(ge=1),
        _cli(f"attempts per request, the first included ({DEFAULT_RETRY.attempts})", _FANOUT, metavar="N"),
    ] = DEFAULT_RETRY.attempts
    retry_max_wait: Annotated[
        float,
        msgspec.Meta(ge=0),
        _cli(
            f"longest wait between attempts, Retry-After included ({DEFAULT_RETRY.maximum:g})",
            _FANOUT,
            metavar="SECONDS",
        ),
    ] = DEFAULT_RETRY.maximum
    parse_workers: Annotated[
        Annotated[int, msgspec.Meta(ge=0, le=MAX_PARSE_WORKERS)] | Literal["auto"],
        _cli(
            "processes that parse XML pages beside the one receiving them; auto: one per core beyond the "
            "first, at most 2; none for JSON (default auto)",
            _FANOUT,
            metavar="N|auto",
            env=True,
        ),
    ] = "auto"
    max_pages_per_chain: Annotated[
        int,
        msgspec.Meta(ge=1),
        _cli(
            f"stop a page chain that goes on longer than this (default {DEFAULT_MAX_PAGES:,})",
            _FANOUT,
            metavar="N",
        ),
    ] = DEFAULT_MAX_PAGES

    output: Annotated[
        str | None,
        _cli("file (.jsonl .csv .parquet .sqlite) or folder", _OUTPUT, metavar="PATH", short="-o", path=True),
    ] = None
    format: Annotated[
        str | None, _cli(f"output format, one of {', '.join(FORMATS)} (default: from the extension)", _OUTPUT)
    ] = None
    resume: Annotated[bool, _cli("continue an interrupted export to PATH", _OUTPUT)] = False
    include: Annotated[
        str | list[str],
        _cli(
            f"datasets, comma-separated: {','.join(d.name for d in DATASETS)} (default results)",
            _OUTPUT,
            metavar="DATASETS",
            env=True,
        ),
    ] = "results"

    progress: Annotated[
        ProgressMode, _cli("live line on a terminal, log lines otherwise (default auto)", _DISPLAY)
    ] = ProgressMode.AUTO
    progress_interval: Annotated[
        float,
        msgspec.Meta(gt=0),
        _cli(f"between progress log lines ({DEFAULT_PROGRESS_INTERVAL:g})", _DISPLAY, metavar="SECONDS"),
    ] = DEFAULT_PROGRESS_INTERVAL
    quiet: Annotated[bool, _cli("only warnings, errors and the summary", _DISPLAY, short="-q")] = False


# -- what the declaration says about each field ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of ExportOptions: its name, its Cli entry, its base type and its bounds."""

    name: str
    cli: Cli
    kind: Any
    """The type without ``None`` and ``Annotated``: ``int``, ``bool``, ``list``, an enum, a Literal, ..."""
    bounds: msgspec.Meta | None

    @property
    def flag(self) -> str:
        return self.cli.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str | None:
        return ENV_PREFIX + self.name.upper() if self.cli.env else None


def _fields() -> dict[str, Field]:
    hints = typing.get_type_hints(ExportOptions, include_extras=True)
    found = {}
    for name in ExportOptions.__struct_fields__:
        kind, cli, bounds = hints[name], None, None
        # Peel Annotated and Optional layers, keeping the Cli entry and the bounds found on the way.
        while True:
            if typing.get_origin(kind) is Annotated:
                for meta in kind.__metadata__:
                    if isinstance(meta, msgspec.Meta):
                        if meta.extra and "cli" in meta.extra:
                            cli = meta.extra["cli"]
                        elif any(v is not None for v in (meta.ge, meta.gt, meta.le, meta.lt)):
                            bounds = meta
                kind = kind.__origin__
                continue
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
                kind = args[0]
                continue
            break
        assert cli is not None, f"ExportOptions.{name} has no Cli entry"
        found[name] = Field(name, cli, kind, bounds)
    return found


FIELDS: dict[str, Field] = _fields()


def _choices(field: Field) -> list[str] | None:
    kind = field.kind
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [str(member.value) for member in kind]
    if typing.get_origin(kind) is Literal:
        return [str(value) for value in typing.get_args(kind)]
    return None


# -- the layers ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Layer:
    """One source of options: its values by field name and how it names a field in messages."""

    name: str
    values: dict[str, Any]
    label: Callable[[str], str]


def flag_label(name: str) -> str:
    field = FIELDS.get(name)
    return field.flag if field is not None else "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field that may be given on the command line, grouped as declared."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in FIELDS.values():
        cli = field.cli
        if not cli.argv:
            continue
        group = groups.get(cli.group)
        if group is None:
            group = groups[cli.group] = parser.add_argument_group(cli.group)
        names = [field.flag, *([cli.short] if cli.short else [])]
        help = cli.help + (f" (or ${field.env})" if field.env else "")
        if field.kind is bool:
            group.add_argument(*names, dest=field.name, action="store_true", help=help)
        elif typing.get_origin(field.kind) is list:
            group.add_argument(*names, dest=field.name, action="append", metavar=cli.metavar, help=help)
        else:
            group.add_argument(
                *names, dest=field.name, metavar=cli.metavar, choices=_choices(field), help=help
            )


def command_line_layer(values: Mapping[str, Any]) -> Layer:
    given = {key: value for key, value in values.items() if key in FIELDS}
    return Layer("the command line", given, flag_label)


_TRUTH = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def env_layer(environ: Mapping[str, str]) -> Layer:
    """The fields that name an ``ISPRING_*`` variable, from ``environ``.

    Values are stripped, and a variable that is empty or only whitespace is unset: ``export
    ISPRING_TOKEN=" "`` must not count as a token (nor a URL, an id or a secret end in a newline that a
    file would have lost, see ``_read_secret``).
    """
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for field in FIELDS.values():
        if field.env is None or not (text := environ.get(field.env, "").strip()):
            continue
        names[field.name] = field.env
        value: Any = text
        if field.kind is bool:
            value = _TRUTH.get(text.lower(), text)
        values[field.name] = value
    return Layer("the environment", values, lambda key: "$" + names.get(key, ENV_PREFIX + key.upper()))


def config_layer(path: Path) -> Layer:
    """The TOML file at ``path``: keys are field names (``-`` or ``_``); an unknown key is refused."""
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise OptionsError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(f"the config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        field = FIELDS.get(name)
        if field is None:
            raise OptionsError(f"unknown key {key!r} in the config file {path}")
        if name in values:
            # TOML sees page-size and page_size as two keys; here they are one, given twice.
            raise OptionsError(f"{key} is given twice in the config file {path} (with - and with _)")
        if field.cli.path:
            if not isinstance(value, str):
                raise OptionsError(f"{key} in the config file {path} must be a string path")
            value = str(path.parent / Path(value).expanduser())
        values[name] = value
    secret = "client_secret" in values or "token" in values
    if secret and os.name == "posix" and path.stat().st_mode & 0o077:
        # Printed, not logged: logging is set up once the options (--quiet) are known.
        print(
            f"ispring-async export: warning: the config file {path} holds a secret but other users "
            f"may read it (chmod 600 {path})",
            file=sys.stderr,
        )
    return Layer(f"the config file {path}", values, lambda key: f"{key} in the config file {path}")


# -- merging and converting ---------------------------------------------------------------------------


def merge(layers: Iterable[Layer]) -> tuple[dict[str, Any], dict[str, Layer]]:
    """Each field from the highest layer that gives it, and which layer that was.

    Fields declared ``together`` (an id list and its file; the secret, the token and their files) come
    from the highest layer that gives any of them, so a lower layer never completes a higher one's.
    """
    merged: dict[str, Any] = {}
    source: dict[str, Layer] = {}
    claimed: set[str] = set()
    for layer in layers:
        here: set[str] = set()
        for name, value in layer.values.items():
            together = FIELDS[name].cli.together
            if name in merged or (together is not None and together in claimed):
                continue
            merged[name] = value
            source[name] = layer
            if together is not None:
                here.add(together)
        claimed |= here
    return merged, source


_DATE_EXAMPLES = "2024-01-31T00:00:00Z, 2024-01-31"


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Bound:
        if isinstance(value, datetime | date):
            return Bound(value)
        if isinstance(value, str):
            text = value.strip()
            try:
                return Bound(date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text))
            except ValueError:
                pass
        raise ValueError(f"an RFC 3339 date-time or a date ({_DATE_EXAMPLES})")
    raise NotImplementedError(kind)


def convert(merged: Mapping[str, Any], source: Mapping[str, Layer]) -> ExportOptions:
    """The merged values as ExportOptions, converted once; an error names the key as its layer shows it."""
    values = dict(merged)
    for name, value in values.items():
        # A single value where a list is declared (``user_statuses = 5`` in TOML) is a list of one.
        if (
            typing.get_origin(FIELDS[name].kind) is list
            and isinstance(value, str | int)
            and not isinstance(value, bool)
        ):
            values[name] = [value]
        # strict=False would read 0 and 1 as booleans; a switch in a file is written true or false.
        if FIELDS[name].kind is bool and not isinstance(values[name], bool):
            raise OptionsError(f"{source[name].label(name)} must be true or false, got {value!r}")
    try:
        return msgspec.convert(values, ExportOptions, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise OptionsError(_explain(exc, values, source)) from None


def _explain(exc: msgspec.ValidationError, values: Mapping[str, Any], source: Mapping[str, Layer]) -> str:
    text = str(exc)
    path = text.rsplit(" - at `$.", 1)
    if len(path) != 2:
        return text
    reason, where = path[0], path[1].rstrip("`")
    name = where.split("[", 1)[0].split(".", 1)[0]
    field = FIELDS.get(name)
    if field is None or name not in source:
        return text
    label = source[name].label(name)
    if not field.cli.argv:
        # A secret (client_secret, token) is never repeated, not even a malformed one.
        return f"{label} must be a string"
    value = values[name]
    kind, bounds = field.kind, field.bounds
    if kind is Bound or "date-time" in reason:
        return f"{label} must be an RFC 3339 date-time or a date ({_DATE_EXAMPLES}), got {value!r}"
    if kind is bool:
        return f"{label} must be true or false, got {value!r}"
    if kind is int:
        try:
            if isinstance(value, bool | float):
                raise ValueError
            # As msgspec reads it: int() would read " 4 " and "4_0", which msgspec refuses, and the
            # message would then blame a bound the number is within.
            number = msgspec.convert(value, int, strict=False)
        except (TypeError, ValueError, msgspec.ValidationError):
            return f"{label} must be a whole number, got {value!r}"
        assert bounds is not None
        if bounds.le is not None:
            return f"{label} must be {bounds.ge}..{bounds.le}, got {number}"
        return f"{label} must be >= {bounds.ge}, got {number}"
    if kind is float:
        if bounds is not None and "Expected `float` " in reason and "got" not in reason:
            limit = f"> {bounds.gt:g}" if bounds.gt is not None else f">= {bounds.ge:g}"
            return f"{label} must be {limit}, got {value!r}"
        return f"{label} must be a number, got {value!r}"
    choices = _choices(field)
    if choices is not None:
        return f"{label} must be one of {', '.join(choices)}, got {value!r}"
    if typing.get_origin(kind) is list:
        return f"{label} must be a list of strings, got {value!r}"
    return f"{label}: {reason.replace('`', '')}, got {value!r}"

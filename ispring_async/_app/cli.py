"""The ``ispring-async`` command: ``export`` (the nightly pull) and ``emulator`` (the local server).

``export`` resolves every option from, in order of precedence, the command line, the environment
(``ISPRING_*``), a TOML config file (``--config``) and the defaults, then runs
:func:`ispring_async._app.export.run_export`. Secrets are never accepted as command-line values.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import logging
import os
import shlex
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn

import anyio

from ispring_async._app.export import (
    ExitCode,
    ExportSettings,
    Interrupted,
    describe_error,
    exit_code_for,
    run_export,
)
from ispring_async._app.progress import PrintableFormatter, ProgressLogHandler, ProgressMode
from ispring_async._config import MAX_PAGE_SIZE, ResponseFormat, RetryPolicy
from ispring_async._exceptions import ConfigurationError, printable
from ispring_async._fanout import FanOutOptions, Split
from ispring_async._models import CompletionStatus, UserStatus
from ispring_async._paginate import DEFAULT_MAX_PAGES
from ispring_async._query import DateRange, ResultsQuery, check_instant
from ispring_async.sinks import FORMATS

__all__ = ["export_main", "export_parser", "main", "resolve_settings"]

USAGE = "usage: ispring-async {export,emulator} [options]  (ispring-async COMMAND --help for details)"

ENV_BASE_URL = "ISPRING_BASE_URL"
ENV_CLIENT_ID = "ISPRING_CLIENT_ID"
ENV_CLIENT_SECRET = "ISPRING_CLIENT_SECRET"  # noqa: S105 - names of variables, not secrets
ENV_TOKEN = "ISPRING_TOKEN"  # noqa: S105
ENV_TOKEN_URL = "ISPRING_TOKEN_URL"  # noqa: S105
ENV_SKIP_UNKNOWN_IDS = "ISPRING_SKIP_UNKNOWN_IDS"

"""Exports ask for active *and* blocked users: the API's own default silently drops blocked users."""

_ARGV_REFUSAL = (
    "{option} is not accepted: a secret on the command line is visible to every local user (ps, "
    "/proc) and lands in shell history. Use ${env}, {file_option} FILE, or {key} in the --config file"
)

_EPILOG = f"""\
credentials (never as a command-line value):
  ${ENV_CLIENT_ID} + ${ENV_CLIENT_SECRET}, or --client-secret-file FILE, or client_id / client_secret
  / client_secret_file in the --config file; or a ready access token: ${ENV_TOKEN}, --token-file FILE,
  or token / token_file in the config file. ${ENV_BASE_URL} may give the base URL.

precedence: command line > environment > --config file > defaults. The config file is TOML; its keys
  are the long option names with underscores (base_url, output, split, user_statuses = [1, 3],
  user_ids = ["..."], access_date_from = 2024-01-01T00:00:00Z, ...); relative paths in it are
  relative to the file. Dates without an offset are UTC; a bare date as a *_to bound means the
  end of that day.

user statuses: unless --user-status is given, the export asks for active and blocked users
  (userStatuses 1 and 3); the API's own default (active only) would silently drop blocked users.

output: written under a temporary name beside PATH and moved into place only when the export is
  complete; a checkpoint is saved after every page. --resume continues an export that was
  interrupted (Ctrl-C, SIGTERM, SIGKILL, a failure) and gives exactly the output of an uninterrupted
  run; with nothing to resume it starts afresh, so nightly jobs can always pass it. SQLite output
  is upserted by row identity (reruns update rows in place); export_runs records each run.

exit status:
  {ExitCode.OK:<4}success
  {ExitCode.USAGE:<4}usage or configuration error (also: --resume with other filters than the checkpoint)
  {ExitCode.AUTH:<4}authentication or permission refused by the API (401/403)
  {ExitCode.API:<4}other API or network failure, after retries (the checkpoint is kept)
  {ExitCode.OUTPUT:<4}the output cannot be written, or another export is writing it
  {ExitCode.SIGINT:<4}interrupted by Ctrl-C (SIGINT); the checkpoint is kept
  {ExitCode.SIGTERM:<4}stopped by SIGTERM; the checkpoint is kept
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m ispring_async``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else ExitCode.USAGE
    command, rest = args[0], args[1:]
    if command == "export":
        return export_main(rest)
    if command == "emulator":
        from ispring_async.emulator._cli import main as emulator_main

        return emulator_main(rest)
    print(f"ispring-async: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return ExitCode.USAGE


# -- the parser ---------------------------------------------------------------------------------------


class _UsageError(Exception):
    """A usage error to report with the parser's usage line."""


class _RefuseSecret(argparse.Action):
    """An option that exists only to refuse a secret on argv, without ever echoing its value."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.message = kwargs.pop("message")
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        raise _UsageError(self.message)


def export_parser() -> argparse.ArgumentParser:
    """The ``ispring-async export`` argument parser (every default is None: layers are merged later)."""
    p = argparse.ArgumentParser(
        prog="ispring-async export",
        description="Export every learner result of an iSpring Learn account into a file or database.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # No abbreviations: "--client-sec X" must not quietly become "--client-secret-file X".
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with any of the options below")

    conn = p.add_argument_group("connection")
    conn.add_argument("--base-url", metavar="URL", help=f"API base URL (or ${ENV_BASE_URL})")
    conn.add_argument("--client-id", metavar="ID", help=f"client id (or ${ENV_CLIENT_ID})")
    conn.add_argument("--client-secret-file", metavar="FILE", help="file holding the client secret")
    conn.add_argument("--token-file", metavar="FILE", help="file holding a ready access token")
    conn.add_argument(
        "--token-url",
        metavar="URL",
        help=f"token endpoint: a path at the base URL's host root or an absolute URL "
        f"(default /api/v3/token at the host root; or ${ENV_TOKEN_URL})",
    )
    conn.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow http:// to a non-loopback host (credentials travel in clear text)",
    )
    secret_message = _ARGV_REFUSAL.format(
        option="--client-secret",
        env=ENV_CLIENT_SECRET,
        file_option="--client-secret-file",
        key="client_secret",
    )
    token_message = _ARGV_REFUSAL.format(
        option="--token", env=ENV_TOKEN, file_option="--token-file", key="token"
    )
    conn.add_argument("--client-secret", action=_RefuseSecret, message=secret_message)
    conn.add_argument("--token", action=_RefuseSecret, message=token_message)

    flt = p.add_argument_group("filters (AND across filters, OR within one)")
    for name in ("enrollment", "user", "course", "department"):
        flt.add_argument(
            f"--{name}-id",
            dest=f"{name}_ids",
            action="append",
            metavar="UUID",
            help=f"{name} id (repeatable)",
        )
        flt.add_argument(f"--{name}-ids-file", metavar="FILE", help=f"{name} ids, one per line (# comments)")
    flt.add_argument(
        "--skip-unknown-ids",
        action="store_true",
        help="the API fails a request with 400 on one unknown id: find such ids, skip them, export the "
        f"rest and report them (default: fail naming the list; or ${ENV_SKIP_UNKNOWN_IDS}=1)",
    )
    flt.add_argument(
        "--completion-status",
        dest="completion_statuses",
        action="append",
        metavar="STATUS",
        help=f"repeatable; one of {', '.join(CompletionStatus)}",
    )
    flt.add_argument(
        "--user-status",
        dest="user_statuses",
        action="append",
        metavar="STATUS",
        help="repeatable: 1/active, 3/blocked, 5/terminated (default: 1 and 3)",
    )
    for name in ("access", "due", "completion"):
        flt.add_argument(f"--{name}-date-from", metavar="DATETIME", help=f"{name} date at or after")
        flt.add_argument(f"--{name}-date-to", metavar="DATETIME", help=f"{name} date at or before")

    fan = p.add_argument_group("fan-out")
    fan.add_argument("--split", choices=[s.value for s in Split], help="how to partition (default adaptive)")
    fan.add_argument("--concurrency", metavar="N", help="requests in flight (default 8)")
    fan.add_argument(
        "--earliest", metavar="DATETIME", help="where date windows start cutting (default 2000-01-01)"
    )
    fan.add_argument("--rate-limit", metavar="REQ/S", help="at most this many requests per second")
    fan.add_argument("--page-size", metavar="N", help=f"records per page, 1..{MAX_PAGE_SIZE} (default 1000)")
    fan.add_argument("--response-format", choices=[f.value for f in ResponseFormat], help="default xml")
    fan.add_argument("--retry-attempts", metavar="N", help="attempts per request, the first included (8)")
    fan.add_argument(
        "--retry-max-wait", metavar="SECONDS", help="longest wait between attempts, Retry-After included (30)"
    )
    fan.add_argument(
        "--max-pages-per-chain",
        metavar="N",
        help=f"stop a page chain that goes on longer than this (default {DEFAULT_MAX_PAGES:,})",
    )

    out = p.add_argument_group("output")
    out.add_argument("--output", "-o", metavar="PATH", help="output file (.jsonl .csv .parquet .sqlite)")
    out.add_argument("--format", choices=FORMATS, help="output format (default: from the extension)")
    out.add_argument("--resume", action="store_true", help="continue an interrupted export to PATH")

    show = p.add_argument_group("display")
    show.add_argument(
        "--progress",
        choices=[m.value for m in ProgressMode],
        help="live line on a terminal, log lines otherwise (default auto)",
    )
    show.add_argument("--progress-interval", metavar="SECONDS", help="between progress log lines (10)")
    show.add_argument("--quiet", "-q", action="store_true", help="only warnings, errors and the summary")
    return p


# -- layers: command line > environment > config file > defaults ---------------------------------------

_ID_FIELDS = ("enrollment_ids", "user_ids", "course_ids", "department_ids")
_DATE_FIELDS = ("access_date", "due_date", "completion_date")
_SCALARS = (
    "base_url",
    "client_id",
    "token_url",
    "skip_unknown_ids",
    "allow_insecure_http",
    "completion_statuses",
    "user_statuses",
    *(f"{f}_{end}" for f in _DATE_FIELDS for end in ("from", "to")),
    "split",
    "concurrency",
    "earliest",
    "rate_limit",
    "page_size",
    "response_format",
    "retry_attempts",
    "retry_max_wait",
    "max_pages_per_chain",
    "output",
    "format",
    "resume",
    "progress",
    "progress_interval",
    "quiet",
)
_CONFIG_KEYS = frozenset(
    {
        *_SCALARS,
        *_ID_FIELDS,
        *(f"{f}_file" for f in _ID_FIELDS),
        "client_secret",
        "client_secret_file",
        "token",
        "token_file",
    }
)
_PATH_KEYS = frozenset({"output", "client_secret_file", "token_file", *(f"{f}_file" for f in _ID_FIELDS)})


class _Layer:
    """One source of options: its values by key and how to name a key in messages."""

    def __init__(self, name: str, values: Mapping[str, Any], label: Callable[[str], str]) -> None:
        self.name = name
        self.values = dict(values)
        self.label = label


def _option_label(key: str) -> str:
    return "--" + key.replace("_", "-")


def _load_config(path: Path) -> _Layer:
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise _UsageError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _UsageError(f"the config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _CONFIG_KEYS:
            raise _UsageError(f"unknown key {key!r} in the config file {path}")
        if name in _PATH_KEYS:
            if not isinstance(value, str):
                raise _UsageError(f"{key} in the config file {path} must be a string path")
            value = str(path.parent / Path(value).expanduser())
        values[name] = value
    if ("client_secret" in values or "token" in values) and os.name == "posix":
        mode = path.stat().st_mode
        if mode & 0o077:
            # Printed, not logged: logging is set up once the options (--quiet) are known.
            print(
                f"ispring-async export: warning: the config file {path} holds a secret but other users "
                f"may read it (chmod 600 {path})",
                file=sys.stderr,
            )
    return _Layer(f"the config file {path}", values, lambda key: f"{key} in the config file {path}")


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    values: dict[str, Any] = {}
    for key, variable in (("base_url", ENV_BASE_URL), ("client_id", ENV_CLIENT_ID)):
        if environ.get(variable):
            values[key] = environ[variable]
    if environ.get(ENV_CLIENT_SECRET):
        values["client_secret"] = environ[ENV_CLIENT_SECRET]
    if environ.get(ENV_TOKEN):
        values["token"] = environ[ENV_TOKEN]
    if environ.get(ENV_TOKEN_URL):
        values["token_url"] = environ[ENV_TOKEN_URL]
    skip = environ.get(ENV_SKIP_UNKNOWN_IDS, "").strip().lower()
    if skip:
        values["skip_unknown_ids"] = {"1": True, "true": True, "yes": True, "0": False, "false": False}.get(
            skip, skip
        )
    names = {
        "base_url": ENV_BASE_URL,
        "client_id": ENV_CLIENT_ID,
        "token_url": ENV_TOKEN_URL,
        "skip_unknown_ids": ENV_SKIP_UNKNOWN_IDS,
    }
    return _Layer("the environment", values, lambda key: "$" + names.get(key, key.upper()))


def _first(layers: Sequence[_Layer], key: str) -> tuple[Any, _Layer] | None:
    for layer in layers:
        if key in layer.values:
            return layer.values[key], layer
    return None


# -- converting values (strings from argv/env, typed values from TOML) ------------------------------------


def _read_secret(path: str, what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # Only the path and the reason: never a byte of the file.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise _UsageError(f"cannot read the {what} file {path}: {reason}") from None
    value = text.strip()
    if not value:
        raise _UsageError(f"the {what} file {path} is empty")
    return value


def _read_ids(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise _UsageError(f"cannot read the ids file {path}: {reason}") from None
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


def _as_int(value: Any, label: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        if isinstance(value, bool | float):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise _UsageError(f"{label} must be a whole number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise _UsageError(f"{label} must be {bounds}, got {number}")
    return number


def _as_float(value: Any, label: str, *, positive: bool = True) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise _UsageError(f"{label} must be a number, got {value!r}") from None
    if number != number or (positive and number <= 0) or (not positive and number < 0):
        raise _UsageError(f"{label} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def _as_bool(value: Any, label: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _UsageError(f"{label} must be true or false, got {value!r}")


def _as_list(value: Any, label: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str | int):
        return [value]
    raise _UsageError(f"{label} must be a list, got {value!r}")


_USER_STATUS_NAMES = {s.name.lower(): s for s in UserStatus}


def _as_user_status(value: Any, label: str) -> UserStatus:
    text = str(value).strip().lower()
    if text in _USER_STATUS_NAMES:
        return _USER_STATUS_NAMES[text]
    try:
        return UserStatus(int(text))
    except ValueError:
        raise _UsageError(f"{label}: {value!r} is not 1/active, 3/blocked or 5/terminated") from None


def _as_datetime(value: Any, label: str, *, end: bool) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise _UsageError(
                f"{label} must be an RFC 3339 date-time or a date (2024-01-31T00:00:00Z, 2024-01-31), "
                f"got {text!r}"
            ) from None
    if isinstance(value, datetime):
        instant = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        # A date as an upper bound means "through that day", as a person reading it would expect.
        start = datetime.combine(value, time(), tzinfo=UTC)
        instant = start + timedelta(days=1, seconds=-1) if end else start
    else:
        raise _UsageError(f"{label} must be a date-time, got {value!r}")
    try:
        # Here, naming the option, rather than at a window's edge mid-export (year 10000 ...).
        check_instant(instant, label)
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    return instant


# -- resolution ---------------------------------------------------------------------------------------


def resolve_settings(
    cli: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[ExportSettings, ProgressMode, float, bool]:
    """The export settings, progress mode, progress interval and quietness the layers describe."""
    layers = [_Layer("the command line", cli, _option_label), _env_layer(environ)]
    if "config" in cli:
        layers.append(_load_config(Path(cli["config"]).expanduser()))

    def get(key: str, default: Any = None) -> tuple[Any, str]:
        found = _first(layers, key)
        if found is None:
            return default, _option_label(key)
        value, layer = found
        return value, layer.label(key)

    base_url, _ = get("base_url")
    if not base_url:
        raise _UsageError(f"no base URL: give --base-url, ${ENV_BASE_URL} or base_url in the config file")
    output, _ = get("output")
    if not output:
        raise _UsageError("no output: give --output PATH (or output in the config file)")
    client_id, client_secret, token = _credentials(layers)

    query_args: dict[str, Any] = {}
    for field in _ID_FIELDS:
        # The ids of one layer (listed and from a file) together override those of a lower layer.
        for layer in layers:
            if field in layer.values or f"{field}_file" in layer.values:
                ids = [str(v) for v in _as_list(layer.values.get(field, []), layer.label(field))]
                if f"{field}_file" in layer.values:
                    ids += _read_ids(str(layer.values[f"{field}_file"]))
                if not ids:
                    raise _UsageError(f"{layer.label(field)}: no ids given")
                query_args[field] = ids
                break
    statuses, label = get("completion_statuses")
    if statuses is not None:
        query_args["completion_statuses"] = [str(s) for s in _as_list(statuses, label)]
    statuses, label = get("user_statuses")
    # Without the option, ResultsQuery's own default (active and blocked users) decides, as in the library.
    if statuses is not None:
        query_args["user_statuses"] = [_as_user_status(s, label) for s in _as_list(statuses, label)]
    for field in _DATE_FIELDS:
        start, start_label = get(f"{field}_from")
        end, end_label = get(f"{field}_to")
        if start is None and end is None:
            continue
        query_args[field] = DateRange(
            start=None if start is None else _as_datetime(start, start_label, end=False),
            end=None if end is None else _as_datetime(end, end_label, end=True),
        )
    query = ResultsQuery(**query_args)

    split, label = get("split", Split.ADAPTIVE)
    try:
        split = Split(split)
    except ValueError:
        raise _UsageError(f"{label} must be one of {', '.join(Split)}, got {split!r}") from None
    concurrency, label = get("concurrency", 8)
    fanout_args: dict[str, Any] = {"split": split, "concurrency": _as_int(concurrency, label, minimum=1)}
    earliest, label = get("earliest")
    if earliest is not None:
        fanout_args["earliest"] = _as_datetime(earliest, label, end=False)
    rate_limit, label = get("rate_limit")
    if rate_limit is not None:
        fanout_args["rate_limit"] = _as_float(rate_limit, label)
    page_size, label = get("page_size", 1000)
    response_format, label_rf = get("response_format", ResponseFormat.XML)
    try:
        response_format = ResponseFormat(response_format)
    except ValueError:
        raise _UsageError(f"{label_rf} must be xml or json, got {response_format!r}") from None
    attempts, label_a = get("retry_attempts", RetryPolicy.attempts)
    max_wait, label_w = get("retry_max_wait", RetryPolicy.maximum)
    max_wait = _as_float(max_wait, label_w, positive=False)
    # The longest wait caps a server's Retry-After too: a nightly job that must finish by morning can
    # bound every pause; the default (30 s) still honours what rate limits announce in practice.
    retry = RetryPolicy(
        attempts=_as_int(attempts, label_a, minimum=1),
        initial=min(RetryPolicy.initial, max_wait),
        maximum=max_wait,
        max_retry_after=max_wait,
    )
    max_pages, label_m = get("max_pages_per_chain", DEFAULT_MAX_PAGES)
    fmt, label_f = get("format")
    if fmt is not None and fmt not in FORMATS:
        raise _UsageError(f"{label_f} must be one of {', '.join(FORMATS)}, got {fmt!r}")
    insecure, label_i = get("allow_insecure_http", False)
    resume, label_r = get("resume", False)
    token_url, label_t = get("token_url")
    if token_url is not None and (not isinstance(token_url, str) or not token_url):
        raise _UsageError(f"{label_t} must be a URL or a path, got {token_url!r}")
    skip_unknown, label_s = get("skip_unknown_ids", False)
    settings = ExportSettings(
        base_url=str(base_url),
        client_id=client_id,
        client_secret=client_secret,
        token=token,
        allow_insecure_http=_as_bool(insecure, label_i),
        token_url=token_url,
        skip_unknown_ids=_as_bool(skip_unknown, label_s),
        query=query,
        fanout=FanOutOptions(**fanout_args),
        page_size=_as_int(page_size, label, minimum=1, maximum=MAX_PAGE_SIZE),
        response_format=response_format,
        retry=retry,
        max_pages_per_chain=_as_int(max_pages, label_m, minimum=1),
        output=Path(str(output)).expanduser(),
        format=fmt,
        resume=_as_bool(resume, label_r),
    )
    mode, label = get("progress", ProgressMode.AUTO)
    try:
        mode = ProgressMode(mode)
    except ValueError:
        raise _UsageError(f"{label} must be one of {', '.join(ProgressMode)}, got {mode!r}") from None
    interval, label = get("progress_interval", 10.0)
    quiet, label_q = get("quiet", False)
    return settings, mode, _as_float(interval, label), _as_bool(quiet, label_q)


def _credentials(layers: Sequence[_Layer]) -> tuple[str | None, str | None, str | None]:
    """(client_id, client_secret, token) from the highest layer that gives a secret or a token."""
    for layer in layers:
        secret = layer.values.get("client_secret")
        if "client_secret_file" in layer.values and secret is None:
            secret = _read_secret(str(layer.values["client_secret_file"]), "client secret")
        token = layer.values.get("token")
        if "token_file" in layer.values and token is None:
            token = _read_secret(str(layer.values["token_file"]), "token")
        if secret is None and token is None:
            continue
        if secret is not None and token is not None:
            raise _UsageError(f"{layer.name} gives both a client secret and a token; give one of them")
        if not isinstance(secret or token, str):
            raise _UsageError(f"the secret in {layer.name} must be a string")
        if token is not None:
            return None, None, token
        found = _first(layers, "client_id")
        if found is None or not found[0]:
            raise _UsageError(
                f"no client id: give --client-id, ${ENV_CLIENT_ID} or client_id in the config file"
            )
        return str(found[0]), secret, None
    raise _UsageError(
        f"no credentials: set ${ENV_CLIENT_ID} and ${ENV_CLIENT_SECRET}, or give --client-secret-file, "
        f"--token-file, or client_secret / token in the --config file"
    )


# -- running ------------------------------------------------------------------------------------------


def export_main(argv: Sequence[str]) -> int:
    """Run ``ispring-async export`` with ``argv`` (the arguments after ``export``); return the exit code."""
    args = list(argv)
    parser = export_parser()
    try:
        namespace, unknown = parser.parse_known_args(args)
        if unknown:
            # Named, never echoed: a mistyped option may be followed by a secret.
            options = sorted({u.split("=", 1)[0] for u in unknown if u.startswith("-")})
            what = f"unrecognized option(s): {' '.join(options)}" if options else "unexpected argument(s)"
            raise _UsageError(what)
        settings, mode, interval, quiet = resolve_settings(vars(namespace), os.environ)
    except SystemExit as exc:  # argparse: --help, or an invalid choice
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    except (_UsageError, ConfigurationError) as exc:
        parser.print_usage(sys.stderr)
        print(f"ispring-async export: error: {printable(str(exc))}", file=sys.stderr)
        return ExitCode.USAGE
    with _logging(quiet=quiet):
        return _run(settings, mode, interval, resume_hint=_resume_command(args))


def _run(settings: ExportSettings, mode: ProgressMode, interval: float, *, resume_hint: str) -> int:
    job = functools.partial(run_export, settings, progress=mode, progress_interval=interval)
    # uvloop when installed (the default on CPython/POSIX); parsing, not I/O, bounds the speed anyway.
    options = {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}
    try:
        summary = anyio.run(job, backend="asyncio", backend_options=options)
    except Interrupted as exc:
        for line in exc.summary.lines():
            print(line, file=sys.stderr)
        print(f"interrupted; resume with: {resume_hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed (or during cleanup).
        print(f"interrupted; resume with: {resume_hint}", file=sys.stderr)
        return ExitCode.SIGINT
    except Exception as exc:
        code = exit_code_for(exc)
        print(f"ispring-async export: error: {describe_error(exc)}", file=sys.stderr)
        if code is ExitCode.API:
            print(f"the pages exported so far are kept; continue with: {resume_hint}", file=sys.stderr)
        return code
    for line in summary.lines():
        print(line)
    return ExitCode.OK


def _resume_command(args: Sequence[str]) -> str:
    # argv holds no secret (they are refused above), so it can be shown as it was given.
    rest = list(args) if "--resume" in args else [*args, "--resume"]
    return shlex.join(["ispring-async", "export", *rest])


@contextlib.contextmanager
def _logging(*, quiet: bool) -> Iterator[None]:
    """Log lines of the library to stderr for the duration of a command (undone after, for tests)."""
    package = logging.getLogger("ispring_async")
    handler = ProgressLogHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    level = package.level
    package.setLevel(logging.WARNING if quiet else logging.INFO)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)

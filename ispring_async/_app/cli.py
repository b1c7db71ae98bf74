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
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
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
from ispring_async._app.options import (
    Bound,
    ExportOptions,
    Layer,
    OptionsError,
    add_arguments,
    command_line_layer,
    config_layer,
    convert,
    env_layer,
    flag_label,
    merge,
)
from ispring_async._app.progress import PrintableFormatter, ProgressLogHandler, ProgressMode
from ispring_async._config import DEFAULT_RETRY, RetryPolicy
from ispring_async._exceptions import ConfigurationError, printable
from ispring_async._fanout import FanOutOptions
from ispring_async._models import UserStatus
from ispring_async._parse_pool import default_parse_workers
from ispring_async._query import DateRange, ResultsQuery, check_instant
from ispring_async.sinks import FORMATS, select_datasets

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

datasets: --include results,module-results,users,departments exports several in one run with one
  checkpoint: into SQLite one table each (learner_results, ...); in a file format PATH is a folder
  (--output out --format jsonl: out/results.jsonl, out/users.jsonl, ...). One dataset and a PATH with
  an output extension is that one file. Nothing is published before every dataset is complete.

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
    # Every option comes from ExportOptions (see options.py); the two below exist only to refuse.
    add_arguments(p)
    secret_message = _ARGV_REFUSAL.format(
        option="--client-secret",
        env=ENV_CLIENT_SECRET,
        file_option="--client-secret-file",
        key="client_secret",
    )
    token_message = _ARGV_REFUSAL.format(
        option="--token", env=ENV_TOKEN, file_option="--token-file", key="token"
    )
    p.add_argument("--client-secret", action=_RefuseSecret, message=secret_message)
    p.add_argument("--token", action=_RefuseSecret, message=token_message)
    return p


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


_USER_STATUS_NAMES = {s.name.lower(): s for s in UserStatus}


def _as_user_status(value: Any, label: str) -> UserStatus:
    text = str(value).strip().lower()
    if text in _USER_STATUS_NAMES:
        return _USER_STATUS_NAMES[text]
    try:
        return UserStatus(int(text))
    except ValueError:
        raise _UsageError(f"{label}: {value!r} is not 1/active, 3/blocked or 5/terminated") from None


def _as_datetime(bound: Bound, label: str, *, end: bool) -> datetime:
    value = bound.value
    if isinstance(value, datetime):
        instant = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    else:
        # A date as an upper bound means "through that day", as a person reading it would expect.
        start = datetime.combine(value, time(), tzinfo=UTC)
        instant = start + timedelta(days=1, seconds=-1) if end else start
    try:
        # Here, naming the option, rather than at a window's edge mid-export (year 10000 ...).
        check_instant(instant, label)
    except ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    return instant


# -- resolution ---------------------------------------------------------------------------------------


_ID_FIELDS = ("enrollment_ids", "user_ids", "course_ids", "department_ids")
_DATE_FIELDS = ("access_date", "due_date", "completion_date")


def resolve_settings(
    cli: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[ExportSettings, ProgressMode, float, bool]:
    """The export settings, progress mode, progress interval and quietness the layers describe.

    The layers (command line > environment > config file > defaults) are merged and converted once
    into ``ExportOptions`` (see options.py); what remains here is what types cannot say.
    """
    try:
        layers = [command_line_layer(cli), env_layer(environ)]
        if "config" in cli:
            layers.append(config_layer(Path(cli["config"]).expanduser()))
        merged, source = merge(layers)
        options = convert(merged, source)
    except OptionsError as exc:
        raise _UsageError(str(exc)) from None

    def label(key: str) -> str:
        return source[key].label(key) if key in source else flag_label(key)

    if not options.base_url:
        raise _UsageError(f"no base URL: give --base-url, ${ENV_BASE_URL} or base_url in the config file")
    if not options.output:
        raise _UsageError("no output: give --output PATH (or output in the config file)")
    client_id, client_secret, token = _credentials(options, source)

    query_args: dict[str, Any] = {}
    for field in _ID_FIELDS:
        listed: list[str] | None = getattr(options, field)
        from_file: str | None = getattr(options, f"{field}_file")
        if listed is None and from_file is None:
            continue
        ids = list(listed or [])
        if from_file is not None:
            ids += _read_ids(from_file)
        if not ids:
            raise _UsageError(f"{label(field if listed is not None else f'{field}_file')}: no ids given")
        query_args[field] = ids
    if options.completion_statuses is not None:
        query_args["completion_statuses"] = options.completion_statuses
    # Without the option, ResultsQuery's own default (active and blocked users) decides, as in the library.
    if options.user_statuses is not None:
        query_args["user_statuses"] = [
            _as_user_status(s, label("user_statuses")) for s in options.user_statuses
        ]
    for field in _DATE_FIELDS:
        start: Bound | None = getattr(options, f"{field}_from")
        end: Bound | None = getattr(options, f"{field}_to")
        if start is None and end is None:
            continue
        query_args[field] = DateRange(
            start=None if start is None else _as_datetime(start, label(f"{field}_from"), end=False),
            end=None if end is None else _as_datetime(end, label(f"{field}_to"), end=True),
        )
    query = ResultsQuery(**query_args)

    fanout = FanOutOptions(
        split=options.split,
        concurrency=options.concurrency,
        rate_limit=options.rate_limit,
        earliest=None
        if options.earliest is None
        else _as_datetime(options.earliest, label("earliest"), end=False),
    )
    max_wait = options.retry_max_wait
    # The longest wait caps a server's Retry-After too: a nightly job that must finish by morning can
    # bound every pause; the default (30 s) still honours what rate limits announce in practice.
    retry = RetryPolicy(
        attempts=options.retry_attempts,
        initial=min(DEFAULT_RETRY.initial, max_wait),
        maximum=max_wait,
        max_retry_after=max_wait,
    )
    if options.format is not None and options.format not in FORMATS:
        raise _UsageError(f"{label('format')} must be one of {', '.join(FORMATS)}, got {options.format!r}")
    if options.token_url is not None and not options.token_url:
        raise _UsageError(f"{label('token_url')} must be a URL or a path, got {options.token_url!r}")
    include = [options.include] if isinstance(options.include, str) else options.include
    try:
        datasets = tuple(d.name for d in select_datasets(n for item in include for n in item.split(",")))
    except ConfigurationError as exc:
        raise _UsageError(f"{label('include')}: {exc}") from None
    settings = ExportSettings(
        base_url=options.base_url,
        client_id=client_id,
        client_secret=client_secret,
        token=token,
        allow_insecure_http=options.allow_insecure_http,
        token_url=options.token_url,
        skip_unknown_ids=options.skip_unknown_ids,
        query=query,
        fanout=fanout,
        page_size=options.page_size,
        response_format=options.response_format,
        retry=retry,
        max_pages_per_chain=options.max_pages_per_chain,
        parse_workers=default_parse_workers(options.response_format)
        if options.parse_workers == "auto"
        else options.parse_workers,
        output=Path(options.output).expanduser(),
        format=options.format,
        resume=options.resume,
        include=datasets,
    )
    return settings, options.progress, options.progress_interval, options.quiet


def _credentials(
    options: ExportOptions, source: Mapping[str, Layer]
) -> tuple[str | None, str | None, str | None]:
    """(client_id, client_secret, token) from the one layer that gives a secret or a token (see merge)."""
    secret = options.client_secret
    if secret is None and options.client_secret_file is not None:
        secret = _read_secret(options.client_secret_file, "client secret")
    token = options.token
    if token is None and options.token_file is not None:
        token = _read_secret(options.token_file, "token")
    if secret is not None and token is not None:
        names = ("client_secret", "client_secret_file", "token", "token_file")
        layer = next(source[n] for n in names if n in source)
        raise _UsageError(f"{layer.name} gives both a client secret and a token; give one of them")
    if token is not None:
        return None, None, token
    if secret is not None:
        if not options.client_id:
            raise _UsageError(
                f"no client id: give --client-id, ${ENV_CLIENT_ID} or client_id in the config file"
            )
        return options.client_id, secret, None
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

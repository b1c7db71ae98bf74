"""``ispring-async emulator``: serve the emulator until SIGINT/SIGTERM.

On startup it prints the base URL and credentials as ``KEY=value`` lines (easy to read from a
benchmark that spawns it), then serves until interrupted. The client secret may come from
``ISPRING_CLIENT_SECRET`` so it need not appear in ``argv``; it is then not echoed.

The "API variants" options are the real service's unknowns and its observed differences
(``../shared/ispring-api.md``), one switch each, all off by default:

- ``--subdepartment-matching``: ``departmentIds[]`` also matches sub-departments' users.
- ``--reject-one-sided-ranges``: 400 for a date range with only a start or only an end.
- ``--unknown-ids 400``: one unknown id in an id list fails the whole request with 400 (as seen in
  production code); ``--vanished-departments N`` lists departments the results endpoint no longer knows.
- ``--path-prefix /api/v2``: the data endpoints under an account-domain prefix; the token stays at
  ``--token-path`` (``/api/v3/token`` at the host root unless told otherwise).
- ``--empty-last-token``: the last page carries ``<nextPageToken/>`` instead of no token.
- ``--lenient-lists``: bare repeated ``userIds=`` collect every value instead of the last one.
- ``--overdue-style words``: ``isOverdue`` as ``true``/``false`` in XML.
- ``--max-page-size N``: the largest page honoured.

Latency: ``--latency`` (fixed), ``--latency-jitter`` (uniform) and ``--latency-median`` /
``--latency-p99`` (a lognormal tail, seeded per request by ``--fault-seed``) add up; all 0 by default.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import inspect
import os
import signal
import sys
import time
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

from ispring_async.emulator import _config as _config_module
from ispring_async.emulator._config import EmulatorConfig, Fault, Faults, XmlLayout
from ispring_async.emulator._server import Emulator

__all__ = ["build_config", "main", "parser"]

_SECRET_ENV = "ISPRING_CLIENT_SECRET"  # noqa: S105 - the name of a variable, not a secret


def _port(text: str) -> int:
    """A TCP port (0: a free one); argparse's usage error, not bind()'s OverflowError traceback."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _script(text: str) -> tuple[tuple[str, int], Fault]:
    try:
        target, fault = text.split("=", 1)
        endpoint, number = target.split(":", 1)
        return (endpoint, int(number)), Fault(fault)
    except ValueError:
        kinds = ", ".join(f.value for f in Fault)
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ENDPOINT:N=FAULT, e.g. results:3=reset (faults: {kinds})"
        ) from None


# -- the options, generated from the config's fields ------------------------------------------------------
#
# Every field of EmulatorConfig, Faults and XmlLayout that one value on a command line can give becomes an
# option: its flag is the field's name (XmlLayout's with an ``xml-`` prefix), its help the first sentence
# of the field's docstring, its type, choices and default the field's own. Only what the fields cannot say
# is written here: the few flags kept from before the generation, the switch that turns a default-on
# field off, and the command's one default that differs from the library's (a bigger dataset).

_STRUCTS: tuple[tuple[type, str, str], ...] = (
    (EmulatorConfig, "data", ""),
    (Faults, "faults (probabilities per request; see ispring_async.emulator.Faults)", ""),
    (XmlLayout, "XML layout (the records are the same; see ispring_async.emulator.XmlLayout)", "xml-"),
)
_FLAGS: dict[tuple[type, str], str] = {
    (EmulatorConfig, "blocked_user_share"): "--blocked-share",
    (EmulatorConfig, "one_sided_ranges"): "--reject-one-sided-ranges",  # on by default: the flag turns it off
    (Faults, "seed"): "--fault-seed",
    (Faults, "on_token"): "--faults-on-token",
    (XmlLayout, "cdata_share"): "--xml-cdata",
    (XmlLayout, "nested_share"): "--xml-nested",
}
_COMMAND_DEFAULTS: dict[tuple[type, str], object] = {(EmulatorConfig, "results"): 100_000}
_SPECIAL = {"client_secret", "faults", "xml_layout", "extra_clients", "script"}


def _docstrings(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal after its annotation in the class body), first sentence."""
    found: dict[str, str] = {}
    try:
        # The defining module's source: ``cls.__module__`` names the public package (see _public.py).
        source = inspect.getsource(_config_module)
    except OSError:  # pragma: no cover - installed without sources: options without help
        return found
    tree = ast.parse(source)
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    for node, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            text = " ".join(after.value.value.replace("``", "").split())
            found[node.target.id] = text.split(". ", 1)[0].rstrip(".")
    return found


def _options() -> list[tuple[type, dataclasses.Field[Any], str, str, dict[str, Any]]]:
    """(struct, field, group, flag, add_argument keywords) for every generated option."""
    found = []
    for cls, group, prefix in _STRUCTS:
        hints = typing.get_type_hints(cls)
        docs = _docstrings(cls)
        for field in dataclasses.fields(cls):
            if field.name in _SPECIAL:
                continue
            kind = hints[field.name]
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
                kind = args[0]
            default: Any = _COMMAND_DEFAULTS.get((cls, field.name), field.default)
            flag = _FLAGS.get((cls, field.name), "--" + prefix + field.name.replace("_", "-"))
            help = docs.get(field.name, "")
            options: dict[str, Any] = {"dest": f"{cls.__name__}.{field.name}"}
            if kind is bool:
                options["action"] = "store_false" if default else "store_true"
                help = f"turn off what is on by default: {help[:1].lower()}{help[1:]}" if default else help
            elif typing.get_origin(kind) is Literal:
                options["choices"] = [str(v) for v in typing.get_args(kind)]
            elif kind in (int, float, str):
                options["type"] = kind
                options["metavar"] = {int: "N", float: "X", str: "TEXT"}[kind]
            else:
                continue
            if kind is not bool:
                help += f" (default {default})" if default is not None else ""
            options["help"] = help.replace("%", "%%")
            if (cls, field.name) in _COMMAND_DEFAULTS:
                options["default"] = default
            found.append((cls, field, group, flag, options))
    return found


def parser() -> argparse.ArgumentParser:
    """The command's argument parser: the options of the command itself, then one per config field."""
    p = argparse.ArgumentParser(
        prog="ispring-async emulator",
        description=(
            "Serve an emulated iSpring Learn API (token, /learners/results, /learners/modules/results,"
            " /users/v2, /departments)."
        ),
        # The module docstring's variants and latency paragraphs: one description for both audiences.
        epilog=(__doc__ or "").split("\n\n", 2)[2].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Unset options stay unset: the config's own defaults apply, declared once, in the config.
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (0: a free one; default 8080)")
    p.add_argument(
        "--ground-truth", default=None, metavar="PATH", help="write every row (all user statuses) as JSONL"
    )
    p.add_argument(
        "--ground-truth-modules",
        default=None,
        metavar="PATH",
        help="write every module result (all user statuses) as JSONL",
    )
    p.add_argument(
        "--ground-truth-users", default=None, metavar="PATH", help="write every user profile as JSONL"
    )
    p.add_argument("--client-secret", default=None, help=f"default: ${_SECRET_ENV}, else 'emulator-secret'")
    p.add_argument("--uvloop", action="store_true", default=False, help="serve on uvloop")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for _cls, _field, group, flag, options in _options():
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        groups[group].add_argument(flag, **options)
    groups[_STRUCTS[1][1]].add_argument(
        "--script", type=_script, action="append", default=[], metavar="ENDPOINT:N=FAULT",
        help="this fault on the Nth request of ENDPOINT (repeatable)",
    )  # fmt: skip
    return p


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """The ``EmulatorConfig`` the parsed arguments describe (unset fields keep the config's defaults)."""
    given: dict[type, dict[str, Any]] = {cls: {} for cls, _, _ in _STRUCTS}
    values = vars(args)
    for cls, field, _group, _flag, options in _options():
        if options["dest"] in values:
            given[cls][field.name] = values[options["dest"]]
    secret = args.client_secret or os.environ.get(_SECRET_ENV) or "emulator-secret"
    return EmulatorConfig(
        **given[EmulatorConfig],
        client_secret=secret,
        xml_layout=XmlLayout(**given[XmlLayout]),
        faults=Faults(**given[Faults], script=dict(args.script)),
    )


async def _serve(emulator: Emulator, host: str, port: int, secret_shown: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    base_url = await emulator.start(host=host, port=port)
    if emulator.config.token_path != EmulatorConfig.token_path or emulator.config.path_prefix:
        # Printed before the base URL: serve_in_process stops reading at ISPRING_BASE_URL.
        print(f"ISPRING_TOKEN_URL={emulator.token_url}")
    print(f"ISPRING_BASE_URL={base_url}")
    print(f"ISPRING_CLIENT_ID={emulator.client_id}")
    print(f"ISPRING_CLIENT_SECRET={secret_shown}", flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.close()


def main(argv: Sequence[str]) -> int:
    """Run ``ispring-async emulator`` with ``argv`` (the arguments after ``emulator``)."""
    args = parser().parse_args(list(argv))
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"ispring-async emulator: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    emulator = Emulator(config)
    ds = emulator.dataset
    print(
        f"iSpring Learn emulator: {len(ds)} results, {len(ds.user_ids)} users, {config.departments} "
        f"departments, seed {config.seed} (built in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    if args.ground_truth:
        every_status = [("userStatuses[]", "1"), ("userStatuses[]", "3"), ("userStatuses[]", "5")]
        count = emulator.write_expected_results(every_status, args.ground_truth)
        print(f"ground truth: {count} rows written to {args.ground_truth}", flush=True)
    if args.ground_truth_modules:
        every_status = [("userStatuses[]", "1"), ("userStatuses[]", "3"), ("userStatuses[]", "5")]
        count = emulator.write_expected_module_results(every_status, args.ground_truth_modules)
        print(f"ground truth: {count} module results written to {args.ground_truth_modules}", flush=True)
    if args.ground_truth_users:
        count = emulator.write_expected_users([], args.ground_truth_users)
        print(f"ground truth: {count} users written to {args.ground_truth_users}", flush=True)
    from_env = args.client_secret is None and _SECRET_ENV in os.environ
    secret_shown = f"(from ${_SECRET_ENV})" if from_env else config.client_secret
    if args.uvloop:
        import uvloop

        uvloop.run(_serve(emulator, args.host, args.port, secret_shown))
    else:
        asyncio.run(_serve(emulator, args.host, args.port, secret_shown))
    return 0

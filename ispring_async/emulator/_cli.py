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
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence

from ispring_async.emulator._config import EmulatorConfig, Fault, Faults, XmlLayout
from ispring_async.emulator._server import Emulator

__all__ = ["build_config", "main", "parser"]

_SECRET_ENV = "ISPRING_CLIENT_SECRET"  # noqa: S105 - the name of a variable, not a secret


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


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


def parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="ispring-async emulator",
        description=(
            "Serve an emulated iSpring Learn API (token, /learners/results, /learners/modules/results,"
            " /users/v2, /departments)."
        ),
        # The module docstring's variants and latency paragraphs: one description for both audiences.
        epilog=(__doc__ or "").split("\n\n", 2)[2].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0: a free one; default 8080)")
    data = p.add_argument_group("data")
    data.add_argument("--results", type=int, default=100_000, help="result rows (default 100000)")
    data.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    data.add_argument("--departments", type=int, default=40, help="departments (default 40)")
    data.add_argument("--department-depth", type=int, default=4, help="levels of the tree (default 4)")
    data.add_argument("--courses", type=int, default=None, help="courses (default: derived from --results)")
    data.add_argument("--blocked-share", type=float, default=0.1, help="share of blocked users (default 0.1)")
    data.add_argument(
        "--row-cache-rows",
        type=int,
        default=EmulatorConfig.row_cache_rows,
        metavar="N",
        help="cache the rendered bytes of rows below N, per format (~0.5 KiB a row; 0: off; "
        f"default {EmulatorConfig.row_cache_rows})",
    )
    data.add_argument("--ground-truth", metavar="PATH", help="write every row (all user statuses) as JSONL")
    auth = p.add_argument_group("credentials")
    auth.add_argument("--client-id", default="emulator-client")
    auth.add_argument(
        "--client-secret", default=None, help=f"default: ${_SECRET_ENV}, else 'emulator-secret'"
    )
    auth.add_argument("--token-lifetime", type=float, default=1800.0, help="seconds (default 1800)")
    variant = p.add_argument_group("API variants (the unknowns of ispring-api.md)")
    variant.add_argument("--max-page-size", type=int, default=1000)
    variant.add_argument("--subdepartment-matching", action="store_true", help="departmentIds match subtrees")
    variant.add_argument("--overdue-style", choices=("digits", "words"), default="digits")
    variant.add_argument("--empty-last-token", action="store_true", help="last page sends <nextPageToken/>")
    variant.add_argument("--lenient-lists", action="store_true", help="bare repeated userIds= collect all")
    variant.add_argument(
        "--reject-one-sided-ranges", action="store_true", help="400 for a date range with one bound only"
    )
    variant.add_argument(
        "--unknown-ids",
        choices=("match-nothing", "400"),
        default="match-nothing",
        help="an id list holding an unknown id matches nothing for it (default) or fails with 400",
    )
    variant.add_argument(
        "--vanished-departments",
        type=int,
        default=0,
        metavar="N",
        help="N departments listed by /departments that /learners/results does not know (default 0)",
    )
    variant.add_argument(
        "--path-prefix",
        default="",
        metavar="PATH",
        help="serve /learners/results and /departments under PATH, e.g. /api/v2 (the token stays put)",
    )
    variant.add_argument(
        "--token-path",
        default=EmulatorConfig.token_path,
        metavar="PATH",
        help=f"where POST gets a token (default {EmulatorConfig.token_path}, at the host root)",
    )
    layout = p.add_argument_group(
        "XML layout (the records are the same; see ispring_async.emulator.XmlLayout)"
    )
    layout.add_argument("--xml-lines", action="store_true", help="one element per line (the seed sample's)")
    layout.add_argument("--xml-indent", type=int, default=0, metavar="N", help="indent N spaces per level")
    layout.add_argument("--xml-cdata", type=_probability, default=0.0, metavar="SHARE", help="CDATA titles")
    layout.add_argument(
        "--xml-nested", type=_probability, default=0.0, metavar="SHARE", help="unknown nested elements"
    )
    layout.add_argument("--xml-attributes", action="store_true", help="attributes on some elements")
    layout.add_argument("--xml-comments", action="store_true", help="a comment in every record")
    layout.add_argument("--xml-crlf", action="store_true", help="CRLF line ends")
    layout.add_argument("--xml-mixed-overdue", action="store_true", help="isOverdue as 0/1 and false/true")
    faults = p.add_argument_group("faults (probabilities per request; see ispring_async.emulator.Faults)")
    faults.add_argument("--fault-seed", type=int, default=0)
    faults.add_argument("--faults-on-token", action="store_true", help="also inject into POST /api/v3/token")
    faults.add_argument("--script", type=_script, action="append", default=[], metavar="ENDPOINT:N=FAULT")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    faults.add_argument("--latency-jitter", type=float, default=0.0, help="extra uniform seconds")
    faults.add_argument(
        "--latency-median",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="extra lognormal wait per request with this median (default 0: none)",
    )
    faults.add_argument(
        "--latency-p99",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the lognormal wait's 99th percentile (default 4x the median)",
    )
    faults.add_argument("--trickle", type=_probability, default=0.0)
    faults.add_argument("--trickle-chunk", type=int, default=64, help="bytes")
    faults.add_argument("--trickle-delay", type=float, default=0.01, help="seconds")
    faults.add_argument("--rate-limited", type=_probability, default=0.0, help="429 with Retry-After")
    faults.add_argument("--retry-after", type=float, default=1.0)
    faults.add_argument("--retry-after-style", choices=("seconds", "http-date"), default="seconds")
    faults.add_argument("--server-error", type=_probability, default=0.0, help="500")
    faults.add_argument("--bad-gateway", type=_probability, default=0.0, help="502")
    faults.add_argument("--unavailable", type=_probability, default=0.0, help="503")
    faults.add_argument("--reset", type=_probability, default=0.0, help="connection reset mid-body")
    faults.add_argument("--truncate", type=_probability, default=0.0, help="body cut short")
    faults.add_argument("--truncate-style", choices=("content-length", "chunked"), default="content-length")
    faults.add_argument("--cut-at", type=float, default=0.5, help="fraction of the body sent before a cut")
    faults.add_argument("--malformed", type=_probability, default=0.0, help="malformed XML/JSON")
    faults.add_argument("--html", type=_probability, default=0.0, help="200 with an HTML page")
    faults.add_argument("--rate-limit", type=float, default=None, help="requests/s per token, then 429")
    faults.add_argument("--token-expire-after", type=float, default=None, help="seconds")
    faults.add_argument("--inserts-per-request", type=int, default=0)
    faults.add_argument("--updates-per-request", type=int, default=0)
    p.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    return p


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """The ``EmulatorConfig`` the parsed arguments describe."""
    secret = args.client_secret or os.environ.get(_SECRET_ENV) or "emulator-secret"
    faults = Faults(
        seed=args.fault_seed,
        on_token=args.faults_on_token,
        script=dict(args.script),
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        latency_median=args.latency_median,
        latency_p99=args.latency_p99,
        trickle=args.trickle,
        trickle_chunk=args.trickle_chunk,
        trickle_delay=args.trickle_delay,
        rate_limited=args.rate_limited,
        retry_after=args.retry_after,
        retry_after_style=args.retry_after_style,
        server_error=args.server_error,
        bad_gateway=args.bad_gateway,
        unavailable=args.unavailable,
        reset=args.reset,
        truncate=args.truncate,
        truncate_style=args.truncate_style,
        cut_at=args.cut_at,
        malformed=args.malformed,
        html=args.html,
        rate_limit=args.rate_limit,
        token_expire_after=args.token_expire_after,
        inserts_per_request=args.inserts_per_request,
        updates_per_request=args.updates_per_request,
    )
    return EmulatorConfig(
        results=args.results,
        seed=args.seed,
        departments=args.departments,
        department_depth=args.department_depth,
        courses=args.courses,
        blocked_user_share=args.blocked_share,
        client_id=args.client_id,
        client_secret=secret,
        token_lifetime=args.token_lifetime,
        max_page_size=args.max_page_size,
        subdepartment_matching=args.subdepartment_matching,
        overdue_style=args.overdue_style,
        empty_last_token=args.empty_last_token,
        lenient_lists=args.lenient_lists,
        one_sided_ranges=not args.reject_one_sided_ranges,
        unknown_ids=args.unknown_ids,
        vanished_departments=args.vanished_departments,
        path_prefix=args.path_prefix,
        token_path=args.token_path,
        row_cache_rows=args.row_cache_rows,
        xml_layout=XmlLayout(
            lines=args.xml_lines,
            indent=args.xml_indent,
            cdata_share=args.xml_cdata,
            nested_share=args.xml_nested,
            attributes=args.xml_attributes,
            comments=args.xml_comments,
            crlf=args.xml_crlf,
            mixed_overdue=args.xml_mixed_overdue,
        ),
        faults=faults,
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
    from_env = args.client_secret is None and _SECRET_ENV in os.environ
    secret_shown = f"(from ${_SECRET_ENV})" if from_env else config.client_secret
    if args.uvloop:
        import uvloop

        uvloop.run(_serve(emulator, args.host, args.port, secret_shown))
    else:
        asyncio.run(_serve(emulator, args.host, args.port, secret_shown))
    return 0

"""The client processes of the complete-export scenario, one fresh interpreter per run.

``python -m benchmarks.complete_client lib|naive --base-url URL --format xml|json [--concurrency N]
--output FILE``: export every result of active and blocked users (``userStatuses[]=1&userStatuses[]=3``)
to ``FILE`` as JSONL, written under a temporary name and moved into place once complete (published),
then exit. Credentials come from ``ISPRING_CLIENT_ID`` / ``ISPRING_CLIENT_SECRET``, never argv.

* ``lib`` — ``Client.learner_results`` consumed to the end (the library's defaults: adaptive split),
  each record encoded with msgspec, on uvloop as the command runs; ``--parse-workers N`` parses the
  XML pages in N worker processes (``Client(parse_workers=N)``).
* ``naive`` — what one writes without this library: ``requests`` and ``xml.etree.ElementTree`` (or
  ``reply.json()``), one page after another following ``nextPageToken``, ``json.dumps`` per record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

_STATUSES = ("1", "3")
_PAGE = 1000


def _library(base_url: str, fmt: str, concurrency: int, output: Path, parse_workers: int) -> None:
    import msgspec
    import uvloop

    from ispring_async import Client, ResultsQuery, UserStatus

    async def export() -> None:
        query = ResultsQuery(user_statuses=[UserStatus.ACTIVE, UserStatus.BLOCKED])
        encoder = msgspec.json.Encoder()
        buffer = bytearray()
        partial = output.with_name(output.name + ".partial")
        with partial.open("wb") as f:
            async with (
                Client(
                    base_url,
                    client_id=os.environ["ISPRING_CLIENT_ID"],
                    client_secret=os.environ["ISPRING_CLIENT_SECRET"],
                    response_format=fmt,
                    parse_workers=parse_workers,
                ) as client,
                client.learner_results(query, concurrency=concurrency) as results,
            ):
                async for result in results:
                    encoder.encode_into(result, buffer, -1)
                    buffer.extend(b"\n")
                    if len(buffer) >= 1 << 20:
                        f.write(buffer)
                        buffer.clear()
            f.write(buffer)
        partial.replace(output)

    uvloop.run(export())


def _naive(base_url: str, fmt: str, output: Path) -> None:
    import xml.etree.ElementTree as ET

    import requests

    partial = output.with_name(output.name + ".partial")
    with requests.Session() as session, partial.open("w", encoding="utf-8") as f:
        reply = session.post(
            f"{base_url}/api/v3/token",
            data={
                "client_id": os.environ["ISPRING_CLIENT_ID"],
                "client_secret": os.environ["ISPRING_CLIENT_SECRET"],
                "grant_type": "client_credentials",
            },
            timeout=120,
        )
        reply.raise_for_status()
        session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        if fmt == "json":
            session.headers["Accept"] = "application/json"
        params = [("pageSize", str(_PAGE)), *(("userStatuses[]", s) for s in _STATUSES)]
        token: str | None = None
        while True:
            page_params = params if token is None else [*params, ("pageToken", token)]
            reply = session.get(f"{base_url}/learners/results", params=page_params, timeout=120)
            reply.raise_for_status()
            if fmt == "json":
                body = reply.json()
                for record in body["results"]:
                    f.write(json.dumps(record) + "\n")
                token = body.get("nextPageToken")
            else:
                root = ET.fromstring(reply.content)
                for result in root.iter("result"):
                    f.write(json.dumps({field.tag: field.text for field in result}) + "\n")
                token = root.findtext("nextPageToken")
            if not token:
                break
    partial.replace(output)


def main(argv: list[str]) -> int:
    """Run one export as the arguments say; 0 once the output is published."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.complete_client", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("client", choices=("lib", "naive"))
    p.add_argument("--base-url", required=True)
    p.add_argument("--format", choices=("xml", "json"), default="xml")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--parse-workers", type=int, default=0, help="lib: Client(parse_workers=N)")
    args = p.parse_args(argv)
    if args.client == "lib":
        _library(args.base_url, args.format, args.concurrency, args.output, args.parse_workers)
    else:
        _naive(args.base_url, args.format, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

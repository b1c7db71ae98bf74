"""Airbyte's low-code (declarative) CDK against the emulator, run as the platform runs a manifest connector.

``python airbyte_declarative.py xml|json --base-url URL`` (in ``.venv-airbyte``, in the working directory
the harness gives): writes the connector's ``config.json`` (credentials from ``ISPRING_CLIENT_ID`` /
``ISPRING_CLIENT_SECRET``), a configured catalog and the manifest for the chosen format into that
directory, then runs the CDK's own ``source-declarative-manifest read --manifest-path ...``. The
records leave as Airbyte RECORD messages on stdout, which the harness reads and checks.

XML uses the manifest beside this file as written (``XmlDecoder``); JSON swaps in ``JsonDecoder``, an
``Accept: application/json`` header, and the JSON layout's record path and cursor.
This file must not import ispring_async: it runs in Airbyte's own virtualenv and talks HTTP only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parent / "airbyte_manifest.yaml"
STREAM = "learner_results"


def manifest(fmt: str) -> dict[str, Any]:
    """The declarative manifest for ``fmt`` (``xml`` as written in the file, or its JSON variant)."""
    document: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    if fmt == "json":
        retriever = document["streams"][0]["retriever"]
        retriever["decoder"] = {"type": "JsonDecoder"}
        retriever["requester"]["request_headers"] = {"Accept": "application/json"}
        retriever["record_selector"]["extractor"]["field_path"] = ["results"]
        strategy = retriever["paginator"]["pagination_strategy"]
        strategy["cursor_value"] = "{{ response.get('nextPageToken') }}"
        strategy["stop_condition"] = "{{ not response.get('nextPageToken') }}"
    return document


def main(argv: list[str]) -> int:
    """Write config, catalog and manifest, then run the CDK's ``read``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("format", choices=("xml", "json"))
    p.add_argument("--base-url", required=True)
    args = p.parse_args(argv)
    config = {
        "base_url": args.base_url,
        "client_id": os.environ["ISPRING_CLIENT_ID"],
        "client_secret": os.environ["ISPRING_CLIENT_SECRET"],
    }
    Path("config.json").write_text(json.dumps(config), encoding="utf-8")
    stream = {"name": STREAM, "json_schema": {}, "supported_sync_modes": ["full_refresh"]}
    catalog = {
        "streams": [{"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]
    }
    Path("catalog.json").write_text(json.dumps(catalog), encoding="utf-8")
    Path("manifest.yaml").write_text(yaml.safe_dump(manifest(args.format)), encoding="utf-8")
    from airbyte_cdk.cli.source_declarative_manifest import run  # type: ignore[import-not-found,unused-ignore]

    sys.argv = [
        "source-declarative-manifest",
        "read",
        "--config",
        "config.json",
        "--catalog",
        "catalog.json",
        "--manifest-path",
        "manifest.yaml",
    ]
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""dlt's ``rest_api`` source against the emulator, configured as dlt's docs show (run in ``.venv-dlt``).

``python dlt_rest_api.py extract|load --base-url URL``, in the working directory the harness gives:
credentials from ``ISPRING_CLIENT_ID`` / ``ISPRING_CLIENT_SECRET``. ``extract`` runs
``pipeline.extract(source)`` only (dlt's own extracted files stay in ``./pipelines`` for the harness to
check); ``load`` runs ``pipeline.run(source)`` into dlt's default duckdb file (``./ispring_bench.duckdb``)
and then writes the identities of the loaded rows to ``./out.jsonl`` for the harness to check.

JSON only: ``rest_api`` reads JSON responses (XML is not among its formats). OAuth2 client
credentials against ``/api/v3/token`` (form-encoded, as dlt sends them); cursor paginator from
``nextPageToken`` to ``pageToken``; ``userStatuses[]=1&userStatuses[]=3``.
This file must not import ispring_async: it runs in dlt's own virtualenv and talks HTTP only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import dlt  # type: ignore[import-not-found,unused-ignore]
from dlt.sources.rest_api import rest_api_source  # type: ignore[import-not-found,unused-ignore]

PIPELINE = "ispring_bench"


def source(base_url: str) -> Any:
    """The ``rest_api`` source for every result of active and blocked users."""
    return rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "headers": {"Accept": "application/json"},
                "auth": {
                    "type": "oauth2_client_credentials",
                    "access_token_url": f"{base_url}/api/v3/token",
                    "client_id": os.environ["ISPRING_CLIENT_ID"],
                    "client_secret": os.environ["ISPRING_CLIENT_SECRET"],
                },
                "paginator": {"type": "cursor", "cursor_path": "nextPageToken", "cursor_param": "pageToken"},
            },
            "resources": [
                {
                    "name": "learner_results",
                    "endpoint": {
                        "path": "learners/results",
                        "params": {"pageSize": 1000, "userStatuses[]": [1, 3]},
                        "data_selector": "results",
                    },
                }
            ],
        }
    )


def main(argv: list[str]) -> int:
    """Extract (or load) once; 0 on success."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("extract", "load"))
    p.add_argument("--base-url", required=True)
    args = p.parse_args(argv)
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE, destination="duckdb", dataset_name="ispring", pipelines_dir="pipelines"
    )
    if args.mode == "extract":
        pipeline.extract(source(args.base_url))
        return 0
    pipeline.run(source(args.base_url))
    # What landed in duckdb, with the API's field names, for the harness's completeness check.
    with pipeline.sql_client() as client, open("out.jsonl", "w", encoding="utf-8") as out:
        rows = client.execute_sql("SELECT enrollment_id, user_id, course_id FROM learner_results")
        for enrollment_id, user_id, course_id in rows:
            out.write(json.dumps({"enrollmentId": enrollment_id, "userId": user_id, "courseId": course_id}))
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

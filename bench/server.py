"""The server the ingest benchmark talks to: Saksi's own app (``api.app.create_app``,
as ``saksi serve`` runs it under uvicorn) plus two bare endpoints:

- ``POST /bench/verify`` only parses an envelope and checks its signature against a
  key from a file: the baseline for ``POST /v1/statements``;
- ``POST /bench/record`` does that and then saves one ``Record.Accepted`` event with
  eventsourcing's SQLite recorder in a file of its own, before answering: the least
  any endpoint that durably records a statement must do (the "durable floor").

Run: ``python -m bench.server --home HOME --port PORT --keys KEYS.tsv``.
"""

from __future__ import annotations

import argparse
import base64
import os
from datetime import UTC, datetime

import uvicorn
from eventsourcing.application import Application
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from api.app import create_app as create_saksi_app
from bench.ingest import record_fields
from ledger.application import Record
from ledger.envelope import parse_envelope, verify_signature
from ledger.statements import format_time

KEYS_ENV = "SAKSI_BENCH_KEYS"
FLOOR_ENV = "SAKSI_BENCH_FLOOR_DB"


def create_app() -> FastAPI:
    app = create_saksi_app()  # Settings from SAKSI_HOME, as under `saksi serve`
    keys: dict[str, bytes] = {}
    with open(os.environ[KEYS_ENV]) as handle:
        for line in handle:
            keyid, public = line.split()
            keys[keyid] = base64.b64decode(public)

    @app.post("/bench/verify", include_in_schema=False)
    async def verify(request: Request) -> dict[str, bool]:
        envelope = parse_envelope(await request.body())
        verify_signature(envelope, keys[envelope.keyid])
        return {"ok": True}

    floor = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.environ[FLOOR_ENV],
                             "SQLITE_LOCK_TIMEOUT": "30"})  # fmt: skip

    def record(body: bytes) -> None:
        envelope = parse_envelope(body)
        verify_signature(envelope, keys[envelope.keyid])
        floor.save(Record(**record_fields(envelope.to_json(), format_time(datetime.now(UTC)))))

    @app.post("/bench/record", include_in_schema=False)
    async def durable(request: Request) -> dict[str, bool]:
        await run_in_threadpool(record, await request.body())  # as POST /v1/statements runs its submit
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--floor-db", required=True, help="the SQLite file POST /bench/record writes")
    args = parser.parse_args()
    os.environ["SAKSI_HOME"] = args.home
    os.environ[KEYS_ENV] = args.keys
    os.environ[FLOOR_ENV] = args.floor_db
    # The same uvicorn settings as `saksi serve` (api/cli.py), one worker.
    uvicorn.run("bench.server:create_app", factory=True, host="127.0.0.1", port=args.port,
                log_level="warning", timeout_graceful_shutdown=5)  # fmt: skip


if __name__ == "__main__":
    main()

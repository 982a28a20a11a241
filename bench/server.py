"""The server the ingest benchmark talks to: Saksi's own app (``api.app.create_app``,
as ``saksi serve`` runs it under uvicorn) plus one bare endpoint,
``POST /bench/verify``, that only parses an envelope and checks its signature
against a key from a file: the baseline for ``POST /v1/statements``.

Run: ``python -m bench.server --home HOME --port PORT --keys KEYS.tsv``.
"""

from __future__ import annotations

import argparse
import base64
import os

import uvicorn
from fastapi import FastAPI, Request

from api.app import create_app as create_saksi_app
from ledger.envelope import parse_envelope, verify_signature

KEYS_ENV = "SAKSI_BENCH_KEYS"


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

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", required=True)
    args = parser.parse_args()
    os.environ["SAKSI_HOME"] = args.home
    os.environ[KEYS_ENV] = args.keys
    # The same uvicorn settings as `saksi serve` (api/cli.py), one worker.
    uvicorn.run("bench.server:create_app", factory=True, host="127.0.0.1", port=args.port,
                log_level="warning", timeout_graceful_shutdown=5)  # fmt: skip


if __name__ == "__main__":
    main()

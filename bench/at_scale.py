"""Batch ingest on a ledger that is already big: ``python -m bench.at_scale --home HOME``.

The national run (``python -m bench.totals --scale 1 --keep --work DIR``) leaves a home
of millions of entries; this continues it from the log's size with the next statements
of the same corpus, to see what the write path does at that size without ingesting it
all again. Two ways (run each from the checkout whose code is to be measured, e.g.
two git worktrees, alternating on consecutive statements; every run adds to the home):

- in-process (default): the aggregate cache is warmed first with the aggregates the
  previous ``--warm`` statements touched (as a long-running server's would be), then
  ``Ledger.submit_batch`` records ``--statements`` statements in lists of 1,000;
- ``--http``: a real ``bench.server`` (``saksi serve``'s app and its follower process)
  takes them through ``POST /v1/statements/batch``, with a rate per 20,000.

Prints one line per measurement. No baseline: these compare code versions on the same
ledger, one after the other, so run them alternately and read them as a pair.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import corpus
from bench.measure import ROOT

STEP = 20_000  # statements per reported rate over HTTP


def touched(used: corpus.Corpus, start: int, end: int) -> list[object]:
    """The aggregate ids statements [start, end) read first: signer, subject
    consignment, the receiver of a dispatch (in order, repeats included)."""
    from ledger import custody, registry

    ids: list[object] = []
    for line in used.lines(start, end):
        statement = json.loads(base64.b64decode(json.loads(line)["envelope"]["payload"]))
        ids.append(registry.actor_uuid(statement["actor"]))
        if statement["type"].startswith("logistics."):
            ids.append(custody.consignment_uuid(statement["subject"]))
            if statement["type"] == "logistics.dispatched":
                ids.append(registry.actor_uuid(statement["body"]["receiver"]))
    return ids


def in_process(home: Path, used: corpus.Corpus, statements: int, warm: int) -> None:
    from ledger.application import UnitOfWork
    from ledger.home import Home

    ledger = Home.load(home).open()
    try:
        start = ledger.tlog.size
        began = time.perf_counter()
        ids = touched(used, max(0, start - warm), start)
        for at in range(0, len(ids), 1000):
            UnitOfWork(ledger).load(ids[at : at + 1000])  # type: ignore[arg-type]
        warmed = time.perf_counter() - began
        began = time.perf_counter()
        done = 0
        for chunk in used.chunks(1000, start, start + statements):
            refused = [r for r in ledger.submit_batch(chunk) if not hasattr(r, "index")]
            if refused:
                raise SystemExit(f"refused: {refused[0]}")
            done += len(chunk)
        seconds = time.perf_counter() - began
        print(f"in-process from entry {start:,}: aggregate cache {ledger.repository.cache.maxsize:,} "  # type: ignore[union-attr]
              f"(warmed in {warmed:.0f} s), {done:,} statements in {seconds:.1f} s = {done / seconds:,.0f}/s")
    finally:
        ledger.close()


def over_http(home: Path, used: corpus.Corpus, statements: int) -> None:
    import httpx

    from bench.ingest import Server, post_batches, write_keys
    from ledger.home import Home

    ledger = Home.load(home).open(audit=True)
    start = ledger.tlog.size
    ledger.close()
    with tempfile.TemporaryDirectory(prefix="saksi-at-scale-") as scratch:
        keys = Path(scratch) / "keys.tsv"
        write_keys(used, 0, 0, keys)  # the bare endpoint is not used here
        with Server(home, keys, Path(scratch) / "server.log") as server, \
                httpx.Client(base_url=server.url, timeout=3600) as client:  # fmt: skip
            for at in range(start, start + statements, STEP):
                end = min(at + STEP, start + statements)
                began = time.perf_counter()
                post_batches(client, used, at, end, 1000)
                print(f"over HTTP, entries {at:,}–{end:,}: {(end - at) / (time.perf_counter() - began):,.0f}/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.at_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--home", type=Path, required=True, help="a ledger home bench.totals --keep left")
    parser.add_argument("--scale", type=float, default=1.0, help="the corpus that home was fed (default 1.0)")
    parser.add_argument("--statements", type=int, default=20_000, help="statements to record (default 20,000)")
    parser.add_argument("--warm", type=int, default=300_000, help="in-process: statements whose aggregates warm the cache")
    parser.add_argument("--http", action="store_true", help="through a real server instead of in-process")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache")
    args = parser.parse_args(argv)
    used = corpus.load(args.scale, cache=args.cache)
    if args.http:
        over_http(args.home, used, args.statements)
    else:
        in_process(args.home, used, args.statements, args.warm)
    return 0


if __name__ == "__main__":
    sys.exit(main())

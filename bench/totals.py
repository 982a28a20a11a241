"""The totals of one big run (issue #7: "the national run's totals"):
``python -m bench.totals [--scale 1.0]``.

No baseline here: these are absolute figures of one run, on this machine, at the
load it had. The whole corpus of ``national(scale=…)`` (signed once and cached,
like the ratio benchmarks' corpora) goes, on a fresh SQLite ledger home, through

1. ``POST /v1/statements/batch`` on a real uvicorn server (``python -m bench.server``:
   the app ``saksi serve`` runs, one worker, its projection follower on), 1,000
   envelopes per request from one client; every item must come back 201;
2. ``Projector.rebuild()``: every projection cleared and rebuilt from entry 0;
3. the audit ``saksi verify`` runs (``audit_ledger``, two signature workers), in a
   new process, with that process's peak resident set; and the same audit of a
   ledger holding the corpus's first 100,000 statements, for the peak-memory ratio;
4. the size of the database on disk (the SQLite file and its WAL).

Writes ``bench/totals-<scale>.json`` (which ``python -m bench`` copies into
RESULTS.md) and prints the figures. Until the run finishes, what it has measured so far
is kept after every step (and every minute of ingest) in ``totals-<scale>.partial.json``
beside it, with ``"complete": false``, so a run cut short still leaves the steps it
finished and never replaces the figures of an earlier run that finished. ``--keep`` leaves the ledger home in place;
``--limit N`` (a smoke run, only the first N statements) needs ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import audit, corpus, rebuild
from bench.ingest import Server, database_bytes, post_batches, write_keys
from bench.measure import ROOT, code_hash, load_average, machine, say, step
from bench.report import totals_markdown

MEMORY_LOW = 100_000


def ingest(client: httpx.Client, used: corpus.Corpus, batch: int,
           checkpoint: Callable[[int, float], None]) -> dict[str, float]:
    """Every statement of ``used`` through ``POST /v1/statements/batch``; the wall time of
    the whole ingest and the time spent waiting for responses. ``checkpoint`` hears how
    many were in after how many seconds, at every progress report."""
    started = time.perf_counter()

    def progress(done: int) -> None:
        seconds = time.perf_counter() - started
        say(f"ingested {done:,} of {used.size:,} ({done / seconds:,.0f}/s)")
        checkpoint(done, seconds)

    waited = post_batches(client, used, 0, used.size, batch, progress=progress)
    return {"seconds": time.perf_counter() - started, "waiting": waited}


def partial_path(out: Path) -> Path:
    """Where a run writing ``out`` keeps its figures until it finishes."""
    return out.with_name(out.name.removesuffix(".json") + ".partial.json")


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "complete": False,
        "command": "python -m bench.totals " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_average(),
        "machine": machine(),
        "code_hash": code_hash(),
        "scale": args.scale,
        "batch": args.batch,
        "limit": args.limit,
    }

    def save() -> None:
        results["load_after"] = load_average()
        target = out if results["complete"] else partial_path(out)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(json.dumps(results, indent=1) + "\n")
        temporary.replace(target)
        if results["complete"]:
            partial_path(out).unlink(missing_ok=True)

    with step("loading the corpus"):
        used = corpus.load(args.scale, cache=args.cache, limit=args.limit)
    results["corpus"] = {**used.meta, "statements": used.size, "path": used.path.name,
                         "bytes": used.path.stat().st_size}  # fmt: skip
    work = args.work or Path(tempfile.mkdtemp(prefix="saksi-totals-"))
    home = work / "home"  # a --work folder is the user's: only what this run made there is removed
    try:
        used.new_home(home)
        keys = work / "keys.tsv"
        write_keys(used, 0, 0, keys)  # the bare endpoint is not used here
        with step(f"ingest of {used.size:,} statements over HTTP"), \
                Server(home, keys, work / "server.log") as server, \
                httpx.Client(base_url=server.url, timeout=3600) as client:  # fmt: skip

            def checkpoint(done: int, seconds: float) -> None:
                results["ingest_so_far"] = {"statements": done, "seconds": seconds}
                save()

            results["ingest"] = ingest(client, used, args.batch, checkpoint)
            results.pop("ingest_so_far", None)
        results["database_bytes"] = database_bytes(home)
        save()
        with step("rebuilding every projection from zero"):
            seconds, processes = rebuild.rebuild(home)
            results["rebuild"] = {"seconds": seconds, "processes": processes}
        results["database_bytes_with_projections"] = database_bytes(home)
        save()
        with step("auditing the whole log in a new process"):
            results["audit"] = audit.peak(home)
        save()
        if used.size >= 2 * MEMORY_LOW:
            with step(f"auditing the first {MEMORY_LOW:,} statements, for the peak-memory ratio"):
                small = audit.fixture(used, MEMORY_LOW, cache=args.cache)
                results["audit_low"] = audit.peak(small)
    finally:
        if not args.keep:
            made = [work] if args.work is None else [home, work / "keys.tsv", work / "server.log", work / "floor.sqlite"]
            for path in made:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    results["complete"] = True
    save()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.totals", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the country (default 1.0)")
    parser.add_argument("--batch", type=int, default=1000, help="envelopes per batch request")
    parser.add_argument("--limit", type=int, help="only the first N statements (a smoke run)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the ledger home afterwards")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default bench/totals-SCALE.json)")
    args = parser.parse_args(argv)
    if args.limit and args.out is None:
        parser.error("--limit makes a smoke run: give --out, so it cannot replace a real run's totals")
    out = args.out or ROOT / "bench" / f"totals-{corpus.scale_label(args.scale)}.json"
    results = run(args, out)
    print("\n".join(totals_markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

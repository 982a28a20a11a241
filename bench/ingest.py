"""Ingest (issue item 2): batches through ``POST /v1/statements/batch`` on a real
uvicorn server, single statements through ``POST /v1/statements`` against a bare
endpoint on the same server, and ``Ledger.submit`` directly.

One run, on a fresh ledger home:

1. the server ingests statements ``[0, N-K)`` in batches of ``batch`` (one client,
   bodies encoded before the clock starts, the time of each request summed);
2. the home is copied (SQLite backup API);
3. the last ``K`` statements go one request each to ``POST /v1/statements``, and
   the same envelopes to the bare ``POST /bench/verify``, interleaved by hundreds;
4. the copy takes the same ``K`` statements through ``Ledger.submit`` in-process.

Baselines, in the same run: raw eventsourcing saves of one equivalent event per
statement (``Record.Accepted``, 100 aggregates per ``save``) plus raw Ed25519
verification of the same envelopes with ``cryptography`` on one core.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import Application

from bench.corpus import Corpus
from bench.measure import ROOT, Stopwatch, followers_of, process_cpu
from ledger.application import Record
from ledger.envelope import decode_b64, statement_digest
from ledger.home import Home
from ledger.statements import format_time

SAVE_BATCH = 100  # aggregates per eventsourcing save in the baseline
JSON = {"content-type": "application/json"}


# ---------------------------------------------------------------- baselines


def record_fields(envelope: dict[str, Any], recorded_at: str) -> dict[str, Any]:
    """What ``Ledger`` puts in a ``Record.Accepted`` event for ``envelope``."""
    payload = decode_b64(envelope["payload"])
    statement = json.loads(payload)
    return {
        "statement_id": statement["id"], "envelope": envelope, "digest": statement_digest(payload),
        "recorded_at": recorded_at, "type": statement["type"], "actor": statement["actor"],
        "subject": statement["subject"], "keyid": envelope["signatures"][0]["keyid"], "mandate_id": "m1",
    }  # fmt: skip


def raw_saves(corpus: Corpus, start: int, end: int, database: Path) -> float:
    """Seconds to create and save one Record aggregate per statement, 100 per save,
    with eventsourcing's SQLite recorder in a fresh database file."""
    for leftover in database.parent.glob(database.name + "*"):
        leftover.unlink()
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(database),
                           "SQLITE_LOCK_TIMEOUT": "30"})  # fmt: skip
    watch = Stopwatch()
    recorded_at = format_time(datetime.now(UTC))
    try:
        for chunk in corpus.chunks(SAVE_BATCH, start, end):
            fields = [record_fields(envelope, recorded_at) for envelope in chunk]
            with watch:
                app.save(*(Record(**f) for f in fields))
    finally:
        app.close()
    return watch.seconds


def raw_verify(corpus: Corpus, start: int, end: int) -> float:
    """Seconds to verify the signatures of statements [start, end) with ``cryptography``,
    one after the other on one core (keys, messages and signatures decoded beforehand)."""
    watch = Stopwatch()
    for chunk in corpus.chunks(1000, start, end):
        triples = corpus.triples(chunk)
        with watch:
            for public_key, message, signature in triples:
                Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    return watch.seconds


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cpu(NamedTuple):
    server: float
    follower: float
    follower_pid: int


class Server:
    """``python -m bench.server`` on a free port, for one ``with`` block."""

    def __init__(self, home: Path, keys: Path, log: Path) -> None:
        self.home, self.keys, self.log = home, keys, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.server", "--home", str(self.home), "--port", str(self.port),
                 "--keys", str(self.keys), "--floor-db", str(self.log.with_name("floor.sqlite"))], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                # the follower as in production, a process of its own, whatever the caller's setting (the tests'
                # is a thread); Server.cpu counts its CPU apart
                env=dict(os.environ, SAKSI_FOLLOWER="process"),
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/v1/log/key", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the benchmark server did not answer within 120 s; see {self.log}")

    def cpu(self) -> Cpu:
        """CPU seconds used so far by the server process and by its projection follower.
        Raises RuntimeError when the follower is not running (or not alone)."""
        assert self.process is not None
        followers = followers_of(self.process.pid)
        if len(followers) != 1:
            raise RuntimeError(f"the server should run one projection follower, not {len(followers)}")
        return Cpu(process_cpu(self.process.pid), process_cpu(followers[0]), followers[0])

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:  # fmt: skip
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def copy_home(source: Path, target: Path) -> None:
    """Copy a ledger home; the database through SQLite's online backup (the server is idle)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("saksi.sqlite*"))
    with sqlite3.connect(source / "saksi.sqlite") as a, sqlite3.connect(target / "saksi.sqlite") as b:
        a.backup(b)
    a.close()
    b.close()


def database_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("saksi.sqlite*") if p.is_file())


# ---------------------------------------------------------------- our paths


def post_batches(client: httpx.Client, corpus: Corpus, start: int, end: int, batch: int, *,
                 progress: Callable[[int], None] | None = None, watch: Stopwatch | None = None) -> float:  # fmt: skip
    """Seconds of ``POST /v1/statements/batch`` requests for [start, end). Every item must be
    201. ``progress`` is called with the statements sent so far, at most once a minute.
    ``watch``, when given, times the requests (and the client's CPU seconds in them)."""
    watch = Stopwatch() if watch is None else watch
    done, said = 0, time.monotonic()
    for chunk in corpus.chunks(batch, start, end):
        body = ("[" + ",".join(json.dumps(e, separators=(",", ":")) for e in chunk) + "]").encode()
        with watch:
            response = client.post("/v1/statements/batch", content=body, headers=JSON)
        if response.status_code != 200:
            raise RuntimeError(f"batch refused: {response.status_code} {response.text[:500]}")
        refused = [item for item in response.json() if item["status"] != 201]
        if refused:
            raise RuntimeError(f"{len(refused)} statements refused, first: {refused[0]}")
        done += len(chunk)
        if progress is not None and time.monotonic() - said > 60:
            said = time.monotonic()
            progress(done)
    return watch.seconds


def post_singles(client: httpx.Client, corpus: Corpus, start: int, end: int) -> tuple[float, float, float]:
    """Seconds of ``POST /v1/statements``, of the bare ``POST /bench/verify`` and of the durable
    floor ``POST /bench/record`` for the same envelopes, interleaved by hundreds (the order
    rotating). Each must be 201 from ours and 200 from the bare ones."""
    watches = {"ours": Stopwatch(), "bare": Stopwatch(), "floor": Stopwatch()}
    paths = {"ours": ("/v1/statements", 201), "bare": ("/bench/verify", 200), "floor": ("/bench/record", 200)}
    names = list(watches)
    for number, chunk in enumerate(corpus.chunks(100, start, end)):
        bodies = [json.dumps(e, separators=(",", ":")).encode() for e in chunk]
        for name in names[number % 3:] + names[: number % 3]:
            path, expected = paths[name]
            for body in bodies:
                with watches[name]:
                    response = client.post(path, content=body, headers=JSON)
                if response.status_code != expected:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return watches["ours"].seconds, watches["bare"].seconds, watches["floor"].seconds


def submit_direct(home: Path, corpus: Corpus, start: int, end: int) -> float:
    """Seconds of ``Ledger.submit`` calls, one statement each, for [start, end)."""
    ledger = Home.load(home).open()
    watch = Stopwatch()
    try:
        for chunk in corpus.chunks(100, start, end):
            for envelope in chunk:
                with watch:
                    ledger.submit(envelope)
    finally:
        ledger.close()
    return watch.seconds


def write_keys(corpus: Corpus, start: int, end: int, path: Path) -> None:
    """The keys of the signers of [start, end), for the bare endpoint."""
    wanted = {e["signatures"][0]["keyid"] for e in corpus.envelopes(start, end)}
    with open(path, "w") as handle:
        for keyid in sorted(wanted):
            handle.write(f"{keyid}\t{base64.b64encode(corpus.keys[keyid]).decode()}\n")


# ---------------------------------------------------------------- one run


@dataclass
class IngestRun:
    batch_items: int
    single_items: int
    http_batch: float
    http_single: float
    bare_single: float
    floor_single: float
    direct_single: float
    saves_batch: float
    verify_batch: float
    saves_single: float
    verify_single: float
    database_bytes: int
    home: Path
    # CPU seconds from the first batch request to the last response: the server process,
    # its projection follower, and the client inside its requests
    cpu_batch: dict[str, float] = field(default_factory=dict)
    batch_span: float = 0.0  # that phase's wall seconds (the client's encoding of each body included)


def run(corpus: Corpus, folder: Path, *, number: int, single: int, batch: int,
        keep_copy: bool = False) -> IngestRun:  # fmt: skip
    """One ingest run in ``folder``; leaves the full ledger in ``folder/home`` (and, with
    ``keep_copy``, the ledger holding only [0, N-K) in ``folder/before-singles``)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = corpus.size
    cut = n - single
    home, copy = folder / "home", folder / "copy"
    corpus.new_home(home)
    keys = folder / "keys.tsv"
    write_keys(corpus, cut, n, keys)

    def baselines() -> tuple[float, float, float, float]:
        return (raw_saves(corpus, 0, cut, folder / "raw.sqlite"), raw_verify(corpus, 0, cut),
                raw_saves(corpus, cut, n, folder / "raw.sqlite"), raw_verify(corpus, cut, n))  # fmt: skip

    base = baselines() if number % 2 else None
    with Server(home, keys, folder / "server.log") as server, httpx.Client(base_url=server.url, timeout=600) as client:
        started, requests, begun = server.cpu(), Stopwatch(), time.perf_counter()
        http_batch = post_batches(client, corpus, 0, cut, batch, watch=requests)
        span, ended = time.perf_counter() - begun, server.cpu()
        if ended.follower_pid != started.follower_pid:
            raise RuntimeError("the projection follower restarted during the batch phase")
        cpu_batch = {"server": ended.server - started.server, "follower": ended.follower - started.follower,
                     "client": requests.cpu}  # fmt: skip
        copy_home(home, copy)
        if keep_copy:
            copy_home(home, folder / "before-singles")
        http_single, bare_single, floor_single = post_singles(client, corpus, cut, n)
    direct_single = submit_direct(copy, corpus, cut, n)
    shutil.rmtree(copy)
    if base is None:
        base = baselines()
    for leftover in folder.glob("raw.sqlite*"):
        leftover.unlink()
    return IngestRun(cut, single, http_batch, http_single, bare_single, floor_single, direct_single, *base,
                     database_bytes=database_bytes(home), home=home, cpu_batch=cpu_batch, batch_span=span)  # fmt: skip


def submit_in_process(home: Path, corpus: Corpus, start: int, end: int, *, batch: int | None) -> None:
    """What the profiles run: [start, end) through ``Ledger.submit_batch`` in lists of
    ``batch``, or through ``Ledger.submit`` one by one when ``batch`` is None."""
    ledger = Home.load(home).open()
    try:
        for chunk in corpus.chunks(batch or 100, start, end):
            if batch:
                refused = [r for r in ledger.submit_batch(chunk) if not hasattr(r, "index")]
                if refused:
                    raise RuntimeError(f"{len(refused)} refused, first: {refused[0]}")
            else:
                for envelope in chunk:
                    ledger.submit(envelope)
    finally:
        ledger.close()


# ---------------------------------------------------------------- item 2 alone


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.ingest [--scale S] [--runs N]``: the ingest runs of ``python -m
    bench`` (the same ``run`` on the same corpus), without the rest of the suite, for a
    quick look at item 2 after a change. Prints each run's ratios and their min / median /
    max; writes nothing (RESULTS.md comes from the whole suite only)."""
    import argparse
    import tempfile

    from bench import corpus as corpora
    from bench.measure import Series

    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=main.__doc__)
    parser.add_argument("--scale", type=float, default=0.01, help="fraction of the country (default 0.01)")
    parser.add_argument("--limit", type=int, help="use only the first N statements of the schedule")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--single", type=int, help="statements sent one by one (default min(2000, N/10))")
    parser.add_argument("--batch", type=int, default=1000, help="envelopes per batch request (default 1000)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache")
    args = parser.parse_args(argv)
    used = corpora.load(args.scale, cache=args.cache, limit=args.limit)
    single = args.single if args.single is not None else max(1, min(2000, used.size // 10))
    if not 0 < single < used.size:
        parser.error(f"--single must be between 1 and {used.size - 1}")
    batch = Series("batch ingest, POST /v1/statements/batch", "throughput", used.size - single, goal=1.2)
    one = Series("single POST /v1/statements vs bare verify endpoint", "throughput", single, goal=0.6)
    floor = Series("the durable floor vs the bare endpoint", "throughput", single)
    direct = Series("Ledger.submit, one call per statement", "throughput", single)
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="saksi-ingest-") as scratch:
            done = run(used, Path(scratch), number=number, single=single, batch=args.batch)
        batch.add(done.http_batch, done.saves_batch + done.verify_batch)
        one.add(done.http_single, done.bare_single)
        floor.add(done.floor_single, done.bare_single)
        direct.add(done.direct_single, done.saves_single + done.verify_single)
        print(f"run {number}: batch {done.batch_items / done.http_batch:,.0f}/s, ratio {batch.ratios[-1]:.2f}; "
              f"single POST ratio {one.ratios[-1]:.2f} (durable floor {floor.ratios[-1]:.2f}); "
              f"Ledger.submit ratio {direct.ratios[-1]:.2f}; batch-phase CPU "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in done.cpu_batch.items())
              + f" in {done.batch_span:.1f} s; raw saves {done.saves_batch:.1f} s + verify {done.verify_batch:.1f} s",
              flush=True)  # fmt: skip
    for series in (batch, one, floor, direct):
        low, median, high = series.summary()
        goal = f" (goal ≥ {series.goal})" if series.goal else ""
        print(f"{series.name}: {low:.2f} / {median:.2f} / {high:.2f}{goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

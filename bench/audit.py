"""Audit (issue item 4): ``saksi verify`` over the whole log against raw Ed25519
verification of the same signatures on one core; and the audit's peak memory at
two log sizes, ten times apart, each measured in a fresh process.

The memory ledgers are prefixes of one national corpus (a log at 100 k entries is
what the same log at 1 M entries was earlier), built once through
``Ledger.submit_batch`` with the scenario's clock and cached under
``bench/cache/ledgers/`` keyed by the ledger's source hash.

``python -m bench.audit peak HOME`` audits HOME and prints, as JSON, its entries,
seconds and peak RSS (this process's VmHWM, its largest child process's, and their
total counting every parse worker at the largest one's peak);
``python -m bench.audit trace HOME`` prints the top allocation sites alive at the
end of the audit (tracemalloc).
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from bench.corpus import Corpus
from bench.measure import ROOT, step
from ledger import ed25519
from ledger.accepted import record_state
from ledger.audit import audit_ledger, parse_entry, records
from ledger.envelope import PAYLOAD_TYPE, pae
from ledger.home import Home
from ledger.scenario import SimulatedClock

VERIFY = [sys.executable, "-c", "from api.cli import main; main()", "verify"]


class Verified(NamedTuple):
    seconds: float  # wall
    cpu: float  # CPU seconds of saksi verify's process and its parse workers together


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def saksi_verify(home: Path) -> Verified:
    """``saksi verify --home HOME`` (a new process, as a user runs it): its wall seconds,
    and the CPU seconds it used with its worker processes (which it waits for)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run([*VERIFY, "--home", str(home)], cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "ok:" not in done.stdout:
        raise RuntimeError(f"saksi verify failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-1500:]}")
    return Verified(seconds, _children_cpu() - cpu)


def floor(home: Path, corpus: Corpus) -> dict[str, float]:
    """The work no audit can skip, each on one core: reading, decoding and parsing every
    entry's stored event, envelope and statement (what check 1 must look at), and
    verifying every signature with the faster library (``ledger.ed25519``); seconds."""
    ledger = Home.load(home).open(audit=True)
    triples = []
    started = time.perf_counter()
    try:
        for index, (_, _, notification) in enumerate(records(ledger)):
            envelope, _ = parse_entry(index, record_state(ledger.mapper, notification.state)["envelope"])
            triples.append((corpus.keys[envelope.keyid], pae(PAYLOAD_TYPE, envelope.payload), envelope.sig))
    finally:
        ledger.close()
    entries = len(triples)
    parse = time.perf_counter() - started
    started = time.perf_counter()
    for public_key, message, signature in triples:
        if not ed25519.accepts(public_key, message, signature):
            raise RuntimeError("a signature of the benchmark ledger does not verify")
    return {"parse": parse, "verify": time.perf_counter() - started, "entries": entries}


def audit_target(home: Path, *, processes: int | None = None) -> None:
    """What the profiles run: ``audit_ledger`` as ``saksi verify`` calls it (the profile
    then sees the auditing process only), or with ``processes=0`` all of its work in one
    process and one thread."""
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    try:
        audit_ledger(ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file,
                     workers=2 if processes is None else 0, processes=processes)  # fmt: skip
    finally:
        ledger.close()


def peak(home: Path) -> dict[str, Any]:
    """Audit ``home`` in a new process; its entries, seconds and peak RSS in KiB."""
    done = subprocess.run([sys.executable, "-m", "bench.audit", "peak", str(home)], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.audit peak failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def trace(home: Path) -> list[tuple[str, float, int]]:
    """Top allocation sites (file:line, MiB, blocks) alive when the audit has replayed every
    entry, in a new process under tracemalloc."""
    done = subprocess.run([sys.executable, "-m", "bench.audit", "trace", str(home)], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.audit trace failed: {done.stderr[-2000:]}")
    return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]  # type: ignore[misc]


# ---------------------------------------------------------------- the memory ledgers


def ledger_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fixture(corpus: Corpus, size: int, *, cache: Path) -> Path:
    """A ledger home holding the first ``size`` statements of ``corpus``, built once."""
    name = f"{corpus.seed}-{corpus.scale:g}-{size}"
    folder = cache / "ledgers" / f"{name}-{ledger_hash()}"
    if (folder / "complete").exists():
        return folder
    for stale in (cache / "ledgers").glob(f"{name}-*"):
        shutil.rmtree(stale)  # built by another version of ledger/
    with step(f"building the {size}-entry audit-memory ledger (cached afterwards)"):
        home = corpus.new_home(folder)
        clock = SimulatedClock()
        ledger = home.open(clock=clock)
        try:
            for chunk in corpus.timed_chunks(1000, 0, size):
                clock.now = datetime.fromisoformat(chunk[-1][0])
                results = ledger.submit_batch([envelope for _, envelope in chunk])
                refused = [r for r in results if not hasattr(r, "index")]
                if refused:
                    raise RuntimeError(f"{len(refused)} statements refused, first: {refused[0]}")
        finally:
            ledger.close()
        (folder / "complete").write_text(f"{size}\n")
    return folder


# ---------------------------------------------------------------- in the measured process


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM), in KiB. Not ``ru_maxrss``: on Linux that
    keeps the parent's peak across fork and exec, so a small child of a big benchmark
    process would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def _peak(home: Path) -> None:
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    started = time.perf_counter()
    report = audit_ledger(ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file, workers=2)
    seconds = time.perf_counter() - started
    ledger.close()
    own, child = peak_rss_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "entries": report.size, "seconds": seconds, "self_kib": own, "workers_kib": child,
        "processes": report.processes,
        # Every parse worker counted at the largest one's peak, shared pages included: an
        # upper bound on what the audit holds at once.
        "total_kib": own + report.processes * child,
    }))  # fmt: skip


def _trace(home: Path) -> None:
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    size = ledger.tlog.size
    snapshots: list[tracemalloc.Snapshot] = []

    def progress(done: int) -> None:
        if done == size and not snapshots:  # every entry replayed; the registry is still alive
            snapshots.append(tracemalloc.take_snapshot())

    tracemalloc.start(1)
    audit_ledger(ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file,
                 workers=2, progress=progress)  # fmt: skip
    ledger.close()
    top = snapshots[0].statistics("lineno")[:12] if snapshots else []
    rows = []
    for stat in top:
        frame = stat.traceback[0]
        where = frame.filename
        for marker in (str(ROOT) + "/", "site-packages/", "lib/python3.11/"):
            where = where.split(marker, 1)[-1]
        rows.append((f"{where}:{frame.lineno}", round(stat.size / 2**20, 2), stat.count))
    print(json.dumps(rows))


def main() -> None:
    mode, home = sys.argv[1], Path(sys.argv[2])
    {"peak": _peak, "trace": _trace}[mode](home)


if __name__ == "__main__":
    main()

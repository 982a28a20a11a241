"""``python -m bench [--scale S]``: run the benchmark suite and write bench/RESULTS.md.

Scales (``ledger.scenario.national`` picks whole regencies): 0.001 is one regency
(the smoke run), 0.01 the default, 1.0 the national run (≈ 5 M statements).
``--limit`` takes a prefix of the schedule for runs smaller than one regency.
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import audit, corpus, ed25519, ingest, proofs, rebuild, report
from bench.measure import (
    ROOT,
    STEPS,
    Profile,
    Series,
    code_hash,
    load_average,
    machine,
    profile,
    say,
    step,
)

DEFAULT_SCALE = 0.01


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help="fraction of the country's regencies (default 0.01)")  # fmt: skip
    parser.add_argument("--limit", type=int, help="use only the first N statements of the schedule")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (at least 3; default 3)")
    parser.add_argument("--single", type=int,
                        help="statements sent one by one at the end of each run (default min(2000, N/10))")  # fmt: skip
    parser.add_argument("--batch", type=int, default=1000, help="envelopes per batch request (default 1000)")
    parser.add_argument("--proof-sizes", default="1000,100000,1000000",
                        help="tree sizes for the proofs, smallest first (default 1000,100000,1000000)")  # fmt: skip
    # 10,000: each size's timing then lasts about a second; 2,000 proofs of a 1,000-leaf tree
    # took 0.12 s, short enough for the machine's noise to swing a run's ratio from 1.2 to 2.5
    parser.add_argument("--proofs", type=int, default=10000, help="proofs of each kind per size and run")
    parser.add_argument("--memory-sizes",
                        help="SMALL,LARGE log sizes for the audit's peak memory (default 100000,1000000 "
                             "when the corpus has 1 M statements, else 10000,100000)")  # fmt: skip
    parser.add_argument("--signatures", type=int, default=20000,
                        help="signatures in the Ed25519 library comparison (default 20000)")  # fmt: skip
    parser.add_argument("--seed", default=corpus.SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one, removed)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles of missed goals")
    parser.add_argument("--note", action="append", default=[],
                        help="a paragraph to add to the report (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3")
    return args


def command(argv: list[str]) -> str:
    """The command line as run, each ``--note`` text elided (the report prints the notes)."""
    shown = ["…" if n and argv[n - 1] == "--note" else a for n, a in enumerate(argv)]
    return "python -m bench " + shlex.join(shown).replace("'…'", "…")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command(sys.argv[1:] if argv is None else argv),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_average(),
        "machine": machine(),
        "runs": args.runs,
        "batch": args.batch,
        "notes": args.note,
        "code_hash": code_hash(),
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="saksi-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measure_all(args, work, results)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results["steps"] = list(STEPS)
    results["load_after"] = load_average()
    results["sources_changed"] = code_hash() != results["code_hash"]
    results["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(results))
    say(f"wrote {args.out} after {results['seconds'] / 60:.1f} minutes")
    return 0


def measure_all(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    series: dict[str, Series] = {}
    results["series"] = series
    profiles: list[Profile] = []
    results["profiles"] = profiles

    # ---------------------------------------------------------------- 1. the corpus
    with step("loading the corpus"):
        used = corpus.load(args.scale, cache=args.cache, seed=args.seed, limit=args.limit)
        types = used.types()
    n = used.size
    single = args.single if args.single is not None else max(1, min(2000, n // 10))
    if not 0 < single < n:
        raise SystemExit(f"--single must be between 1 and {n - 1}")
    results["corpus"] = {"corpus": used, "types": types, "single": single}

    # ---------------------------------------------------------------- 6. Ed25519 libraries
    results["ed25519"] = {"verdicts": ed25519.verdicts(), "available": ed25519.pynacl_available()}
    if ed25519.pynacl_available():
        with step("Ed25519: cryptography against PyNaCl"):
            triples = ed25519.sample(used, args.signatures)
            s = series["ed25519"] = Series("PyNaCl / cryptography verification", "throughput", len(triples))
            for run in range(args.runs):
                if run % 2:
                    nacl = ed25519.time_pynacl(triples)
                    crypto = ed25519.time_cryptography(triples)
                else:
                    crypto = ed25519.time_cryptography(triples)
                    nacl = ed25519.time_pynacl(triples)
                s.add(nacl, crypto)

    # ---------------------------------------------------------------- 5. proofs
    sizes = [int(x) for x in args.proof_sizes.split(",")]
    trees = {}
    with step(f"building Merkle trees of {', '.join(map(str, sizes))} leaves"):
        for size in sizes:
            trees[size] = proofs.Tree(work / f"tree-{size}.sqlite", size)
    costs: dict[str, dict[int, list[float]]] = {"inclusion": {s: [] for s in sizes}, "consistency": {s: [] for s in sizes}}
    with step("timing proofs"):
        for run in range(args.runs):
            rng = random.Random(run)
            for size in sizes[run % len(sizes):] + sizes[: run % len(sizes)]:
                costs["inclusion"][size].append(proofs.time_inclusion(trees[size], args.proofs, rng))
                costs["consistency"][size].append(proofs.time_consistency(trees[size], args.proofs, rng))
    for tree in trees.values():
        tree.close()
    small, large = sizes[0], sizes[-1]
    for kind in ("inclusion", "consistency"):
        s = series[f"proof_{kind}"] = Series(f"{kind} proof at {large} vs {small} leaves", "cost", args.proofs, goal=2.0)
        for ours, base in zip(costs[kind][large], costs[kind][small], strict=True):
            s.add(ours, base)
        if len(sizes) > 2:
            mid = sizes[len(sizes) // 2]
            m = series[f"proof_{kind}_mid"] = Series(f"{kind} proof at {mid} vs {small} leaves", "cost", args.proofs)
            for ours, base in zip(costs[kind][mid], costs[kind][small], strict=True):
                m.add(ours, base)
    results["proofs"] = {"sizes": sizes, "costs": costs, "count": args.proofs}

    # ---------------------------------------------------------------- 2–4. ingest, rebuild, audit
    batch = series["ingest_batch"] = Series("batch ingest, POST /v1/statements/batch", "throughput", n - single, goal=1.2)
    http1 = series["ingest_single"] = Series("single POST /v1/statements vs bare verify endpoint", "throughput", single, goal=0.6)
    direct = series["ingest_direct"] = Series("Ledger.submit, one call per statement", "throughput", single)
    rebuilt = series["rebuild"] = Series("Projector.rebuild() from zero", "throughput", n, goal=0.5)
    audited = series["audit"] = Series("saksi verify", "throughput", n, goal=1.6)
    runs: list[ingest.IngestRun] = []
    results["ingest_runs"] = runs
    results["notifications"] = []
    last_home: Path | None = None
    for run in range(1, args.runs + 1):
        folder = work / f"run-{run}"
        with step(f"run {run}/{args.runs}: ingest of {n} statements ({single} one by one)"):
            done = ingest.run(used, folder, number=run, single=single, batch=args.batch, keep_copy=run == args.runs)
        runs.append(done)
        batch.add(done.http_batch, done.saves_batch + done.verify_batch)
        http1.add(done.http_single, done.bare_single)
        direct.add(done.direct_single, done.saves_single + done.verify_single)
        with step(f"run {run}/{args.runs}: rebuild and audit"):
            if run % 2:
                base, count = rebuild.read_notifications(done.home)
                ours, processes = rebuild.rebuild(done.home)
            else:
                ours, processes = rebuild.rebuild(done.home)
                base, count = rebuild.read_notifications(done.home)
            rebuilt.add(ours, base)
            results["notifications"].append(count)
            results.setdefault("rebuild_processes", []).append(processes)
            if run % 2:
                base = ingest.raw_verify(used, 0, n)
                verified = audit.saksi_verify(done.home)
            else:
                verified = audit.saksi_verify(done.home)
                base = ingest.raw_verify(used, 0, n)
            audited.add(verified.seconds, base)
            results.setdefault("audit_cpu", []).append(verified.cpu)
            results.setdefault("audit_floor", []).append({**audit.floor(done.home, used), "raw": base})
        if last_home is not None:
            shutil.rmtree(last_home.parent, ignore_errors=True)
        last_home = done.home
    assert last_home is not None

    # ---------------------------------------------------------------- 4. audit memory
    if args.memory_sizes:
        low, high = (int(x) for x in args.memory_sizes.split(","))
    elif n >= 1_000_000:
        low, high = 100_000, 1_000_000
    else:
        low, high = 10_000, 100_000
    source = used if used.size >= high else corpus.load_at_least(high, cache=args.cache, seed=args.seed, start=args.scale)
    homes = {size: audit.fixture(source, size, cache=args.cache) for size in (low, high)}
    peaks: dict[int, list[dict[str, Any]]] = {low: [], high: []}
    with step(f"audit peak memory at {low} and {high} entries"):
        for run in range(args.runs):
            for size in (low, high) if run % 2 == 0 else (high, low):
                peaks[size].append(audit.peak(homes[size]))
    memory = series["audit_memory"] = Series(f"audit peak RSS at {high} vs {low} entries", "cost", high, goal=1.2, unit="KiB")
    for big, little in zip(peaks[high], peaks[low], strict=True):
        memory.add(report.total_kib(big), report.total_kib(little))
    results["memory"] = {"low": low, "high": high, "peaks": peaks, "source": source}

    # ---------------------------------------------------------------- profiles of the misses
    if not args.no_profile:
        measure_profiles(args, used, series, results, profiles, last_home, single, trees=sizes, homes=homes, work=work)


def measure_profiles(args: argparse.Namespace, used: corpus.Corpus, series: dict[str, Series],
                     results: dict[str, Any], profiles: list[Profile], home: Path, single: int, *,
                     trees: list[int], homes: dict[int, Path], work: Path) -> None:  # fmt: skip
    missed = {name for name, s in series.items() if s.met is False}
    n = used.size
    cut, half = n - single, n - single + single // 2
    before = home.parent / "before-singles"
    if missed & {"ingest_batch", "ingest_single"} and before.exists():
        with step("profiling the write path in-process"):
            first = lambda: ingest.submit_in_process(before, used, cut, half, batch=args.batch)  # noqa: E731
            if "ingest_batch" in missed:
                profiles.append(profile(f"Ledger.submit_batch, statements {cut}–{half} in lists of {args.batch} "
                                        "(in-process; the server adds HTTP and JSON on top)", first))  # fmt: skip
            else:
                first()
            profiles.append(profile(f"Ledger.submit, statements {half}–{n} one call each (in-process)",
                                    lambda: ingest.submit_in_process(before, used, half, n, batch=None)))  # fmt: skip
    if "rebuild" in missed:
        with step("profiling the rebuild"):
            profiles.append(profile(f"Projector.rebuild() of {n} entries (opening included)",
                                    lambda: rebuild.rebuild_target(home)))  # fmt: skip
    if "audit" in missed:
        with step("profiling the audit"):
            profiles.append(profile(f"audit_ledger of {n} entries as saksi verify runs it, the auditing process "
                                    "only (its worker processes parse entries and check signatures)",
                                    lambda: audit.audit_target(home)))  # fmt: skip
            profiles.append(profile(f"audit_ledger(processes=0, workers=0) of {n} entries: all of the audit's "
                                    "work in one process and one thread", lambda: audit.audit_target(home, processes=0)))  # fmt: skip
    if "audit_memory" in missed:
        high = results["memory"]["high"]
        with step("tracing the audit's allocations"):
            results["memory"]["trace"] = audit.trace(homes[high])
    if missed & {"proof_inclusion", "proof_consistency"}:
        size = trees[-1]
        with step("profiling proofs"):
            tree = proofs.Tree(work / f"profile-tree-{size}.sqlite", size)
            try:
                profiles.append(profile(f"{args.proofs} inclusion and consistency proofs at {size} leaves", lambda: (
                    proofs.time_inclusion(tree, args.proofs, random.Random(9)),
                    proofs.time_consistency(tree, args.proofs, random.Random(9)))))  # fmt: skip
            finally:
                tree.close()


if __name__ == "__main__":
    sys.exit(main())

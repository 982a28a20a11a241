"""The benchmark harness works end to end: ``python -m bench`` at the smallest scale
(one regency, a 400-statement prefix, tiny trees), writing its report to a
temporary folder. No timing is asserted: this proves the harness runs, not how
fast Saksi is."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_harness_runs_at_smoke_scale_and_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    command = [
        sys.executable, "-m", "bench", "--scale", "0.001", "--limit", "400", "--runs", "3",
        "--single", "40", "--proof-sizes", "64,256,1024", "--proofs", "100",
        "--memory-sizes", "100,400", "--signatures", "200",
        "--out", str(out), "--cache", str(tmp_path / "cache"), "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text()
    for heading in ("## Summary", "## 1. The corpus", "## 2. Ingest", "## 3. Rebuild", "## 4. Audit",
                    "## 5. Proofs", "## 6. Ed25519", "## Totals", "## Machine and versions"):  # fmt: skip
        assert heading in report
    assert "python -m bench --scale 0.001 --limit 400" in report
    assert "min / median / max over 3 runs" in report
    assert (tmp_path / "cache" / "pilkada-2024-0.001.jsonl").exists()  # the envelope cache
    # Where the CPU went: one row per run (server, follower, client, total), the server busy
    cpu = re.findall(r"^\| \d \| [\d.]+ s \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) s \| [\d.]+ \|$",
                     report, re.MULTILINE)  # fmt: skip
    assert len(cpu) == 3 and all(float(server) > 0 for server, *_ in cpu), cpu
    assert all(float(total) >= float(server) for server, _, _, total in cpu)
    assert "**The CPU budget.**" in report and "`saksi verify` used **" in report


def test_the_totals_run_ingests_rebuilds_and_audits_everything(tmp_path: Path) -> None:
    out = tmp_path / "totals.json"
    command = [sys.executable, "-m", "bench.totals", "--scale", "0.001", "--limit", "300",
               "--out", str(out), "--cache", str(tmp_path / "cache")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    totals = json.loads(out.read_text())
    assert totals["corpus"]["statements"] == 300
    assert totals["audit"]["entries"] == 300  # every statement ingested is in the audited log
    assert totals["ingest"]["seconds"] > 0 and totals["rebuild"]["seconds"] > 0
    assert totals["database_bytes"] > 0
    assert totals["complete"] is True and "ingest_so_far" not in totals
    assert "| ingest, `POST /v1/statements/batch` × 1 (one client) |" in done.stdout
    assert sorted(p.name for p in tmp_path.glob("totals*")) == ["totals.json"]  # no partial file left


def _stopped_national(finished: dict) -> dict:
    """``finished``'s figures as a national run stopped during its ingest."""
    stopped = {key: value for key, value in finished.items()
               if key not in ("ingest", "rebuild", "audit", "audit_low", "database_bytes",
                              "database_bytes_with_projections")}  # fmt: skip
    return {**stopped, "scale": 1.0, "complete": False,
            "corpus": {**finished["corpus"], "statements": 5_000_000},
            "ingest_so_far": {"statements": 1_234_567, "seconds": 1800.0}}


_HEAD = """# Saksi benchmark results

## Summary

| item | figure |
|---|---|

## Totals

This run (50,608 statements; medians over the runs):

| | wall time or size |
|---|---:|
| rebuild of every projection | 5.1 s |

"""
_NOT_RUN = (
    "**The national run (scale 1.0, ≈ 5 M statements) was not run on this machine.** A linear extrapolation "
    "of this run's medians (×99; not a measurement): ingest ≈ 77.1 min in batches. "
    "The command is `python -m bench.totals --scale 1`.\n"
)
_TAIL = """
## Where the time went

| step | wall time |
|---|---:|
| loading the corpus | 1.1 s |
"""
REPORT_WITHOUT_A_BIG_RUN = _HEAD + _NOT_RUN + _TAIL
REPORT_WITH_A_FINISHED_BIG_RUN = (
    _HEAD + "### The largest run (scale 0.25): `python -m bench.totals --scale 0.25`\n\nMeasured by …\n\n" + _NOT_RUN + _TAIL
)


def test_a_stopped_national_run_is_spliced_into_results_as_stopped(tmp_path: Path, monkeypatch) -> None:
    from bench import report

    finished = json.loads((ROOT / "bench" / "totals-0.25.json").read_text())
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "totals-0.25.json").write_text(json.dumps(finished))
    (tmp_path / "bench" / "totals-1.json").write_text(json.dumps(_stopped_national(finished)))
    (tmp_path / "bench" / "totals-0.001.json").write_text(json.dumps({**finished, "limit": 300, "scale": 0.001}))
    monkeypatch.setattr(report, "ROOT", tmp_path)
    results = tmp_path / "RESULTS.md"
    original = REPORT_WITH_A_FINISHED_BIG_RUN
    results.write_text(original)

    report.splice_totals(results)

    spliced = results.read_text()
    before, after = original.split("\n## Totals\n")[0], original.split("\n## Totals\n")[1].split("\n## ", 1)[1]
    assert spliced.startswith(before) and spliced.endswith("\n## " + after)  # only the totals changed
    assert "### The largest run (scale 0.25)" in spliced  # the finished run stays
    assert "### The national run, stopped before it finished" in spliced
    assert "**stopped** after 1,234,567 of 5,000,000 statements | 30.0 min so far | 686 statements/s |" in spliced
    assert spliced.count("not reached: the run was stopped before this step") == 2
    assert "did not finish on this machine" in spliced and "was not run on this machine" not in spliced
    assert "A linear extrapolation" in spliced  # kept from the report it was spliced into
    assert "--limit" not in spliced.split("\n## Totals\n")[1].split("\n## ")[0]  # smoke runs never shown

    report.splice_totals(results)
    assert results.read_text() == spliced  # splicing again changes nothing

    # A report written when no big run was committed has no "###" part, only the paragraph.
    (tmp_path / "bench" / "totals-0.25.json").unlink()
    (tmp_path / "bench" / "totals-1.json").unlink()
    before_any = REPORT_WITHOUT_A_BIG_RUN
    results.write_text(before_any)
    report.splice_totals(results)
    assert results.read_text().count("was not run on this machine") == 1
    assert "A linear extrapolation" in results.read_text()
    (tmp_path / "bench" / "totals-1.partial.json").write_text(json.dumps(_stopped_national(finished)))
    report.splice_totals(results)
    again = results.read_text()
    assert "### The national run, stopped before it finished" in again and "### The largest run" not in again
    assert "was not run on this machine" not in again and again.count("did not finish on this machine") == 1


def test_at_scale_continues_a_kept_ledger_in_process_and_over_http(tmp_path: Path) -> None:
    """``bench.at_scale`` records the next statements of the corpus on a home that
    ``bench.totals --keep`` left, in-process and through a real server (no timing asserted)."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    common = ["--scale", "0.001", "--cache", str(cache)]
    kept = subprocess.run([sys.executable, "-m", "bench.totals", *common, "--limit", "300", "--keep",
                           "--work", str(work), "--out", str(tmp_path / "totals.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert kept.returncode == 0, kept.stderr[-3000:]
    home = work / "home"
    for extra, expected in ((["--statements", "200", "--warm", "300"], "in-process from entry 300:"),
                            (["--statements", "100", "--http"], "over HTTP, entries 500–600:")):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "bench.at_scale", "--home", str(home), *common, *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert expected in done.stdout, done.stdout
    from ledger.home import Home

    ledger = Home.load(home).open(audit=True)
    try:
        assert ledger.tlog.size == 600  # 300 + 200 + 100, every one recorded
    finally:
        ledger.close()


def test_the_ingest_item_runs_alone(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.ingest", "--scale", "0.001", "--limit", "300", "--runs", "1",
               "--single", "20", "--cache", str(tmp_path / "cache")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run 1: batch ") and "single POST ratio" in lines[0]
    assert any(line.startswith("batch ingest, POST /v1/statements/batch: ") and line.endswith("(goal ≥ 1.2)")
               for line in lines)  # fmt: skip

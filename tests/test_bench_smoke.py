"""The benchmark harness works end to end: ``python -m bench`` at the smallest scale
(one regency, a 400-statement prefix, tiny trees), writing its report to a
temporary folder. No timing is asserted: this proves the harness runs, not how
fast Saksi is."""

from __future__ import annotations

import json
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
    assert "| ingest, `POST /v1/statements/batch` × 1 (one client) |" in done.stdout

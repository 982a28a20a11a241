"""An outside verifier written from SPEC.md alone (tests/outside_verifier.py: it never
read or imports Saksi's code) accepts what Saksi exports: the demo's checkpoint with its
cosignatures, receipts, full and selective audit bundles; and refuses them tampered.
This is the brief's bar for the wire formats: "an outside verifier written from it
alone must accept our exports"."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.audit import iter_entries
from ledger.home import Home
from ledger.scenario import kota_metro
from ledger.witness import witness_vkey

VERIFIER = Path(__file__).with_name("outside_verifier.py")
WITNESSES = ("witness-bawaslu", "witness-perludem")


def outside(*args: str) -> subprocess.CompletedProcess[str]:
    """The verifier as an auditor runs it: its own process, nothing of Saksi's imported."""
    return subprocess.run([sys.executable, "-I", str(VERIFIER), *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, demo_template: Path) -> dict[str, Path | list[str]]:
    """The demo's exports, made with the saksi command, and the keys an auditor is given."""
    base = tmp_path_factory.mktemp("outside")
    home = base / "home"
    shutil.copytree(demo_template, home)
    runner = CliRunner()
    loaded = Home.load(home)
    ledger = loaded.open()
    try:
        subject = next(e["envelope"] for e in iter_entries(ledger)
                       if json.loads(base64.b64decode(e["envelope"]["payload"]))["type"] == "logistics.received")  # fmt: skip
        subject_id = json.loads(base64.b64decode(subject["payload"]))["subject"]
        receipts = []
        for index in (0, 1, 257, ledger.tlog.size - 1):
            path = base / f"{index}.tlog-proof"
            path.write_text(ledger.receipt(index).tlog_proof, "utf-8")
            receipts.append(path)
    finally:
        ledger.close()
    for name, args in (("full.zip", ["--full"]), ("subject.zip", ["--subject", subject_id])):
        result = runner.invoke(app, ["export", str(base / name), "--home", str(home), *args])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["checkpoint", "--home", str(home)])
    assert result.exit_code == 0, result.output
    (base / "checkpoint.txt").write_text(result.stdout, "utf-8")
    population = kota_metro().population
    keys = ["--log-key", loaded.log_vkey()]
    for name in WITNESSES:
        keys += ["--witness-key", witness_vkey(name, population.signer(name).key)]
    genesis = [f"--genesis-key={g.actor}={g.key}" for g in loaded.genesis]
    return {"base": base, "keys": keys, "genesis": genesis, "receipts": [str(p) for p in receipts]}  # type: ignore[dict-item]


def test_the_outside_verifier_passes_the_published_vectors() -> None:
    done = outside("vectors")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: all" in done.stdout


def test_it_accepts_the_checkpoint_with_both_cosignatures_and_the_receipts(exports: dict) -> None:
    base, keys = exports["base"], exports["keys"]
    done = outside("checkpoint", str(base / "checkpoint.txt"), *keys, "--min-cosignatures", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    done = outside("receipt", *exports["receipts"], *keys)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("bundle", ["full.zip", "subject.zip"])
def test_it_accepts_full_and_selective_bundles(exports: dict, bundle: str) -> None:
    done = outside("bundle", str(exports["base"] / bundle), *exports["keys"], *exports["genesis"])
    assert done.returncode == 0, done.stdout + done.stderr


def _rewrite(source: Path, target: Path, change: object) -> Path:
    """``source`` zipped again with ``change(name, data) -> data`` applied to each file."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, change(info.filename, old.read(info.filename)))  # type: ignore[operator]
    return target


def _flip_payload_byte(name: str, data: bytes) -> bytes:
    if not name.endswith("entries.jsonl"):
        return data
    lines = data.split(b"\n")
    entry = json.loads(lines[3])
    payload = bytearray(base64.b64decode(entry["envelope"]["payload"]))
    payload[payload.index(b'"subject":"') + 11] ^= 0x01  # one letter of the subject
    entry["envelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    import rfc8785

    lines[3] = rfc8785.dumps(entry)
    return b"\n".join(lines)


def test_it_refuses_a_bundle_with_one_payload_byte_changed(exports: dict, tmp_path: Path) -> None:
    tampered = _rewrite(exports["base"] / "full.zip", tmp_path / "tampered.zip", _flip_payload_byte)
    done = outside("bundle", str(tampered), *exports["keys"], *exports["genesis"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REJECT: full bundle: recomputed root != checkpoint root" in done.stdout


def test_it_refuses_a_checkpoint_whose_size_was_changed(exports: dict, tmp_path: Path) -> None:
    text = (exports["base"] / "checkpoint.txt").read_text("utf-8")
    origin, size, rest = text.split("\n", 2)
    forged = tmp_path / "checkpoint.txt"
    forged.write_text(f"{origin}\n{int(size) + 1}\n{rest}", "utf-8")
    done = outside("checkpoint", str(forged), *exports["keys"])
    assert done.returncode == 1 and "REJECT" in done.stdout, done.stdout + done.stderr

"""The ``saksi`` command line, in process (typer's CliRunner), over the Kota Metro demo.

Machine output goes to stdout; every failure is one ``error: …`` line on stderr and
a non-zero exit (the contract in ``api/cli.py``'s docstring).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from api.cli import app
from ledger import notes
from ledger.bundle import witness_vkeys
from ledger.canonical import canonical_bytes
from ledger.envelope import Envelope, decode_b64, key_id, parse_envelope, raw_public_key, verify_signature
from ledger.home import Home, read_private_key
from ledger.scenario import kota_metro
from ledger.statements import format_time
from projections.runner import Projector

DEMO_SIZE = 800
SCENARIO = kota_metro()
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REBUILD_LINE = re.compile(r"^(\S+) (\d+) (sha256:[0-9a-f]{64})$")
PROJECTIONS = ["custody", "readiness", "commitments", "pledges", "actors", "trail"]
COMMANDS = ["init", "keygen", "sign", "submit", "verify", "verify-receipt", "export", "verify-bundle", "witness",
            "checkpoint", "demo", "rebuild", "serve"]  # fmt: skip

runner = CliRunner()


# ---------------------------------------------------------------- the demo home




@pytest.fixture
def home(demo_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo home for one test."""
    return Path(shutil.copytree(demo_template, tmp_path / "home", ignore=shutil.ignore_patterns(".complete")))


@pytest.fixture(scope="module")
def published(demo_template: Path) -> dict[str, Any]:
    loaded = Home.load(demo_template)
    return {
        "log_key": loaded.log_vkey(),
        "genesis": [f"{g.actor}={g.key}" for g in loaded.genesis],
        "witnesses": [notes.format_vkey(name, raw_public_key(SCENARIO.signer(name).key), notes.COSIGNATURE_KEY_TYPE)
                      for name in ("witness-bawaslu", "witness-perludem")],
    }  # fmt: skip


# ---------------------------------------------------------------- helpers


def saksi(*args: str | Path, input: str | bytes | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(result: Result) -> list[str]:
    """The stdout lines of a command that must succeed."""
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout.splitlines()


def failed(result: Result) -> str:
    """The one ``error:`` line of a command that must fail."""
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line on stderr: {result.stderr!r}"
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def dispatch_statement(kecamatan: str = "18.72.01") -> dict[str, Any]:
    """A dispatch as someone would write it by hand: no v, id or issued_at."""
    return {
        "type": "logistics.dispatched", "actor": "kpu-18.72",
        "subject": f"extra.{kecamatan}.{uuid.uuid4().hex[:10]}",
        "body": {"region": kecamatan, "receiver": f"ppk-{kecamatan}", "direction": "outbound",
                 "items": {"booth": 1, "ink": 2}, "seals": ["SEGEL-CLI"],
                 "due_by": format_time(datetime(2030, 1, 1, tzinfo=UTC))},
    }  # fmt: skip


def signed_dispatch() -> Envelope:
    statement = dispatch_statement()
    return SCENARIO.signer("kpu-18.72").sign(statement["type"], statement["subject"], statement["body"],
                                             statement_id=str(uuid.uuid4()))  # fmt: skip


def forged(envelope: Envelope) -> bytes:
    document = envelope.to_json()
    sig = bytearray(decode_b64(document["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    document["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return canonical_bytes(document)


def checkpoint_size(home: Path) -> int:
    return notes.parse_note((home / "last-checkpoint").read_text("utf-8")).checkpoint.size


# ---------------------------------------------------------------- init, keygen, sign


def test_init_prints_the_log_key_and_one_actor_key_line_per_genesis_registrar(tmp_path: Path) -> None:
    target = tmp_path / "metro"
    lines = ok(saksi("init", "--home", target, "--origin", "saksi.test/cli",
                     "--genesis", "registrar-kpu-ri", "--genesis", "registrar-bawaslu"))  # fmt: skip
    assert len(lines) == 3
    vkey = notes.parse_vkey(lines[0])
    assert vkey.name == "saksi.test/cli" and vkey.key_type == notes.LOG_KEY_TYPE
    loaded = Home.load(target)
    assert lines[0] == loaded.log_vkey()
    pairs = [line.split("=", 1) for line in lines[1:]]
    assert [actor for actor, _ in pairs] == ["registrar-kpu-ri", "registrar-bawaslu"]
    assert all(len(decode_b64(key)) == 32 for _, key in pairs)
    assert [f"{g.actor}={g.key}" for g in loaded.genesis] == lines[1:]
    # The genesis registrations are recorded: the new ledger audits clean.
    assert ok(saksi("verify", "--home", target))[0].startswith("ok: 2 entries")
    # And a second init refuses to touch it.
    assert "already" in failed(saksi("init", "--home", target))


def test_keygen_writes_a_key_and_prints_its_public_key_and_key_id(tmp_path: Path) -> None:
    out = tmp_path / "w.key"
    lines = ok(saksi("keygen", out, "--actor", "witness-uji"))
    assert lines[0].startswith("public key: ") and lines[1].startswith("key id: ")
    public = decode_b64(lines[0].removeprefix("public key: "))
    assert raw_public_key(read_private_key(out)) == public
    assert lines[1].removeprefix("key id: ") == hashlib.sha256(public).hexdigest() == key_id(public)
    witness = notes.parse_vkey(lines[2].removeprefix("witness key: "))
    assert (witness.name, witness.key_type, witness.public_key) == ("witness-uji", notes.COSIGNATURE_KEY_TYPE, public)
    before = out.read_bytes()
    failed(saksi("keygen", out))
    assert out.read_bytes() == before, "never overwrites a key"


def test_sign_fills_v_id_and_issued_at(home: Path, tmp_path: Path) -> None:
    statement = dispatch_statement()
    path = tmp_path / "dispatch.json"
    path.write_text(json.dumps(statement, indent=2))
    key = home / "demo-keys" / "kpu-18.72.pem"
    (line,) = ok(saksi("sign", path, "--key", key))
    envelope = parse_envelope(line)
    assert line.encode() == envelope.canonical()
    verify_signature(envelope, raw_public_key(read_private_key(key)))
    signed = json.loads(envelope.payload)
    assert signed["v"] == 1 and UUID.match(signed["id"]) and TIME.match(signed["issued_at"])
    assert {k: v for k, v in signed.items() if k not in ("v", "id", "issued_at")} == statement
    assert canonical_bytes(signed) == envelope.payload

    # From stdin, keeping what is given.
    given = statement | {"id": str(uuid.uuid4()), "issued_at": "2024-11-20T01:02:03.000000Z"}
    (line,) = ok(saksi("sign", "-", "--key", key, input=json.dumps(given)))
    assert json.loads(parse_envelope(line).payload) == given | {"v": 1}


# ---------------------------------------------------------------- submit


def test_submit_one_envelope_then_json_lines_with_a_refusal(home: Path, tmp_path: Path) -> None:
    key = home / "demo-keys" / "kpu-18.72.pem"
    statement = tmp_path / "dispatch.json"
    statement.write_text(json.dumps(dispatch_statement()))
    envelope_file = tmp_path / "dispatch.env"
    envelope_file.write_text(ok(saksi("sign", statement, "--key", key))[0] + "\n")

    (line,) = ok(saksi("submit", envelope_file, "--home", home))
    first = json.loads(line)
    assert first["index"] == DEMO_SIZE and first["duplicate"] is False
    assert set(first) == {"index", "statement_digest", "leaf_hash", "recorded_at", "receipt", "duplicate"}
    verified = notes.verify_receipt(first["receipt"], log_key=Home.load(home).log_vkey())
    assert json.loads(verified.leaf_bytes)["envelope"] == json.loads(envelope_file.read_text())

    good, other = signed_dispatch(), signed_dispatch()
    batch = tmp_path / "day1.jsonl"
    batch.write_bytes(b"\n".join([good.canonical(), envelope_file.read_text().strip().encode(), forged(other),
                                  b'{"not": "an envelope"}', other.canonical()]) + b"\n")  # fmt: skip
    result = saksi("submit", batch, "--home", home)
    assert result.exit_code == 1, result.stderr
    results = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(results) == 5, "one result per line, in order"
    assert (results[0]["index"], results[0]["duplicate"]) == (DEMO_SIZE + 1, False)
    assert (results[1]["index"], results[1]["duplicate"]) == (DEMO_SIZE, True)
    assert results[2]["type"].endswith("/bad-signature")
    assert results[3]["type"].endswith("/malformed-envelope")
    assert (results[4]["index"], results[4]["duplicate"]) == (DEMO_SIZE + 2, False)
    assert checkpoint_size(home) == DEMO_SIZE + 3

    # All accepted: exit 0.
    again = tmp_path / "again.jsonl"
    again.write_bytes(good.canonical() + b"\n" + other.canonical() + b"\n")
    assert [json.loads(line)["duplicate"] for line in ok(saksi("submit", again, "--home", home))] == [True, True]


# ---------------------------------------------------------------- verify, checkpoint, receipts


def test_verify_a_clean_home(home: Path) -> None:
    (line,) = ok(saksi("verify", "--home", home))
    assert line.startswith(f"ok: {DEMO_SIZE} entries, root ")
    assert line.endswith("2 cosignatures")


def test_checkpoint_prints_the_latest_cosigned_note(home: Path, published: dict[str, Any]) -> None:
    result = saksi("checkpoint", "--home", home)
    ok(result)
    signed = notes.verify_checkpoint(result.stdout, log_key=published["log_key"],
                                     witness_keys=published["witnesses"], min_cosignatures=2)  # fmt: skip
    assert signed.checkpoint.size == DEMO_SIZE
    assert result.stdout.endswith("\n") and not result.stdout.endswith("\n\n")


def test_verify_receipt(home: Path, tmp_path: Path, published: dict[str, Any]) -> None:
    ledger = Home.load(home).open()
    try:
        receipt = ledger.receipt(123).tlog_proof
        digest = ledger.receipt(123).statement_digest
    finally:
        ledger.close()
    path = tmp_path / "123.tlog-proof"
    path.write_text(receipt)
    witness_args = [a for w in published["witnesses"] for a in ("--witness-key", w)]
    (line,) = ok(saksi("verify-receipt", path, "--log-key", published["log_key"], *witness_args,
                       "--min-cosignatures", "2"))  # fmt: skip
    assert line == f"ok: entry 123 ({digest}) is in the log under a checkpoint of size {DEMO_SIZE}"
    assert ok(saksi("verify-receipt", "-", "--log-key", published["log_key"], input=receipt)) == [line]

    tampered = receipt.replace("index 123", "index 124")
    failed(saksi("verify-receipt", "-", "--log-key", published["log_key"], input=tampered))
    other_log = notes.format_vkey("saksi.demo/kota-metro-2024", b"\x07" * 32)
    failed(saksi("verify-receipt", path, "--log-key", other_log))
    failed(saksi("verify-receipt", path, "--log-key", published["log_key"], "--min-cosignatures", "3",
                 *witness_args))  # fmt: skip


# ---------------------------------------------------------------- export, verify-bundle


def test_export_and_verify_bundle(home: Path, tmp_path: Path, published: dict[str, Any]) -> None:
    selective = tmp_path / "out.zip"
    (line,) = ok(saksi("export", selective, "--home", home, "--subject", "out.18.72.01"))
    assert line.startswith(f"wrote {selective}: ") and line.endswith(" entries")
    keys = ["--log-key", published["log_key"], *[a for g in published["genesis"] for a in ("--genesis-key", g)]]
    (line,) = ok(saksi("verify-bundle", selective, *keys))
    assert line.startswith("ok: selective bundle, ") and f"checkpoint of size {DEMO_SIZE}" in line
    witness_args = [a for w in published["witnesses"] for a in ("--witness-key", w)]
    (line,) = ok(saksi("verify-bundle", selective, *keys, *witness_args, "--min-cosignatures", "2"))
    assert line.endswith("2 cosignatures verified")

    full = tmp_path / "full.zip"
    ok(saksi("export", full, "--home", home, "--full"))
    (line,) = ok(saksi("verify-bundle", full, *keys))
    assert line.startswith(f"ok: full bundle, {DEMO_SIZE} entries")

    impostor = "registrar-kpu-ri=" + base64.b64encode(raw_public_key(Ed25519PrivateKey.generate())).decode()
    assert "genesis" in failed(saksi("verify-bundle", selective, "--log-key", published["log_key"],
                                     "--genesis-key", impostor))  # fmt: skip
    failed(saksi("verify-bundle", full, "--log-key", published["log_key"], "--genesis-key", impostor))
    other_log = notes.format_vkey("saksi.demo/kota-metro-2024", b"\x07" * 32)
    failed(saksi("verify-bundle", full, "--log-key", other_log, *keys[2:]))
    failed(saksi("verify-bundle", full, *keys, "--min-cosignatures", "1"))  # no witness keys given


# ---------------------------------------------------------------- rebuild


def test_rebuild_prints_six_digests_that_do_not_change(home: Path) -> None:
    ledger = Home.load(home).open()
    try:
        incremental = [(s.name, s.size, s.digest) for s in Projector(ledger).status()]
    finally:
        ledger.close()
    first = ok(saksi("rebuild", "--home", home))
    second = ok(saksi("rebuild", "--home", home))
    assert first == second
    parsed = [REBUILD_LINE.match(line) for line in first]
    assert all(parsed), first
    rows = [(m[1], int(m[2]), m[3]) for m in parsed if m]
    assert [name for name, _, _ in rows] == PROJECTIONS
    assert all(size == DEMO_SIZE for _, size, _ in rows)
    assert rows == incremental, "rebuilt from zero = kept up to date entry by entry"
    (only,) = ok(saksi("rebuild", "--home", home, "--projection", "readiness"))
    assert only == first[1]
    assert "nope" in failed(saksi("rebuild", "--home", home, "--projection", "nope"))


# ---------------------------------------------------------------- witness


def test_witness_cosigns_locally_and_then_a_newer_checkpoint(home: Path, tmp_path: Path,
                                                              published: dict[str, Any]) -> None:  # fmt: skip
    state = tmp_path / "perludem.json"
    args = ["witness", "--name", "witness-perludem", "--key", home / "demo-keys" / "witness-perludem.pem",
            "--log-key", published["log_key"], "--state", state, "--home", home]  # fmt: skip
    (line,) = ok(saksi(*args))
    assert line.startswith(f"cosigned size {DEMO_SIZE}: — witness-perludem ")
    assert notes.parse_note(json.loads(state.read_text())["checkpoint"]).checkpoint.size == DEMO_SIZE

    envelope = tmp_path / "one.env"
    envelope.write_bytes(signed_dispatch().canonical())
    ok(saksi("submit", envelope, "--home", home))
    (line,) = ok(saksi(*args))
    assert line.startswith(f"cosigned size {DEMO_SIZE + 1}: — witness-perludem ")
    assert notes.parse_note(json.loads(state.read_text())["checkpoint"]).checkpoint.size == DEMO_SIZE + 1

    note = saksi("checkpoint", "--home", home).stdout
    perludem = [w for w in published["witnesses"] if w.startswith("witness-perludem+")]
    signed = notes.verify_checkpoint(note, log_key=published["log_key"], witness_keys=perludem, min_cosignatures=1)
    assert signed.checkpoint.size == DEMO_SIZE + 1
    ledger = Home.load(home).open()
    try:
        assert any(k.startswith("witness-perludem+") for k in witness_vkeys(ledger))
    finally:
        ledger.close()


def test_a_witness_refuses_loudly_a_checkpoint_older_than_it_saw(home: Path, tmp_path: Path,
                                                                  published: dict[str, Any]) -> None:  # fmt: skip
    """A witness that saw size 801 elsewhere never cosigns this log's 800 (a rollback)."""
    ahead = Path(shutil.copytree(home, tmp_path / "ahead"))
    state = tmp_path / "w.json"
    args = ["witness", "--name", "witness-bawaslu", "--key", home / "demo-keys" / "witness-bawaslu.pem",
            "--log-key", published["log_key"], "--state", state]  # fmt: skip
    envelope = tmp_path / "one.env"
    envelope.write_bytes(signed_dispatch().canonical())
    ok(saksi("submit", envelope, "--home", ahead))
    ok(saksi(*args, "--home", ahead))
    before = saksi("checkpoint", "--home", home).stdout
    result = saksi(*args, "--home", home)
    assert result.exit_code == 1
    assert "NOT COSIGNING" in result.stderr
    assert "error: checkpoint-inconsistent: " in result.stderr
    assert saksi("checkpoint", "--home", home).stdout == before, "nothing stored"
    assert notes.parse_note(json.loads(state.read_text())["checkpoint"]).checkpoint.size == DEMO_SIZE + 1


# ---------------------------------------------------------------- against a server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[str]:
    """``saksi serve`` over ``home`` on a free port; its URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(Path(sys.executable).parent / "saksi"), "serve", "--home", str(home),
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/v1/log/key", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_submit_checkpoint_and_witness_against_a_server(server: str, home: Path, tmp_path: Path,
                                                         published: dict[str, Any]) -> None:  # fmt: skip
    good, bad = signed_dispatch(), signed_dispatch()
    batch = tmp_path / "day.jsonl"
    batch.write_bytes(good.canonical() + b"\n" + forged(bad) + b"\n")
    result = saksi("submit", batch, "--server", server)
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["index"] == DEMO_SIZE
    notes.verify_receipt(first["receipt"], log_key=published["log_key"])
    assert second["type"] == "https://saksi.id/problems/bad-signature"

    state = tmp_path / "w.json"
    args = ["witness", "--name", "witness-bawaslu", "--key", home / "demo-keys" / "witness-bawaslu.pem",
            "--log-key", published["log_key"], "--state", state, "--server", server]  # fmt: skip
    shutil.copy(home / "witness-bawaslu.state.json", state)  # it saw the demo's size 800
    (line,) = ok(saksi(*args))
    assert line.startswith(f"cosigned size {DEMO_SIZE + 1}: — witness-bawaslu ")
    note = saksi("checkpoint", "--server", server).stdout
    assert note == httpx.get(server + "/v1/log/checkpoint").text
    bawaslu = [w for w in published["witnesses"] if w.startswith("witness-bawaslu+")]
    signed = notes.verify_checkpoint(note, log_key=published["log_key"], witness_keys=bawaslu, min_cosignatures=1)
    assert signed.checkpoint.size == DEMO_SIZE + 1

    # Like a local submit, every receipt line says whether it was a duplicate.
    again = ok(saksi("submit", _one(tmp_path, good), "--server", server))
    assert json.loads(again[0]).get("duplicate") is True, again[0][:200]
    assert first.get("duplicate") is False


@pytest.mark.parametrize("command", ["checkpoint", "submit", "witness"])
def test_an_unreachable_server_is_one_error_line(command: str, home: Path, tmp_path: Path,
                                                 published: dict[str, Any]) -> None:  # fmt: skip
    nowhere = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    args = {
        "checkpoint": ["checkpoint"],
        "submit": ["submit", _one(tmp_path, signed_dispatch())],
        "witness": ["witness", "--name", "witness-bawaslu", "--key", home / "demo-keys" / "witness-bawaslu.pem",
                    "--log-key", published["log_key"], "--state", tmp_path / "w.json"],
    }[command]  # fmt: skip
    result = saksi(*args, "--server", nowhere)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    failed(result)


def _one(tmp_path: Path, envelope: Envelope) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex}.env"
    path.write_bytes(envelope.canonical() + b"\n")
    return path


# ---------------------------------------------------------------- demo


def test_demo_on_an_existing_home_prints_its_keys(home: Path, published: dict[str, Any]) -> None:
    lines = ok(saksi("demo", "--home", home))
    assert lines == [f"Kota Metro demo: {DEMO_SIZE} statements in {home}", published["log_key"], *published["genesis"]]


# ---------------------------------------------------------------- help and errors


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = saksi(command, "--help")
    ok(result)
    assert "Example" in result.stdout
    assert f"saksi {command}" in " ".join(result.stdout.split()), "the example runs this very command"


def test_top_level_help_lists_every_command() -> None:
    result = saksi("--help")
    ok(result)
    assert all(command in result.stdout for command in COMMANDS)


@pytest.fixture
def junk(tmp_path: Path) -> Path:
    (tmp_path / "junk.txt").write_text("not json {")
    (tmp_path / "array.json").write_text("[1, 2]")
    (tmp_path / "junk.zip").write_bytes(b"PK not a zip")
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["sign", "{d}/missing.json", "--key", "{d}/missing.key"],
        ["sign", "{d}/junk.txt", "--key", "{home}/demo-keys/kpu-18.72.pem"],
        ["sign", "{d}/array.json", "--key", "{home}/demo-keys/kpu-18.72.pem"],
        ["sign", "{d}/array.json", "--key", "{d}/junk.txt"],
        ["submit", "{d}/missing.env", "--home", "{home}"],
        ["verify", "--home", "{d}/nowhere"],
        ["checkpoint", "--home", "{d}/nowhere"],
        ["export", "{d}/x.zip", "--home", "{home}"],
        ["export", "{d}/x.zip", "--home", "{home}", "--full", "--subject", "out.18.72.01"],
        ["verify-bundle", "{d}/junk.zip", "--log-key", "{log_key}", "--genesis-key", "{genesis}"],
        ["verify-bundle", "{d}/junk.zip", "--log-key", "{log_key}", "--genesis-key", "no-equals-sign"],
        ["verify-bundle", "{d}", "--log-key", "not-a-key", "--genesis-key", "{genesis}"],
        ["verify-receipt", "{d}/junk.txt", "--log-key", "{log_key}"],
        ["witness", "--name", "witness-perludem", "--key", "{d}/missing.key", "--log-key", "{log_key}",
         "--state", "{d}/w.json", "--home", "{home}"],
        ["rebuild", "--home", "{d}/nowhere"],
        ["serve", "--home", "{d}/nowhere", "--port", "1"],
        ["init", "--home", "{home}"],
    ],
)  # fmt: skip
def test_bad_input_gives_one_error_line_and_a_non_zero_exit(
    args: list[str], junk: Path, home: Path, published: dict[str, Any]
) -> None:
    values = {"d": junk, "home": home, "log_key": published["log_key"], "genesis": published["genesis"][0]}
    failed(saksi(*[a.format(**values) for a in args]))


@pytest.mark.parametrize(
    "args", [["sign", "statement.json"], ["verify-bundle", "b.zip"], ["export", "x.zip", "--workers", "2"], ["nope"]]
)
def test_usage_errors_are_one_error_line_too(args: list[str]) -> None:
    """api/cli.py: "Every failure prints one line ``error: <code>: <message>`` and exits
    non-zero" -- a missing option or an unknown command is a failure too."""
    failed(saksi(*args))


def test_a_refused_submission_exits_1(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_bytes(forged(signed_dispatch()))
    result = saksi("submit", path, "--home", home)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["type"].endswith("/bad-signature")
    assert checkpoint_size(home) == DEMO_SIZE


def test_commands_that_need_no_server_do_not_import_the_web_stack() -> None:
    """`saksi verify`, `sign`, `keygen` … start without fastapi and httpx (half the start-up time)."""
    code = "import sys, api.cli; print(sorted({'fastapi', 'httpx', 'uvicorn'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# ---------------------------------------------------------------- the README


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands get their home from flags only (SAKSI_* in the environment would leak in)."""
    for name in ("SAKSI_HOME", "SAKSI_DATABASE_URL", "SAKSI_SERVER"):
        monkeypatch.setenv(name, "")  # so that undo also removes what a command set (serve sets SAKSI_HOME)
        monkeypatch.delenv(name)
    yield

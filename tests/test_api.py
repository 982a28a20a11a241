"""The HTTP API, end to end, over the Kota Metro demo ledger.

The demo home is built once per session (``demo_template`` in conftest) with its projections
already caught up; read-only tests share one copy and one app, tests that write get
their own copy. Everything a test checks is checked the way an outside auditor
would: receipts, checkpoints, proofs and bundles with ``ledger.notes``,
``ledger.merkle`` and ``ledger.bundle``, from the published keys alone.
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
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

with warnings.catch_warnings():
    # starlette.testclient warns at import that it prefers httpx2 (not installed here).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.client import Client, ServerError
from api.schemas import BatchItem
from api.settings import Settings
from ledger import merkle, notes
from ledger.bundle import verify_bundle
from ledger.canonical import canonical_bytes, strict_loads
from ledger.envelope import Envelope, decode_b64, sign_statement
from ledger.errors import VerificationError
from ledger.home import Home, read_private_key
from ledger.registry import GenesisRegistrar
from ledger.scenario import kota_metro
from ledger.statements import format_time
from ledger.witness import Witness
from tests.conftest import build_demo_template

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://saksi.id/problems/"
DEMO_SIZE = 800  # statements in the Kota Metro demo
SCENARIO = kota_metro()
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PROJECTIONS = {"custody", "readiness", "commitments", "pledges", "actors", "trail"}
_demo_template = build_demo_template  # for the modules that build on this one


# ---------------------------------------------------------------- the demo home




def _copy(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, ignore=shutil.ignore_patterns(".complete"))
    return target


@pytest.fixture(scope="module")
def read_home(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo for tests that only read (the app still writes projections)."""
    return _copy(demo_template, tmp_path_factory.mktemp("read") / "home")


@pytest.fixture(scope="module")
def api(read_home: Path) -> Iterator[TestClient]:
    """One app over ``read_home`` for the whole module (lifespan run)."""
    with TestClient(create_app(Settings(home=read_home)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def home(demo_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo for a test that writes."""
    return _copy(demo_template, tmp_path / "home")


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def published(read_home: Path) -> dict[str, Any]:
    """What the log's operators publish out of band: the log key and genesis keys."""
    loaded = Home.load(read_home)
    return {"log_key": loaded.log_vkey(), "genesis": list(loaded.genesis)}


@pytest.fixture(scope="module")
def all_entries(api: TestClient) -> list[dict[str, Any]]:
    response = api.get("/v1/log/entries", params={"start": 0, "end": DEMO_SIZE})
    assert response.status_code == 200
    return [json.loads(line) for line in response.content.splitlines()]


# ---------------------------------------------------------------- helpers


def statement_of(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(decode_b64(entry["envelope"]["payload"]))


def new_id() -> str:
    return str(uuid.uuid4())


def dispatch(consignment: str | None = None, *, kecamatan: str = "18.72.01") -> Envelope:
    """A fresh outbound dispatch, KPU Kota Metro → PPK of ``kecamatan``."""
    body = {
        "region": kecamatan, "receiver": f"ppk-{kecamatan}", "direction": "outbound",
        "items": {"booth": 2, "ink": 1, "seals": 4}, "seals": ["SEGEL-UJI-1"],
        "due_by": format_time(datetime(2030, 1, 1, tzinfo=UTC)),
    }  # fmt: skip
    subject = consignment or f"extra.{kecamatan}.{uuid.uuid4().hex[:10]}"
    return SCENARIO.signer("kpu-18.72").sign("logistics.dispatched", subject, body, statement_id=new_id())


def receive(sent: Envelope, *, kecamatan: str = "18.72.01") -> Envelope:
    """The PPK's receipt of ``sent``, complete and sealed."""
    subject = json.loads(sent.payload)["subject"]
    body = {"region": kecamatan, "items": {"booth": 2, "ink": 1, "seals": 4}, "seals_intact": True,
            "condition": "good"}  # fmt: skip
    return SCENARIO.signer(f"ppk-{kecamatan}").sign(
        "logistics.received", subject, body, refs=[sent.digest], statement_id=new_id()
    )


def pledge(actor: str = "ppk-18.72.02", region: str = "18.72.02") -> Envelope:
    body = {"region": region, "institution": "ppk", "undertakings": ["no_taking_sides"],
            "text": "Ikrar netralitas (uji).", "valid_until": "2030-01-01T00:00:00Z"}  # fmt: skip
    return SCENARIO.signer(actor).sign("pledge.made", f"pledge-uji-{uuid.uuid4().hex[:8]}", body,
                                       statement_id=new_id())  # fmt: skip


def forged(envelope: Envelope) -> dict[str, Any]:
    """``envelope`` with its signature replaced by another valid-looking one."""
    document = envelope.to_json()
    sig = bytearray(decode_b64(document["signatures"][0]["sig"]))
    sig[0] ^= 0xFF
    document["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return document


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A refusal: the status, application/problem+json, a stable type."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith(PROBLEM_BASE)
    assert re.fullmatch(r"[a-z0-9-]+", problem["type"].removeprefix(PROBLEM_BASE))
    assert isinstance(problem["title"], str) and isinstance(problem["detail"], str)
    if code is not None:
        assert problem["type"] == PROBLEM_BASE + code, problem
    return problem


def assert_not_internal(response: httpx.Response) -> None:
    """Never a 500; any error is a problem document."""
    assert response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


def keys_of(client: TestClient | httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/log/keys")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def log_key(client: TestClient | httpx.Client) -> str:
    return client.get("/v1/log/key").text.strip()


def paginate(client: TestClient, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated query, following ``next``; checks no page is too long."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        query = {**params, "limit": limit} | ({"cursor": cursor} if cursor is not None else {})
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


# ---------------------------------------------------------------- submitting


def test_submit_gives_201_and_a_receipt_that_verifies(client: TestClient) -> None:
    envelope = dispatch()
    response = client.post("/v1/statements", content=envelope.canonical())
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert set(receipt) == {"index", "statement_digest", "leaf_hash", "recorded_at", "receipt"}
    assert receipt["index"] == DEMO_SIZE
    assert receipt["statement_digest"] == envelope.digest
    assert TIME.match(receipt["recorded_at"])

    verified = notes.verify_receipt(receipt["receipt"], log_key=log_key(client))
    assert verified.index == receipt["index"]
    entry = strict_loads(verified.leaf_bytes)
    assert set(entry) == {"index", "recorded_at", "envelope"}
    assert entry == {"index": DEMO_SIZE, "recorded_at": receipt["recorded_at"], "envelope": envelope.to_json()}
    assert hashlib.sha256(b"\x00" + verified.leaf_bytes).hexdigest() == receipt["leaf_hash"]
    served = client.get(f"/v1/log/entries/{receipt['index']}")
    assert served.content == verified.leaf_bytes == canonical_bytes(entry)

    again = client.post("/v1/statements", content=envelope.canonical())
    assert again.status_code == 200, again.text
    assert again.json()["index"] == receipt["index"]
    assert again.json()["statement_digest"] == receipt["statement_digest"]
    assert again.json()["leaf_hash"] == receipt["leaf_hash"]
    assert client.get("/v1/log/checkpoint").text.split("\n")[1] == str(DEMO_SIZE + 1), "a duplicate is not re-recorded"


def test_a_handover_shows_in_custody_trail_and_projections(client: TestClient) -> None:
    sent = dispatch()
    subject = json.loads(sent.payload)["subject"]
    first = client.post("/v1/statements", content=sent.canonical())
    second = client.post("/v1/statements", content=receive(sent).canonical())
    assert (first.status_code, second.status_code) == (201, 201), second.text

    consignment = client.get(f"/v1/consignments/{subject}").json()
    assert consignment["status"] == "received"
    assert consignment["sender"] == "kpu-18.72" and consignment["receiver"] == "ppk-18.72.01"
    assert consignment["dispatch"]["index"] == first.json()["index"]
    assert consignment["receipt"]["index"] == second.json()["index"]
    assert consignment["missing"] == {}

    trail = client.get(f"/v1/subjects/{subject}/trail").json()
    assert [item["index"] for item in trail["items"]] == [first.json()["index"], second.json()["index"]]
    assert [item["statement_digest"] for item in trail["items"]] == [
        first.json()["statement_digest"], second.json()["statement_digest"]]  # fmt: skip

    projections = client.get("/v1/projections").json()
    assert {p["name"] for p in projections} == PROJECTIONS
    assert all(p["size"] == DEMO_SIZE + 2 for p in projections)


def test_batch_gives_per_item_results_in_order_and_accepted_ones_are_durable(
    home: Path, client: TestClient
) -> None:
    good, also_good = dispatch(), pledge()
    demo_entry = client.get("/v1/log/entries/5").json()
    reused_id = SCENARIO.signer("kpu-18.72").sign(
        "pledge.made", "pledge-uji-reuse", {"region": "18.72", "institution": "kpu",
        "undertakings": ["no_hoax"], "text": "x", "valid_until": "2030-01-01T00:00:00Z"}, statement_id=statement_of(demo_entry)["id"])  # fmt: skip
    items = [
        good.to_json(),  # 0: recorded
        demo_entry["envelope"],  # 1: the same envelope as entry 5: its receipt again
        forged(dispatch()),  # 2: bad signature
        {"payloadType": "application/vnd.saksi.statement+json", "payload": "AA=="},  # 3: malformed
        42,  # 4: not an envelope at all
        also_good.to_json(),  # 5: recorded
        reused_id.to_json(),  # 6: another statement with an id already used
        good.to_json(),  # 7: item 0 again, within the same batch
    ]
    response = client.post("/v1/statements/batch", content=json.dumps(items))
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["status"] for r in results] == [201, 200, 403, 422, 422, 201, 409, 200]
    # The answer, written without the models, is byte for byte what its declared model writes.
    declared = TypeAdapter(list[BatchItem])
    assert response.headers["content-type"] == "application/json"
    assert declared.dump_json(declared.validate_json(response.content)) == response.content
    assert results[0]["receipt"]["index"] == DEMO_SIZE
    assert results[1]["receipt"]["index"] == 5
    assert results[5]["receipt"]["index"] == DEMO_SIZE + 1
    assert results[7]["receipt"]["index"] == DEMO_SIZE
    for result, code in ((results[2], "bad-signature"), (results[3], "malformed-envelope"),
                         (results[4], "malformed-envelope"), (results[6], "duplicate-statement-id")):  # fmt: skip
        assert result["receipt"] is None
        assert result["problem"]["type"] == PROBLEM_BASE + code, result
        assert result["problem"]["status"] == result["status"]
    for result in (results[0], results[1], results[5]):
        assert result["problem"] is None
        notes.verify_receipt(result["receipt"]["receipt"], log_key=log_key(client))

    # Durable: a new process over the same home serves them.
    with TestClient(create_app(Settings(home=home))) as reopened:
        lines = reopened.get("/v1/log/entries", params={"start": DEMO_SIZE}).content.splitlines()
        assert [json.loads(line)["envelope"] for line in lines] == [good.to_json(), also_good.to_json()]
        assert reopened.get("/v1/log/checkpoint").text.split("\n")[1] == str(DEMO_SIZE + 2)


def test_an_empty_batch_records_nothing(client: TestClient) -> None:
    response = client.post("/v1/statements/batch", content=b"[]")
    assert response.status_code == 200 and response.json() == []


# ---------------------------------------------------------------- the log


def test_checkpoint_is_signed_and_cosigned_by_the_two_demo_witnesses(api: TestClient) -> None:
    response = api.get("/v1/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    keys = keys_of(api)
    signed = notes.verify_checkpoint(response.text, log_key=log_key(api), witness_keys=keys["witnesses"],
                                     min_cosignatures=2)  # fmt: skip
    assert signed.checkpoint.size == DEMO_SIZE
    assert signed.checkpoint.origin == "saksi.demo/kota-metro-2024"
    assert sorted(c.name for c in signed.cosignatures) == ["witness-bawaslu", "witness-perludem"]


def test_log_key_and_keys_json(api: TestClient, published: dict[str, Any]) -> None:
    response = api.get("/v1/log/key")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == published["log_key"] + "\n"
    assert notes.parse_vkey(response.text.strip()).key_type == notes.LOG_KEY_TYPE

    keys = keys_of(api)
    assert set(keys) == {"log", "witnesses", "genesis"}  # SPEC §8, closed
    assert keys["log"] == published["log_key"]
    witnesses = [notes.parse_vkey(k) for k in keys["witnesses"]]
    assert sorted(w.name for w in witnesses) == ["witness-bawaslu", "witness-perludem"]
    assert all(w.key_type == notes.COSIGNATURE_KEY_TYPE for w in witnesses)
    assert all(set(g) == {"actor", "key"} for g in keys["genesis"])
    assert [GenesisRegistrar(g["actor"], g["key"]) for g in keys["genesis"]] == published["genesis"]
    assert len(decode_b64(keys["genesis"][0]["key"])) == 32


def test_entries_are_json_lines_exactly_as_spec_and_equal_to_single_entries(api: TestClient) -> None:
    response = api.get("/v1/log/entries", params={"start": 10, "end": 25})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.content.endswith(b"\n")
    lines = response.content.split(b"\n")[:-1]
    assert len(lines) == 15
    previous = ""
    for offset, line in enumerate(lines):
        entry = strict_loads(line)
        assert set(entry) == {"index", "recorded_at", "envelope"}
        assert entry["index"] == 10 + offset
        assert TIME.match(entry["recorded_at"]) and entry["recorded_at"] >= previous
        previous = entry["recorded_at"]
        assert set(entry["envelope"]) == {"payloadType", "payload", "signatures"}
        assert canonical_bytes(entry) == line, "each line is the entry's JCS form (its leaf bytes)"
        single = api.get(f"/v1/log/entries/{entry['index']}")
        assert single.status_code == 200 and single.content == line
        assert merkle.leaf_hash(line).hex() == api.get(
            "/v1/log/proofs/inclusion", params={"index": entry["index"]}).json()["leaf_hash"]  # fmt: skip


def test_entries_paging_limits(api: TestClient, read_home: Path) -> None:
    assert len(api.get("/v1/log/entries").content.splitlines()) == DEMO_SIZE  # default page (1,000)
    assert api.get("/v1/log/entries", params={"start": 0, "end": 5000}).content.count(b"\n") == DEMO_SIZE
    assert api.get("/v1/log/entries", params={"start": 795, "end": 900}).content.count(b"\n") == 5
    assert api.get("/v1/log/entries", params={"start": 900}).content == b""
    with TestClient(create_app(Settings(home=read_home, max_page=10)), raise_server_exceptions=False) as small:
        assert small.get("/v1/log/entries", params={"start": 3}).content.count(b"\n") == 10
        assert_problem(small.get("/v1/log/entries", params={"start": 0, "end": 11}), 422)
    assert_problem(api.get("/v1/log/entries", params={"start": -1}), 422, "malformed-request")
    assert_problem(api.get(f"/v1/log/entries/{DEMO_SIZE}"), 404, "not-found")


def test_inclusion_proofs_verify_against_the_checkpoint(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    checkpoint = notes.verify_checkpoint(api.get("/v1/log/checkpoint").text, log_key=log_key(api)).checkpoint
    for index in (0, 1, 2, 255, 256, 512, 798, 799):
        proof = api.get("/v1/log/proofs/inclusion", params={"index": index}).json()
        assert set(proof) == {"index", "size", "leaf_hash", "proof"}
        assert (proof["index"], proof["size"]) == (index, checkpoint.size)
        leaf = merkle.leaf_hash(canonical_bytes(all_entries[index]))
        assert proof["leaf_hash"] == leaf.hex()
        merkle.verify_inclusion(leaf, index, checkpoint.size, [decode_b64(h) for h in proof["proof"]],
                                checkpoint.root)  # fmt: skip
    # In an older tree (the log signed every size while the demo was recorded).
    old = api.get("/v1/log/proofs/consistency", params={"old": 100, "new": 100}).json()["old"]
    old_checkpoint = notes.verify_checkpoint(old, log_key=log_key(api)).checkpoint
    proof = api.get("/v1/log/proofs/inclusion", params={"index": 42, "size": 100}).json()
    merkle.verify_inclusion(merkle.leaf_hash(canonical_bytes(all_entries[42])), 42, 100,
                            [decode_b64(h) for h in proof["proof"]], old_checkpoint.root)  # fmt: skip
    assert_problem(api.get("/v1/log/proofs/inclusion", params={"index": DEMO_SIZE}), 422)
    assert_problem(api.get("/v1/log/proofs/inclusion", params={"index": 0, "size": DEMO_SIZE + 1}), 404)


def test_consistency_proofs_verify_and_old_zero_is_refused(api: TestClient) -> None:
    vkey = log_key(api)
    for old, new in ((1, None), (10, None), (399, 800), (64, 128), (7, 7)):
        response = api.get("/v1/log/proofs/consistency", params={"old": old} | ({"new": new} if new else {}))
        assert response.status_code == 200, response.text
        proof = response.json()
        assert set(proof) == {"old", "new", "proof"}
        notes.verify_consistency_proof(proof, log_key=vkey)
        assert notes.parse_note(proof["old"]).checkpoint.size == old
        assert notes.parse_note(proof["new"]).checkpoint.size == (new or DEMO_SIZE)
    latest = api.get("/v1/log/proofs/consistency", params={"old": 10}).json()["new"]
    assert latest == api.get("/v1/log/checkpoint").text, "the latest checkpoint, with its cosignatures"
    assert_problem(api.get("/v1/log/proofs/consistency", params={"old": 0}), 422)
    assert_problem(api.get("/v1/log/proofs/consistency", params={"old": 10, "new": 5}), 422)
    assert_problem(api.get("/v1/log/proofs/consistency", params={"old": 10, "new": DEMO_SIZE + 5}), 404)


def test_receipts_verify_with_the_witnesses(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    keys = keys_of(api)
    for index in (0, 123, DEMO_SIZE - 1):
        response = api.get(f"/v1/log/receipts/{index}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith("c2sp.org/tlog-proof@v1\nextra ")
        receipt = notes.verify_receipt(response.text, log_key=keys["log"], witness_keys=keys["witnesses"],
                                       min_cosignatures=2)  # fmt: skip
        assert receipt.index == index
        assert receipt.leaf_bytes == canonical_bytes(all_entries[index])
    assert_problem(api.get(f"/v1/log/receipts/{DEMO_SIZE}"), 404, "not-found")


def test_a_witness_cosignature_is_accepted_and_served(home: Path, client: TestClient) -> None:
    assert client.post("/v1/statements", content=dispatch().canonical()).status_code == 201
    note = client.get("/v1/log/checkpoint").text
    assert notes.parse_note(note).checkpoint.size == DEMO_SIZE + 1
    proof = client.get("/v1/log/proofs/consistency", params={"old": DEMO_SIZE}).json()["proof"]
    vkey = log_key(client)
    witness = Witness("witness-perludem", read_private_key(home / "demo-keys" / "witness-perludem.pem"), vkey,
                      home / "witness-perludem.state.json")  # fmt: skip
    line = witness.cosign(note, [decode_b64(h) for h in proof])

    response = client.post("/v1/log/cosignatures", json={"cosignature": line})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert line in response.text
    perludem = [k for k in keys_of(client)["witnesses"] if k.startswith("witness-perludem+")]
    served = client.get("/v1/log/checkpoint").text
    assert served == response.text
    signed = notes.verify_checkpoint(served, log_key=vkey, witness_keys=perludem, min_cosignatures=1)
    assert signed.checkpoint.size == DEMO_SIZE + 1
    # Receipts are now issued against the cosigned checkpoint.
    receipt = client.get(f"/v1/log/receipts/{DEMO_SIZE}").text
    notes.verify_receipt(receipt, log_key=vkey, witness_keys=perludem, min_cosignatures=1)


@pytest.mark.parametrize("who", ["unregistered-name", "unregistered-key", "not-a-witness"])
def test_a_cosignature_by_an_unregistered_key_or_name_is_refused_and_nothing_stored(
    home: Path, client: TestClient, who: str
) -> None:
    assert client.post("/v1/statements", content=dispatch().canonical()).status_code == 201
    before = client.get("/v1/log/checkpoint").text
    name, key = {
        "unregistered-name": ("witness-nobody", Ed25519PrivateKey.generate()),
        "unregistered-key": ("witness-perludem", Ed25519PrivateKey.generate()),
        "not-a-witness": ("perludem", read_private_key(home / "demo-keys" / "perludem.pem")),
    }[who]
    line = notes.cosign(before, name=name, key=key, timestamp=int(time.time()))
    response = client.post("/v1/log/cosignatures", json={"cosignature": line})
    assert_problem(response, 422, "bad-cosignature")
    assert client.get("/v1/log/checkpoint").text == before, "nothing stored"
    assert name not in before


def test_a_cosignature_on_a_tree_whose_registry_lacks_the_witness_is_refused(home: Path, client: TestClient) -> None:
    """SPEC §6: at its time T the witness holds a witness mandate for ID "in the registry
    of the tree it cosigns". witness-perludem is registered at index 11, so the tree of
    size 5 knows nothing of it: its cosignature on that checkpoint must be refused."""
    registered = statement_of(client.get("/v1/log/entries/11").json())
    assert (registered["type"], registered["subject"]) == ("actor.registered", "witness-perludem")
    old = client.get("/v1/log/proofs/consistency", params={"old": 5, "new": 5}).json()["old"]
    key = read_private_key(home / "demo-keys" / "witness-perludem.pem")
    line = notes.cosign(old, name="witness-perludem", key=key, timestamp=int(time.time()))
    response = client.post("/v1/log/cosignatures", json={"cosignature": line, "size": 5})
    assert_problem(response, 422, "bad-cosignature")
    assert client.get("/v1/log/proofs/consistency", params={"old": 5, "new": 5}).json()["old"] == old


def test_malformed_cosignature_requests_are_problems(api: TestClient) -> None:
    assert_problem(api.post("/v1/log/cosignatures", json={"cosignature": "garbage"}), 422, "bad-cosignature")
    assert_problem(api.post("/v1/log/cosignatures", json={"cosignature": "x", "extra": 1}), 422, "malformed-request")
    assert_problem(api.post("/v1/log/cosignatures", content=b"\xff"), 422)
    assert_problem(api.post("/v1/log/cosignatures", json={"cosignature": "x", "size": 5_000}), 404, "not-found")


# ---------------------------------------------------------------- queries


def test_consignment_chain_of_custody(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    found = api.get("/v1/consignments/out.18.72.01").json()
    assert found["id"] == "out.18.72.01"
    assert (found["sender"], found["receiver"], found["direction"], found["region"]) == (
        "kpu-18.72", "ppk-18.72.01", "outbound", "18.72.01")  # fmt: skip
    assert found["status"] == "received" and found["missing"] == {} and found["on_time"] is True
    for hop in ("dispatch", "receipt"):
        index = found[hop]["index"]
        statement = statement_of(all_entries[index])
        assert statement["subject"] == "out.18.72.01"
        assert statement["actor"] == found[hop]["actor"]
        assert found[hop]["leaf_hash"] == merkle.leaf_hash(canonical_bytes(all_entries[index])).hex()
    assert [w["actor"] for w in found["witnesses"]] == ["panwascam-18.72.01"]
    assert_problem(api.get("/v1/consignments/out.99.99"), 404, "not-found")


def test_consignments_paginate_without_duplicates_or_gaps(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    dispatched = sorted(
        statement_of(e)["subject"] for e in all_entries if statement_of(e)["type"] == "logistics.dispatched"
    )
    everything = paginate(api, "/v1/consignments", 1000)
    assert [c["id"] for c in everything] == dispatched
    for limit in (1, 7, 50):
        paged = [c["id"] for c in paginate(api, "/v1/consignments", limit)]
        assert paged == dispatched, f"limit {limit}"
    # With filters: a kecamatan's consignments that arrived complete.
    filtered = paginate(api, "/v1/consignments", 9, region="18.72.02", status="received")
    assert filtered and len({c["id"] for c in filtered}) == len(filtered)
    assert all(c["status"] == "received" for c in filtered)
    assert all(c["region"] == "18.72.02" or c["region"].startswith("18.72.02.") for c in filtered)
    assert filtered == paginate(api, "/v1/consignments", 1000, region="18.72.02", status="received")
    problems = paginate(api, "/v1/consignments", 1000, status="received_with_discrepancy")
    assert len(problems) == 2
    assert paginate(api, "/v1/consignments", 10, status="dispatched") != []
    assert_problem(api.get("/v1/consignments", params={"region": "18.7"}), 422, "malformed-region")
    assert_problem(api.get("/v1/consignments", params={"limit": 1001}), 422, "malformed-request")


def test_tps_custody_is_the_tree_of_hops(api: TestClient) -> None:
    tps = "18.72.01.1001.002"
    found = api.get(f"/v1/tps/{tps}/custody").json()
    assert found["tps"] == tps and found["name"].startswith("TPS 002")
    (root,) = [hop for hop in found["hops"] if hop["id"] == "out.18.72.01"]
    village = next(child for child in root["children"] if child["id"] == "out.18.72.01.1001")
    to_tps = next(child for child in village["children"] if child["id"] == f"out.{tps}")
    assert to_tps["receiver"] == f"kpps-{tps}" and to_tps["parent"] == "out.18.72.01.1001"
    assert [child["id"] for child in to_tps["children"]] == [f"ret.{tps}"]
    assert_problem(api.get("/v1/tps/18.72.01/custody"), 422, "malformed-region")


def test_readiness_of_the_city_and_a_kecamatan(api: TestClient) -> None:
    city = api.get("/v1/regions/18.72/readiness").json()
    assert city["region"] == "18.72" and city["name"] == "Kota Metro"
    assert city["tps"] == 60
    assert city["holding_all"] + city["not_received"] + city["not_dispatched"] + 2 == city["tps"]  # 2 short/broken
    assert (city["late"], city["not_received"], city["in_discrepancy"]) == (3, 1, 2)
    children = city["children"]
    assert [c["region"] for c in children] == [f"18.72.0{n}" for n in range(1, 6)]
    assert sum(c["tps"] for c in children) == city["tps"]
    assert sum(c["late"] for c in children) == city["late"]
    assert all("problems" not in c for c in children)

    kecamatan = api.get("/v1/regions/18.72.01/readiness").json()
    assert kecamatan == next(c for c in children if c["region"] == "18.72.01") | {
        "problems": kecamatan["problems"], "children": kecamatan["children"]}  # fmt: skip
    assert kecamatan["children"] and all(c["region"].startswith("18.72.01.") for c in kecamatan["children"])
    assert sum(c["tps"] for c in kecamatan["children"]) == kecamatan["tps"]
    assert api.get("/v1/regions/18.72.01/readiness", params={"children": "false"}).json()["children"] == []
    assert_problem(api.get("/v1/regions/18.73/readiness"), 422, "malformed-region")


def test_commitments_and_pledges_registers(api: TestClient) -> None:
    commitments = paginate(api, "/v1/commitments", 1)
    assert [c["id"] for c in commitments] == [f"commitment-paslon-18.72-{n}-damai" for n in (1, 2, 3)]
    assert commitments == paginate(api, "/v1/commitments", 100, region="18.72.01.1001")
    first = commitments[0]
    assert first["declarer"] == "paslon-18.72-1" and len(first["breach_reports"]) == 1
    assert {e["actor"] for e in first["endorsements"]} >= {"kpu-18.72", "bawaslu-18.72"}
    assert paginate(api, "/v1/commitments", 10, declarer="paslon-18.72-2")[0]["id"].endswith("-2-damai")

    pledges = paginate(api, "/v1/pledges", 2)
    assert len(pledges) == 5 and len({p["id"] for p in pledges}) == 5
    (asn,) = paginate(api, "/v1/pledges", 10, institution="asn")
    assert asn["id"] == "pledge-asn-18.72" and len(asn["reports"]) == 1
    assert_problem(api.get("/v1/pledges", params={"region": "18.73"}), 422, "malformed-region")


def test_actors_now_and_at_an_index(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    registered = [(e["index"], statement_of(e)) for e in all_entries if statement_of(e)["type"] == "actor.registered"]
    (at,) = [index for index, s in registered if s["subject"] == "kpu-18.72"]
    assert_problem(api.get("/v1/actors/kpu-18.72", params={"at_index": at - 1}), 404, "not-found")
    then = api.get("/v1/actors/kpu-18.72", params={"at_index": at}).json()
    now = api.get("/v1/actors/kpu-18.72").json()
    assert then["registered_index"] == now["registered_index"] == at
    assert then["as_of_index"] == at and now["as_of_index"] is None
    assert then["keys"] == now["keys"] and len(now["keys"]) == 1
    assert now["keys"][0]["key"] == SCENARIO.signer("kpu-18.72").public_key
    assert [(m["role"], m["jurisdiction"], m["state"]) for m in now["mandates"]] == [("kpu", "18.72", "in_force")]
    assert_problem(api.get("/v1/actors/nobody"), 404, "not-found")
    assert_problem(api.get("/v1/actors/kpu-18.72", params={"at_index": -1}), 422, "malformed-request")

    ids = sorted(s["subject"] for _, s in registered)
    for limit in (1000, 33):
        assert [a["id"] for a in paginate(api, "/v1/actors", limit)] == ids
    kpps = paginate(api, "/v1/actors", 10, role="kpps", jurisdiction="18.72.01")
    assert kpps and all(a["id"].startswith("kpps-18.72.01.") for a in kpps)


def test_subject_trail(api: TestClient, all_entries: list[dict[str, Any]]) -> None:
    subject = "out.18.72.01"
    expected = [e["index"] for e in all_entries if statement_of(e)["subject"] == subject]
    trail = api.get(f"/v1/subjects/{subject}/trail").json()
    assert [item["index"] for item in trail["items"]] == expected and trail["next"] is None
    paged = paginate(api, f"/v1/subjects/{subject}/trail", 1)
    assert paged == trail["items"]
    for item in trail["items"]:
        entry = all_entries[item["index"]]
        assert item["statement_digest"] == "sha256:" + hashlib.sha256(decode_b64(entry["envelope"]["payload"])).hexdigest()
        assert item["leaf_hash"] == merkle.leaf_hash(canonical_bytes(entry)).hex()
        assert item["keyid"] == entry["envelope"]["signatures"][0]["keyid"]
    assert api.get("/v1/subjects/nothing-here/trail").json() == {"items": [], "next": None}


def test_projections_status(api: TestClient) -> None:
    found = api.get("/v1/projections").json()
    assert [p["name"] for p in found] == ["custody", "readiness", "commitments", "pledges", "actors", "trail"]
    assert all(set(p) == {"name", "size", "digest"} for p in found)
    assert all(p["size"] == DEMO_SIZE and DIGEST.match(p["digest"]) for p in found)
    assert found == api.get("/v1/projections").json(), "stable"


def test_statement_schemas(api: TestClient) -> None:
    schema = api.get("/v1/statements/schemas/logistics.dispatched").json()
    assert schema["additionalProperties"] is False and "receiver" in schema["required"]
    assert api.get("/v1/statements/schemas/statement").status_code == 200
    assert_problem(api.get("/v1/statements/schemas/logistics.teleported"), 404, "not-found")


# ---------------------------------------------------------------- export


def test_export_selective_and_full_bundles_verify_offline(
    api: TestClient, published: dict[str, Any], tmp_path: Path
) -> None:
    witnesses = keys_of(api)["witnesses"]
    response = api.get("/v1/export", params={"subject": "out.18.72.01"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "saksi-out.18.72.01.zip" in response.headers["content-disposition"]
    path = tmp_path / "selective.zip"
    path.write_bytes(response.content)
    report = verify_bundle(path, log_key=published["log_key"], genesis=published["genesis"],
                           witness_keys=witnesses, min_cosignatures=2)  # fmt: skip
    assert report.kind == "selective" and report.size == DEMO_SIZE and report.cosignatures == 2
    assert DEMO_SIZE > report.entries > 5

    full = tmp_path / "full.zip"
    full.write_bytes(api.get("/v1/export", params={"full": "true"}).content)
    report = verify_bundle(full, log_key=published["log_key"], genesis=published["genesis"])
    assert (report.kind, report.entries, report.size) == ("full", DEMO_SIZE, DEMO_SIZE)

    impostor = [GenesisRegistrar("registrar-kpu-ri", base64.b64encode(b"\x01" * 32).decode())]
    with pytest.raises(VerificationError):
        verify_bundle(full, log_key=published["log_key"], genesis=impostor)
    assert_problem(api.get("/v1/export"), 422)
    assert_problem(api.get("/v1/export", params={"full": "true", "subject": "x"}), 422)


# ---------------------------------------------------------------- limits and errors


def test_an_oversized_envelope_is_413(api: TestClient) -> None:
    body = json.dumps({"payloadType": "application/vnd.saksi.statement+json",
                       "payload": base64.b64encode(b"x" * 60_000).decode(), "signatures": []}).encode()  # fmt: skip
    assert len(body) > 64 * 1024
    assert_problem(api.post("/v1/statements", content=body), 413, "body-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(80):
            yield b" " * 1024

    assert_problem(api.post("/v1/statements", content=chunks()), 413, "body-too-large")


def test_a_batch_over_1000_items_or_the_byte_limit_is_413(api: TestClient, read_home: Path) -> None:
    assert_problem(api.post("/v1/statements/batch", content=b"[" + b",".join([b"{}"] * 1001) + b"]"),
                   413, "batch-too-large")  # fmt: skip
    small = Settings(home=read_home, max_batch_bytes=4096)
    with TestClient(create_app(small), raise_server_exceptions=False) as limited:
        body = json.dumps([dispatch().to_json() for _ in range(10)]).encode()
        assert_problem(limited.post("/v1/statements/batch", content=body), 413, "body-too-large")
        assert limited.get("/v1/log/checkpoint").text.split("\n")[1] == str(DEMO_SIZE), "nothing recorded"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "malformed-envelope"),
        (b"{", "malformed-envelope"),
        (b"\xff\xfe", "malformed-envelope"),
        (b"[]", "malformed-envelope"),
        (b'{"payloadType": "application/vnd.saksi.statement+json", "payload": "AA==", "signatures": [],'
         b' "extra": 1}', "malformed-envelope"),
        (b'{"a": 1, "a": 2}', "malformed-envelope"),
        (b"1.5", "malformed-envelope"),
        (b"[" * 40 + b"]" * 40, "malformed-envelope"),
    ],
)
def test_malformed_envelopes_are_422(api: TestClient, body: bytes, code: str) -> None:
    assert_problem(api.post("/v1/statements", content=body), 422, code)


def test_refused_statements_are_problems_with_stable_codes(client: TestClient) -> None:
    sent = dispatch()
    assert_problem(client.post("/v1/statements", json=forged(sent)), 403, "bad-signature")
    stranger = Ed25519PrivateKey.generate()
    unknown = sign_statement(json.loads(sent.payload) | {"id": new_id()}, stranger)
    assert_problem(client.post("/v1/statements", content=unknown.canonical()), 403, "unknown-key")
    outside = dispatch(kecamatan="18.72.02").to_json()  # fine: KPU Kota Metro holds 18.72
    assert client.post("/v1/statements", json=outside).status_code == 201
    elsewhere = pledge(actor="ppk-18.72.01", region="18.72.02")
    assert_problem(client.post("/v1/statements", content=elsewhere.canonical()), 403, "outside-jurisdiction")
    assert client.get("/v1/log/checkpoint").text.split("\n")[1] == str(DEMO_SIZE + 1)


def test_unknown_routes_and_methods_are_problems(api: TestClient) -> None:
    assert_problem(api.get("/v1/nothing"), 404, "not-found")
    assert_problem(api.post("/v1/log/checkpoint"), 405, "method-not-allowed")
    assert_problem(api.get("/v1/statements"), 405, "method-not-allowed")


@pytest.mark.parametrize("huge", [2**63, 10**30])
@pytest.mark.parametrize(
    "path",
    [
        "/v1/log/entries/{n}",
        "/v1/log/receipts/{n}",
        "/v1/log/proofs/inclusion?index=0&size={n}",
        "/v1/log/proofs/inclusion?index={n}",
        "/v1/log/proofs/consistency?old=5&new={n}",
        "/v1/log/proofs/consistency?old={n}",
        "/v1/log/entries?start={n}",
        "/v1/actors/kpu-18.72?at_index={n}",
        "/v1/subjects/out.18.72.01/trail?cursor={n}",
        "/v1/events/stream?from=-{n}",
    ],
)
def test_huge_integers_in_paths_and_queries_are_not_500(api: TestClient, path: str, huge: int) -> None:
    assert_not_internal(api.get(path.format(n=huge)))


@pytest.mark.parametrize("size", [2**63, 10**30])
def test_a_cosignature_for_a_huge_size_is_not_500(api: TestClient, size: int) -> None:
    line = notes.cosign(api.get("/v1/log/checkpoint").text, name="witness-nobody",
                        key=Ed25519PrivateKey.generate(), timestamp=1)  # fmt: skip
    assert_not_internal(api.post("/v1/log/cosignatures", json={"cosignature": line, "size": size}))


@pytest.mark.parametrize("code", ["18.72\n", "18.72.01\n", " 18.72"])
def test_a_region_code_with_stray_whitespace_is_malformed(api: TestClient, code: str) -> None:
    quoted = urllib.parse.quote(code, safe="")
    assert_problem(api.get(f"/v1/regions/{quoted}/readiness"), 422, "malformed-region")
    assert_problem(api.get("/v1/consignments", params={"region": code}), 422, "malformed-region")


# ---------------------------------------------------------------- property tests: never a 500

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
b64_text = st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode())
envelope_like = st.fixed_dictionaries(
    {"payloadType": st.sampled_from(["application/vnd.saksi.statement+json", "text/plain"]),
     "payload": b64_text | st.text(max_size=20),
     "signatures": st.lists(st.fixed_dictionaries({"keyid": st.text(alphabet="0123456789abcdef", min_size=64,
                                                                    max_size=64) | st.text(max_size=5),
                                                   "sig": b64_text}), max_size=2)},
)  # fmt: skip
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | envelope_like.map(lambda v: json.dumps(v).encode())
    | st.lists(envelope_like | json_values, max_size=3).map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(body=bodies, batch=st.booleans())
def test_random_bodies_never_give_500(api: TestClient, body: bytes, batch: bool) -> None:
    response = api.post("/v1/statements/batch" if batch else "/v1/statements", content=body)
    assert_not_internal(response)
    if not batch:
        assert response.status_code >= 400, "random bytes are never a valid signed statement"


texts = st.text(max_size=24) | st.sampled_from(["18.72", "18.72.01", "ID", "out.18.72.01", "kpu-18.72", "..", ""])
integers = st.integers(min_value=-(2**70), max_value=2**70) | st.integers(min_value=-5, max_value=900)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    text = urllib.parse.quote(draw(texts), safe="")
    n, m = draw(integers), draw(integers)
    options = {
        "consignment": (f"/v1/consignments/{text}", {}),
        "tps": (f"/v1/tps/{text}/custody", {}),
        "readiness": (f"/v1/regions/{text}/readiness", {"children": draw(st.booleans())}),
        "actor": (f"/v1/actors/{text}", {"at_index": n}),
        "trail": (f"/v1/subjects/{text}/trail", {"cursor": n, "limit": m}),
        "entry": (f"/v1/log/entries/{n}", {}),
        "entries": ("/v1/log/entries", {"start": n, "end": m}),
        "receipt": (f"/v1/log/receipts/{n}", {}),
        "inclusion": ("/v1/log/proofs/inclusion", {"index": n, "size": m}),
        "consistency": ("/v1/log/proofs/consistency", {"old": n, "new": m}),
        "schema": (f"/v1/statements/schemas/{text}", {}),
        "consignments": ("/v1/consignments", {"region": draw(texts), "status": draw(texts),
                                              "cursor": draw(texts), "limit": m}),
        "actors": ("/v1/actors", {"role": draw(texts), "jurisdiction": draw(texts), "name": draw(texts),
                                  "cursor": draw(texts), "limit": m}),
        "commitments": ("/v1/commitments", {"region": draw(texts), "declarer": draw(texts), "cursor": draw(texts)}),
        "pledges": ("/v1/pledges", {"region": draw(texts), "institution": draw(texts), "limit": m}),
    }  # fmt: skip
    return options[draw(st.sampled_from(sorted(options)))]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(request=requests())
def test_random_path_and_query_parameters_never_give_500(api: TestClient, request: tuple[str, dict[str, Any]]) -> None:
    path, params = request
    assert_not_internal(api.get(path, params=params))


# ---------------------------------------------------------------- OpenAPI


def test_openapi_lists_every_route(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    expected = {
        "/v1/statements": "post", "/v1/statements/batch": "post",
        "/v1/statements/schemas/{statement_type}": "get",
        "/v1/log/checkpoint": "get", "/v1/log/key": "get", "/v1/log/keys": "get",
        "/v1/log/entries": "get", "/v1/log/entries/{index}": "get",
        "/v1/log/proofs/inclusion": "get", "/v1/log/proofs/consistency": "get",
        "/v1/log/receipts/{index}": "get", "/v1/log/cosignatures": "post",
        "/v1/consignments": "get", "/v1/consignments/{consignment_id}": "get",
        "/v1/tps/{code}/custody": "get", "/v1/regions/{code}/readiness": "get",
        "/v1/commitments": "get", "/v1/pledges": "get", "/v1/actors": "get", "/v1/actors/{actor_id}": "get",
        "/v1/subjects/{subject}/trail": "get", "/v1/projections": "get",
        "/v1/export": "get", "/v1/events/stream": "get",
    }  # fmt: skip
    missing = {path for path, method in expected.items() if method not in paths.get(path, {})}
    assert not missing, missing
    assert set(paths) == set(expected), set(paths) ^ set(expected)
    body = paths["/v1/statements"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"payloadType", "payload", "signatures"}


# ---------------------------------------------------------------- the Python client


def test_the_client_over_the_test_transport(client: TestClient, published: dict[str, Any], tmp_path: Path) -> None:
    with Client("http://testserver", transport=client._transport) as saksi:
        assert saksi.log_key() == published["log_key"]
        sent = dispatch()
        receipt = saksi.submit(sent)
        assert receipt["duplicate"] is False and receipt["index"] == DEMO_SIZE
        assert saksi.submit(sent.to_json())["duplicate"] is True
        assert saksi.entry(DEMO_SIZE)["envelope"] == sent.to_json()
        paged = list(saksi.entries())  # to the current size
        assert [e["index"] for e in paged] == list(range(DEMO_SIZE + 1))
        assert paged[-1] == saksi.entry(DEMO_SIZE) and list(saksi.entries(3, 5)) == [saksi.entry(3), saksi.entry(4)]
        notes.verify_receipt(saksi.receipt(DEMO_SIZE), log_key=saksi.log_key())
        results = saksi.submit_batch([receive(sent), forged(dispatch())])
        assert results[0]["index"] == DEMO_SIZE + 1
        assert results[1]["type"] == PROBLEM_BASE + "bad-signature"
        proof = saksi.consistency(10)
        assert proof and all(len(h) == 32 for h in proof)
        assert saksi.get("/v1/regions/18.72/readiness")["tps"] == 60
        path = tmp_path / "b.zip"
        path.write_bytes(saksi.export(subject=json.loads(sent.payload)["subject"]))
        assert verify_bundle(path, log_key=published["log_key"], genesis=published["genesis"]).kind == "selective"
        with pytest.raises(ServerError) as caught:
            saksi.submit(forged(dispatch()))
        assert (caught.value.code, caught.value.status) == ("bad-signature", 403)
        with pytest.raises(ServerError) as caught:
            saksi.get("/v1/consignments/none-such")
        assert (caught.value.code, caught.value.status) == ("not-found", 404)


# ---------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``saksi serve`` on a free port over a copy of the demo; its base URL."""
    base = tmp_path_factory.mktemp("server")
    home = _copy(demo_template, base / "home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SAKSI_DATABASE_URL", "SAKSI_SERVER")}
    saksi = Path(sys.executable).parent / "saksi"
    log = open(base / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(saksi), "serve", "--home", str(home), "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"saksi serve exited: {(base / 'server.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/v1/log/key", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"saksi serve did not answer: {(base / 'server.log').read_text()}")
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


def test_a_real_server_takes_a_handover_and_its_receipt_verifies(server: str, published: dict[str, Any]) -> None:
    with Client(server) as saksi:
        vkey = saksi.log_key()
        assert vkey == published["log_key"]
        sent = dispatch()
        first = saksi.submit(sent)
        second = saksi.submit(receive(sent))
        assert second["index"] == first["index"] + 1
        for receipt in (first, second):
            text = saksi.receipt(receipt["index"])
            verified = notes.verify_receipt(text, log_key=vkey)
            assert verified.index == receipt["index"]
            assert strict_loads(verified.leaf_bytes) == saksi.entry(receipt["index"])
            notes.verify_receipt(receipt["receipt"], log_key=vkey)
        subject = json.loads(sent.payload)["subject"]
        assert saksi.get(f"/v1/consignments/{subject}")["status"] == "received"
        with pytest.raises(ServerError) as caught:
            saksi.submit(b"{}")
        assert caught.value.code == "malformed-envelope"


def _events(lines: Iterator[str], *, within: float = 10.0) -> Iterator[dict[str, str]]:
    """Parse server-sent events (comments skipped) from a stream of lines; gives up
    after ``within`` seconds (the server's keep-alive comments keep reads alive)."""
    deadline = time.monotonic() + within
    event: dict[str, str] = {}
    for line in lines:
        assert time.monotonic() < deadline, "no event in time"
        if line == "":
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


def test_the_event_stream_sends_entries_from_an_index_and_then_new_ones(server: str) -> None:
    with httpx.Client(base_url=server, timeout=20) as http:
        size = int(http.get("/v1/log/checkpoint").text.split("\n")[1])
        with http.stream("GET", "/v1/events/stream", params={"from": size - 2}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response.iter_lines())
            seen = [next(events), next(events)]
            assert [e["id"] for e in seen] == [str(size - 2), str(size - 1)]
            for event in seen:
                assert event["event"] == "entry"
                assert event["data"].encode() == http.get(f"/v1/log/entries/{event['id']}").content
            with Client(server) as saksi:
                recorded = saksi.submit(dispatch())
            live = next(events)
            assert live["id"] == str(recorded["index"])
            assert json.loads(live["data"])["index"] == recorded["index"]

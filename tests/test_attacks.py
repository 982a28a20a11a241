"""The attack matrix, through the HTTP API: every way an outsider (or an insider
with the wrong key, mandate or region) might get a statement recorded that should
not be. Each attempt is refused with its problem type, and nothing is recorded:
the log's size, the number of stored events and the checkpoint are unchanged.

Each envelope-level attack is also sent inside a batch, where the item must get
the same problem and the batch must record nothing either.

The app runs over a copy of the Kota Metro demo with two more facts recorded
first: the key of ``kpps-18.72.01.1001.001`` was revoked, and ``observer-lapsed``
was registered with an observer mandate that ended on 1 June 2024.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette.testclient's import-time warning
    from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from ledger import notes
from ledger.application import Ledger
from ledger.canonical import canonical_bytes
from ledger.envelope import PAYLOAD_TYPE, Envelope, b64, decode_b64, key_id, pae, raw_public_key
from ledger.scenario import Signer, kota_metro
from tests.conftest import stored_event_count

PROBLEM = "https://saksi.id/problems/"
SCENARIO = kota_metro()
KPU = SCENARIO.signer("kpu-18.72")
PPK = SCENARIO.signer("ppk-18.72.01")
PPK_2 = SCENARIO.signer("ppk-18.72.02")
REVOKED = SCENARIO.signer("kpps-18.72.01.1001.001")  # its key is revoked in ``world``
LAPSED = SCENARIO.signer("observer-lapsed")  # its only mandate ended on 2024-06-01
ITEMS = {"booth": 2, "ink": 1, "seals": 4}


# ---------------------------------------------------------------- building statements and envelopes


def statement(signer: Signer | str, type: str, subject: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    actor = signer if isinstance(signer, str) else signer.actor
    found = {"v": 1, "type": type, "id": str(uuid.uuid4()), "actor": actor,
             "issued_at": "2026-01-01T00:00:00Z", "subject": subject, "body": body}  # fmt: skip
    found.update(extra)
    return found


def dispatch_statement(subject: str | None = None, *, receiver: str = "ppk-18.72.01", region: str = "18.72.01") -> dict[str, Any]:
    body = {"region": region, "receiver": receiver, "direction": "outbound", "items": dict(ITEMS),
            "seals": ["SEGEL-ATTACK-1"], "due_by": "2030-01-01T00:00:00Z"}  # fmt: skip
    return statement(KPU, "logistics.dispatched", subject or f"attack.{uuid.uuid4().hex[:12]}", body)


def receipt_statement(subject: str, dispatch_digest: str, *, signer: Signer = PPK, region: str = "18.72.01") -> dict[str, Any]:
    body = {"region": region, "items": dict(ITEMS), "seals_intact": True, "condition": "good"}
    return statement(signer, "logistics.received", subject, body, refs=[dispatch_digest])


def envelope(
    payload: dict[str, Any] | bytes, key: Ed25519PrivateKey, *, keyid: str | None = None,
    payload_type: str = PAYLOAD_TYPE,
) -> dict[str, Any]:  # fmt: skip
    """A DSSE envelope over ``payload`` (canonicalised when a dict; used as is when
    bytes), genuinely signed by ``key`` over PAE(payload_type, payload)."""
    data = canonical_bytes(payload) if isinstance(payload, dict) else payload
    return {
        "payloadType": payload_type,
        "payload": b64(data),
        "signatures": [{"keyid": keyid or key_id(raw_public_key(key)), "sig": b64(key.sign(pae(payload_type, data)))}],
    }


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- the world and the verdicts


@dataclass
class World:
    client: TestClient
    ledger: Ledger
    home: Path
    sent: dict[str, Envelope]  # consignment id → its recorded dispatch

    def counts(self) -> tuple[int, int, str, list[str]]:
        """(log size, stored events, latest checkpoint, its cosignatures): all that a
        refusal must leave unchanged."""
        size = self.ledger.tlog.size
        return (size, stored_event_count(self.ledger), self.ledger.tlog.latest_note(),
                self.ledger.tlog.store.cosignatures(size))  # fmt: skip


def _sign(signer: Signer, type: str, subject: str, body: dict[str, Any], **kw: Any) -> Envelope:
    return signer.sign(type, subject, body, statement_id=str(uuid.uuid4()), **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, demo_template: Path) -> Iterator[World]:
    home = tmp_path_factory.mktemp("attacks") / "home"
    shutil.copytree(demo_template, home)
    registrar = SCENARIO.population.registrar
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as client:
        setup = [
            _sign(registrar, "actor.key_revoked", REVOKED.actor,
                  {"keyid": key_id(decode_b64(REVOKED.public_key)), "reason": "device lost"}),
            _sign(registrar, "actor.registered", LAPSED.actor,
                  {"name": "Pemantau (lapsed)", "kind": "organisation", "keys": [LAPSED.public_key],
                   "mandates": [{"id": "m1", "role": "observer", "jurisdiction": "18.72",
                                 "valid_from": "2024-01-01T00:00:00Z", "valid_until": "2024-06-01T00:00:00Z"}]}),
        ]  # fmt: skip
        sent = {}
        for name in ("attack-a", "attack-b"):
            found = dispatch_statement(f"{name}.{uuid.uuid4().hex[:8]}")
            sent[name] = _sign(KPU, "logistics.dispatched", found["subject"], found["body"])
            setup.append(sent[name])
        for item in setup:
            response = client.post("/v1/statements", content=item.canonical())
            assert response.status_code == 201, response.text
        yield World(client, client.app.state.runtime.ledger, home, sent)  # type: ignore[attr-defined]


def assert_refused(world: World, body: bytes, status: int, code: str, *, path: str = "/v1/statements") -> dict[str, Any]:
    """POST ``body``; expect a problem of ``status`` and type ``code``; nothing recorded."""
    before = world.counts()
    response = world.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text[:600]
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == PROBLEM + code, problem
    assert problem["status"] == status and problem["detail"]
    assert world.counts() == before, "a refused request left something recorded"
    return problem  # type: ignore[no-any-return]


def assert_refused_in_batch(world: World, body: bytes, status: int, code: str) -> None:
    """The same envelope as the only item of a batch: the item is refused alike."""
    before = world.counts()
    response = world.client.post("/v1/statements/batch", content=b"[" + body + b"]",
                                 headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text[:600]
    (item,) = response.json()
    assert item["receipt"] is None, item
    assert (item["status"], item["problem"]["type"]) == (status, PROBLEM + code), item
    assert world.counts() == before, "a refused batch item left something recorded"


# ---------------------------------------------------------------- the attacks

# name → builder(world) -> (body, status, problem code). Builders sign with real keys
# wherever the attack needs a signature that verifies.
Attack = Callable[[World], tuple[bytes, int, str]]
ATTACKS: dict[str, Attack] = {}


def attack(name: str) -> Callable[[Attack], Attack]:
    def register(builder: Attack) -> Attack:
        ATTACKS[name] = builder
        return builder

    return register


@attack("forged-signature")
def _(world: World) -> tuple[bytes, int, str]:
    document = envelope(dispatch_statement(), KPU.key)
    sig = bytearray(decode_b64(document["signatures"][0]["sig"]))
    sig[10] ^= 0x40
    document["signatures"][0]["sig"] = b64(bytes(sig))
    return body_of(document), 403, "bad-signature"


@attack("signature-over-another-statement")
def _(world: World) -> tuple[bytes, int, str]:
    genuine = envelope(dispatch_statement(), KPU.key)
    other = envelope(dispatch_statement(), KPU.key)
    genuine["signatures"] = other["signatures"]  # a real KPU signature, over something else
    return body_of(genuine), 403, "bad-signature"


@attack("another-actors-key")
def _(world: World) -> tuple[bytes, int, str]:
    return body_of(envelope(dispatch_statement(), PPK.key)), 403, "key-not-of-actor"  # KPU's statement, PPK's key


@attack("wrong-key-id-unregistered")
def _(world: World) -> tuple[bytes, int, str]:
    keyid = hashlib.sha256(b"no such key").hexdigest()
    return body_of(envelope(dispatch_statement(), KPU.key, keyid=keyid)), 403, "unknown-key"


@attack("wrong-key-id-of-another-actor")
def _(world: World) -> tuple[bytes, int, str]:
    keyid = key_id(decode_b64(PPK.public_key))  # signed by KPU's key, labelled as PPK's
    return body_of(envelope(dispatch_statement(), KPU.key, keyid=keyid)), 403, "key-not-of-actor"


@attack("revoked-key")
def _(world: World) -> tuple[bytes, int, str]:
    body = {"region": "18.72.01.1001.001", "kinds": ["shortage"], "facts": "after revocation"}
    subject = "out.18.72.01.1001.001"
    refs = [world.ledger.consignment(subject).dispatch_digest]
    return body_of(envelope(statement(REVOKED, "logistics.discrepancy_reported", subject, body, refs=refs),
                            REVOKED.key)), 403, "key-revoked"  # fmt: skip


@attack("expired-mandate")
def _(world: World) -> tuple[bytes, int, str]:
    subject = "out.18.72.01"
    refs = [world.ledger.consignment(subject).dispatch_digest]
    witnessed = statement(LAPSED, "logistics.witnessed", subject, {"region": "18.72.01"}, refs=refs)
    return body_of(envelope(witnessed, LAPSED.key)), 403, "no-mandate"


@attack("outside-jurisdiction")
def _(world: World) -> tuple[bytes, int, str]:
    body = {"region": "18.72.02", "institution": "ppk", "undertakings": ["no_taking_sides"],
            "text": "Ikrar netralitas.", "valid_until": "2030-01-01T00:00:00Z"}  # fmt: skip
    pledge = statement(PPK, "pledge.made", f"pledge-attack-{uuid.uuid4().hex[:8]}", body)
    return body_of(envelope(pledge, PPK.key)), 403, "outside-jurisdiction"


@attack("dispatch-outside-jurisdiction")
def _(world: World) -> tuple[bytes, int, str]:
    sent = dispatch_statement(receiver="ppk-18.72.02", region="18.72.02")
    sent["actor"] = PPK.actor  # PPK 18.72.01 dispatching in another kecamatan
    return body_of(envelope(sent, PPK.key)), 403, "outside-jurisdiction"


@attack("unregistered-actor")
def _(world: World) -> tuple[bytes, int, str]:
    stranger = Ed25519PrivateKey.generate()
    forged = dispatch_statement()
    forged["actor"] = "kpu-18.72-palsu"
    return body_of(envelope(forged, stranger)), 403, "unknown-actor"


@attack("self-registration")
def _(world: World) -> tuple[bytes, int, str]:
    stranger = Ed25519PrivateKey.generate()
    body = {"name": "Registrar palsu", "kind": "organisation", "keys": [b64(raw_public_key(stranger))],
            "mandates": [{"id": "m1", "role": "registrar", "jurisdiction": "ID", "valid_from": "2024-01-01T00:00:00Z"}]}
    return body_of(envelope(statement("registrar-palsu", "actor.registered", "registrar-palsu", body),
                            stranger)), 403, "unknown-actor"  # fmt: skip


@attack("key-added-to-another-actor")
def _(world: World) -> tuple[bytes, int, str]:
    """KPU Kota Metro (no registrar) adds its own key to PPK's account: a statement about another subject."""
    stranger = Ed25519PrivateKey.generate()
    added = statement(KPU, "actor.key_added", PPK.actor, {"key": b64(raw_public_key(stranger))})
    return body_of(envelope(added, KPU.key)), 403, "no-mandate"


@attack("receipt-about-another-consignment")
def _(world: World) -> tuple[bytes, int, str]:
    """PPK receives consignment A but names B's dispatch."""
    a, b = world.sent["attack-a"], world.sent["attack-b"]
    subject_a = json.loads(a.payload)["subject"]
    return body_of(envelope(receipt_statement(subject_a, b.digest), PPK.key)), 409, "invariant-broken"


@attack("receipt-of-a-consignment-for-someone-else")
def _(world: World) -> tuple[bytes, int, str]:
    a = world.sent["attack-a"]  # addressed to ppk-18.72.01
    subject = json.loads(a.payload)["subject"]
    stolen = receipt_statement(subject, a.digest, signer=PPK_2, region="18.72.01")
    return body_of(envelope(stolen, PPK_2.key)), 403, "outside-jurisdiction"


@attack("receipt-for-a-consignment-never-dispatched")
def _(world: World) -> tuple[bytes, int, str]:
    a = world.sent["attack-a"]
    return body_of(envelope(receipt_statement("never.dispatched", a.digest), PPK.key)), 409, "invariant-broken"


@attack("non-canonical-payload")
def _(world: World) -> tuple[bytes, int, str]:
    payload = json.dumps(dispatch_statement(), indent=1).encode()  # genuine signature over non-JCS bytes
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("non-canonical-key-order")
def _(world: World) -> tuple[bytes, int, str]:
    found = dispatch_statement()
    payload = json.dumps(dict(reversed(list(found.items()))), separators=(",", ":")).encode()
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("duplicate-keys-in-envelope")
def _(world: World) -> tuple[bytes, int, str]:
    good = envelope(dispatch_statement(), KPU.key)
    other = envelope(dispatch_statement(), KPU.key)
    text = body_of(good)[:-1] + b',"payload":' + json.dumps(other["payload"]).encode() + b"}"
    return text, 422, "malformed-envelope"


@attack("duplicate-keys-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    canonical = canonical_bytes(dispatch_statement())
    payload = canonical[:-1] + b',"type":"logistics.received"}'  # a second "type", signed
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("integer-beyond-2^53-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    canonical = canonical_bytes(dispatch_statement())
    payload = canonical.replace(b'"booth":2', b'"booth":9007199254740993')
    assert payload != canonical
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("integer-beyond-2^53-in-envelope")
def _(world: World) -> tuple[bytes, int, str]:
    good = body_of(envelope(dispatch_statement(), KPU.key))
    return good[:-1] + b',"x":18446744073709551617}', 422, "malformed-envelope"


@attack("integer-of-5000-digits-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    # Beyond Python's int() limit (4300 digits): refused as JSON, never a ValueError.
    payload = canonical_bytes(dispatch_statement()).replace(b'"booth":2', b'"booth":' + b"7" * 5000)
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("integer-of-5000-digits-in-envelope")
def _(world: World) -> tuple[bytes, int, str]:
    good = body_of(envelope(dispatch_statement(), KPU.key))
    return good[:-1] + b',"x":-' + b"7" * 5000 + b"}", 422, "malformed-envelope"


@attack("float-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    payload = canonical_bytes(dispatch_statement()).replace(b'"booth":2', b'"booth":2.5')
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("wrong-payload-type")
def _(world: World) -> tuple[bytes, int, str]:
    signed = envelope(dispatch_statement(), KPU.key, payload_type="application/json")  # signed over that type
    return body_of(signed), 422, "malformed-envelope"


@attack("zero-signatures")
def _(world: World) -> tuple[bytes, int, str]:
    document = envelope(dispatch_statement(), KPU.key)
    document["signatures"] = []
    return body_of(document), 422, "malformed-envelope"


@attack("two-signatures")
def _(world: World) -> tuple[bytes, int, str]:
    document = envelope(dispatch_statement(), KPU.key)
    other = envelope(base64.b64decode(document["payload"]), PPK.key)
    document["signatures"] = document["signatures"] + other["signatures"]  # both genuine
    return body_of(document), 422, "malformed-envelope"


@attack("deep-nesting-in-envelope")
def _(world: World) -> tuple[bytes, int, str]:
    return b'{"payloadType":"x","payload":' + b"[" * 5000 + b"]" * 5000 + b',"signatures":[]}', 422, "malformed-envelope"


@attack("deep-nesting-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    found = dispatch_statement()
    payload = canonical_bytes(found)[:-1] + b',"z":' + json.dumps(nested(60)).encode() + b"}"
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("invalid-utf8-in-envelope")
def _(world: World) -> tuple[bytes, int, str]:
    good = body_of(envelope(dispatch_statement(), KPU.key))
    return good.replace(b'"payloadType"', b'"payload\xffType"', 1), 422, "malformed-envelope"


@attack("invalid-utf8-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    payload = canonical_bytes(dispatch_statement()).replace(b"SEGEL-ATTACK-1", b"SEGEL-\xc3\x28-1")
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("lone-surrogate-in-payload")
def _(world: World) -> tuple[bytes, int, str]:
    payload = canonical_bytes(dispatch_statement()).replace(b"SEGEL-ATTACK-1", b"SEGEL-\\ud800-1")
    return body_of(envelope(payload, KPU.key)), 422, "not-canonical"


@attack("unknown-statement-type")
def _(world: World) -> tuple[bytes, int, str]:
    found = dispatch_statement()
    found["type"] = "logistics.teleported"
    return body_of(envelope(found, KPU.key)), 422, "malformed-statement"


@attack("unknown-body-field")
def _(world: World) -> tuple[bytes, int, str]:
    found = dispatch_statement()
    found["body"]["bonus"] = "x"
    return body_of(envelope(found, KPU.key)), 422, "malformed-body"


@attack("oversized-body")
def _(world: World) -> tuple[bytes, int, str]:
    found = dispatch_statement()
    found["body"]["seals"] = [f"SEGEL-{n:05d}-" + "x" * 180 for n in range(64)] * 6
    return body_of(envelope(canonical_bytes(found), KPU.key)), 413, "body-too-large"


# Attacks whose bytes are not a JSON envelope object at all: inside a batch they make
# the whole batch malformed rather than one item; the size limit is per request.
NOT_AN_ITEM = {"duplicate-keys-in-envelope", "integer-beyond-2^53-in-envelope", "deep-nesting-in-envelope",
               "integer-of-5000-digits-in-envelope", "invalid-utf8-in-envelope", "oversized-body"}  # fmt: skip


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_and_nothing_recorded(world: World, name: str) -> None:
    body, status, code = ATTACKS[name](world)
    assert_refused(world, body, status, code)


@pytest.mark.parametrize("name", [n for n in ATTACKS if n not in NOT_AN_ITEM])
def test_attack_inside_a_batch_is_refused_and_nothing_recorded(world: World, name: str) -> None:
    body, status, code = ATTACKS[name](world)
    assert_refused_in_batch(world, body, status, code)


@pytest.mark.parametrize("name", sorted(NOT_AN_ITEM - {"oversized-body"}))
def test_malformed_bytes_make_the_whole_batch_malformed(world: World, name: str) -> None:
    body, _, _ = ATTACKS[name](world)
    assert_refused(world, b"[" + body + b"]", 422, "malformed-envelope", path="/v1/statements/batch")


def test_replayed_envelope_gets_its_first_receipt_and_records_nothing(world: World) -> None:
    """A replay is not a new statement: the ledger answers 200 with the receipt it gave
    the first time (same index and leaf) and records nothing, alone or in a batch."""
    entry = world.client.get("/v1/log/entries/5").json()
    before = world.counts()
    for _ in range(2):
        response = world.client.post("/v1/statements", content=body_of(entry["envelope"]))
        assert response.status_code == 200, response.text
        assert response.json()["index"] == 5
        batch = world.client.post("/v1/statements/batch", content=b"[" + body_of(entry["envelope"]) + b"]")
        assert [(i["status"], i["receipt"]["index"]) for i in batch.json()] == [(200, 5)]
    assert world.counts() == before


def test_replayed_statement_id_with_other_content_is_refused(world: World) -> None:
    """The attacker re-signs with KPU's own key (a compromised client) a different statement
    under an id already in the log: duplicate-statement-id, nothing recorded."""
    entry = world.client.get("/v1/log/entries/20").json()
    taken = json.loads(decode_b64(entry["envelope"]["payload"]))["id"]
    found = dispatch_statement()
    found["id"] = taken
    assert_refused(world, body_of(envelope(found, KPU.key)), 409, "duplicate-statement-id")


def test_genuine_versions_of_the_attacked_statements_are_accepted(tmp_path: Path, world: World) -> None:
    """Control: the statements the attacks start from are acceptable as such, so each
    refusal above is the attack's doing. (On a separate copy: this one records.)"""
    home = tmp_path / "home"
    shutil.copytree(world.home, home, ignore=shutil.ignore_patterns("*.writer-lock"))
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as client:
        a = world.sent["attack-a"]
        subject = json.loads(a.payload)["subject"]
        pledge = {"region": "18.72.01", "institution": "ppk", "undertakings": ["no_taking_sides"],
                  "text": "Ikrar netralitas.", "valid_until": "2030-01-01T00:00:00Z"}  # fmt: skip
        witness = SCENARIO.signer("perludem")  # an observer for ID
        for document in (
            envelope(dispatch_statement(), KPU.key),
            envelope(receipt_statement(subject, a.digest), PPK.key),
            envelope(statement(PPK, "pledge.made", f"pledge-ok-{uuid.uuid4().hex[:8]}", pledge), PPK.key),
            envelope(statement(witness, "logistics.witnessed", "out.18.72.01", {"region": "18.72.01"},
                               refs=[world.ledger.consignment("out.18.72.01").dispatch_digest]), witness.key),
        ):  # fmt: skip
            response = client.post("/v1/statements", content=body_of(document))
            assert response.status_code == 201, response.text


@pytest.mark.parametrize("who", ["unregistered-name", "registered-name-unregistered-key", "not-a-witness"])
def test_cosignature_by_an_unregistered_witness_key_is_refused(world: World, who: str) -> None:
    note = world.client.get("/v1/log/checkpoint").text
    name, key = {
        "unregistered-name": ("witness-palsu", Ed25519PrivateKey.generate()),
        "registered-name-unregistered-key": ("witness-perludem", Ed25519PrivateKey.generate()),
        "not-a-witness": ("kpu-18.72", KPU.key),  # a registered key, but no witness mandate
    }[who]
    line = notes.cosign(note, name=name, key=key, timestamp=int(time.time()))
    problem = assert_refused(world, json.dumps({"cosignature": line}).encode(), 422, "bad-cosignature",
                             path="/v1/log/cosignatures")  # fmt: skip
    assert name in problem["detail"]
    assert world.client.get("/v1/log/checkpoint").text == note

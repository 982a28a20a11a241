"""DSSE v1 envelopes over RFC 8785 statements, signed with Ed25519 (SPEC §2).

The public functions here are the only way Saksi builds, signs, parses and
verifies envelopes; the CLI, the client, the ledger and the tests all use them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger import ed25519
from ledger.canonical import JSONRefused, canonical_bytes, loads_canonical, strict_loads
from ledger.errors import BadSignature, EnvelopeTooLarge, MalformedEnvelope, NotCanonical
from ledger.statements import Statement, check_size, format_time

PAYLOAD_TYPE = "application/vnd.saksi.statement+json"
MAX_ENVELOPE_BYTES = 64 * 1024


def decode_b64(text: str) -> bytes:
    """Canonical standard base64 with padding (RFC 4648 §4); raises ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("base64 must be a string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not standard base64 with padding") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64 (non-zero padding bits)")
    return raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def raw_public_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """Hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()


def statement_digest(payload: bytes) -> str:
    """``sha256:`` + hex SHA-256 of the statement's canonical bytes."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed DSSE envelope with exactly one signature."""

    payload: bytes
    keyid: str
    sig: bytes
    payload_type: str = PAYLOAD_TYPE

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": b64(self.payload),
            "signatures": [{"keyid": self.keyid, "sig": b64(self.sig)}],
        }

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_json())

    def __reduce__(self) -> tuple[type[Envelope], tuple[bytes, str, bytes, str]]:
        # A frozen slots dataclass pickles through dataclasses.fields() on both sides; the
        # audit's parse workers send one envelope per entry back to the auditing process.
        return Envelope, (self.payload, self.keyid, self.sig, self.payload_type)

    @property
    def digest(self) -> str:
        return statement_digest(self.payload)


def new_statement_id() -> str:
    return str(uuid.uuid4())


def now_time() -> str:
    return format_time(datetime.now(UTC))


def complete_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """Fill ``v``, ``id`` and ``issued_at`` when absent (what ``saksi sign`` does)."""
    filled = dict(statement)
    filled.setdefault("v", 1)
    filled.setdefault("id", new_statement_id())
    filled.setdefault("issued_at", now_time())
    return filled


def sign_statement(statement: dict[str, Any], key: Ed25519PrivateKey) -> Envelope:
    """Canonicalise ``statement`` and sign it. The statement is not validated here,
    except for its size: one past MAX_STATEMENT_BYTES could never be submitted."""
    try:
        payload = canonical_bytes(statement)
    except JSONRefused as error:
        raise NotCanonical(str(error)) from None
    check_size(payload)
    return Envelope(
        payload=payload,
        keyid=key_id(raw_public_key(key)),
        sig=key.sign(pae(PAYLOAD_TYPE, payload)),
    )


def parse_envelope(data: bytes | str | dict[str, Any]) -> Envelope:
    """Parse an envelope strictly (SPEC §2): exactly its fields, one signature,
    canonical base64, lowercase hex key id, our payload type.

    Raises MalformedEnvelope.
    """
    if isinstance(data, bytes | str):
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeTooLarge(f"envelope larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            data = strict_loads(data)
        except JSONRefused as error:
            raise MalformedEnvelope(str(error)) from None
    if not isinstance(data, dict):
        raise MalformedEnvelope("an envelope is a JSON object")
    if set(data) != {"payloadType", "payload", "signatures"}:
        raise MalformedEnvelope(
            "an envelope has exactly payloadType, payload and signatures",
            fields=sorted(map(str, data)),
        )
    if data["payloadType"] != PAYLOAD_TYPE:
        raise MalformedEnvelope(f"payloadType must be {PAYLOAD_TYPE}")
    signatures = data["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise MalformedEnvelope("exactly one signature per envelope")
    signature = signatures[0]
    if not isinstance(signature, dict) or set(signature) != {"keyid", "sig"}:
        raise MalformedEnvelope("a signature has exactly keyid and sig")
    keyid = signature["keyid"]
    if not isinstance(keyid, str) or len(keyid) != 64 or keyid.strip("0123456789abcdef"):
        raise MalformedEnvelope("keyid must be 64 lowercase hex digits")
    try:
        payload = decode_b64(data["payload"])
        sig = decode_b64(signature["sig"])
    except ValueError as error:
        raise MalformedEnvelope(f"payload or sig: {error}") from None
    if len(sig) != 64:
        raise MalformedEnvelope("an Ed25519 signature is 64 bytes")
    envelope = Envelope(payload=payload, keyid=keyid, sig=sig)
    # Parsed objects (a batch's items) are bounded like bytes: by their canonical size.
    if len(data["payload"]) > MAX_ENVELOPE_BYTES - 256 and len(envelope.canonical()) > MAX_ENVELOPE_BYTES:
        raise EnvelopeTooLarge(f"envelope larger than {MAX_ENVELOPE_BYTES} bytes")
    return envelope


def decode_statement(envelope: Envelope) -> Statement:
    """The envelope's statement, after checking its payload is canonical JSON.

    Raises NotCanonical, MalformedStatement or MalformedBody. (``loads_canonical``
    says how the canonical form is checked without writing it with rfc8785.)
    """
    try:
        value, canonical = loads_canonical(envelope.payload)
    except JSONRefused as error:
        raise NotCanonical(f"payload: {error}") from None
    if not canonical:
        raise NotCanonical("payload is not in RFC 8785 canonical form")
    return Statement.parse(value, payload=envelope.payload, digest=envelope.digest)


def verify_signature(envelope: Envelope, public_key: bytes) -> None:
    """Check the signature over PAE(payloadType, payload) with ``public_key``.

    Requires ``envelope.keyid == key_id(public_key)``. Raises BadSignature.
    """
    if key_id(public_key) != envelope.keyid:
        raise BadSignature("keyid does not match the key", keyid=envelope.keyid)
    try:  # cryptography's verdicts, libsodium's speed (ledger/ed25519.py)
        ed25519.verify(public_key, pae(envelope.payload_type, envelope.payload), envelope.sig)
    except ed25519.InvalidSignature:
        raise BadSignature("signature does not verify", keyid=envelope.keyid) from None

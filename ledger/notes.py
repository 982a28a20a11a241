"""Signed checkpoints, witness cosignatures, receipts and consistency proofs (SPEC §5–7).

C2SP signed-note, tlog-checkpoint, tlog-cosignature (Ed25519, type 0x04) and
tlog-proof, with SPEC's tighter rules: the checkpoint body is exactly three lines
(no extension lines), the log's key name is its origin, every receipt has an
``extra`` line, and a consistency proof from size 0 is refused. Base64 is standard,
padded and canonical (zero padding bits); hex is lowercase.

Errors: a malformed or badly signed note raises ``NoteError``; a malformed receipt
or consistency object, or a failed inclusion proof, ``ProofError``; a consistency
proof that does not hold, ``InconsistentCheckpoint``. Functions that *produce*
text raise ``ValueError`` for arguments they cannot encode.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import InconsistentCheckpoint, NoteError, ProofError, VerificationError
from ledger.merkle import HASH_SIZE, leaf_hash, verify_consistency, verify_inclusion

LOG_KEY_TYPE = 0x01  # signed-note "Ed25519 signatures"; SPEC §5
COSIGNATURE_KEY_TYPE = 0x04  # tlog-cosignature, timestamped Ed25519; SPEC §6
RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"  # SPEC §7
MAX_SIGNATURES = 100  # signed-note: verifiers must accept at least 16
MAX_PROOF_HASHES = 64  # enough for any tree of fewer than 2^64 leaves
MAX_TREE_SIZE = 2**64 - 1
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: "MUST NOT exceed 2^63 - 1"

_COSIGNATURE_SIZE = 8 + 64  # big-endian time || Ed25519 signature
_SIGNATURE_LINE = re.compile(r"\u2014 ([^ ]+) ([A-Za-z0-9+/=]+)")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # signed-note: no controls but newline


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str, error: type[VerificationError], size: int | None = None) -> bytes:
    """Decode canonical standard base64 (padded, zero padding bits) or raise ``error``."""
    data = base64.b64decode(text, validate=True) if _BASE64.fullmatch(text) else None
    if data is None or _b64(data) != text:
        raise error(f"{what} is not canonical base64", found=text[:100])
    if size is not None and len(data) != size:
        raise error(f"{what} must be {size} bytes", expected=size, found=len(data))
    return data


def _decimal(text: str, what: str, error: type[VerificationError]) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_TREE_SIZE:
        raise error(f"{what} is not a decimal without leading zeros", found=text[:40])
    return int(text)


def _valid_name(name: str) -> bool:
    """signed-note: a key name is non-empty, without Unicode spaces, '+' or controls."""
    return bool(name) and not any(c.isspace() or c < " " or c == "+" for c in name)


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- Key ids and verifier keys (signed-note "Signatures"; SPEC §5–6) ---


def note_key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """The 4-byte key id ``SHA-256(name || 0x0A || type || public key)[:4]`` (SPEC §5)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A parsed vkey ``name+hex(key id)+base64(type || key)`` holding an Ed25519 key."""

    name: str
    key_id: bytes
    key_type: int
    public_key: bytes

    def __str__(self) -> str:
        return format_vkey(self.name, self.public_key, key_type=self.key_type)


def _verifies(key: VerifierKey, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def format_vkey(name: str, public_key: bytes, key_type: int = LOG_KEY_TYPE) -> str:
    """``name+hex(key id)+base64(type || key)``. Raises ValueError for a bad name or key."""
    if not _valid_name(name):
        raise ValueError(f"invalid key name {name!r}")
    if key_type not in (LOG_KEY_TYPE, COSIGNATURE_KEY_TYPE) or len(public_key) != 32:
        raise ValueError("only 32-byte Ed25519 keys of type 0x01 or 0x04 are supported")
    key_id = note_key_id(name, key_type, public_key)
    return f"{name}+{key_id.hex()}+{_b64(bytes([key_type]) + public_key)}"


def parse_vkey(text: str) -> VerifierKey:
    """Parse a vkey, checking the name, an 8-digit lowercase hex id, canonical base64,
    type 0x01 or 0x04, a 32-byte key, and that the id matches. Raises NoteError."""
    name, _, rest = text.partition("+")
    hex_id, _, encoded = rest.partition("+")
    if not _valid_name(name) or not _HEX_KEY_ID.fullmatch(hex_id):
        raise NoteError("malformed verifier key", found=text[:200])
    raw = _unb64(encoded, "verifier key", NoteError, size=33)
    key_type, public_key = raw[0], raw[1:]
    if key_type not in (LOG_KEY_TYPE, COSIGNATURE_KEY_TYPE):
        raise NoteError("unsupported verifier key type", expected=[1, 4], found=key_type)
    key_id = note_key_id(name, key_type, public_key)
    if key_id.hex() != hex_id:
        raise NoteError("verifier key id does not match", expected=key_id.hex(), found=hex_id)
    return VerifierKey(name, key_id, key_type, public_key)


def _as_key(key: VerifierKey | str, key_type: int, role: str) -> VerifierKey:
    parsed = parse_vkey(key) if isinstance(key, str) else key
    if parsed.key_type != key_type:
        raise NoteError(f"{role} key has the wrong type", expected=key_type, found=parsed.key_type)
    return parsed


# --- Checkpoint body (SPEC §5; tlog-checkpoint "Note text") ---


@dataclass(frozen=True)
class Checkpoint:
    """A tree head. Requires a valid key name as origin, 0 <= size < 2^64 and a
    32-byte root, else ValueError."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not (_valid_name(self.origin) and 0 <= self.size <= MAX_TREE_SIZE
                and len(self.root) == HASH_SIZE):
            raise ValueError(f"invalid checkpoint {self.origin!r} {self.size!r}")

    def body(self) -> bytes:
        """Exactly three newline-terminated lines: origin, decimal size, base64 root."""
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n".encode()

    @classmethod
    def parse_body(cls, body: bytes | str) -> Checkpoint:
        """Strict inverse of ``body()``; anything else, extension lines included
        (SPEC §5: exactly three lines), raises NoteError."""
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            raise NoteError("checkpoint body is not UTF-8") from None
        lines = text[:-1].split("\n") if text.endswith("\n") else []
        if len(lines) != 3:
            raise NoteError("checkpoint body must be exactly three newline-terminated lines")
        origin, size, root = lines
        if not _valid_name(origin):
            raise NoteError("invalid checkpoint origin", found=origin[:200])
        return cls(origin, _decimal(size, "tree size", NoteError),
                   _unb64(root, "root hash", NoteError, size=HASH_SIZE))


def _checkpoint_of(value: Checkpoint | str) -> Checkpoint:
    if isinstance(value, Checkpoint):
        return value
    return parse_note(value).checkpoint if "\n\n" in value else Checkpoint.parse_body(value)


# --- Signed notes (signed-note "Format"; SPEC §5–6) ---


@dataclass(frozen=True)
class NoteSignature:
    """One signature line ``— <name> base64(key id || signature)``."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"\u2014 {self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Cosignature:
    """A cosignature/v1 line: key id || 8-byte big-endian UNIX time || signature."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def line(self) -> str:
        payload = self.timestamp.to_bytes(8, "big") + self.signature
        return NoteSignature(self.name, self.key_id, payload).line()


def _as_cosignature(sig: NoteSignature) -> Cosignature:
    if len(sig.signature) != _COSIGNATURE_SIZE:
        raise NoteError("not a cosignature line", name=sig.name)
    return Cosignature(sig.name, sig.key_id, int.from_bytes(sig.signature[:8], "big"),
                       sig.signature[8:])


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint note. ``signatures`` is every signature line in order.

    From ``parse_note`` (nothing verified): ``log_signature`` is the first 64-byte
    signature named by the origin, ``cosignatures`` every cosignature-shaped line.
    From ``verify_checkpoint``: the verified log signature and one verified
    cosignature per witness name.
    """

    checkpoint: Checkpoint
    note: str
    log_signature: NoteSignature
    cosignatures: tuple[Cosignature, ...]
    signatures: tuple[NoteSignature, ...]


def _parse_signature_line(line: str) -> NoteSignature:
    match = _SIGNATURE_LINE.fullmatch(line)
    if not match or not _valid_name(match[1]):
        raise NoteError("malformed signature line", found=line[:200])
    raw = _unb64(match[2], "signature", NoteError)
    if len(raw) < 5:
        raise NoteError("signature too short", found=line[:200])
    return NoteSignature(match[1], raw[:4], raw[4:])


@lru_cache(maxsize=64)  # receipts parse the same latest note once per entry
def parse_note(text: str) -> SignedCheckpoint:
    """Parse a checkpoint note strictly; verifies nothing. Raises NoteError for a
    missing blank line, a malformed body or signature line, non-canonical base64,
    control characters, over MAX_SIGNATURES lines, or no 64-byte line by the origin."""
    if _CONTROL.search(text):
        raise NoteError("note contains control characters")
    separator = text.rfind("\n\n")  # signed-note: the last empty line ends the text
    if separator < 0:
        raise NoteError("note has no blank line before its signatures")
    checkpoint = Checkpoint.parse_body(text[: separator + 1])
    block = text[separator + 2 :]
    lines = block[:-1].split("\n") if block.endswith("\n") else []
    if not 0 < len(lines) <= MAX_SIGNATURES:
        raise NoteError(f"note needs 1 to {MAX_SIGNATURES} newline-terminated signature lines")
    signatures = tuple(_parse_signature_line(line) for line in lines)
    by_log = [s for s in signatures if s.name == checkpoint.origin and len(s.signature) == 64]
    if not by_log:
        raise NoteError("note has no signature named by its origin", origin=checkpoint.origin)
    cosignatures = [_as_cosignature(s) for s in signatures if len(s.signature) == _COSIGNATURE_SIZE]
    return SignedCheckpoint(checkpoint, text, by_log[0], tuple(cosignatures), signatures)


def sign_note(text: str, *, name: str, key: Ed25519PrivateKey) -> str:
    """Sign newline-terminated ``text`` as a signed note with Ed25519 key ``name`` (type
    0x01): the text, a blank line, the signature line. Raises ValueError."""
    if not text.endswith("\n") or not _valid_name(name):
        raise ValueError("note text must end in a newline and the key name be valid")
    key_id = note_key_id(name, LOG_KEY_TYPE, _public(key))
    return text + "\n" + NoteSignature(name, key_id, key.sign(text.encode())).line()


def sign_checkpoint(checkpoint: Checkpoint, *, origin_key: Ed25519PrivateKey) -> str:
    """The checkpoint note signed by the log, whose key name is the origin (SPEC §5)."""
    return sign_note(checkpoint.body().decode(), name=checkpoint.origin, key=origin_key)


def _cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    # SPEC §6; tlog-cosignature "Ed25519 signed message"
    return f"cosignature/v1\ntime {timestamp}\n".encode() + checkpoint.body()


def _verified_cosignature(sig: NoteSignature, cp: Checkpoint, key: VerifierKey) -> Cosignature:
    cosig = _as_cosignature(sig)
    if cosig.timestamp > MAX_TIMESTAMP or not _verifies(
        key, cosig.signature, _cosigned_message(cp, cosig.timestamp)
    ):
        raise NoteError("cosignature does not verify", name=sig.name, key_id=sig.key_id.hex())
    return cosig


def verify_checkpoint(text: str, *, log_key: VerifierKey | str,
                      witness_keys: Iterable[VerifierKey | str] = (),
                      min_cosignatures: int = 0) -> SignedCheckpoint:
    """Verify a checkpoint note by the log key and the given witness keys.

    Every line whose name and key id match a given key must verify; lines by other
    keys are ignored (signed-note). Requires a verifying log signature and
    cosignatures by at least ``min_cosignatures`` distinct witnesses (by name).
    Raises NoteError.
    """
    log = _as_key(log_key, LOG_KEY_TYPE, "log")
    witnesses: dict[tuple[str, bytes], VerifierKey] = {}
    for given in witness_keys:
        witness = _as_key(given, COSIGNATURE_KEY_TYPE, "witness")
        if witnesses.setdefault((witness.name, witness.key_id), witness) != witness:
            raise NoteError("ambiguous witness key", name=witness.name,
                            key_id=witness.key_id.hex())
    signed = parse_note(text)
    cp = signed.checkpoint
    # 1. The log's key name is the origin (SPEC §5).
    if log.name != cp.origin:
        raise NoteError("origin is not the log key's name", expected=log.name, found=cp.origin)
    log_signature: NoteSignature | None = None
    cosignatures: dict[str, Cosignature] = {}
    for sig in signed.signatures:
        if (sig.name, sig.key_id) == (log.name, log.key_id):
            # 2. Every line by the log key verifies over the body (SPEC §5).
            if len(sig.signature) != 64 or not _verifies(log, sig.signature, cp.body()):
                raise NoteError("log signature does not verify", origin=cp.origin)
            log_signature = log_signature or sig
        elif (key := witnesses.get((sig.name, sig.key_id))) is not None:
            # 3. Every line by a given witness key verifies as cosignature/v1 (SPEC §6).
            cosignatures.setdefault(sig.name, _verified_cosignature(sig, cp, key))
        # 4. Lines by unknown keys are ignored (signed-note "Signatures").
    if log_signature is None:
        raise NoteError("note has no signature by the log key", expected=str(log))
    if len(cosignatures) < min_cosignatures:
        raise NoteError("too few witness cosignatures", expected=min_cosignatures,
                        found=len(cosignatures))
    return replace(signed, log_signature=log_signature, cosignatures=tuple(cosignatures.values()))


# --- Cosigning (SPEC §6) ---


def cosign(checkpoint: Checkpoint | str, *, name: str, key: Ed25519PrivateKey,
           timestamp: int) -> str:
    """Witness ``name``'s newline-terminated cosignature line over a checkpoint given as
    a Checkpoint, a body or a note (whose signatures are not checked here). Raises
    NoteError for a malformed body or note, ValueError for a bad name or timestamp."""
    cp = _checkpoint_of(checkpoint)
    if not _valid_name(name) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("invalid witness name or timestamp")
    key_id = note_key_id(name, COSIGNATURE_KEY_TYPE, _public(key))
    return Cosignature(name, key_id, timestamp, key.sign(_cosigned_message(cp, timestamp))).line()


def verify_cosignature_line(line: str, checkpoint: Checkpoint | str,
                            vkey: VerifierKey | str) -> int:
    """Verify one cosignature line (newline optional) by ``vkey`` over ``checkpoint``
    (a Checkpoint, body or note); returns its UNIX time. Raises NoteError."""
    key = _as_key(vkey, COSIGNATURE_KEY_TYPE, "witness")
    sig = _parse_signature_line(line.removesuffix("\n"))
    if (sig.name, sig.key_id) != (key.name, key.key_id):
        raise NoteError("cosignature is not by this key", expected=f"{key.name}+{key.key_id.hex()}",
                        found=f"{sig.name}+{sig.key_id.hex()}")
    return _verified_cosignature(sig, _checkpoint_of(checkpoint), key).timestamp


def add_cosignatures(note_text: str, lines: Iterable[str]) -> str:
    """The note with cosignature ``lines`` (newline optional) after the log's lines.

    Cosignatures are deduplicated by (name, key id), keeping the first seen (those
    already in the note first), and sorted by name then key id. Nothing is
    verified: check each line with ``verify_cosignature_line`` first. Raises
    NoteError for a malformed note or line.
    """
    signed = parse_note(note_text)
    new = [_as_cosignature(_parse_signature_line(line.removesuffix("\n"))) for line in lines]
    unique: dict[tuple[str, bytes], Cosignature] = {}
    for cosig in (*signed.cosignatures, *new):
        unique.setdefault((cosig.name, cosig.key_id), cosig)
    others = [s.line() for s in signed.signatures if len(s.signature) != _COSIGNATURE_SIZE]
    ordered = others + [c.line() for c in sorted(unique.values(), key=lambda c: (c.name, c.key_id))]
    if len(ordered) > MAX_SIGNATURES:
        raise NoteError("too many signature lines", expected=MAX_SIGNATURES, found=len(ordered))
    return signed.checkpoint.body().decode() + "\n" + "".join(ordered)


# --- Receipts (SPEC §7; C2SP tlog-proof) ---


@dataclass(frozen=True)
class Receipt:
    """A tlog-proof: the entry's leaf bytes (``extra``), its index, its inclusion proof
    (leaf's sibling first) and the checkpoint note it is proven against."""

    leaf_bytes: bytes
    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str


def _check_hashes(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in proof):
        raise ValueError("a proof is at most 64 hashes of 32 bytes")


def format_receipt(*, leaf_bytes: bytes, index: int, proof: Sequence[bytes],
                   checkpoint_note: str) -> str:
    """The ``.tlog-proof`` text of SPEC §7. Raises NoteError for a malformed note,
    ValueError for empty leaf bytes, an index out of range or a malformed proof."""
    parse_note(checkpoint_note)
    _check_hashes(proof)
    if not leaf_bytes or not 0 <= index <= MAX_TREE_SIZE:
        raise ValueError("leaf bytes must be non-empty and the index in range")
    lines = [RECEIPT_HEADER, f"extra {_b64(leaf_bytes)}", f"index {index}"]
    return "\n".join(lines + [_b64(h) for h in proof]) + "\n\n" + checkpoint_note


def parse_receipt(text: str) -> Receipt:
    """Parse a receipt strictly; verifies nothing. Raises ProofError for a bad header,
    extra, index or proof line, NoteError for a malformed checkpoint note."""
    head, separator, note = text.partition("\n\n")
    lines = head.split("\n")
    if not separator or len(lines) < 3 or lines[0] != RECEIPT_HEADER:
        raise ProofError("not a c2sp.org/tlog-proof@v1 receipt")
    if not lines[1].startswith("extra ") or not lines[2].startswith("index "):
        raise ProofError("a receipt needs an extra line, then an index line (SPEC §7)")
    leaf_bytes = _unb64(lines[1][6:], "extra", ProofError)
    index = _decimal(lines[2][6:], "index", ProofError)
    if not leaf_bytes or len(lines) - 3 > MAX_PROOF_HASHES:
        raise ProofError("empty extra or over-long inclusion proof")
    proof = tuple(_unb64(line, "proof hash", ProofError, size=HASH_SIZE) for line in lines[3:])
    parse_note(note)
    return Receipt(leaf_bytes, index, proof, note)


def verify_receipt(text: str, *, log_key: VerifierKey | str,
                   witness_keys: Iterable[VerifierKey | str] = (),
                   min_cosignatures: int = 0) -> Receipt:
    """Verify a receipt: its checkpoint as ``verify_checkpoint`` does, then the inclusion
    of ``leaf_hash(extra)`` at ``index``. Raises NoteError or ProofError."""
    receipt = parse_receipt(text)
    # 1. The checkpoint is the log's, cosigned as asked (SPEC §5–6).
    cp = verify_checkpoint(receipt.checkpoint_note, log_key=log_key, witness_keys=witness_keys,
                           min_cosignatures=min_cosignatures).checkpoint
    # 2. The index lies inside the checkpointed tree.
    if receipt.index >= cp.size:
        raise ProofError("index is not below the tree size", index=receipt.index, found=cp.size)
    # 3. The leaf hash comes from the extra bytes (SPEC §7) and is included (RFC 9162 §2.1.3.2).
    verify_inclusion(leaf_hash(receipt.leaf_bytes), receipt.index, cp.size, receipt.proof,
                     cp.root)
    return receipt


# --- Consistency proofs (SPEC §7) ---

_CONSISTENCY_FIELDS = frozenset({"old", "new", "proof"})


def format_consistency(old_note: str, new_note: str, proof: Sequence[bytes]) -> dict[str, Any]:
    """``{"old": note, "new": note, "proof": [base64, …]}`` (SPEC §7). Raises NoteError
    for a malformed note, ValueError for a malformed proof."""
    parse_note(old_note)
    parse_note(new_note)
    _check_hashes(proof)
    return {"old": old_note, "new": new_note, "proof": [_b64(h) for h in proof]}


def verify_consistency_proof(obj: Mapping[str, Any], *, log_key: VerifierKey | str) -> None:
    """Verify a consistency object: both checkpoints signed by ``log_key``, one origin,
    0 < old size <= new size, and the proof holds. Raises ProofError for a malformed
    object (unknown or missing fields, bad hashes, old size 0, old larger than new),
    NoteError for a bad checkpoint, InconsistentCheckpoint when the proof fails."""
    # 1. The field set is closed (SPEC §1, §7).
    if not isinstance(obj, Mapping) or set(obj) != _CONSISTENCY_FIELDS:
        found = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
        raise ProofError("a consistency proof has exactly old, new and proof",
                         expected=sorted(_CONSISTENCY_FIELDS), found=found)
    old_note, new_note, proof = obj["old"], obj["new"], obj["proof"]
    if not (isinstance(old_note, str) and isinstance(new_note, str) and isinstance(proof, list)
            and all(isinstance(h, str) for h in proof) and len(proof) <= MAX_PROOF_HASHES):
        raise ProofError("consistency proof fields have the wrong types")
    hashes = [_unb64(h, "proof hash", ProofError, size=HASH_SIZE) for h in proof]
    # 2. Both checkpoints are the log's (SPEC §5).
    old = verify_checkpoint(old_note, log_key=log_key).checkpoint
    new = verify_checkpoint(new_note, log_key=log_key).checkpoint
    if old.origin != new.origin:
        raise ProofError("checkpoints of different logs", expected=old.origin, found=new.origin)
    # 3. A proof from size 0 is meaningless and refused (SPEC §7).
    if old.size == 0 or old.size > new.size:
        raise ProofError("consistency needs 0 < old size <= new size",
                         old_size=old.size, new_size=new.size)
    # 4. The proof holds (SPEC §4; RFC 9162 §2.1.4.2).
    try:
        verify_consistency(old.size, new.size, old.root, new.root, hashes)
    except ProofError as error:
        raise InconsistentCheckpoint("checkpoints are not consistent", old_size=old.size,
                                     new_size=new.size, reason=error.message) from error

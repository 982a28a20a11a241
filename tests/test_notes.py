"""Tests for ledger.notes: key ids and vkeys, checkpoints, cosignatures, receipts, consistency."""

from __future__ import annotations

import base64
import dataclasses
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InconsistentCheckpoint, NoteError, ProofError
from ledger.notes import (
    COSIGNATURE_KEY_TYPE,
    LOG_KEY_TYPE,
    Checkpoint,
    add_cosignatures,
    cosign,
    format_consistency,
    format_receipt,
    format_vkey,
    note_key_id,
    parse_note,
    parse_receipt,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_consistency_proof,
    verify_cosignature_line,
    verify_receipt,
)

# --- A slow, obviously correct reference: RFC 6962 §2.1 transcribed (independent of merkle) --


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)  # largest power of two below n


def ref_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0]).digest()
    k = _split(len(leaves))
    return sha256(b"\x01" + ref_root(leaves[:k]) + ref_root(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_root(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_root(leaves[:k])]


def ref_consistency(m: int, leaves: list[bytes], whole: bool = True) -> list[bytes]:
    if m == len(leaves):
        return [] if whole else [ref_root(leaves)]
    k = _split(len(leaves))
    if m <= k:
        return ref_consistency(m, leaves[:k], whole) + [ref_root(leaves[k:])]
    return ref_consistency(m - k, leaves[k:], False) + [ref_root(leaves[:k])]


# --- Fixtures as module constants (hypothesis refuses function-scoped fixtures) ----------------


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


ORIGIN = "saksi.example/log"
LOG = _key(1)
LOG_VKEY = format_vkey(ORIGIN, _raw(LOG))
WITNESS_A, WITNESS_B, STRANGER = _key(2), _key(3), _key(4)
VKEY_A = format_vkey("bawaslu", _raw(WITNESS_A), key_type=COSIGNATURE_KEY_TYPE)
VKEY_B = format_vkey("observer-1", _raw(WITNESS_B), key_type=COSIGNATURE_KEY_TYPE)
T = 1_700_000_000

LEAVES = [f'{{"index":{i},"entry":"e{i}"}}'.encode() for i in range(7)]
CHECKPOINT = Checkpoint(ORIGIN, len(LEAVES), ref_root(LEAVES))
NOTE = sign_checkpoint(CHECKPOINT, origin_key=LOG)


def _note_for(size: int, key: Ed25519PrivateKey = LOG) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, ref_root(LEAVES[:size])), origin_key=key)


# --- Key ids and vkeys (SPEC §5–6) -------------------------------------------------------------

# golang.org/x/mod/sumdb/note note_test.go: TestNewSigner, TestSign, TestOpen.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"


def test_key_id_is_sha256_prefix_of_name_newline_type_key() -> None:
    public = _raw(LOG)
    expected = sha256(ORIGIN.encode() + b"\x0a" + b"\x01" + public).digest()[:4]
    assert note_key_id(ORIGIN, LOG_KEY_TYPE, public) == expected
    vkey = f"{ORIGIN}+{expected.hex()}+" + base64.b64encode(b"\x01" + public).decode()
    assert format_vkey(ORIGIN, public) == vkey
    witness = sha256(b"bawaslu\n\x04" + _raw(WITNESS_A)).digest()[:4]
    assert parse_vkey(VKEY_A).key_id == witness


def test_go_sumdb_note_vector() -> None:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]  # 0x01 || seed
    key = Ed25519PrivateKey.from_private_bytes(seed)
    vkey = parse_vkey(GO_VKEY)
    assert (vkey.name, vkey.key_id.hex(), vkey.key_type) == ("PeterNeumann", "c74f20a3", 1)
    assert vkey.public_key == _raw(key)
    assert format_vkey("PeterNeumann", vkey.public_key) == GO_VKEY == str(vkey)
    assert sign_note(GO_TEXT, name="PeterNeumann", key=key) == GO_TEXT + "\n" + GO_SIG
    assert parse_vkey(GO_ENOCH).key_id.hex() == "af0cfe78"


def test_vkey_manglings_refused() -> None:
    # As TestNewVerifier: every proper substring and every single-character increment.
    for i in range(len(GO_VKEY) + 1):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(GO_VKEY[i:j])
    for i, char in enumerate(GO_VKEY):
        with pytest.raises(NoteError):
            parse_vkey(GO_VKEY[:i] + chr(ord(char) + 1) + GO_VKEY[i + 1 :])
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type
        GO_VKEY.replace("c74f20a3", "C74F20A3"),  # hex is lowercase
        " " + GO_VKEY,
        GO_VKEY + "\n",
    ]:
        with pytest.raises(NoteError):
            parse_vkey(bad)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\tb"])
def test_invalid_key_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        format_vkey(name, _raw(LOG))


# --- Checkpoints and signed notes (SPEC §5) ----------------------------------------------------


@given(
    origin=st.text(st.characters(categories=["L", "N", "P"], exclude_characters="+"), min_size=1),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_body_round_trip(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    body = checkpoint.body()
    assert body == f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()
    assert Checkpoint.parse_body(body) == checkpoint


def test_signed_note_shape_and_round_trip() -> None:
    body = CHECKPOINT.body().decode()
    assert NOTE.startswith(body + "\n\u2014 " + ORIGIN + " ")
    assert NOTE.endswith("\n") and NOTE.count("\n") == 5
    signed = verify_checkpoint(NOTE, log_key=LOG_VKEY)
    assert signed.checkpoint == CHECKPOINT and signed.note == NOTE
    assert signed.log_signature.key_id == parse_vkey(LOG_VKEY).key_id
    assert signed.cosignatures == ()
    assert parse_note(NOTE) == signed
    assert verify_checkpoint(NOTE, log_key=parse_vkey(LOG_VKEY)) == signed


def _mangled_notes() -> dict[str, str]:
    body = CHECKPOINT.body().decode()
    sig_line = NOTE[len(body) + 1 :]
    origin, size, root = body.splitlines()
    odd_root = base64.b64encode(CHECKPOINT.root).decode()[:-2] + "B="  # non-zero pad bits
    return {
        "extension-line": sign_note(body + "ext\n", name=ORIGIN, key=LOG),
        "missing-blank-line": body + sig_line,
        "two-blank-lines": body + "\n\n" + sig_line,
        "no-signature": body + "\n",
        "no-final-newline": NOTE[:-1],
        "crlf": NOTE.replace("\n", "\r\n"),
        "leading-zero-size": f"{origin}\n0{size}\n{root}\n\n{sig_line}",
        "plus-size": f"{origin}\n+{size}\n{root}\n\n{sig_line}",
        "non-canonical-root": f"{origin}\n{size}\n{odd_root}\n\n{sig_line}",
        "unpadded-root": f"{origin}\n{size}\n{root.rstrip('=')}\n\n{sig_line}",
        "short-root": sign_note(f"{origin}\n{size}\n{base64.b64encode(bytes(31)).decode()}\n",
                                name=ORIGIN, key=LOG),
        "trailing-space-origin": f"{origin} \n{size}\n{root}\n\n{sig_line}",
        "trailing-space-signature": NOTE[:-1] + " \n",
        "double-space-signature": NOTE.replace(f" {ORIGIN} ", f"  {ORIGIN} "),
        "hyphen-not-em-dash": NOTE.replace("\u2014", "-"),
        "tab": NOTE.replace(f"\u2014 {ORIGIN}", f"\u2014\t{ORIGIN}"),
        "unknown-line-shape": NOTE + "Unexpected line.\n",
        "bad-base64-signature": NOTE.replace(sig_line, sig_line[:-3] + "!=\n"),
        "unpadded-signature": f"{body}\n{sig_line[:-2]}\n",  # drops the '='
        "no-log-line": f"{body}\n\u2014 other.example {sig_line.split()[-1]}\n",
    }


@pytest.mark.parametrize("name", sorted(_mangled_notes()))
def test_mangled_note_refused(name: str) -> None:
    with pytest.raises(NoteError):
        verify_checkpoint(_mangled_notes()[name], log_key=LOG_VKEY)


def test_forged_or_altered_log_signature_refused() -> None:
    body = CHECKPOINT.body().decode()
    raw = bytearray(base64.b64decode(NOTE.split()[-1]))
    raw[10] ^= 1
    flipped = body + f"\n\u2014 {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    altered_body = NOTE.replace(f"\n{CHECKPOINT.size}\n", f"\n{CHECKPOINT.size + 1}\n")
    other_key = sign_checkpoint(CHECKPOINT, origin_key=STRANGER)  # same name, unknown key id
    for note in (flipped, altered_body, other_key):
        with pytest.raises(NoteError):
            verify_checkpoint(note, log_key=LOG_VKEY)
    # A second line by the log key that fails is refused even beside a good one.
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE + flipped[len(body) + 1 :], log_key=LOG_VKEY)
    # A checkpoint whose origin is not the log key's name is refused (SPEC §5).
    other = Checkpoint("other.example/log", 1, bytes(32))
    with pytest.raises(NoteError):
        verify_checkpoint(sign_checkpoint(other, origin_key=LOG),
                          log_key=format_vkey(ORIGIN, _raw(LOG)))


def test_key_types_are_enforced() -> None:
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE, log_key=format_vkey(ORIGIN, _raw(LOG), key_type=0x04))
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE, log_key=LOG_VKEY, witness_keys=[format_vkey("w", _raw(WITNESS_A))])


# --- Cosignatures (SPEC §6) --------------------------------------------------------------------


def _cosigned(*signers: tuple[str, Ed25519PrivateKey]) -> str:
    lines = [cosign(NOTE, name=name, key=key, timestamp=T) for name, key in signers]
    return add_cosignatures(NOTE, lines)


def test_cosignature_line_format_and_message() -> None:
    line = cosign(CHECKPOINT, name="bawaslu", key=WITNESS_A, timestamp=T)
    assert line == cosign(NOTE, name="bawaslu", key=WITNESS_A, timestamp=T)
    assert line == cosign(CHECKPOINT.body().decode(), name="bawaslu", key=WITNESS_A, timestamp=T)
    dash, name, value = line.removesuffix("\n").split(" ")
    raw = base64.b64decode(value)
    assert (dash, name, len(raw)) == ("\u2014", "bawaslu", 4 + 8 + 64)
    assert raw[:4] == parse_vkey(VKEY_A).key_id and raw[4:12] == T.to_bytes(8, "big")
    message = f"cosignature/v1\ntime {T}\n".encode() + CHECKPOINT.body()
    WITNESS_A.public_key().verify(raw[12:], message)  # raises if wrong
    assert verify_cosignature_line(line, CHECKPOINT, VKEY_A) == T
    assert verify_cosignature_line(line.removesuffix("\n"), NOTE, VKEY_A) == T
    with pytest.raises(NoteError):
        verify_cosignature_line(line, CHECKPOINT, VKEY_B)  # another key
    with pytest.raises(NoteError):
        verify_cosignature_line(line, dataclasses.replace(CHECKPOINT, size=6), VKEY_A)


def test_cosignatures_verify_and_count() -> None:
    note = _cosigned(("observer-1", WITNESS_B), ("bawaslu", WITNESS_A))
    lines = note.splitlines()
    assert lines[4].startswith(f"\u2014 {ORIGIN} ")  # the log's line first
    assert [line.split()[1] for line in lines[5:]] == ["bawaslu", "observer-1"]
    signed = verify_checkpoint(note, log_key=LOG_VKEY, witness_keys=[VKEY_A, VKEY_B],
                               min_cosignatures=2)
    assert sorted(c.name for c in signed.cosignatures) == ["bawaslu", "observer-1"]
    assert all(c.timestamp == T for c in signed.cosignatures)
    with pytest.raises(NoteError):
        verify_checkpoint(note, log_key=LOG_VKEY, witness_keys=[VKEY_A, VKEY_B],
                          min_cosignatures=3)
    with pytest.raises(NoteError):  # only the given witnesses count
        verify_checkpoint(note, log_key=LOG_VKEY, witness_keys=[VKEY_A], min_cosignatures=2)
    # The same witness twice (and the same line twice) counts once.
    again = cosign(NOTE, name="bawaslu", key=WITNESS_A, timestamp=T + 60)
    twice = add_cosignatures(note, [again, again])
    assert twice.count("bawaslu") == 1  # deduplicated by (name, key id), first kept
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE + again + again, log_key=LOG_VKEY, witness_keys=[VKEY_A],
                          min_cosignatures=2)


def test_add_cosignatures_is_order_independent() -> None:
    a = cosign(NOTE, name="bawaslu", key=WITNESS_A, timestamp=T)
    b = cosign(NOTE, name="observer-1", key=WITNESS_B, timestamp=T)
    assert add_cosignatures(NOTE, [a, b]) == add_cosignatures(add_cosignatures(NOTE, [b]), [a])
    assert add_cosignatures(NOTE, []) == NOTE
    with pytest.raises(NoteError):
        add_cosignatures(NOTE, [NOTE.splitlines()[-1]])  # a log signature is no cosignature


def test_unknown_cosigner_ignored_known_bad_refused() -> None:
    unknown = _cosigned(("stranger", STRANGER))
    signed = verify_checkpoint(unknown, log_key=LOG_VKEY, witness_keys=[VKEY_A])
    assert signed.cosignatures == ()
    # A known witness name with another key (another key id) is an unknown key: ignored.
    impostor = _cosigned(("bawaslu", STRANGER))
    assert verify_checkpoint(impostor, log_key=LOG_VKEY, witness_keys=[VKEY_A]).cosignatures == ()
    # A known key whose signature fails is refused.
    good = cosign(NOTE, name="bawaslu", key=WITNESS_A, timestamp=T)
    raw = base64.b64decode(good.split()[-1])
    for bad_raw in (raw[:4] + (T + 1).to_bytes(8, "big") + raw[12:],  # time altered
                    raw[:-1] + bytes([raw[-1] ^ 1]),  # signature altered
                    raw[:-1]):  # truncated
        bad = f"\u2014 bawaslu {base64.b64encode(bad_raw).decode()}\n"
        with pytest.raises(NoteError):
            verify_checkpoint(NOTE + bad, log_key=LOG_VKEY, witness_keys=[VKEY_A])
    # A cosignature of another checkpoint is refused.
    elsewhere = cosign(_note_for(6), name="bawaslu", key=WITNESS_A, timestamp=T)
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE + elsewhere, log_key=LOG_VKEY, witness_keys=[VKEY_A])


# --- Receipts (SPEC §7) ------------------------------------------------------------------------


def _receipt(index: int, note: str = NOTE) -> str:
    return format_receipt(leaf_bytes=LEAVES[index], index=index,
                          proof=ref_path(index, LEAVES), checkpoint_note=note)


def test_receipt_format_is_exact() -> None:
    proof = ref_path(2, LEAVES)
    expected = (
        "c2sp.org/tlog-proof@v1\n"
        f"extra {base64.b64encode(LEAVES[2]).decode()}\n"
        "index 2\n"
        + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        + "\n"
        + NOTE
    )
    assert _receipt(2) == expected


@pytest.mark.parametrize("index", range(len(LEAVES)))
def test_receipt_verifies_and_round_trips(index: int) -> None:
    note = _cosigned(("bawaslu", WITNESS_A))
    text = _receipt(index, note)
    receipt = verify_receipt(text, log_key=LOG_VKEY, witness_keys=[VKEY_A], min_cosignatures=1)
    assert receipt == parse_receipt(text)
    assert (receipt.leaf_bytes, receipt.index, receipt.checkpoint_note) == (
        LEAVES[index], index, note)
    assert list(receipt.proof) == ref_path(index, LEAVES)
    with pytest.raises(NoteError):
        verify_receipt(text, log_key=LOG_VKEY, witness_keys=[VKEY_A], min_cosignatures=2)


def test_receipt_of_one_leaf_tree_has_no_proof_lines() -> None:
    note = _note_for(1)
    text = format_receipt(leaf_bytes=LEAVES[0], index=0, proof=[], checkpoint_note=note)
    extra = base64.b64encode(LEAVES[0]).decode()
    assert text == f"c2sp.org/tlog-proof@v1\nextra {extra}\nindex 0\n\n{note}"
    assert verify_receipt(text, log_key=LOG_VKEY).proof == ()


def test_ambiguous_witness_keys_refused() -> None:
    twin = dataclasses.replace(parse_vkey(VKEY_A), public_key=_raw(STRANGER))
    with pytest.raises(NoteError):
        verify_checkpoint(NOTE, log_key=LOG_VKEY, witness_keys=[VKEY_A, twin])
    verify_checkpoint(NOTE, log_key=LOG_VKEY, witness_keys=[VKEY_A, VKEY_A])  # duplicates are fine


def _tampered_receipts() -> dict[str, str]:
    text = _receipt(3)
    lines = text.split("\n")
    proof = ref_path(3, LEAVES)
    proof_b64 = [base64.b64encode(h).decode() for h in proof]

    def other(**changes: object) -> str:
        fields: dict[str, object] = {"leaf_bytes": LEAVES[3], "index": 3, "proof": proof,
                                     "checkpoint_note": NOTE, **changes}
        return format_receipt(**fields)  # type: ignore[arg-type]

    return {
        "header": text.replace("tlog-proof@v1", "tlog-proof@v2"),
        "no-extra": "\n".join(lines[:1] + lines[2:]),
        "extra": other(leaf_bytes=LEAVES[4]),
        "index-other": other(index=4),
        "index-beyond-size": other(index=7),
        "index-leading-zero": text.replace("index 3\n", "index 03\n"),
        "proof-dropped": other(proof=proof[:-1]),
        "proof-extended": other(proof=proof + [proof[0]]),
        "proof-swapped": other(proof=proof[::-1]),
        "proof-line-unpadded": text.replace(proof_b64[0], proof_b64[0].rstrip("=")),
        "proof-short-hash": text.replace(proof_b64[0], base64.b64encode(proof[0][:31]).decode()),
        "no-blank-line": text.replace("\n\n", "\n", 1),
        "checkpoint-other-tree": other(checkpoint_note=_note_for(6)),
        "checkpoint-foreign-log": other(checkpoint_note=sign_checkpoint(CHECKPOINT,
                                                                        origin_key=STRANGER)),
    }


@pytest.mark.parametrize("name", sorted(_tampered_receipts()))
def test_tampered_receipt_refused(name: str) -> None:
    with pytest.raises((NoteError, ProofError)):
        verify_receipt(_tampered_receipts()[name], log_key=LOG_VKEY)


@settings(max_examples=200)
@given(index=st.integers(0, len(LEAVES) - 1), data=st.data())
def test_receipt_byte_flip_in_extra_or_proof_refused(index: int, data: st.DataObject) -> None:
    leaf, proof = bytearray(LEAVES[index]), [bytearray(h) for h in ref_path(index, LEAVES)]
    target = data.draw(st.sampled_from([leaf, *proof]))
    position = data.draw(st.integers(0, len(target) - 1))
    target[position] ^= 1 << data.draw(st.integers(0, 7))
    text = format_receipt(leaf_bytes=bytes(leaf), index=index,
                          proof=[bytes(h) for h in proof], checkpoint_note=NOTE)
    with pytest.raises(ProofError):
        verify_receipt(text, log_key=LOG_VKEY)


@settings(max_examples=300)
@given(position=st.integers(0, len(_receipt(5)) - 1),
       char=st.sampled_from("Aa0+/= \n\u2014.-9zZ\t"))
def test_receipt_any_character_substitution_refused(position: int, char: str) -> None:
    # Without cosignatures every character of a receipt is covered by a check.
    text = _receipt(5)
    if text[position] == char:
        return
    with pytest.raises((NoteError, ProofError)):
        verify_receipt(text[:position] + char + text[position + 1 :], log_key=LOG_VKEY)


# --- Consistency proofs (SPEC §7) --------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(1, 7), (3, 7), (4, 7), (6, 7), (7, 7), (2, 5)])
def test_consistency_proof_verifies(old: int, new: int) -> None:
    obj = format_consistency(_note_for(old), _note_for(new),
                             ref_consistency(old, LEAVES[:new]))
    assert set(obj) == {"old", "new", "proof"}
    assert all(isinstance(h, str) for h in obj["proof"])
    verify_consistency_proof(obj, log_key=LOG_VKEY)


def test_consistency_proof_refusals() -> None:
    good = format_consistency(_note_for(3), _note_for(7), ref_consistency(3, LEAVES))
    with pytest.raises(ProofError):
        verify_consistency_proof({**good, "note": "hi"}, log_key=LOG_VKEY)  # unknown field
    with pytest.raises(ProofError):
        verify_consistency_proof({"old": good["old"], "new": good["new"]}, log_key=LOG_VKEY)
    with pytest.raises(ProofError):
        verify_consistency_proof({**good, "proof": [h.rstrip("=") for h in good["proof"]]},
                                 log_key=LOG_VKEY)
    with pytest.raises(ProofError):  # a proof from size 0 is refused
        verify_consistency_proof(format_consistency(_note_for(0), _note_for(7), []),
                                 log_key=LOG_VKEY)
    with pytest.raises(ProofError):  # old larger than new
        verify_consistency_proof(format_consistency(_note_for(7), _note_for(3), []),
                                 log_key=LOG_VKEY)
    with pytest.raises(NoteError):  # a checkpoint not by the log
        verify_consistency_proof({**good, "new": _note_for(7, STRANGER)}, log_key=LOG_VKEY)


def test_inconsistent_checkpoints_detected() -> None:
    proof = ref_consistency(3, LEAVES)
    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    with pytest.raises(InconsistentCheckpoint):
        verify_consistency_proof(format_consistency(_note_for(3), _note_for(7), flipped),
                                 log_key=LOG_VKEY)
    # A split view: another tree of the same size signed by the same log.
    forked = LEAVES[:6] + [b"forged"]
    fork_note = sign_checkpoint(Checkpoint(ORIGIN, 7, ref_root(forked)), origin_key=LOG)
    with pytest.raises(InconsistentCheckpoint):
        verify_consistency_proof(format_consistency(_note_for(3), fork_note, proof),
                                 log_key=LOG_VKEY)
    with pytest.raises(InconsistentCheckpoint):
        verify_consistency_proof(format_consistency(_note_for(7), fork_note, []),
                                 log_key=LOG_VKEY)

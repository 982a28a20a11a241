"""DSSE envelopes and RFC 8785 canonical bytes (SPEC §1–2): sign → verify round
trips, the JCS reference vectors, properties, and every way an envelope is
malformed or its payload not canonical — each refused with nothing recorded."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_DEPTH, MAX_SAFE_INTEGER, JSONRefused, canonical_bytes, strict_loads
from ledger.envelope import (
    PAYLOAD_TYPE,
    Envelope,
    b64,
    decode_b64,
    decode_statement,
    key_id,
    pae,
    parse_envelope,
    raw_public_key,
    sign_statement,
    statement_digest,
    verify_signature,
)
from ledger.errors import BadSignature, NotCanonical, Refusal
from tests.conftest import TPS, World, assert_refused, statement_dict

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "jcs"
# The reference inputs holding non-integer numbers: our canonical_bytes refuses
# them (SPEC §1, floats are refused), so rfc8785 itself is checked on them.
FLOAT_VECTORS = {"structures.json", "values.json"}

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test_envelope").digest())


def a_statement(**extra: Any) -> dict[str, Any]:
    statement = {
        "v": 1,
        "type": "logistics.witnessed",
        "id": "0190c5d6-0000-4000-8000-000000000001",
        "actor": "ptps-001",
        "issued_at": "2024-11-25T03:00:00.5Z",
        "subject": "out.tps-001",
        "body": {"region": TPS, "note": "Segel utuh, péché ✓"},
        "refs": ["sha256:" + "ab" * 32],
    }
    statement.update(extra)
    return statement


def envelope_text(envelope: Envelope) -> bytes:
    return envelope.canonical()


# ---------------------------------------------------------------- round trips


def test_sign_then_verify_round_trips_through_json_text() -> None:
    statement = a_statement()
    envelope = sign_statement(statement, KEY)
    parsed = parse_envelope(envelope_text(envelope))
    assert parsed == envelope
    decoded = decode_statement(parsed)
    assert decoded.payload == canonical_bytes(statement)
    assert decoded.digest == "sha256:" + hashlib.sha256(canonical_bytes(statement)).hexdigest()
    assert decoded.id == statement["id"] and decoded.region == TPS
    assert verify_signature(parsed, raw_public_key(KEY)) is None


def test_envelope_round_trips_as_dict_str_and_bytes() -> None:
    envelope = sign_statement(a_statement(), KEY)
    text = envelope_text(envelope)
    assert (
        parse_envelope(text) == parse_envelope(text.decode()) == parse_envelope(envelope.to_json())
    )


def test_envelope_has_exactly_the_dsse_fields() -> None:
    envelope = sign_statement(a_statement(), KEY)
    as_json = json.loads(envelope_text(envelope))
    assert set(as_json) == {"payloadType", "payload", "signatures"}
    assert as_json["payloadType"] == PAYLOAD_TYPE == "application/vnd.saksi.statement+json"
    assert base64.b64decode(as_json["payload"]) == canonical_bytes(a_statement())
    [signature] = as_json["signatures"]
    assert set(signature) == {"keyid", "sig"}
    assert signature["keyid"] == hashlib.sha256(raw_public_key(KEY)).hexdigest()


def test_pae_matches_the_dsse_reference() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # LEN is the byte length, not the character count
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_signature_is_over_pae_never_over_the_bare_payload() -> None:
    envelope = sign_statement(a_statement(), KEY)
    public = KEY.public_key()
    public.verify(envelope.sig, pae(PAYLOAD_TYPE, envelope.payload))
    with pytest.raises(InvalidSignature):
        public.verify(envelope.sig, envelope.payload)


def test_keyid_is_hex_sha256_of_the_raw_public_key() -> None:
    raw = raw_public_key(KEY)
    assert len(raw) == 32
    assert key_id(raw) == hashlib.sha256(raw).hexdigest()
    assert statement_digest(b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_verify_with_another_key_is_bad_signature() -> None:
    envelope = sign_statement(a_statement(), KEY)
    other = raw_public_key(Ed25519PrivateKey.generate())
    with pytest.raises(BadSignature) as caught:
        verify_signature(envelope, other)
    assert caught.value.code == "bad-signature"


def test_verify_with_matching_keyid_but_forged_signature_is_bad_signature() -> None:
    envelope = sign_statement(a_statement(), KEY)
    forged = Envelope(payload=envelope.payload, keyid=envelope.keyid, sig=bytes(64))
    with pytest.raises(BadSignature):
        verify_signature(forged, raw_public_key(KEY))


def test_signing_a_float_is_refused_as_not_canonical() -> None:
    with pytest.raises(NotCanonical):
        sign_statement(a_statement(v=1.0), KEY)


# ---------------------------------------------------------------- base64


def test_decode_b64_accepts_only_canonical_padded_standard_base64() -> None:
    assert decode_b64("AAE=") == b"\x00\x01"
    for bad in ("AAE", "AAF=", "AA E=", "AAE=\n", "-_8=", "AAE==", 7):
        with pytest.raises(ValueError):
            decode_b64(bad)  # type: ignore[arg-type]
    assert b64(b"\xfb\xff") == "+/8="


# ---------------------------------------------------------------- RFC 8785 reference data


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _vector_names() -> list[str]:
    return sorted(p.name for p in (VECTORS / "input").glob("*.json"))


def test_jcs_vectors_are_present_and_the_float_ones_are_known() -> None:
    names = _vector_names()
    assert len(names) >= 6
    floats = {
        n for n in names if _has_float(json.loads((VECTORS / "input" / n).read_text("utf-8")))
    }
    assert floats == FLOAT_VECTORS


@pytest.mark.parametrize("name", _vector_names())
def test_jcs_vector(name: str) -> None:
    text = (VECTORS / "input" / name).read_text("utf-8")
    expected = (VECTORS / "output" / name).read_bytes()
    hex_form = (VECTORS / "outhex" / name.replace(".json", ".txt")).read_text().split()
    assert expected == bytes.fromhex("".join(hex_form))
    value = json.loads(text)
    if name in FLOAT_VECTORS:
        with pytest.raises(JSONRefused, match="float"):
            canonical_bytes(value)
        with pytest.raises(JSONRefused):
            strict_loads(text)
        assert rfc8785.dumps(value) == expected
    else:
        assert canonical_bytes(value) == expected
        assert canonical_bytes(strict_loads(text)) == expected
        assert canonical_bytes(strict_loads(expected)) == expected


def test_lone_surrogates_and_non_json_values_are_refused() -> None:
    with pytest.raises(JSONRefused):
        strict_loads('{"a": "\\ud800"}')
    with pytest.raises(JSONRefused):
        canonical_bytes({"a": "\ud800"})
    with pytest.raises(JSONRefused):
        canonical_bytes({1: "a"})
    with pytest.raises(JSONRefused):
        canonical_bytes({"a": b"bytes"})
    with pytest.raises(JSONRefused):
        canonical_bytes({"a": float("nan")})


# ---------------------------------------------------------------- properties

SAFE_INTS = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=24,
)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_canonical_bytes_are_stable(value: Any) -> None:
    once = canonical_bytes(value)
    parsed = strict_loads(once)
    assert parsed == value
    assert canonical_bytes(parsed) == once


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, min_size=2, max_size=6))
def test_canonical_bytes_ignore_key_order(value: dict[str, Any]) -> None:
    assert canonical_bytes(dict(reversed(list(value.items())))) == canonical_bytes(value)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=MAX_SAFE_INTEGER + 1, max_value=2**64)
    | st.integers(max_value=-MAX_SAFE_INTEGER - 1, min_value=-(2**64))
)
def test_integers_beyond_2_53_are_refused(number: int) -> None:
    with pytest.raises(JSONRefused):
        canonical_bytes({"n": number})
    with pytest.raises(JSONRefused):
        strict_loads(f'{{"n": {number}}}')


def _check(envelope: Envelope | bytes) -> None:
    """The whole verification a client does: parse, decode, verify."""
    parsed = parse_envelope(envelope) if isinstance(envelope, bytes) else envelope
    decode_statement(parsed)
    verify_signature(parsed, raw_public_key(KEY))


def _flip(data: bytes, position: int, delta: int) -> bytes:
    position %= len(data)
    changed = bytearray(data)
    changed[position] = (changed[position] + delta) % 256
    return bytes(changed)


ORIGINAL = sign_statement(a_statement(), KEY)
DELTAS = st.integers(min_value=1, max_value=255)


def test_the_unaltered_envelope_passes_every_check() -> None:
    _check(ORIGINAL)
    _check(envelope_text(ORIGINAL))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), DELTAS)
def test_any_single_byte_change_of_the_payload_is_refused(position: int, delta: int) -> None:
    altered = Envelope(_flip(ORIGINAL.payload, position, delta), ORIGINAL.keyid, ORIGINAL.sig)
    with pytest.raises(Refusal):
        _check(altered)
    with pytest.raises(Refusal):
        _check(envelope_text(altered))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), DELTAS)
def test_any_single_byte_change_of_the_signature_is_bad_signature(
    position: int, delta: int
) -> None:
    altered = Envelope(ORIGINAL.payload, ORIGINAL.keyid, _flip(ORIGINAL.sig, position, delta))
    with pytest.raises(BadSignature):
        _check(altered)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), DELTAS)
def test_any_single_byte_change_of_the_envelope_text_is_refused(position: int, delta: int) -> None:
    with pytest.raises(Refusal):
        _check(_flip(envelope_text(ORIGINAL), position, delta))


def declaration(world: World) -> Envelope:
    """A genuine, acceptable commitment.declared by a national party."""
    party = world.signer("partai-x")
    if world.ledger.tlog.size == 1:
        world.register("partai-x", "party", "ID")
    return world.sign(
        party,
        "commitment.declared",
        "commitment-partai-x",
        {
            "region": "ID",
            "kind": "anti_hoax",
            "title": "Tolak hoaks",
            "text": "Kami menolak hoaks.",
            "document_sha256": "cd" * 32,
        },
        statement_id="0190c5d6-0000-4000-8000-0000000000aa",
    )


@pytest.fixture
def signed(world: World) -> Envelope:
    return declaration(world)


def test_the_genuine_declaration_is_accepted(world: World, signed: Envelope) -> None:
    before = world.snapshot()
    receipt = world.submit(envelope_text(signed))
    assert receipt.index == before.log_size and not receipt.duplicate
    assert world.snapshot().records == before.records + 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), delta=DELTAS)
def test_the_ledger_refuses_any_single_byte_change_and_records_nothing(
    world: World, signed: Envelope, position: int, delta: int
) -> None:
    # One world for all examples: every example must leave it exactly as it was.
    before = world.snapshot()
    with pytest.raises(Refusal):
        world.submit(_flip(envelope_text(signed), position, delta))
    assert world.snapshot() == before


# ------------------------------------------------------- malformed envelopes (via the ledger)


def as_dict(envelope: Envelope) -> dict[str, Any]:
    return json.loads(envelope_text(envelope))


def test_extra_envelope_field_is_malformed(world: World, signed: Envelope) -> None:
    data = {**as_dict(signed), "comment": "x"}
    assert_refused(world, data, "malformed-envelope", message="exactly payloadType")


def test_missing_envelope_field_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    del data["payloadType"]
    assert_refused(world, data, "malformed-envelope")


def test_extra_signature_field_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"][0]["cert"] = "x"
    assert_refused(world, data, "malformed-envelope", message="exactly keyid and sig")


def test_two_signatures_are_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"] = data["signatures"] * 2
    assert_refused(world, data, "malformed-envelope", message="exactly one signature")


def test_zero_signatures_are_malformed(world: World, signed: Envelope) -> None:
    data = {**as_dict(signed), "signatures": []}
    assert_refused(world, data, "malformed-envelope", message="exactly one signature")


def test_signatures_not_a_list_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"] = data["signatures"][0]
    assert_refused(world, data, "malformed-envelope")


@pytest.mark.parametrize(
    "payload_type", ["application/json", "application/vnd.in-toto+json", PAYLOAD_TYPE.upper(), ""]
)
def test_wrong_payload_type_is_malformed(world: World, signed: Envelope, payload_type: str) -> None:
    data = {**as_dict(signed), "payloadType": payload_type}
    assert_refused(world, data, "malformed-envelope", message="payloadType")


def test_signature_base64_with_nonzero_padding_bits_is_malformed(
    world: World, signed: Envelope
) -> None:
    data = as_dict(signed)
    sig = data["signatures"][0]["sig"]
    assert sig.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(sig[-3])
    data["signatures"][0]["sig"] = sig[:-3] + alphabet[last | 1] + "=="
    assert base64.b64decode(data["signatures"][0]["sig"]) == signed.sig  # same bytes, other text
    assert_refused(world, data, "malformed-envelope", message="canonical")


def test_signature_base64_without_padding_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"][0]["sig"] = data["signatures"][0]["sig"].rstrip("=")
    assert_refused(world, data, "malformed-envelope")


def test_payload_base64url_alphabet_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["payload"] = "-" + data["payload"][1:]
    assert_refused(world, data, "malformed-envelope")


def test_payload_base64_with_a_newline_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["payload"] = data["payload"][:40] + "\n" + data["payload"][40:]
    assert_refused(world, data, "malformed-envelope")


def test_uppercase_keyid_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"][0]["keyid"] = data["signatures"][0]["keyid"].upper()
    assert data["signatures"][0]["keyid"] != signed.keyid
    assert_refused(world, data, "malformed-envelope", message="lowercase hex")


def test_one_uppercase_hex_digit_in_the_middle_of_the_keyid_is_malformed(
    world: World, signed: Envelope
) -> None:
    data = as_dict(signed)
    keyid = data["signatures"][0]["keyid"]
    at = next(i for i in range(20, 44) if keyid[i] in "abcdef")
    data["signatures"][0]["keyid"] = keyid[:at] + keyid[at].upper() + keyid[at + 1 :]
    assert_refused(world, data, "malformed-envelope", message="lowercase hex")


def test_short_signature_is_malformed(world: World, signed: Envelope) -> None:
    data = as_dict(signed)
    data["signatures"][0]["sig"] = b64(signed.sig[:63])
    assert_refused(world, data, "malformed-envelope", message="64 bytes")


def test_invalid_utf8_is_malformed(world: World, signed: Envelope) -> None:
    text = envelope_text(signed)
    broken = text.replace(b"application/vnd", b"application/v\xc3\x28d", 1)
    assert broken != text
    assert_refused(world, broken, "malformed-envelope", message="UTF-8")


def test_byte_order_mark_is_malformed(world: World, signed: Envelope) -> None:
    assert_refused(world, b"\xef\xbb\xbf" + envelope_text(signed), "malformed-envelope")


def test_duplicate_json_keys_are_malformed(world: World, signed: Envelope) -> None:
    text = envelope_text(signed)
    assert text.startswith(b'{"payload":')
    duplicated = b'{"payloadType":"' + PAYLOAD_TYPE.encode() + b'",' + text[1:]
    assert_refused(world, duplicated, "malformed-envelope", message="duplicate key")


def test_integer_beyond_2_53_is_malformed(world: World, signed: Envelope) -> None:
    text = envelope_text(signed).replace(b'"signatures":[', b'"signatures":[9007199254740992,', 1)
    assert_refused(world, text, "malformed-envelope", message="2^53")


def test_float_is_malformed(world: World, signed: Envelope) -> None:
    text = envelope_text(signed).replace(b'"signatures":[', b'"signatures":[1.5,', 1)
    assert_refused(world, text, "malformed-envelope", message="float")


def test_exponent_is_malformed(world: World, signed: Envelope) -> None:
    text = envelope_text(signed).replace(b'"signatures":[', b'"signatures":[1e3,', 1)
    assert_refused(world, text, "malformed-envelope")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_malformed(world: World, signed: Envelope, constant: bytes) -> None:
    text = envelope_text(signed).replace(b'"signatures":[', b'"signatures":[' + constant + b",", 1)
    assert_refused(world, text, "malformed-envelope")


def test_deep_nesting_is_malformed(world: World, signed: Envelope) -> None:
    deep = b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2)
    text = envelope_text(signed).replace(b'"signatures":[', b'"signatures":[' + deep + b",", 1)
    assert_refused(world, text, "malformed-envelope", message="nesting")


def test_nesting_deep_enough_to_exhaust_the_parser_is_malformed(world: World) -> None:
    assert_refused(world, b"[" * 20_000 + b"]" * 20_000, "malformed-envelope")


def test_oversized_envelope_is_too_large(world: World, signed: Envelope) -> None:
    data = envelope_text(signed) + b" " * (64 * 1024)
    assert_refused(world, data, "body-too-large", message="larger than")


def test_an_oversized_envelope_object_is_too_large_by_its_canonical_size(world: World, signed: Envelope) -> None:
    """A batch's items arrive parsed: the 64 KiB bound holds for them too."""
    big = Envelope(payload=b"x" * 49_152 + signed.payload, keyid=signed.keyid, sig=signed.sig)
    assert len(big.canonical()) > 64 * 1024
    assert_refused(world, big.to_json(), "body-too-large", message="larger than")


@pytest.mark.parametrize("data", [b"", b"null", b"[]", b'"envelope"', b"{", b"42"])
def test_non_object_or_broken_json_is_malformed(world: World, data: bytes) -> None:
    assert_refused(world, data, "malformed-envelope")


def test_envelope_object_with_another_payload_type_is_malformed(
    world: World, signed: Envelope
) -> None:
    # SPEC §2: the payloadType is application/vnd.saksi.statement+json. Handing the
    # ledger an Envelope object (not JSON) must not bypass that rule.
    party = world.signer("partai-x")
    sig = party.key.sign(pae("application/json", signed.payload))
    other = Envelope(signed.payload, signed.keyid, sig, payload_type="application/json")
    verify_signature(other, raw_public_key(party.key))  # a genuine signature, over another type
    assert_refused(world, other, "malformed-envelope")


# ---------------------------------------------------------------- payloads not in canonical form


def _resigned(statement_bytes: bytes, signer_key: Ed25519PrivateKey) -> Envelope:
    """An envelope whose signature is genuine over exactly these payload bytes."""
    return Envelope(
        payload=statement_bytes,
        keyid=key_id(raw_public_key(signer_key)),
        sig=signer_key.sign(pae(PAYLOAD_TYPE, statement_bytes)),
    )


@pytest.fixture
def party_statement(world: World) -> tuple[dict[str, Any], Ed25519PrivateKey]:
    """An acceptable declaration as a dict, and its signer's key."""
    party = world.register("partai-x", "party", "ID")
    statement = statement_dict(
        party,
        "commitment.declared",
        "commitment-partai-x",
        {
            "region": "ID",
            "kind": "anti_hoax",
            "title": "Tolak hoaks di Jakarta",
            "text": "Kami menolak hoaks.",
            "document_sha256": "cd" * 32,
        },
    )
    return statement, party.key


def test_payload_with_spaces_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    spaced = json.dumps(statement, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)
    assert_refused(world, _resigned(spaced.encode(), key), "not-canonical")


def test_payload_with_unsorted_keys_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    unsorted = json.dumps(dict(reversed(list(statement.items()))), separators=(",", ":"))
    assert unsorted.encode() != canonical_bytes(statement)
    assert_refused(world, _resigned(unsorted.encode(), key), "not-canonical")


def test_payload_with_escaped_ascii_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    escaped = canonical_bytes(statement).replace(b"Jakarta", b"\\u004aakarta")
    assert_refused(world, _resigned(escaped, key), "not-canonical")


def test_payload_with_trailing_newline_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    assert_refused(world, _resigned(canonical_bytes(statement) + b"\n", key), "not-canonical")


def test_payload_with_a_float_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    payload = canonical_bytes(statement).replace(b'"v":1', b'"v":1.0')
    assert_refused(world, _resigned(payload, key), "not-canonical", message="float")


def test_payload_with_duplicate_keys_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    payload = canonical_bytes(statement).replace(b'"v":1', b'"v":1,"v":1')
    assert_refused(world, _resigned(payload, key), "not-canonical", message="duplicate key")


def test_payload_with_invalid_utf8_is_not_canonical(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    payload = canonical_bytes(statement).replace(b"Jakarta", b"Jak\xffarta")
    assert_refused(world, _resigned(payload, key), "not-canonical", message="UTF-8")


def test_the_same_payload_in_canonical_form_is_accepted(world: World, party_statement: Any) -> None:
    statement, key = party_statement
    receipt = world.submit(_resigned(canonical_bytes(statement), key))
    assert receipt.index == world.ledger.tlog.size - 1

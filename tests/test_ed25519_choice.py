"""Can PyNaCl (libsodium) replace ``cryptography`` (OpenSSL) for bulk verification?
Only if both accept and refuse exactly the same inputs. The edge cases live in
``bench/ed25519_cases.json`` (the "Taming the many EdDSAs" vectors and Saksi's own),
each with the verdict each library gave; this walks them.

They do NOT agree: libsodium also refuses small-order keys, small-order R and
non-canonical key encodings that OpenSSL accepts (cofactorless verification
without those checks). The disagreement is pinned here case by case, so a change
in either library shows up as a failing test, not as a silent change of which
signatures Saksi accepts.

What Saksi uses instead, ``ledger.ed25519``, asks libsodium first and OpenSSL
only when libsodium refuses. That gives OpenSSL's verdicts exactly as long as
libsodium never accepts what OpenSSL refuses; both are checked here on every case
and on random corruptions of valid signatures (hypothesis).
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.ed25519 import accepts_cryptography, accepts_pynacl, cases
from ledger import ed25519
from ledger.envelope import raw_public_key

CASES = cases()
NAMES = [case["name"] for case in CASES]

# Where the libraries disagree: OpenSSL accepts, libsodium refuses, every time.
DISAGREE = {
    "speccheck-00-s-zero-small-order-a-small-order-r",
    "speccheck-01-small-order-a-mixed-r",
    "speccheck-02-mixed-a-small-order-r",
    "speccheck-11-non-canonical-a-raw-in-hash",
    "small-order-key-0-order-1",
    "small-order-r-identity",
    "non-canonical-key-identity-y-p-plus-1",
    "non-canonical-key-identity-negative-zero",
}


def arguments(case: dict[str, object]) -> tuple[bytes, bytes, bytes]:
    return tuple(bytes.fromhex(str(case[f])) for f in ("public_key", "message", "signature"))  # type: ignore[return-value]


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_cryptography_verdict(case: dict[str, object]) -> None:
    assert accepts_cryptography(*arguments(case)) is case["cryptography"]


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_pynacl_verdict(case: dict[str, object]) -> None:
    assert accepts_pynacl(*arguments(case)) is case["pynacl"]


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_libraries_agree_except_on_small_order_and_non_canonical_points(case: dict[str, object]) -> None:
    crypto, nacl = accepts_cryptography(*arguments(case)), accepts_pynacl(*arguments(case))
    if case["name"] in DISAGREE:
        assert (crypto, nacl) == (True, False), "a known disagreement changed"
    else:
        assert crypto == nacl


def test_the_cases_cover_what_the_choice_depends_on() -> None:
    names = set(NAMES)
    assert {"valid", "corrupted-signature-s-bit", "corrupted-message-bit", "non-canonical-s-plus-l"} <= names
    assert any(n.startswith("small-order-key-") for n in names)
    assert any(n.startswith("small-order-r-") for n in names)
    assert any(n.startswith("non-canonical-key-") for n in names)
    assert sum(n.startswith("speccheck-") for n in names) == 12
    assert DISAGREE <= names
    valid = next(c for c in CASES if c["name"] == "valid")
    assert valid["cryptography"] is True and valid["pynacl"] is True


# ---------------------------------------------------------------- the composite (ledger.ed25519)

L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
SMALL_ORDER_KEYS = [bytes.fromhex(str(c["public_key"])) for c in CASES if str(c["name"]).startswith("small-order-key-")]
ODD_KEYS = SMALL_ORDER_KEYS + [bytes.fromhex(str(c["public_key"])) for c in CASES
                               if str(c["name"]).startswith(("non-canonical-key-", "key-not-on-curve"))]  # fmt: skip
SMALL_ORDER_R = [bytes.fromhex(str(c["signature"]))[:32] for c in CASES if str(c["name"]).startswith("small-order-r-")]


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_libsodium_accepts_only_what_openssl_accepts(case: dict[str, object]) -> None:
    if accepts_pynacl(*arguments(case)):
        assert accepts_cryptography(*arguments(case))


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_the_composite_gives_cryptographys_verdict(case: dict[str, object]) -> None:
    assert ed25519.accepts(*arguments(case)) is case["cryptography"]
    if case["cryptography"]:
        ed25519.verify(*arguments(case))
    else:
        with pytest.raises((ed25519.InvalidSignature, ValueError)):
            ed25519.verify(*arguments(case))


def test_the_composite_raises_as_cryptography_does_on_a_bad_key_length() -> None:
    for key in (b"", b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(ValueError):
            ed25519.verify(key, b"message", b"\x00" * 64)
    key = Ed25519PrivateKey.generate()
    for signature in (b"", key.sign(b"m")[:63], key.sign(b"m") + b"\x00"):
        with pytest.raises(ed25519.InvalidSignature):
            ed25519.verify(raw_public_key(key), b"m", signature)


def _mutate(kind: str, data: st.DataObject, key: bytes, message: bytes, signature: bytes) -> tuple[bytes, bytes, bytes]:
    def flip(blob: bytes) -> bytes:
        if not blob:
            return b"\x00"
        at = data.draw(st.integers(0, len(blob) - 1))
        return blob[:at] + bytes([blob[at] ^ (1 << data.draw(st.integers(0, 7)))]) + blob[at + 1:]

    r, s = signature[:32], signature[32:]
    if kind == "key-bit":
        key = flip(key)
    elif kind == "message-bit":
        message = flip(message)
    elif kind == "r-bit":
        r = flip(r)
    elif kind == "s-bit":
        s = flip(s)
    elif kind == "s-plus-l":  # the same S modulo L, not reduced: OpenSSL refuses it too
        value = int.from_bytes(s, "little") + L * data.draw(st.integers(1, 15))
        s = (value % 2**256).to_bytes(32, "little")
    elif kind == "odd-key":
        key = data.draw(st.sampled_from(ODD_KEYS))
    elif kind == "small-order-r":
        r = data.draw(st.sampled_from(SMALL_ORDER_R))
    elif kind == "random-bytes":
        return key, message, data.draw(st.binary(min_size=64, max_size=64))
    return key, message, r + s


@settings(max_examples=400, deadline=None)
@given(st.data(), st.binary(max_size=300),
       st.sampled_from(["none", "key-bit", "message-bit", "r-bit", "s-bit", "s-plus-l", "odd-key",
                        "small-order-r", "random-bytes"]))  # fmt: skip
def test_the_composite_agrees_with_cryptography_on_random_corruptions(
    data: st.DataObject, message: bytes, kind: str
) -> None:
    seed = hashlib.sha256(message + kind.encode()).digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    key, message, signature = _mutate(kind, data, raw_public_key(private), message, private.sign(message))
    openssl = accepts_cryptography(key, message, signature)
    assert ed25519.accepts(key, message, signature) is openssl
    if accepts_pynacl(key, message, signature):
        assert openssl, "libsodium accepted what OpenSSL refuses: the composite would be wrong"
    if kind == "none":
        assert openssl

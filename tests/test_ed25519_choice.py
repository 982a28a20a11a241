"""Can PyNaCl (libsodium) replace ``cryptography`` (OpenSSL) for bulk verification?
Only if both accept and refuse exactly the same inputs. The edge cases live in
``bench/ed25519_cases.json`` (the "Taming the many EdDSAs" vectors and Saksi's own),
each with the verdict each library gave; this walks them.

Today they do NOT agree: libsodium also refuses small-order keys, small-order R
and non-canonical key encodings that OpenSSL accepts (cofactorless verification
without those checks). The disagreement is pinned here case by case, so a change
in either library shows up as a failing test, not as a silent change of which
signatures Saksi accepts.
"""

from __future__ import annotations

import pytest

from bench.ed25519 import accepts_cryptography, accepts_pynacl, cases

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

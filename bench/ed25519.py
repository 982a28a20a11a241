"""Ed25519 choice (issue item 6): ``cryptography`` (OpenSSL) against PyNaCl
(libsodium) on the same signatures, and whether both accept and refuse exactly
the same inputs.

The edge cases are data, ``bench/ed25519_cases.json``: the twelve vectors of
"Taming the many EdDSAs" (novifinancial/ed25519-speccheck) and Saksi's own (valid,
corrupted signature or message, S >= L, small-order keys and R, non-canonical key
encodings), each with the verdict each library gave when the file was made.
``tests/test_ed25519_choice.py`` walks the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.corpus import Corpus, Triple
from bench.measure import Stopwatch

CASES = Path(__file__).with_name("ed25519_cases.json")


def cases() -> list[dict[str, Any]]:
    return json.loads(CASES.read_text())  # type: ignore[no-any-return]


def accepts_cryptography(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def accepts_pynacl(public_key: bytes, message: bytes, signature: bytes) -> bool:
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def pynacl_available() -> bool:
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        return False
    return True


def verdicts() -> list[tuple[str, bool, bool | None]]:
    """(case, cryptography accepts, PyNaCl accepts or None when not installed) for every case."""
    found = []
    for case in cases():
        args = tuple(bytes.fromhex(case[f]) for f in ("public_key", "message", "signature"))
        nacl = accepts_pynacl(*args) if pynacl_available() else None
        found.append((case["name"], accepts_cryptography(*args), nacl))
    return found


def sample(corpus: Corpus, count: int) -> list[Triple]:
    """``count`` signatures spread evenly over the corpus (many signers, every type)."""
    stride = max(1, corpus.size // count)
    chosen = [e for n, e in enumerate(corpus.envelopes()) if n % stride == 0][:count]
    return corpus.triples(chosen)


def time_cryptography(triples: list[Triple]) -> float:
    watch = Stopwatch()
    with watch:
        for public_key, message, signature in triples:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    return watch.seconds


def time_pynacl(triples: list[Triple]) -> float:
    from nacl.signing import VerifyKey

    watch = Stopwatch()
    with watch:
        for public_key, message, signature in triples:
            VerifyKey(public_key).verify(message, signature)
    return watch.seconds

"""Ed25519 verification with exactly ``cryptography``'s (OpenSSL's) verdicts, at
libsodium's speed on the common path.

libsodium (through PyNaCl) verifies about twice as fast as OpenSSL, but refuses
more: before the equation it refuses S >= L, a small-order R, a non-canonical or
small-order public key. After those checks both libraries decode the key the same
way (ref10), hash the same bytes (R ‖ A as given ‖ M), compute the same point
[S]B - [h]A and compare its encoding with R byte for byte (cofactorless). So
whatever libsodium accepts, OpenSSL accepts too; only a refusal can differ. Hence:

    libsodium accepts      → accept (OpenSSL would);
    libsodium refuses      → ask OpenSSL, and give its verdict.

The composite accepts and refuses exactly what ``cryptography`` does, by
construction; ``tests/test_ed25519_choice.py`` checks it on every edge case in
``bench/ed25519_cases.json`` (small-order and non-canonical keys and R, S >= L,
the speccheck vectors) and on random corruptions. Valid signatures, nearly all of
a log, never reach OpenSSL. Both libraries release the GIL while verifying.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError

__all__ = ["InvalidSignature", "accepts", "verify"]


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``message`` by the raw 32-byte ``public_key``.

    Raises InvalidSignature when it does not verify, ValueError when the key is
    not 32 bytes or not a point OpenSSL can load: exactly as
    ``Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)``.
    """
    if len(public_key) == 32 and len(signature) == 64:
        try:
            crypto_sign_open(signature + message, public_key)
        except CryptoError:  # BadSignatureError and the rest: OpenSSL decides
            pass
        else:
            return
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)


def accepts(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``verify`` would return, False when it would raise."""
    try:
        verify(public_key, message, signature)
    except (InvalidSignature, ValueError):
        return False
    return True

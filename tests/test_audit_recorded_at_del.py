"""Regression: a stored ``recorded_at`` holding DEL (U+007F), as a tampered row may.
``entry_leaf_bytes`` wrote it with ``json.dumps``, which escapes DEL as ``\\u007f``,
while the canonical form (``log.leaf_bytes``) keeps it as it is: the audit's fast
leaf differed from the canonical leaf (found by hypothesis in
test_audit_fast_paths.test_entry_leaf_bytes_is_the_canonical_entry)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.audit import entry_leaf_bytes
from ledger.envelope import parse_envelope, sign_statement
from ledger.log import leaf_bytes

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.mark.parametrize("recorded_at", ["\x7f", "2024-11-27T06:00:00.000000Z\x7f", '\x01\x7f"\\'])
def test_entry_leaf_bytes_keeps_del_as_the_canonical_form_does(recorded_at: str) -> None:
    statement = {
        "v": 1, "id": "0d7bb1a6-2d3b-4c36-9c0b-6b0d3c1b8e55", "type": "commitment.declared",
        "actor": "party-x", "subject": "s", "issued_at": "2024-11-01T00:00:00Z",
        "body": {"words": "w", "n": 1},
    }  # fmt: skip
    envelope_json = sign_statement(statement, KEY).to_json()
    expected = leaf_bytes(7, recorded_at, envelope_json)
    assert entry_leaf_bytes(7, recorded_at, parse_envelope(envelope_json)) == expected

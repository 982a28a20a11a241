"""Witnesses (SPEC §6): the ledger's check of a cosignature, and the witness's own
side (``saksi witness``), which keeps its last-seen checkpoint on disk and never
cosigns a checkpoint inconsistent with it.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle, notes
from ledger.durable import replace_durably
from ledger.envelope import b64, decode_b64, raw_public_key
from ledger.errors import BadCosignature, InconsistentCheckpoint, SaksiError
from ledger.registry import RegistryView
from ledger.statements import format_time


def witness_vkey(name: str, key: Ed25519PrivateKey | bytes) -> str:
    """The witness's cosignature verifier key (type 0x04), named by its actor id."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    return notes.format_vkey(name, raw, notes.COSIGNATURE_KEY_TYPE)


def check_cosignature(
    view: RegistryView, line: str, note: str, *, index_of: Callable[[str], int | None]
) -> tuple[str, int]:
    """Check one cosignature line on checkpoint ``note`` against the registry (SPEC §6):
    by a key of a registered actor that, in the registry of the tree it cosigns
    (entries below its size) and at the cosignature's time, holds that key and a
    witness mandate for ID. ``index_of`` maps a statement digest to its log index.
    Returns (witness actor id, timestamp). Raises BadCosignature."""
    checkpoint = notes.parse_note(note).checkpoint
    name = line.removeprefix("— ").split(" ", 1)[0]
    actor = view.actor(name)
    if actor is None:
        raise BadCosignature(f"cosignature by {name!r}, which is not a registered actor")

    def in_tree(digest: str | None) -> bool:
        index = index_of(digest) if digest else None
        return index is not None and index < checkpoint.size

    for entry in actor.keys.values():
        try:
            timestamp = notes.verify_cosignature_line(
                line, checkpoint, witness_vkey(name, decode_b64(entry["key"]))
            )
        except SaksiError:
            continue
        at = format_time(datetime.fromtimestamp(timestamp, UTC))
        if not in_tree(entry.get("added_by")):
            raise BadCosignature(f"the key {name!r} cosigned with is not in the registry of a tree of size {checkpoint.size}")
        if entry["revoked_at"] is not None and entry["revoked_at"] <= at:
            raise BadCosignature(f"the key {name!r} cosigned with was revoked at {entry['revoked_at']}")
        if not any(
            m["role"] == "witness" and m["jurisdiction"] == "ID" and in_tree(m.get("granted_by"))
            for m in actor.mandates_in_force(at)
        ):
            raise BadCosignature(
                f"{name!r} holds no witness mandate for ID at {at} in the registry of a tree of size {checkpoint.size}"
            )
        return name, timestamp
    raise BadCosignature(f"the cosignature does not verify with any key of {name!r}")


@dataclass
class Witness:
    """A witness's state: who it is, the log it watches, and the last checkpoint it
    cosigned, kept in ``state_file`` (JSON)."""

    name: str
    key: Ed25519PrivateKey
    log_key: str
    state_file: Path

    def last_seen(self) -> str | None:
        if not self.state_file.exists():
            return None
        state: dict[str, Any] = json.loads(self.state_file.read_text("utf-8"))
        return state.get("checkpoint")

    def cosign(self, note: str, proof: list[bytes] | None, *, now: int | None = None) -> str:
        """Verify ``note`` (the log's signature, then consistency with the last
        checkpoint seen, by ``proof``) and return the cosignature line. Records the
        new checkpoint as last seen. Raises InconsistentCheckpoint — loudly — for a
        checkpoint that contradicts what this witness saw before. One cosign at a time
        per state file, across processes: two at once could each check against the same
        last-seen checkpoint and cosign two different roots of one size (a fork)."""
        with open(self.state_file.with_name(self.state_file.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            return self._cosign(note, proof, now=now)

    def _cosign(self, note: str, proof: list[bytes] | None, *, now: int | None) -> str:
        new = notes.verify_checkpoint(note, log_key=self.log_key).checkpoint
        previous = self.last_seen()
        if previous is not None:
            old = notes.verify_checkpoint(previous, log_key=self.log_key).checkpoint
            if new.size < old.size:
                raise InconsistentCheckpoint(
                    f"the log shows size {new.size}, but this witness already saw size {old.size}: "
                    "the log was rolled back or truncated",
                    expected=old.size, found=new.size,
                )  # fmt: skip
            if new.size == old.size and new.root != old.root:
                raise InconsistentCheckpoint(f"two different roots at size {new.size}: a fork")
            if 0 < old.size < new.size:
                try:
                    merkle.verify_consistency(old.size, new.size, old.root, new.root, proof or [])
                except SaksiError as error:
                    raise InconsistentCheckpoint(
                        f"the checkpoint of size {new.size} is not consistent with the one of "
                        f"size {old.size} this witness saw: {error}"
                    ) from None
        line = notes.cosign(new, name=self.name, key=self.key, timestamp=now or int(time.time()))
        # What this witness saw is on disk before its cosignature leaves: a witness that
        # forgot it after a crash could cosign a fork of what it already cosigned.
        replace_durably(self.state_file, json.dumps({"checkpoint": note, "log_key": self.log_key}))
        return line

    @property
    def public_key(self) -> str:
        return b64(raw_public_key(self.key))

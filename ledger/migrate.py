"""Copy a ledger from one database to another (``saksi migrate``), events in order,
and prove the copy: the same Merkle root, the same checkpoints, and — through the
projections — the same digests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from eventsourcing.persistence import StoredEvent

from ledger.application import Ledger
from ledger.errors import AuditFailure, SaksiError
from ledger.home import Home

CHUNK = 1000


class MigrationError(SaksiError):
    code = "migration-failed"


@dataclass(frozen=True)
class Migration:
    size: int
    root: bytes
    events: int
    checkpoints: int
    cosignatures: int


def migrate(home: Home, source_url: str, target_url: str, *,
            progress: Callable[[int], None] | None = None) -> tuple[Ledger, Ledger, Migration]:  # fmt: skip
    """Copy every stored event of ``source_url`` into the empty ``target_url`` in
    notification order, integrate the log there, copy the signed checkpoints and
    cosignatures, and check the target's tree equals the source's at every signed
    size. Returns both ledgers (for the projections' comparison) and a report.
    Raises MigrationError when the target is not empty or the copy differs."""
    source = Ledger(database_url=source_url, origin=home.origin, genesis=home.genesis, log_key=home.log_key())
    target = Ledger(database_url=target_url, origin=home.origin, genesis=home.genesis, log_key=home.log_key(),
                    audit=True)  # fmt: skip
    if target.recorder.max_notification_id():
        raise MigrationError(f"the target {target_url} already holds events; migrate into an empty database")
    position, copied = 0, 0
    while True:
        chunk = source.recorder.select_notifications(start=position, limit=CHUNK, inclusive_of_start=False)
        if not chunk:
            break
        target.recorder.insert_events([
            StoredEvent(originator_id=n.originator_id, originator_version=n.originator_version,
                        topic=n.topic, state=n.state)
            for n in chunk
        ])  # fmt: skip
        copied += len(chunk)
        position = chunk[-1].id
        if progress:
            progress(copied)
    size = target.tlog.integrate()
    if size != source.tlog.size:
        raise MigrationError(f"the copy holds {size} log entries, the source {source.tlog.size}")
    root = target.tlog.root_at(size)
    if size and root != source.tlog.root_at(size):
        raise MigrationError("the copy's Merkle root differs from the source's")
    checkpoints = cosignatures = 0
    for cp_size, cp_root, note in source.tlog.store.checkpoints():
        if target.tlog.root_at(cp_size) != cp_root:
            raise AuditFailure(cp_size - 1, f"the copy does not match the checkpoint of size {cp_size}")
        target.tlog.store.store_checkpoint(cp_size, cp_root, note)
        checkpoints += 1
        for line in source.tlog.store.cosignatures(cp_size):
            witness = line.removeprefix("— ").split(" ", 1)[0]
            target.tlog.store.store_cosignature(cp_size, witness, _timestamp(line), line)
            cosignatures += 1
    return source, target, Migration(size, root, copied, checkpoints, cosignatures)


def _timestamp(line: str) -> int:
    """The 8-byte big-endian time inside a tlog-cosignature line (SPEC §6)."""
    raw = base64.b64decode(line.rstrip("\n").rsplit(" ", 1)[1])
    return int.from_bytes(raw[4:12], "big")

"""The integrity log (SPEC §3–7): one leaf per accepted envelope, a dense index,
signed checkpoints that never contradict each other, receipts and proofs.

The integrator follows the application's notification log in order and gives
each accepted statement the next index 0, 1, 2, … (PostgreSQL's notification
ids have gaps; the index has none). Entries, Merkle nodes and the tracking
position are written in one transaction (``LogStore.append``), so a crash at
any point resumes with no gap, duplicate or fork.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle, notes
from ledger.canonical import canonical_bytes
from ledger.durable import replace_durably
from ledger.envelope import decode_b64, statement_digest
from ledger.errors import InconsistentCheckpoint, NotFound, ProofError
from ledger.storage import LogStore

# (notification id, record id, recorded_at, envelope JSON) of accepted statements
# with notification id > after, in order, at most limit of them.
RecordSource = Callable[[int, int], Sequence[tuple[int, str, str, dict[str, Any]]]]
EnvelopeSource = Callable[[str], dict[str, Any]]  # record id → envelope JSON


def entry_object(index: int, recorded_at: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """SPEC §3: the log entry, exactly these three fields."""
    return {"index": index, "recorded_at": recorded_at, "envelope": envelope}


def leaf_bytes(index: int, recorded_at: str, envelope: dict[str, Any]) -> bytes:
    """SPEC §3: the leaf bytes are the JCS canonical form of the entry."""
    return canonical_bytes(entry_object(index, recorded_at, envelope))


@dataclass(frozen=True, slots=True)
class Receipt:
    """What ``Ledger.submit`` returns: where the statement sits in the log and the
    C2SP tlog-proof that proves it. ``duplicate`` is True when the same envelope
    had been recorded before (this is its first receipt, re-issued)."""

    index: int
    statement_digest: str
    leaf_hash: bytes
    recorded_at: str
    tlog_proof: str
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "statement_digest": self.statement_digest,
            "leaf_hash": self.leaf_hash.hex(),
            "recorded_at": self.recorded_at,
            "receipt": self.tlog_proof,
        }


class IntegrityLog:
    """The Merkle log over a ``LogStore``, signed with the log's key.

    ``checkpoint_file`` keeps the last signed checkpoint outside the database:
    at start (``check_rollback``) and before every signature the log refuses to
    go on if the database no longer holds the tree that file commits to.
    """

    def __init__(
        self,
        store: LogStore,
        *,
        origin: str,
        key: Ed25519PrivateKey | None,
        records: RecordSource,
        envelope_of: EnvelopeSource,
        checkpoint_file: Path | None = None,
    ) -> None:
        self.store = store
        self.origin = origin
        self.key = key
        self.records = records
        self.envelope_of = envelope_of
        self.checkpoint_file = checkpoint_file
        self._frontier: merkle.CompactRange | None = None
        self._leaves: dict[int, bytes] = {}  # index → leaf bytes, of what integrate last appended
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- integrating

    @property
    def size(self) -> int:
        return self.store.tracking()[1]

    def integrate(self, *, batch: int = 500) -> int:
        """Append every accepted statement not yet in the log; returns the new size."""
        with self._lock:
            appended: dict[int, bytes] = {}
            while True:
                position, size = self.store.tracking()
                pending = self.records(position, batch)
                if not pending:
                    if appended:
                        self._leaves = appended
                    return size
                frontier = self._frontier_at(size)
                last_at = self._last_recorded_at(size)
                entries, nodes, leaves = [], [], {}
                for offset, (notification_id, record_id, recorded_at, envelope) in enumerate(pending):
                    index = size + offset
                    # SPEC §3: recorded_at never decreases along the index.
                    recorded_at = max(recorded_at, last_at) if last_at else recorded_at
                    last_at = recorded_at
                    data = leaves[index] = leaf_bytes(index, recorded_at, envelope)
                    nodes += frontier.append(merkle.leaf_hash(data))
                    digest = statement_digest(decode_b64(envelope["payload"]))
                    entries.append((index, notification_id, record_id, recorded_at, digest))
                if not self.store.append(
                    expected=(position, size), position=pending[-1][0], entries=entries, nodes=nodes
                ):
                    self._frontier = None  # another integrator moved first: reload and retry
                    continue
                self._frontier = frontier
                if len(appended) > 10_000:  # receipts need the last batch's; keep memory bounded
                    appended = {}
                appended.update(leaves)

    def _frontier_at(self, size: int) -> merkle.CompactRange:
        if self._frontier is None or self._frontier.size != size:
            self._frontier = merkle.CompactRange.load(size, self.store.read_nodes)
        return merkle.CompactRange(self._frontier.size, list(self._frontier.peaks))

    def _last_recorded_at(self, size: int) -> str | None:
        entry = self.store.entry(size - 1) if size else None
        return entry[2] if entry else None

    # ---------------------------------------------------------------- reading

    def entry(self, index: int) -> dict[str, Any]:
        """The log entry at ``index`` (SPEC §3). Raises NotFound."""
        found = self.store.entry(index)
        if found is None:
            raise NotFound(f"no entry {index} (log size {self.size})")
        _, record_id, recorded_at = found
        return entry_object(index, recorded_at, self.envelope_of(record_id))

    def leaf_hash(self, index: int) -> bytes:
        node = self.store.read_nodes([(0, index)]).get((0, index))
        if node is None:
            raise NotFound(f"no leaf {index}")
        return node

    def root_at(self, size: int) -> bytes:
        return merkle.root_at(size, self.store.read_nodes)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return merkle.inclusion_proof(index, size, self.store.read_proof_nodes)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check_size(new)
        if not 0 < old <= new:
            raise ProofError(f"a consistency proof needs 0 < old <= new, got {old}, {new}")
        return merkle.consistency_proof(old, new, self.store.read_proof_nodes)

    def _check_size(self, size: int) -> None:
        if size > self.size:
            raise NotFound(f"the log has {self.size} entries, not {size}")

    # ---------------------------------------------------------------- checkpoints

    def check_rollback(self) -> None:
        """Refuse to run on a database older than (or different from) the last
        checkpoint this log signed. Raises InconsistentCheckpoint."""
        if self.checkpoint_file is None or not self.checkpoint_file.exists():
            return
        signed = notes.parse_note(self.checkpoint_file.read_text("utf-8")).checkpoint
        size = self.size
        if size < signed.size:
            raise InconsistentCheckpoint(
                f"the database holds {size} entries but the log already signed a checkpoint of "
                f"size {signed.size} ({self.checkpoint_file}): it was rolled back or truncated",
                expected=signed.size, found=size,
            )  # fmt: skip
        root = self.root_at(signed.size)
        if root != signed.root:
            raise InconsistentCheckpoint(
                f"the database's tree at size {signed.size} does not match the last signed "
                f"checkpoint ({self.checkpoint_file}): it was altered",
                expected=signed.root.hex(), found=root.hex(),
            )  # fmt: skip

    def publish(self) -> str:
        """Sign a checkpoint of the current size if none exists yet; returns the
        latest note with its cosignatures."""
        with self._lock:
            size = self.size
            latest = self.store.latest_checkpoint()
            if latest is None or latest[0] < size:
                self._sign(size)
            return self.latest_note()

    def _sign(self, size: int) -> None:
        if self.key is None:
            raise InconsistentCheckpoint("this process holds no log key and cannot sign")
        self.check_rollback()
        root = self.root_at(size)
        note = notes.sign_checkpoint(notes.Checkpoint(self.origin, size, root), origin_key=self.key)
        if self.checkpoint_file is not None:
            # The promise goes to disk first: whatever the database does next, the
            # log can never sign a checkpoint inconsistent with this one.
            replace_durably(self.checkpoint_file, note)
        self.store.store_checkpoint(size, root, note)

    def latest_note(self) -> str:
        """The latest signed checkpoint with every cosignature stored for it."""
        latest = self.store.latest_checkpoint()
        if latest is None:
            raise NotFound("no checkpoint has been signed yet")
        size, note = latest
        return notes.add_cosignatures(note, self.store.cosignatures(size))

    def note(self, size: int) -> str:
        note = self.store.checkpoint(size)
        if note is None:
            raise NotFound(f"no checkpoint of size {size}")
        return notes.add_cosignatures(note, self.store.cosignatures(size))

    def receipts(self, accepted: Sequence[tuple[int, str, bool, dict[str, Any]]], *,
                 note: str | None = None) -> dict[int, Receipt]:  # fmt: skip
        """Receipts for just-integrated statements, given (position, record id,
        duplicate, envelope); position → Receipt, all against the latest checkpoint
        (``note``, the latest with its cosignatures, when the caller just read it).
        The inclusion proofs of all of them come from one read of the tree."""
        note = note if note is not None else self.latest_note()
        size = notes.parse_note(note).checkpoint.size
        located = self.store.locate([record_id for _, record_id, _, _ in accepted])
        places = [located[record_id] for _, record_id, _, _ in accepted]
        assert all(index < size for index, _ in places), (
            "an accepted statement is integrated and signed before submit returns"
        )
        self._check_size(size)
        proofs = merkle.inclusion_proofs([index for index, _ in places], size, self.store.read_proof_nodes)
        found = {}
        for item, (index, recorded_at), proof in zip(accepted, places, proofs, strict=True):
            position, _, duplicate, envelope = item
            data = self._leaves.get(index) or leaf_bytes(index, recorded_at, envelope)
            text = notes.format_receipt(leaf_bytes=data, index=index, proof=proof, checkpoint_note=note)
            found[position] = Receipt(
                index=index, statement_digest=statement_digest(decode_b64(envelope["payload"])),
                leaf_hash=merkle.leaf_hash(data), recorded_at=recorded_at, tlog_proof=text,
                duplicate=duplicate,
            )  # fmt: skip
        return found

    def receipt(self, index: int, *, duplicate: bool = False) -> Receipt:
        """A receipt for entry ``index`` against the latest checkpoint (which must
        hold it: ``Ledger.receipt`` signs one first, under the writer lock)."""
        note = self.latest_note()
        size = notes.parse_note(note).checkpoint.size
        if index >= size:
            raise NotFound(f"entry {index} is not under a signed checkpoint yet (size {size})")
        entry = self.entry(index)
        data = canonical_bytes(entry)
        text = notes.format_receipt(
            leaf_bytes=data, index=index, proof=self.inclusion_proof(index, size),
            checkpoint_note=note,
        )  # fmt: skip
        digest = statement_digest(decode_b64(entry["envelope"]["payload"]))
        return Receipt(
            index=index, statement_digest=digest, leaf_hash=merkle.leaf_hash(data),
            recorded_at=entry["recorded_at"], tlog_proof=text, duplicate=duplicate,
        )  # fmt: skip

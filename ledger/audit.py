"""The full audit of a ledger database (``saksi verify``) and the replay of log
entries that audit bundles share with it.

Checks, numbered as in SPEC §8 "Verifying a bundle":
 1. every envelope is in canonical form and its signature verifies;
 2. the registry, replayed from the registry entries in index order, shows each
    signer's key in force and a mandate in force for the statement (genesis first);
 3. every leaf recomputed from the stored events equals the stored leaf, the
    index is dense, and every stored Merkle node equals the recomputed one;
 4. every stored checkpoint (and the last-checkpoint file) is signed by the log
    and commits to the recomputed root at its size;
 5. every stored cosignature verifies by a key of an actor holding a witness
    mandate for ID at the cosignature's time.

Memory stays bounded whatever the log's size: entries are streamed in chunks, the
tree is folded as a compact range, the replayed registry is kept on disk
(``SQLiteRegistry``: a temporary database, a bounded number of decoded actors in
memory), and signatures are checked in batches on a thread pool (both cores:
Ed25519 verification releases the GIL) with ``ledger.ed25519`` (libsodium first,
OpenSSL's verdict whenever libsodium refuses).
Each envelope is parsed and its statement validated once; the stored Merkle nodes
of a chunk are read in one go. The deferred checks (signatures, nodes) are settled
before any later failure is reported, so the first bad index still wins.
The cycle collector is paused while entries are checked and settled a chunk at a time
(``ledger.collector``, as on the write path): its full collections had walked the
registry's cached actors again and again, a fifth of ``saksi verify``'s time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from ledger import ed25519, merkle, notes, registry
from ledger.accepted import accepted_statement, record_state
from ledger.application import RECORD_TOPIC, Ledger, record_uuid_bytes
from ledger.collector import collector_paused, settle
from ledger.envelope import PAYLOAD_TYPE, Envelope, b64, decode_statement, pae, parse_envelope
from ledger.errors import AuditFailure, SaksiError
from ledger.log import leaf_bytes
from ledger.registry import GenesisRegistrar
from ledger.sqlite_registry import SQLiteRegistry
from ledger.statements import Statement, is_registry
from ledger.witness import check_cosignature

CHUNK = 1000
SIGNATURE_BATCH = 2000

Progress = Callable[[int], None]  # called with the number of entries checked so far


def _verify_batch(batch: list[tuple[int, bytes, bytes, bytes]]) -> int | None:
    """Worker: the first index in ``batch`` whose signature fails, or None."""
    accepts = ed25519.accepts
    for index, public_key, message, signature in batch:
        if not accepts(public_key, message, signature):
            return index
    return None


class SignatureChecker:
    """Verifies Ed25519 signatures in batches on ``workers`` threads (0: inline), or in
    the worker processes of ``processes`` when given. Verification releases the GIL,
    so the threads use every core; in worker processes it also leaves the auditing
    process's one thread to the replay."""

    def __init__(self, workers: int, processes: Executor | None = None) -> None:
        self.own_pool = processes is None and workers > 0
        self.pool: Executor | None = processes
        if self.own_pool:
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="audit-verify")
        self.batch: list[tuple[int, bytes, bytes, bytes]] = []
        self.pending: list[Future[int | None]] = []
        self.failed: int | None = None

    def add(self, index: int, public_key: bytes, message: bytes, signature: bytes) -> None:
        self.batch.append((index, public_key, message, signature))
        if len(self.batch) >= SIGNATURE_BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        if self.pool is None:
            self._note(_verify_batch(batch))
            return
        self.pending.append(self.pool.submit(_verify_batch, batch))
        while len(self.pending) > 4:  # bounded: memory does not grow with the log
            self._note(self.pending.pop(0).result())

    def _note(self, failed: int | None) -> None:
        if failed is not None and (self.failed is None or failed < self.failed):
            self.failed = failed

    def finish(self) -> int | None:
        """Wait for every batch; the first failing index, or None."""
        self._flush()
        for future in self.pending:
            self._note(future.result())
        self.pending = []
        return self.failed

    def close(self) -> None:
        if self.own_pool and self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def parse_entry(index: int, envelope_json: Any) -> tuple[Envelope, Statement]:
    """The entry's envelope and statement, strictly parsed (check 1 but the signature).
    Raises AuditFailure naming ``index``."""
    try:
        envelope = parse_envelope(envelope_json)
        return envelope, decode_statement(envelope)
    except SaksiError as error:
        raise AuditFailure(index, f"{error.code}: {error}") from None


_LEAF = '{"envelope":{"payload":"%s","payloadType":"%s","signatures":[{"keyid":"%s","sig":"%s"}]},"index":%d,"recorded_at":%s}'


def entry_leaf_bytes(index: int, recorded_at: str, envelope: Envelope) -> bytes:
    """``log.leaf_bytes(index, recorded_at, envelope_json)`` for an envelope that
    ``parse_envelope`` accepted from ``envelope_json``: that JSON then is exactly
    ``envelope.to_json()``, whose strings (payload type, base64, hex) need no
    escaping, so the canonical form is written directly. Requires an int ``index``."""
    if not recorded_at.isascii():  # the general path, for whatever a tampered row holds
        return leaf_bytes(index, recorded_at, envelope.to_json())
    # Without ensure_ascii, json.dumps escapes ASCII text as RFC 8785 does (DEL kept as is).
    return (_LEAF % (b64(envelope.payload), envelope.payload_type, envelope.keyid, b64(envelope.sig), index,
                     json.dumps(recorded_at, ensure_ascii=False))).encode("ascii")  # fmt: skip


@dataclass
class Replay:
    """Replays log entries in index order: canonical form, genesis, registry, mandates
    (checks 1–2). Signatures go to ``signatures``; call ``finish`` at the end, and
    ``close`` when done with ``registry`` (it removes its temporary database)."""

    genesis: tuple[GenesisRegistrar, ...]
    signatures: SignatureChecker
    dense: bool = True  # False for a selective bundle: indexes ascend with gaps
    registry: SQLiteRegistry = field(default_factory=SQLiteRegistry)  # with registry digest → index
    count: int = 0
    last: int = -1

    def entry(self, index: int, recorded_at: str, envelope_json: Any) -> Any:
        """Check one entry; returns its statement. Raises AuditFailure naming ``index``."""
        self._order(index)
        envelope, statement = parse_entry(index, envelope_json)
        return self._replay(index, recorded_at, envelope, statement)

    def _order(self, index: int) -> None:
        if index != self.count if self.dense else index <= self.last:
            raise AuditFailure(index, f"expected entry {self.count if self.dense else '> ' + str(self.last)} here")
        if not self.dense and index > self.last + 1 and self.last + 1 < len(self.genesis):
            raise AuditFailure(self.last + 1, "a genesis registration is missing")

    def parsed(self, index: int, recorded_at: str, envelope: Envelope, statement: Statement | Brief) -> Statement | Brief:
        """``entry`` for an envelope already parsed by ``parse_entry``."""
        self._order(index)
        return self._replay(index, recorded_at, envelope, statement)

    def _replay(self, index: int, recorded_at: str, envelope: Envelope, statement: Statement | Brief) -> Statement | Brief:
        try:
            if index < len(self.genesis):
                public_key = registry.check_genesis(statement, envelope.keyid, self.genesis[index])
            else:
                public_key = registry.authorise(
                    self.registry, statement, envelope.keyid, recorded_at
                ).public_key
            if is_registry(statement.type):
                actor = registry.apply_registry(self.registry, statement, recorded_at)
                actor.collect_events()
                self.registry.put(actor)
                self.registry.record_index(statement.digest, index)
        except SaksiError as error:
            raise AuditFailure(index, f"{error.code}: {error}") from None
        self.signatures.add(index, public_key, pae(PAYLOAD_TYPE, envelope.payload), envelope.sig)
        self.count += 1
        self.last = index
        return statement

    def finish(self) -> None:
        failed = self.signatures.finish()
        if failed is not None:
            raise AuditFailure(failed, "bad-signature: the envelope's signature does not verify")
        if self.last + 1 < len(self.genesis):
            raise AuditFailure(self.last + 1, "the log ends before every genesis registrar is registered")

    def check_first_failure(self, error: AuditFailure) -> AuditFailure:
        """The earliest failure: a signature failing before ``error.index`` wins."""
        failed = self.signatures.finish()
        if failed is not None and (error.index is None or failed < error.index):
            return AuditFailure(failed, "bad-signature: the envelope's signature does not verify")
        return error

    def close(self) -> None:
        self.registry.close()


@dataclass(frozen=True)
class AuditReport:
    size: int
    root: bytes
    checkpoints: int
    cosignatures: int
    processes: int = 0  # worker processes that parsed the entries


class UnreadableRow(Exception):
    """A stored event row the database itself cannot return (tampered bytes)."""


def records(ledger: Ledger) -> Iterator[tuple[int, UUID, Any]]:
    """(notification id, originator id, notification) of every record, in order.
    Raises UnreadableRow at the first row that cannot be read."""
    position = 0
    while True:
        try:
            chunk = ledger.recorder.select_notifications(
                start=position, limit=CHUNK, topics=[RECORD_TOPIC], inclusive_of_start=False
            )
        except PersistenceError:
            chunk = []
            while True:  # read one row at a time up to the unreadable one
                try:
                    one = ledger.recorder.select_notifications(
                        start=position, limit=1, topics=[RECORD_TOPIC], inclusive_of_start=False
                    )
                except PersistenceError as error:
                    yield from ((n.id, n.originator_id, n) for n in chunk)
                    raise UnreadableRow(str(error)) from None
                chunk += one
                position = one[-1].id
        if not chunk:
            return
        for notification in chunk:
            yield notification.id, notification.originator_id, notification
        position = chunk[-1].id


def _stored_entries(ledger: Ledger) -> Iterator[tuple[int, int, str, str]]:
    start = 0
    while True:
        rows = ledger.tlog.store.entries(start, start + CHUNK)
        yield from rows
        if len(rows) < CHUNK:
            return
        start += CHUNK


def audit_ledger(
    ledger: Ledger,
    *,
    log_key: str,
    checkpoint_file: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    processes: int | None = None,
) -> AuditReport:
    """Audit ``ledger``'s database against the log's public key ``log_key`` (note
    vkey). Returns a report when everything holds; raises AuditFailure naming the
    first bad index otherwise (index None for a fault not tied to one entry).

    ``processes`` forked processes parse entries (0: inline; None: see ``entry_parser``)
    and check signatures; without them ``workers`` threads check signatures (0: inline,
    always)."""
    parser = entry_parser(ledger, processes)  # first: it forks before any thread starts
    with ExitStack() as stack:  # whatever fails from here on, the workers are shut down
        stack.callback(parser.close)
        checker = SignatureChecker(min(2, os.cpu_count() or 1) if workers is None else workers,
                                   getattr(parser, "pool", None) if workers != 0 else None)  # fmt: skip
        stack.callback(checker.close)
        replay = Replay(ledger.genesis, checker)
        stack.callback(replay.close)
        checkpoints = {size: (root, note) for size, root, note in ledger.tlog.store.checkpoints()}
        with collector_paused():  # settled a chunk at a time by _Walk.check
            frontier, roots = _check_entries(ledger, replay, checkpoints, progress, parser)
        root = frontier.root()
        _check_checkpoints(checkpoints, roots, frontier.size, log_key, checkpoint_file, root)
        cosignatures = _check_cosignatures(ledger, checkpoints, replay)
    return AuditReport(frontier.size, root, len(checkpoints), cosignatures, parser.processes)


def _check_entries(
    ledger: Ledger, replay: Replay, checkpoints: dict[int, tuple[bytes, str]],
    progress: Progress | None, parser: EntryParser,
) -> tuple[merkle.CompactRange, dict[int, bytes]]:  # fmt: skip
    """Checks 1–3 over every entry in index order; the folded tree and its roots at
    the checkpoints' sizes. Raises AuditFailure naming the first bad index.

    The rows are read here, in order; ``parser`` decodes and parses them a chunk at a
    time (in worker processes, or inline) and their results are checked here in index
    order, so the first bad index still wins whatever the parser does."""
    walk = _Walk(ledger, replay, checkpoints, progress)
    _, tracked_size = ledger.tlog.store.tracking()
    pending: deque[tuple[list[_Row], Any]] = deque()
    batch: list[_Row] = []

    def send() -> None:
        nonlocal batch
        if batch:
            pending.append((batch, parser.submit([(i, _plain(n[2]), s[3]) for i, n, s in batch])))
            batch = []

    def settle(keep: int) -> None:
        while len(pending) > keep:
            rows, job = pending.popleft()
            for row, parsed in zip(rows, parser.result(job), strict=True):
                walk.check(*row, parsed)

    try:
        entries = _stored_entries(ledger)
        found_records = records(ledger)
        index = -1
        while True:
            index += 1
            try:
                found = next(found_records, None)
            except UnreadableRow as error:
                send()
                settle(0)
                raise AuditFailure(index, f"the stored event cannot be read: {error}") from None
            if found is None:
                break
            stored = next(entries, None)
            if stored is None:
                send()
                settle(0)
                walk.unlisted(index, found[2], tracked_size)
            batch.append((index, found, stored))
            if len(batch) >= PARSE_CHUNK:
                send()
                settle(parser.in_flight)
        send()
        settle(0)
        walk.nodes.check()
        extra = next(entries, None)
        if extra is not None:
            raise AuditFailure(extra[0], "the log has an entry whose statement event is gone")
        if tracked_size != walk.frontier.size:
            raise AuditFailure(walk.frontier.size, f"the tracking row claims {tracked_size} entries")
        replay.finish()
    except AuditFailure as failure:
        raise replay.check_first_failure(walk.nodes.check_first_failure(failure)) from None
    if progress:
        progress(walk.frontier.size)
    return walk.frontier, walk.roots


_Row = tuple[int, tuple[int, UUID, Any], tuple[int, int, str, str]]  # index, found record, entry row

# What a parser makes of one entry: ("undecodable", error text), or ("parsed", the
# event's recorded_at, then either (None, failure text) or (envelope, leaf hash,
# whether the event's originator id is its statement's record id, the statement or
# None when it is to be built again from the envelope's payload)).
Parsed = tuple[Any, ...]


# A record notification as the parsers take it: its originator id's 16 bytes and its
# stored state. Plain values pickle several times faster than the frozen dataclass.
PlainRecord = tuple[bytes, bytes]


def _plain(notification: Any) -> PlainRecord:
    return notification.originator_id.bytes, notification.state


def parse_record(mapper: Any, index: int, record: PlainRecord, entry_at: Any) -> Parsed:
    """Decode a record notification (as ``_plain`` gives it) and parse its entry (check 1
    but the signature): the per-entry work that needs no other entry, hence can run anywhere."""
    originator, state = record
    try:
        accepted = record_state(mapper, state)
        if type(accepted) is not dict:
            raise ValueError("the stored state is not a JSON object")
    except Exception as error:  # a stored event that no longer decodes: tampered
        return ("undecodable", f"{type(error).__name__}: {error}")
    recorded_at = accepted.get("recorded_at", "")
    try:
        envelope, statement = parse_entry(index, accepted.get("envelope"))
        originator_ok = record_uuid_bytes(statement.id) == originator
        # A tampered entry row may hold anything; _Walk.check refuses it before using the leaf.
        leaf = merkle.leaf_hash(entry_leaf_bytes(index, entry_at, envelope)) if isinstance(entry_at, str) else b""
    except AuditFailure as failure:
        return ("parsed", recorded_at, None, str(failure).removeprefix(f"index {index}: "))
    except Exception as error:  # whatever a tampered event holds, it fails this entry alone, in order
        return ("parsed", recorded_at, None, f"the entry cannot be parsed: {type(error).__name__}: {error}")
    if not isinstance(recorded_at, str):
        return ("parsed", "", None, "the stored event's recorded_at is not text")
    return ("parsed", recorded_at, envelope, leaf, originator_ok, statement)


@dataclass
class _Walk:
    """The checks that follow the index: order, ``recorded_at``, the replay, the tree."""

    ledger: Ledger
    replay: Replay
    checkpoints: dict[int, tuple[bytes, str]]
    progress: Progress | None
    last_at: str = ""
    roots: dict[int, bytes] = field(default_factory=dict)
    frontier: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    nodes: NodeChecker = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = NodeChecker(self.ledger.tlog.store)

    def unlisted(self, index: int, notification: Any, tracked_size: int) -> NoReturn:
        """A record with no entry row: not integrated yet (checked all the same), or the
        row is gone. Raises AuditFailure."""
        parsed = parse_record(self.ledger.mapper, index, _plain(notification), None)
        if parsed[0] == "undecodable":
            raise AuditFailure(index, f"the stored event cannot be decoded: {parsed[1]}")
        if index >= tracked_size:  # not integrated yet: check it all the same
            _, recorded_at, envelope, *rest = parsed
            if envelope is None:
                raise AuditFailure(index, rest[0])
            self.replay.parsed(index, max(recorded_at, self.last_at), envelope, rest[2])
            raise AuditFailure(index, "a recorded statement is not yet in the log")
        raise AuditFailure(index, "the log's entry row is missing")

    def check(self, index: int, found: tuple[int, UUID, Any], stored: tuple[int, int, str, str], parsed: Parsed) -> None:
        notification_id, originator_id, _ = found
        if parsed[0] == "undecodable":
            raise AuditFailure(index, f"the stored event cannot be decoded: {parsed[1]}")
        stored_index, stored_notification, record_id, entry_at = stored
        if stored_index != index:
            raise AuditFailure(index, f"the entry rows skip from {index} to {stored_index}")
        if stored_notification != notification_id or record_id != str(originator_id):
            raise AuditFailure(
                index, "the entry does not point at this statement's event: events were "
                "deleted, inserted or re-ordered",
            )  # fmt: skip
        _, recorded_at, envelope, *rest = parsed
        if envelope is None:
            raise AuditFailure(index, rest[0])
        leaf, originator_ok, statement = rest
        if not originator_ok:
            raise AuditFailure(index, "the event's originator id does not match its statement id")
        if entry_at != max(recorded_at, self.last_at) or (self.last_at and entry_at < self.last_at):
            raise AuditFailure(index, "recorded_at was altered or decreases along the index")
        self.last_at = entry_at
        # From a worker process the statement comes back as None or its Brief's values.
        if statement is None:
            statement = accepted_statement(envelope.payload)
        elif type(statement) is tuple:
            statement = Brief._make(statement)
        self.replay.parsed(index, entry_at, envelope, statement)
        self.nodes.add(index, self.frontier.append(leaf))
        if self.frontier.size in self.checkpoints:
            self.roots[self.frontier.size] = self.frontier.root()
        if self.frontier.size % CHUNK == 0:
            self.nodes.check()
            settle()  # the cycle collector: this chunk's young objects, not the registry's cache
            if self.progress:
                self.progress(self.frontier.size)


# ---------------------------------------------------------------- parsing, inline or in worker processes

PARSE_CHUNK = 500  # entries per parse job
PARALLEL_FROM = 5000  # below this many entries a worker process costs more than it saves

_mapper: Any = None  # the auditing process's mapper, inherited by its forked parse workers


class Brief(NamedTuple):
    """All that the replay reads of a statement that is not a registry statement
    (``registry.authorise``: its signer, type and region)."""

    type: str
    actor: str
    region: str


def _for_the_auditor(parsed: Parsed) -> Parsed:
    """What a worker sends back for an entry: a validated registry statement as None (the
    auditing process builds it again from the payload: a pickled pydantic model costs
    more), any other as the plain values of its ``Brief``."""
    if parsed[0] != "parsed" or parsed[2] is None:
        return parsed
    statement = parsed[-1]
    brief = None if is_registry(statement.type) else (statement.type, statement.actor, statement.region)
    return parsed[:-1] + (brief,)


def _parse_in_worker(rows: list[tuple[int, Any, Any]]) -> list[Parsed]:
    return [_for_the_auditor(parse_record(_mapper, index, record, entry_at)) for index, record, entry_at in rows]


class EntryParser:
    """Parses chunks of entries inline: ``submit`` does the work, ``result`` returns it."""

    in_flight = 0  # jobs the caller may leave unsettled
    processes = 0

    def __init__(self, mapper: Any) -> None:
        self.mapper = mapper

    def submit(self, rows: list[tuple[int, Any, Any]]) -> Any:
        return [parse_record(self.mapper, index, notification, entry_at) for index, notification, entry_at in rows]

    def result(self, job: Any) -> list[Parsed]:
        return job  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


class ProcessParser(EntryParser):
    """Parses chunks of entries in ``processes`` forked worker processes, a few jobs
    ahead of the caller: decoding, canonical form, validation and the leaf hash are
    most of an audit's work, and need no other entry. The workers inherit the mapper
    and touch no database; the auditing process keeps the order-bound checks."""

    def __init__(self, mapper: Any, processes: int) -> None:
        global _mapper
        super().__init__(mapper)
        _mapper = mapper
        self.processes = processes
        self.in_flight = 2 * processes
        self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
        # Fork every worker now, while this process runs one thread: with a fork context the
        # pool launches all its workers before it starts its manager thread (CPython
        # gh-90622, in every 3.11 release), and never forks on demand afterwards.
        try:
            self.pool.submit(int).result()
        except BaseException:
            self.close()
            raise

    def submit(self, rows: list[tuple[int, Any, Any]]) -> Any:
        return self.pool.submit(_parse_in_worker, rows)

    def result(self, job: Any) -> list[Parsed]:
        return job.result()  # type: ignore[no-any-return]

    def close(self) -> None:
        global _mapper
        self.pool.shutdown(cancel_futures=True)
        _mapper = None


def cannot_fork(ledger: Ledger) -> str | None:
    """Why the audit of ``ledger`` cannot parse in forked worker processes, or None. Fork
    copies the calling thread only, so a lock another thread held (a connection pool's,
    logging's …) would stay held in the copy forever."""
    if threading.active_count() > 1:
        return "the audit forks its parse workers, which only a process running one thread may do"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "the audit forks its parse workers, which this platform cannot do"
    return None


def entry_parser(ledger: Ledger, processes: int | None) -> EntryParser:
    """Worker processes (``processes``; None: two when the log is large, the machine has
    two cores and the process can fork) or inline."""
    if processes is None:
        enough = ledger.tlog.size >= PARALLEL_FROM and (os.cpu_count() or 1) >= 2
        processes = 2 if enough and cannot_fork(ledger) is None else 0
    elif processes > 0 and (refusal := cannot_fork(ledger)):
        raise ValueError(refusal)
    return ProcessParser(ledger.mapper, processes) if processes > 0 else EntryParser(ledger.mapper)


class NodeChecker:
    """Compares recomputed Merkle nodes with the stored ones, a chunk of entries per
    query (check 3)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.pending: list[tuple[int, list[tuple[tuple[int, int], bytes]]]] = []

    def add(self, index: int, nodes: list[tuple[tuple[int, int], bytes]]) -> None:
        """The nodes that entry ``index`` completed, with their recomputed hashes."""
        self.pending.append((index, nodes))

    def check(self, before: int | None = None) -> None:
        """Compare the pending nodes of entries below ``before`` (all by default).
        Raises AuditFailure naming the first entry whose node differs."""
        pending = [p for p in self.pending if before is None or p[0] < before]
        self.pending = []
        stored = self.store.read_nodes([node for _, nodes in pending for node, _ in nodes])
        for index, nodes in pending:
            for node, value in nodes:
                if stored.get(node) != value:
                    what = "leaf" if node[0] == 0 else f"Merkle node {node}"
                    raise AuditFailure(index, f"the stored {what} does not match the recomputed one")

    def check_first_failure(self, error: AuditFailure) -> AuditFailure:
        """The earliest failure: a node differing before ``error.index`` wins."""
        try:
            self.check(error.index)
        except AuditFailure as earlier:
            return earlier
        return error


def _check_checkpoints(
    checkpoints: dict[int, tuple[bytes, str]], roots: dict[int, bytes], size: int,
    log_key: str, checkpoint_file: Path | None, root: bytes,
) -> None:  # fmt: skip
    for cp_size, (stored_root, note) in sorted(checkpoints.items()):
        try:
            checkpoint = notes.verify_checkpoint(note, log_key=log_key).checkpoint
        except SaksiError as error:
            raise AuditFailure(None, f"checkpoint of size {cp_size}: {error}") from None
        if cp_size > size:
            raise AuditFailure(size, f"a checkpoint of size {cp_size} exists but the log has {size} entries: truncated")
        if checkpoint.size != cp_size or checkpoint.root != stored_root or roots.get(cp_size) != checkpoint.root:
            raise AuditFailure(cp_size - 1 if cp_size else None,
                               f"the checkpoint of size {cp_size} does not match the recomputed tree")  # fmt: skip
    if checkpoint_file is not None and checkpoint_file.exists():
        try:
            signed = notes.verify_checkpoint(checkpoint_file.read_text("utf-8"), log_key=log_key).checkpoint
        except SaksiError as error:
            raise AuditFailure(None, f"{checkpoint_file}: {error}") from None
        if signed.size > size:
            raise AuditFailure(size, f"the log signed a checkpoint of size {signed.size} ({checkpoint_file}) "
                                     f"but the database has {size} entries: rolled back or truncated")  # fmt: skip
        expected = roots.get(signed.size) if signed.size != size else root
        if signed.size not in checkpoints and signed.size != size:
            expected = None  # not a stored size: covered by the stored checkpoints' check
        if expected is not None and expected != signed.root:
            raise AuditFailure(signed.size - 1, f"{checkpoint_file} does not match the database's tree")


def _check_cosignatures(ledger: Ledger, checkpoints: dict[int, tuple[bytes, str]], replay: Replay) -> int:
    count = 0
    for size in sorted(checkpoints):
        for line in ledger.tlog.store.cosignatures(size):
            try:
                check_cosignature(replay.registry, line, checkpoints[size][1], index_of=replay.registry.index_of)
            except SaksiError as error:
                raise AuditFailure(None, f"cosignature on checkpoint {size}: {error}") from None
            count += 1
    return count


def iter_entries(ledger: Ledger, start: int = 0, end: int | None = None) -> Iterable[dict[str, Any]]:
    """The log entries (SPEC §3) in [start, end), streamed."""
    end = ledger.tlog.size if end is None else end
    position = start
    while position < end:
        rows = ledger.tlog.store.entries(position, min(end, position + CHUNK))
        if not rows:
            return
        for index, _, record_id, recorded_at in rows:
            yield {"index": index, "recorded_at": recorded_at, "envelope": ledger._envelope_of(record_id)}
        position = rows[-1][0] + 1

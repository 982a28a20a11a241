"""The ``Ledger`` application: one write path, ``submit(envelope) -> Receipt``.

submit: (1) parse the envelope and check the payload's canonical form, (2) find
the signer's key and check the signature, (3) check the signer's key and
mandate in force (``registry.authorise``), (4) apply the statement to its
aggregate, enforcing the domain's invariants, (5) save the statement's record
and every changed aggregate in one transaction, (6) integrate it into the
Merkle log and return its receipt. Nothing is written unless all of 1–4 pass.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from copy import deepcopy
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import AggregateNotFoundError, Application, LRUCache, ProcessingEvent
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from ledger import custody, notes, registry
from ledger.collector import collector_paused, settle
from ledger.commitments import Commitment, Pledge, handle_commitment, handle_pledge
from ledger.custody import Consignment
from ledger.envelope import (
    Envelope,
    decode_b64,
    decode_statement,
    key_id,
    parse_envelope,
    verify_signature,
)
from ledger.errors import (
    BadSignature,
    ConcurrentUpdate,
    DuplicateStatementId,
    GenesisViolation,
    NotFound,
    ReadOnly,
    Refusal,
)
from ledger.log import IntegrityLog, Receipt
from ledger.registry import NAMESPACE, Actor, GenesisRegistrar
from ledger.statements import (
    ActorKeyAdded,
    ActorMandateGranted,
    ActorRegistered,
    LogisticsDispatched,
    Statement,
    format_time,
    is_registry,
)
from ledger.storage import Backend, LogStore, PinningDatastore, schema_lock, select_events_of
from ledger.witness import check_cosignature

SUBMIT_ATTEMPTS = 5
WRITER_LOCK_ID = 0x5A4B5349  # "ZKSI": the PostgreSQL advisory lock of the one writer


@lru_cache(maxsize=4096)
def record_uuid(statement_id: str) -> UUID:
    return uuid5(NAMESPACE, "statement:" + statement_id)


def record_uuid_bytes(statement_id: str) -> bytes:
    """``record_uuid(statement_id).bytes``, without building the UUID (the audit compares
    it with every record's originator id)."""
    digest = bytearray(hashlib.sha1(NAMESPACE.bytes + ("statement:" + statement_id).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5 (RFC 4122 §4.3)
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return bytes(digest)


class Record(Aggregate):
    """An accepted statement: its envelope exactly as signed, when the ledger
    recorded it, and the key and mandate that authorised it. One per statement id."""

    @staticmethod
    def create_id(statement_id: str, **_: Any) -> UUID:
        return record_uuid(statement_id)

    @event("Accepted")
    def __init__(
        self, statement_id: str, envelope: dict[str, Any], digest: str, recorded_at: str,
        type: str, actor: str, subject: str, keyid: str, mandate_id: str | None,
    ) -> None:  # fmt: skip
        self.statement_id = statement_id
        self.envelope = envelope
        self.digest = digest
        self.recorded_at = recorded_at
        self.type = type
        self.actor = actor
        self.subject = subject
        self.keyid = keyid
        self.mandate_id = mandate_id


class KeyOwner(Aggregate):
    """Index: which actor a key id belongs to. Its creation enforces one owner per key."""

    @staticmethod
    def create_id(keyid: str, **_: Any) -> UUID:
        return uuid5(NAMESPACE, "key:" + keyid)

    @event("Claimed")
    def __init__(self, keyid: str, actor_id: str) -> None:
        self.keyid = keyid
        self.actor_id = actor_id


class Office(Aggregate):
    """Index: who has held a single-holder office (role, jurisdiction)."""

    @staticmethod
    def create_id(role: str, jurisdiction: str, **_: Any) -> UUID:
        return uuid5(NAMESPACE, f"office:{role}:{jurisdiction}")

    @event("Opened")
    def __init__(self, role: str, jurisdiction: str) -> None:
        self.role = role
        self.jurisdiction = jurisdiction
        self.holders: list[tuple[str, str]] = []

    @event("HolderAdded")
    def add_holder(self, actor_id: str, mandate_id: str) -> None:
        self.holders.append((actor_id, mandate_id))


RECORD_TOPIC = get_topic(Record.Accepted)
# Saved once and read again only for a resubmitted statement or a reused key: not put in
# the aggregate cache on save, where each batch's 1,000 records pushed out the actors and
# consignments the next batches read.
WRITE_ONCE = (Record, KeyOwner)


class Verification:
    """The signature checks ``Ledger._preverify`` started: ``positions`` (in the batch)
    are being checked; ``result()`` waits for them, position → whether it verified."""

    def __init__(
        self, positions: frozenset[int], parts: list[Future[dict[int, bool]]], done: dict[int, bool] | None = None
    ) -> None:
        self.positions = positions
        self._parts = parts
        self._done = done

    def result(self) -> dict[int, bool]:
        if self._done is None:
            done: dict[int, bool] = {}
            for part in self._parts:
                done.update(part.result())
            self._done = done
        return self._done


class UnitOfWork:
    """The aggregates one submit reads and changes; saved together or not at all.

    Reads share the repository's cached aggregates, uncopied: nothing may change an
    aggregate got from ``get``. What a decision changes it takes from ``writable``
    (a private copy, made once) or creates, so the cache only ever holds saved states.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.loaded: dict[UUID, Aggregate | None] = {}
        self.changed: dict[UUID, Aggregate] = {}
        self.own: set[UUID] = set()  # loaded aggregates this unit may change

    def get(self, aggregate_id: UUID) -> Any:
        if aggregate_id not in self.loaded:
            try:
                self.loaded[aggregate_id] = self.ledger.repository.get(
                    aggregate_id, deepcopy_from_cache=False
                )
            except AggregateNotFoundError:
                self.loaded[aggregate_id] = None
        return self.loaded[aggregate_id]

    def writable(self, aggregate_id: UUID) -> Any:
        """``get``, as a copy of this unit's own that it may change."""
        aggregate = self.get(aggregate_id)
        if aggregate is not None and aggregate_id not in self.own:
            aggregate = self.loaded[aggregate_id] = deepcopy(aggregate)
            self.own.add(aggregate_id)
        return aggregate

    def put(self, aggregate: Aggregate) -> None:
        self.loaded[aggregate.id] = aggregate
        self.changed[aggregate.id] = aggregate
        self.own.add(aggregate.id)

    def load(self, aggregate_ids: Iterable[UUID], *, remember: bool = True) -> None:
        """Load at once those of ``aggregate_ids`` not loaded yet (cached or, in one
        query, stored), so that ``get`` finds them; those not stored are absent.
        ``remember=False`` leaves the cache as it is: outside the writer lock, a state
        read before a concurrent save must not replace the saved one there."""
        cache = self.ledger.repository.cache
        wanted = []
        for aggregate_id in aggregate_ids:
            if aggregate_id in self.loaded:
                continue
            try:
                if cache is None:
                    raise KeyError(aggregate_id)
                self.loaded[aggregate_id] = cache.get(aggregate_id)
            except KeyError:
                wanted.append(aggregate_id)
        if not wanted:
            return
        events: dict[UUID, list[Any]] = {aggregate_id: [] for aggregate_id in wanted}
        for stored in select_events_of(self.ledger.recorder, wanted):
            events[stored.originator_id].append(stored)
        to_domain_event = self.ledger.mapper.to_domain_event
        for aggregate_id, stored_events in events.items():
            aggregate = None
            for stored in stored_events:  # eventsourcing's project_aggregate, less its type check
                aggregate = to_domain_event(stored).mutate(aggregate)
            if aggregate is not None and cache is not None and remember:
                cache.put(aggregate_id, aggregate)
            self.loaded[aggregate_id] = aggregate

    # RegistryView and custody.Lookup
    def actor(self, actor_id: str) -> Actor | None:
        return self.get(registry.actor_uuid(actor_id))

    def key_owner(self, keyid: str) -> str | None:
        owner = self.get(KeyOwner.create_id(keyid))
        return owner.actor_id if owner else None

    def office_holders(self, role: str, jurisdiction: str) -> list[tuple[str, dict[str, Any]]]:
        office = self.get(Office.create_id(role, jurisdiction))
        if office is None:
            return []
        holders = []
        for actor_id, mandate_id in office.holders:
            actor = self.actor(actor_id)
            if actor is not None and mandate_id in actor.mandates:
                holders.append((actor_id, actor.mandates[mandate_id]))
        return holders

    def consignment(self, consignment_id: str) -> Consignment | None:
        return self.get(custody.consignment_uuid(consignment_id))

    def put_actor(self, actor: Actor) -> None:
        """Save ``actor`` with the indexes its keys and offices need."""
        self.put(actor)
        for keyid in actor.keys:
            if self.key_owner(keyid) is None:
                self.put(KeyOwner(keyid=keyid, actor_id=actor.actor_id))
        for mandate in actor.mandates.values():
            if mandate["role"] not in registry.SINGLE_HOLDER_ROLES:
                continue
            office = self.writable(Office.create_id(mandate["role"], mandate["jurisdiction"]))
            if office is None:
                office = Office(role=mandate["role"], jurisdiction=mandate["jurisdiction"])
            if (actor.actor_id, mandate["id"]) not in office.holders:
                office.add_holder(actor_id=actor.actor_id, mandate_id=mandate["id"])
                self.put(office)


AGGREGATE_CACHE = 400_000  # aggregates; SAKSI_AGGREGATE_CACHE overrides


def aggregate_cache_size() -> int:
    """How many aggregates a ledger process keeps decoded (``SAKSI_AGGREGATE_CACHE``,
    default ``AGGREGATE_CACHE``; about 3 KB each). At national scale every region moves
    at once, so an actor or consignment comes back after some 300,000 others: with
    50,000 cached, 72 % of the aggregates a batch needed were read and replayed from
    the database (about 0.15 ms each), and batch ingest fell from 961 statements/s at
    the start to 420/s at 1.8 M entries. Raises ValueError for anything but a whole
    number of at least 1."""
    text = os.environ.get("SAKSI_AGGREGATE_CACHE", str(AGGREGATE_CACHE))
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise ValueError(f"SAKSI_AGGREGATE_CACHE must be a whole number of aggregates (at least 1), not {text!r}")
    return int(text)


class Ledger(Application):
    """The Saksi ledger. Construct with ``Ledger.open(...)`` or directly.

    ``database_url``: ``sqlite:///PATH``, ``postgresql://…`` or ``memory:``.
    ``genesis``: the registrars fixed when the ledger was created.
    ``log_key``: the log's Ed25519 key (None for a read-only process).
    ``clock``: the ledger's clock for ``recorded_at`` (UTC now by default).
    ``audit``: open for ``ledger.audit`` only: integrate nothing, check nothing at start.
    """

    name = "saksi"

    def __init__(
        self,
        *,
        database_url: str,
        origin: str,
        genesis: Sequence[GenesisRegistrar],
        log_key: Ed25519PrivateKey | None,
        checkpoint_file: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        env: dict[str, str] | None = None,
        audit: bool = False,
    ) -> None:
        backend = Backend.parse(database_url)
        self.env_overrides = dict(env or {})  # for another process opening the same ledger
        environment = {
            **backend.environment(),
            "AGGREGATE_CACHE_MAXSIZE": str(aggregate_cache_size()),
            # No fast-forward query per cache hit: the cache is cleared instead whenever
            # another process has written since this one last did (see _fresh_cache).
            "AGGREGATE_CACHE_FASTFORWARD": "n",
            **(env or {}),
        }
        with schema_lock(backend):
            super().__init__(environment)
        self.backend = backend
        self.genesis = tuple(genesis)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        if backend.kind == "memory":
            store = LogStore.in_memory()
        else:
            store = LogStore(self.recorder.datastore, dialect=backend.kind)  # type: ignore[attr-defined]
        with schema_lock(backend):
            store.create_tables()
        self.tlog = IntegrityLog(
            store, origin=origin, key=log_key, records=self._records,
            envelope_of=self._envelope_of, checkpoint_file=checkpoint_file,
        )  # fmt: skip
        self._genesis_done = False
        self._verifier = ThreadPoolExecutor(2, thread_name_prefix="verify")
        self._cache_mark: int | None = -1
        if not audit:  # an auditor looks at the database as it is and changes nothing
            self.tlog.integrate()
            self.tlog.check_rollback()

    # ---------------------------------------------------------------- the write path

    def submit(self, envelope: Envelope | bytes | str | dict[str, Any]) -> Receipt:
        """Record one signed statement; returns its receipt (the first receipt again
        for an envelope recorded before). Raises a ``Refusal`` and records nothing."""
        return self._submit_many([envelope], strict=True)[0]  # type: ignore[return-value]

    def submit_batch(
        self, envelopes: Iterable[Envelope | bytes | str | dict[str, Any]]
    ) -> list[Receipt | Refusal]:
        """Record each envelope independently, in order: each result is a Receipt or
        the Refusal for that item. Accepted items are durable whatever the others do."""
        return self._submit_many(list(envelopes), strict=False)

    def _submit_many(self, envelopes: list[Any], *, strict: bool) -> list[Receipt | Refusal]:
        """Check every envelope, save every accepted statement of the batch in one
        transaction, integrate, sign one checkpoint, and return a receipt or a refusal
        per item. A batch's signatures are verified on a thread pool while this thread
        takes the writer lock and decides (Ed25519 verification releases the GIL: both
        cores work); see ``_accept_all``."""
        if self.tlog.key is None:
            raise ReadOnly("this ledger process holds no log key and records nothing")
        results: list[Receipt | Refusal | None] = [None] * len(envelopes)
        parsed: list[tuple[int, Envelope, Statement]] = []
        for position, item in enumerate(envelopes):
            try:
                # An Envelope object is checked like JSON: the same rules for everyone.
                envelope = parse_envelope(item.to_json() if isinstance(item, Envelope) else item)
                parsed.append((position, envelope, decode_statement(envelope)))
            except Refusal as refusal:
                if strict:
                    raise
                results[position] = refusal
        verification, mark, signers = self._preverify(parsed)
        with self._writer(), collector_paused():
            self._fresh_cache()
            self.tlog.integrate()  # whatever a crashed writer left behind comes first
            if mark == self._cache_mark:  # nothing recorded since the signers were read:
                self._remember(signers)  # they are current, and need not be read again
            accepted = self._accept_all(parsed, verification, results, strict=strict)
            self._cache_mark = self.recorder.max_notification_id()
            if accepted:
                self.tlog.integrate()
                note = self.tlog.publish()  # under the writer lock: still the latest below
                for position, receipt in self.tlog.receipts(accepted, note=note).items():
                    results[position] = receipt
            settle()  # what the batch left alive, the cache mostly, out of the collector's sight
        return results  # type: ignore[return-value]

    def _preverify(
        self, parsed: list[tuple[int, Envelope, Statement]]
    ) -> tuple[Verification, int | None, dict[UUID, Aggregate | None]]:
        """Start verifying, where the signer's key is already known, each signature (on
        the verifier threads for a batch of 16 or more). Unknown keys are left to
        ``_authorise`` (which refuses). Also returns the last notification id recorded
        before the signers were read, and the signers as read (None: not registered)."""
        jobs = []
        mark = self.recorder.max_notification_id()
        work = UnitOfWork(self)
        work.load((registry.actor_uuid(statement.actor) for _, _, statement in parsed), remember=False)
        for position, envelope, statement in parsed:
            actor = work.actor(statement.actor)
            entry = actor.keys.get(envelope.keyid) if actor is not None else None
            if entry is not None:
                jobs.append((position, envelope, decode_b64(entry["key"])))

        def check(chunk: list[tuple[int, Envelope, bytes]]) -> dict[int, bool]:
            verified = {}
            for position, envelope, public_key in chunk:
                try:
                    verify_signature(envelope, public_key)
                    verified[position] = True
                except BadSignature:
                    verified[position] = False
            return verified

        positions = frozenset(position for position, _, _ in jobs)
        if len(jobs) < 16:
            return Verification(positions, [], check(jobs)), mark, work.loaded
        half = len(jobs) // 2  # one task per worker thread: no future per signature
        parts = [self._verifier.submit(check, jobs[:half]), self._verifier.submit(check, jobs[half:])]
        return Verification(positions, parts), mark, work.loaded

    def _accept_all(
        self, parsed: list[tuple[int, Envelope, Statement]], verification: Verification,
        results: list[Receipt | Refusal | None], *, strict: bool,
    ) -> list[tuple[int, str, bool, dict[str, Any]]]:  # fmt: skip
        """Decide every statement in one unit of work (later items see earlier ones)
        and save all accepted ones in one transaction; (position, record id, duplicate,
        envelope) of each accepted one.

        A batch is decided while its signatures are still being checked on the other
        core, each taken as good; the verdicts are awaited before anything is saved. If
        one is bad, that decision is dropped unsaved and the batch decided again with
        the verdicts (a later item may depend on the refused one)."""
        verified = verification.result() if strict else dict.fromkeys(verification.positions, True)
        work, accepted = self._decide_all(parsed, verified, results, strict=strict)
        if verified != (verdicts := verification.result()):
            for position, _, _ in parsed:
                results[position] = None
            work, accepted = self._decide_all(parsed, verdicts, results, strict=strict)
        if work.changed:
            try:
                self._save_all(work.changed.values())
            except IntegrityError:
                # Only a writer outside the writer lock can get here: decide one by one.
                self._cache_mark = -1
                self._fresh_cache()
                for position, *_ in accepted:
                    results[position] = None
                return self._accept_one_by_one(parsed, results, strict=strict)
        return accepted

    def _decide_all(
        self, parsed: list[tuple[int, Envelope, Statement]], verified: dict[int, bool],
        results: list[Receipt | Refusal | None], *, strict: bool,
    ) -> tuple[UnitOfWork, list[tuple[int, str, bool, dict[str, Any]]]]:  # fmt: skip
        """Every statement decided in one new unit of work, nothing saved; the unit and
        (position, record id, duplicate, envelope) of each accepted one. A refusal goes
        to ``results`` (raised when ``strict``)."""
        work = UnitOfWork(self)
        self._prefetch(work, [statement for _, _, statement in parsed])
        accepted: list[tuple[int, str, bool, dict[str, Any]]] = []
        size = self.tlog.size
        last = self.tlog.store.entry(size - 1) if size else None
        last_at = last[2] if last else ""
        for position, envelope, statement in parsed:
            try:
                at = max(format_time(self.clock()), last_at)
                record_id, duplicate = self._accept(work, envelope, statement, at, verified.get(position))
            except Refusal as refusal:
                if strict:
                    raise
                results[position] = refusal
                continue
            if not duplicate:
                last_at = at
            accepted.append((position, record_id, duplicate, envelope.to_json()))
        return work, accepted

    def _accept_one_by_one(
        self, parsed: list[tuple[int, Envelope, Statement]], results: list[Receipt | Refusal | None],
        *, strict: bool,
    ) -> list[tuple[int, str, bool, dict[str, Any]]]:  # fmt: skip
        accepted = []
        for position, envelope, statement in parsed:
            if results[position] is not None:
                continue
            for _ in range(SUBMIT_ATTEMPTS):
                work = UnitOfWork(self)
                try:
                    record_id, duplicate = self._accept(work, envelope, statement, self._now(), None)
                    if work.changed:
                        self._save_all(work.changed.values())
                except IntegrityError:
                    self._cache_mark = -1
                    self._fresh_cache()
                    continue  # another writer changed one of these aggregates: decide again
                except Refusal as refusal:
                    if strict:
                        raise
                    results[position] = refusal
                    break
                accepted.append((position, record_id, duplicate, envelope.to_json()))
                break
            else:
                refusal = ConcurrentUpdate(
                    f"statement {statement.id!r} kept conflicting with concurrent writes; submit it again"
                )
                if strict:
                    raise refusal
                results[position] = refusal
        return accepted

    def _accept(
        self, work: UnitOfWork, envelope: Envelope, statement: Statement, at: str, verified: bool | None
    ) -> tuple[str, bool]:
        """Check one statement and stage its changes in ``work``; returns (record id,
        was it a duplicate). Raises a Refusal and stages nothing."""
        existing = work.get(record_uuid(statement.id))
        if existing is not None:
            if existing.envelope == envelope.to_json():
                return str(existing.id), True
            raise DuplicateStatementId(
                f"statement id {statement.id!r} is already used by another statement ({existing.digest})",
                statement_id=statement.id,
            )
        mandate = self._authorise(work, envelope, statement, at, verified)
        self._apply(work, statement, mandate, at)
        record = Record(
            statement_id=statement.id, envelope=envelope.to_json(), digest=statement.digest,
            recorded_at=at, type=statement.type, actor=statement.actor,
            subject=statement.subject, keyid=envelope.keyid,
            mandate_id=mandate["id"] if mandate else None,
        )  # fmt: skip
        work.put(record)
        return str(record.id), False

    def _prefetch(self, work: UnitOfWork, statements: list[Statement]) -> None:
        """Load into ``work``, in a few queries, the aggregates deciding ``statements``
        will read: the records of their ids, signers and subjects, the consignments,
        receivers and parents of dispatches, the key owners and offices registry
        statements check and the offices' holders. Only a speed-up: ``get`` loads
        whatever this misses."""
        first: list[UUID] = []
        for statement in statements:
            first += (record_uuid(statement.id), registry.actor_uuid(statement.actor))
            body = statement.body
            kind = statement.type.split(".")[0]
            if is_registry(statement.type):
                first.append(registry.actor_uuid(statement.subject))
                keys = body.keys if isinstance(body, ActorRegistered) else []
                keys = [body.key] if isinstance(body, ActorKeyAdded) else keys
                first += (KeyOwner.create_id(key_id(decode_b64(key))) for key in keys)
                mandates = body.mandates if isinstance(body, ActorRegistered) else []
                mandates = [body.mandate] if isinstance(body, ActorMandateGranted) else mandates
                first += (
                    Office.create_id(m.role, m.jurisdiction)
                    for m in mandates if m.role in registry.SINGLE_HOLDER_ROLES
                )  # fmt: skip
            elif kind == "logistics":
                first.append(custody.consignment_uuid(statement.subject))
                if isinstance(body, LogisticsDispatched):
                    first.append(registry.actor_uuid(body.receiver))
                    if body.parent is not None:
                        first.append(custody.consignment_uuid(body.parent))
            elif kind == "commitment":
                first.append(Commitment.create_id(statement.subject))
            else:
                first.append(Pledge.create_id(statement.subject))
        work.load(first)
        # What put_actor indexes: the keys and offices of each changed actor.
        second: list[UUID] = []
        for statement in statements:
            if not is_registry(statement.type):
                continue
            subject = work.loaded.get(registry.actor_uuid(statement.subject))
            if isinstance(subject, Actor):
                second += (KeyOwner.create_id(keyid) for keyid in subject.keys)
                second += (
                    Office.create_id(m["role"], m["jurisdiction"])
                    for m in subject.mandates.values() if m["role"] in registry.SINGLE_HOLDER_ROLES
                )  # fmt: skip
        work.load(second)
        work.load(
            registry.actor_uuid(holder)
            for office in list(work.loaded.values()) if isinstance(office, Office)
            for holder, _ in office.holders
        )  # fmt: skip

    def _save_all(self, aggregates: Iterable[Aggregate]) -> None:
        """``Application.save(*aggregates)`` of eventsourcing 9.5 (record, cache, snapshots,
        ``_notify``) less its per-object protocol checks (``isinstance`` against
        runtime-checkable protocols costs more than a whole event's encoding): these are
        always our aggregates, never bare events. Its deprecated ``notify(events)`` hook,
        which Ledger does not use, is not called. Records and key owners are saved but
        not cached (``WRITE_ONCE``)."""
        processing = ProcessingEvent()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            if not isinstance(aggregate, WRITE_ONCE):  # what _record caches
                processing.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)

    def _remember(self, aggregates: dict[UUID, Aggregate | None]) -> None:
        """Cache ``aggregates``, read as they are now (under the writer lock, with
        nothing recorded since they were read); absent ones stay uncached."""
        cache = self.repository.cache
        if cache is not None:
            for aggregate_id, aggregate in aggregates.items():
                if aggregate is not None:
                    cache.put(aggregate_id, aggregate)

    def _fresh_cache(self) -> None:
        """If anyone else wrote since this process last looked, forget every cached
        aggregate (another process may have revoked a key or received a consignment).
        Called under the writer lock before deciding, and before each query."""
        mark = self.recorder.max_notification_id()
        if mark != self._cache_mark and isinstance(self.repository.cache, LRUCache):
            # A new cache: eventsourcing 9.5's LRUCache.clear() resets its list, not its dict.
            self.repository.cache = LRUCache(self.repository.cache.maxsize)
        self._cache_mark = mark

    def close(self) -> None:
        self._verifier.shutdown(wait=False, cancel_futures=True)
        super().close()

    def _now(self) -> str:
        """The ledger's time for the next entry: never before the last entry's, so the
        time a mandate is checked at is the entry's ``recorded_at`` (SPEC §1.1, §3)."""
        now = format_time(self.clock())
        size = self.tlog.size
        last = self.tlog.store.entry(size - 1) if size else None
        return max(now, last[2]) if last else now

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """One writer at a time, across threads and processes: submits are checked
        against the registry and clock exactly as the log will order them."""
        with self._lock, self._process_lock(), self._pinned():
            yield

    def _pinned(self) -> AbstractContextManager[None]:
        """On SQLite, the writer's transactions share one connection (``PinningDatastore``)."""
        datastore = getattr(self.recorder, "datastore", None)
        return datastore.pinned() if isinstance(datastore, PinningDatastore) else nullcontext()

    @contextmanager
    def _process_lock(self) -> Iterator[None]:
        if self.backend.kind == "sqlite":
            assert self.backend.path
            with open(self.backend.path + ".writer-lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        elif self.backend.kind == "postgres":
            with self.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
                # A transaction-scoped advisory lock, released at commit or rollback.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_ID,))
                yield
        else:
            yield

    def _authorise(
        self, work: UnitOfWork, envelope: Envelope, statement: Statement, at: str, verified: bool | None
    ) -> dict[str, Any] | None:
        pending = self._pending_genesis(work)
        if pending:
            match = next((g for g in pending if g.actor == statement.actor), pending[0])
            public_key = registry.check_genesis(statement, envelope.keyid, match)
            verify_signature(envelope, public_key)
            return next(
                m for m in statement.body.model_dump()["mandates"]  # type: ignore[attr-defined]
                if m["role"] == "registrar" and m["jurisdiction"] == "ID"
            )
        authorisation = registry.authorise(work, statement, envelope.keyid, at)
        if verified is None:
            verify_signature(envelope, authorisation.public_key)
        elif not verified:
            raise BadSignature("signature does not verify", keyid=envelope.keyid)
        return authorisation.mandate

    def _pending_genesis(self, work: UnitOfWork) -> list[GenesisRegistrar]:
        if self._genesis_done:
            return []
        pending = [g for g in self.genesis if work.actor(g.actor) is None]
        if not self.genesis:
            raise GenesisViolation("this ledger has no genesis registrars configured")
        self._genesis_done = not pending
        return pending

    def _apply(
        self, work: UnitOfWork, statement: Statement, mandate: dict[str, Any] | None, at: str
    ) -> None:
        # The statement's subject is the one aggregate a statement changes.
        kind = statement.type.split(".")[0]
        if is_registry(statement.type):
            work.writable(registry.actor_uuid(statement.subject))
            work.put_actor(registry.apply_registry(work, statement, at))
        elif kind == "logistics":
            work.writable(custody.consignment_uuid(statement.subject))
            work.put(custody.handle(statement, mandate, at, work))
        elif kind == "commitment":
            existing = work.writable(Commitment.create_id(statement.subject))
            work.put(handle_commitment(statement, existing, at))
        else:
            existing = work.writable(Pledge.create_id(statement.subject))
            work.put(handle_pledge(statement, mandate, existing, at))

    def checkpoint(self) -> str:
        """The latest checkpoint with its cosignatures, signing one first (under the
        writer lock) if the log has grown since the last. A process without the log
        key returns the latest signed one."""
        if self.tlog.key is None:
            return self.tlog.latest_note()
        with self._writer():
            self.tlog.integrate()
            return self.tlog.publish()

    def receipt(self, index: int) -> Receipt:
        """The receipt of entry ``index`` against the latest checkpoint, signing a
        checkpoint first (under the writer lock) when none holds the entry yet."""
        latest = self.tlog.store.latest_checkpoint()
        if latest is None or index >= latest[0]:
            self.checkpoint()
        return self.tlog.receipt(index)

    def add_cosignature(self, line: str, *, size: int | None = None) -> str:
        """Verify a witness's cosignature line on the checkpoint of ``size`` (the
        latest by default) against the registry (SPEC §6) and store it; returns the
        cosigned checkpoint. Raises BadCosignature or NoteError; stores nothing then."""
        with self._writer():
            note = self.tlog.note(size) if size is not None else self.tlog.latest_note()
            checkpoint = notes.parse_note(note).checkpoint
            witness, timestamp = check_cosignature(
                UnitOfWork(self), line, note, index_of=self.tlog.store.index_of_digest
            )
            self.tlog.store.store_cosignature(checkpoint.size, witness, timestamp, line.rstrip("\n") + "\n")
            return self.tlog.note(checkpoint.size)

    # ---------------------------------------------------------------- the log's sources

    def _records(self, after: int, limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, topics=[RECORD_TOPIC], inclusive_of_start=False
        )
        records = []
        for notification in notifications:
            accepted = self.mapper.to_domain_event(notification)
            records.append(
                (notification.id, str(accepted.originator_id), accepted.recorded_at, accepted.envelope)
            )
        return records

    def _envelope_of(self, record_id: str) -> dict[str, Any]:
        events = self.events.get(UUID(record_id), lte=1)
        for accepted in events:
            return accepted.envelope  # type: ignore[attr-defined, no-any-return]
        raise NotFound(f"no record {record_id}")

    # ---------------------------------------------------------------- queries

    def record(self, statement_id: str) -> Record:
        self._fresh_cache()
        try:
            return self.repository.get(record_uuid(statement_id))  # type: ignore[return-value]
        except AggregateNotFoundError:
            raise NotFound(f"no statement {statement_id!r}") from None

    def actor(self, actor_id: str) -> Actor:
        self._fresh_cache()
        try:
            return self.repository.get(registry.actor_uuid(actor_id))  # type: ignore[return-value]
        except AggregateNotFoundError:
            raise NotFound(f"no actor {actor_id!r}") from None

    def consignment(self, consignment_id: str) -> Consignment:
        self._fresh_cache()
        try:
            return self.repository.get(custody.consignment_uuid(consignment_id))  # type: ignore[return-value]
        except AggregateNotFoundError:
            raise NotFound(f"no consignment {consignment_id!r}") from None

"""The auditor's replayed registry lives in a temporary SQLite database
(``ledger.sqlite_registry.SQLiteRegistry``) with a bounded number of decoded actors
in memory, so ``saksi verify``'s memory does not grow with the log (issue #7 item 4).

Checked here on the Kota Metro demo, with caches far smaller than its actors: the
disk registry answers every question (and refuses every change) exactly as the
in-memory registry the audit used before, never holds more decoded actors than
its bound, gives the same audit verdicts with a one-actor cache, and leaves no
file behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import registry, sqlite_registry
from ledger.application import Ledger
from ledger.audit import AuditReport, Replay, SignatureChecker, audit_ledger, iter_entries
from ledger.envelope import b64, decode_statement, parse_envelope, raw_public_key
from ledger.errors import AuditFailure, SaksiError
from ledger.home import Home
from ledger.registry import SINGLE_HOLDER_ROLES, Actor
from ledger.scenario import Signer, kota_metro, mandate, registration
from ledger.sqlite_registry import SQLiteRegistry
from ledger.statements import ActorMandateGranted, ActorRegistered, Statement, is_registry
from tests.test_tamper_matrix import forge_with_revoked_key


class MemoryRegistry:
    """The registry held in dicts, as the audit replayed it before SQLiteRegistry."""

    def __init__(self) -> None:
        self.actors: dict[str, Actor] = {}
        self.keys: dict[str, str] = {}
        self.offices: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def actor(self, actor_id: str) -> Actor | None:
        return self.actors.get(actor_id)

    def key_owner(self, keyid: str) -> str | None:
        return self.keys.get(keyid)

    def office_holders(self, role: str, jurisdiction: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (holder, self.actors[holder].mandates[mandate_id])
            for holder, mandate_id in self.offices.get((role, jurisdiction), [])
        ]

    def put(self, actor: Actor) -> None:
        """Record ``actor``'s current state in the indexes (keys and offices)."""
        self.actors[actor.actor_id] = actor
        for keyid in actor.keys:
            self.keys[keyid] = actor.actor_id
        for granted in actor.mandates.values():
            holders = self.offices.setdefault((granted["role"], granted["jurisdiction"]), [])
            if (actor.actor_id, granted["id"]) not in holders:
                holders.append((actor.actor_id, granted["id"]))


class ReferenceRegistry(MemoryRegistry):
    """The in-memory registry the audit replayed into before, with the digest → index
    map it kept beside it: the obviously correct reference."""

    def __init__(self) -> None:
        super().__init__()
        self.indexes: dict[str, int] = {}

    def record_index(self, digest: str, index: int) -> None:
        self.indexes[digest] = index

    def index_of(self, digest: str) -> int | None:
        return self.indexes.get(digest)

    def close(self) -> None:
        pass


@pytest.fixture
def home(demo_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(demo_template, copy)
    return copy


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    opened = Home.load(home).open(audit=True)
    yield opened
    opened.close()


def state(actor: Actor | None) -> dict[str, Any] | None:
    """Everything an actor holds but the wall-clock times of its events."""
    if actor is None:
        return None
    return {
        k: v
        for k, v in vars(actor).items()
        if k not in ("_pending_events", "_created_on", "_modified_on")
    }


def outcome(view: Any, statement: Statement, keyid: str, at: str) -> tuple[Any, ...]:
    """What the policy says of ``statement`` against ``view``: the refusal, or the
    mandate used and the actor it would make (a new actor, or one left unchanged)."""
    try:
        authorisation = registry.authorise(view, statement, keyid, at)
        changed = registry.apply_registry(view, statement, at)
    except SaksiError as error:
        return type(error).__name__, str(error)
    assert isinstance(statement.body, ActorRegistered), "would change a stored actor unsaved"
    return "accepted", authorisation.mandate, state(changed)


@cache
def demo_registrar() -> Signer:
    return kota_metro().population.registrar


def rivals(statement: Statement, at: str) -> Iterator[tuple[Statement, str]]:
    """Registrations that collide with what ``statement`` just registered or granted:
    another holder for each single-holder office, and another actor with its keys."""
    registrar = demo_registrar()
    body = statement.body
    granted = body.mandates if isinstance(body, ActorRegistered) else []
    if isinstance(body, ActorMandateGranted):
        granted = [body.mandate]
    fresh = b64(raw_public_key(Ed25519PrivateKey.generate()))
    for number, held in enumerate(m for m in granted if m.role in SINGLE_HOLDER_ROLES):
        rival = mandate(held.role, held.jurisdiction, valid_from=held.valid_from)
        envelope = registrar.sign(
            "actor.registered", f"rival-{number}", registration("rival", "Rival", [fresh], [rival])
        )
        yield decode_statement(envelope), envelope.keyid
    if isinstance(body, ActorRegistered):
        envelope = registrar.sign(
            "actor.registered", "rival-keys", registration("rival", "Rival", body.keys[:1], [])
        )
        yield decode_statement(envelope), envelope.keyid


LATER = "2024-12-01T00:00:00.000000Z"  # after the demo's entries


def changes(actor: Actor | None) -> Iterator[tuple[Statement, str]]:
    """The registrar adds a key to ``actor``, revokes its first key (twice), grants it a
    copy of its first mandate, revokes that (twice), and grants a mandate id it has."""
    assert actor is not None
    registrar = demo_registrar()
    first_key = next(iter(actor.keys))
    held = {
        k: v
        for k, v in next(iter(actor.mandates.values())).items()
        if k in ("id", "role", "jurisdiction", "valid_from", "valid_until")
    }
    fresh = b64(raw_public_key(Ed25519PrivateKey.generate()))
    for kind, body in [
        ("actor.key_added", {"key": fresh}),
        ("actor.key_revoked", {"keyid": first_key}),
        ("actor.key_revoked", {"keyid": first_key}),
        ("actor.mandate_granted", {"mandate": {**held, "id": "m-extra"}}),
        ("actor.mandate_revoked", {"mandate_id": "m-extra"}),
        ("actor.mandate_revoked", {"mandate_id": "m-extra"}),
        ("actor.mandate_granted", {"mandate": held}),
    ]:
        envelope = registrar.sign(kind, actor.actor_id, body)
        yield decode_statement(envelope), envelope.keyid


def change(view: Any, statement: Statement, keyid: str, at: str) -> tuple[Any, ...]:
    """Authorise, apply and store ``statement`` as the audit does; the refusal, or the
    changed actor."""
    try:
        registry.authorise(view, statement, keyid, at)
        changed = registry.apply_registry(view, statement, at)
    except SaksiError as error:
        return type(error).__name__, str(error)
    changed.collect_events()
    view.put(changed)
    return "changed", state(changed)


def test_the_disk_registry_answers_and_refuses_as_the_memory_registry(ledger: Ledger) -> None:
    """Replay the demo into both registries, the disk one caching two actors; after
    every registry entry, replay it again and try its rivals on both: the same
    refusals, word for word. Then change keys and mandates of many actors on both.
    At the end every actor, key, office and index agrees."""
    memory, disk = ReferenceRegistry(), SQLiteRegistry(cached=2)
    replays = [
        Replay(tuple(ledger.genesis), SignatureChecker(0), registry=r) for r in (memory, disk)
    ]  # type: ignore[arg-type]
    refusals = 0
    try:
        for entry in iter_entries(ledger):
            index, at = entry["index"], entry["recorded_at"]
            for replay in replays:
                replay.entry(index, at, entry["envelope"])
            assert disk.cached_actors() <= 2
            envelope = parse_envelope(entry["envelope"])
            statement = decode_statement(envelope)
            if not is_registry(statement.type) or index < len(ledger.genesis):
                continue
            for attempt, keyid in [(statement, envelope.keyid), *rivals(statement, at)]:
                expected = outcome(memory, attempt, keyid, at)
                assert outcome(disk, attempt, keyid, at) == expected
                assert disk.cached_actors() <= 2
                refusals += expected[0] != "accepted"
        for replay in replays:
            replay.finish()
        assert len(memory.actors) > 50 and refusals > 50
        for actor_id in sorted(memory.actors)[1::5]:  # keys and mandates changed, cache or not
            for attempt, keyid in changes(memory.actor(actor_id)):
                expected = change(memory, attempt, keyid, LATER)
                assert change(disk, attempt, keyid, LATER) == expected
                assert disk.cached_actors() <= 2
        for actor_id in memory.actors:
            assert state(disk.actor(actor_id)) == state(memory.actor(actor_id))
        for keyid, owner in memory.keys.items():
            assert disk.key_owner(keyid) == owner
        for role, jurisdiction in memory.offices:
            assert disk.office_holders(role, jurisdiction) == memory.office_holders(
                role, jurisdiction
            )
        for digest, index in memory.indexes.items():
            assert disk.index_of(digest) == index
        assert disk.actor("nobody") is None and disk.key_owner("0" * 64) is None
        assert (
            disk.index_of("sha256:" + "0" * 64) is None and disk.office_holders("kpu", "ID") == []
        )
        assert disk.cached_actors() <= 2
    finally:
        for replay in replays:
            replay.close()


def verdict(home: Path) -> AuditReport | tuple[int | None, str]:
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    try:
        return audit_ledger(
            ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file, workers=0
        )
    except AuditFailure as failure:
        return failure.index, str(failure)
    finally:
        ledger.close()


@pytest.mark.parametrize("tamper", [None, "raw-row", "row-integrated-and-signed"])
def test_verify_gives_the_same_verdict_with_a_one_actor_cache(
    home: Path, tamper: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo (with its witnesses' cosignatures, checked against the replayed
    registry) and a statement forged with a revoked key: one decoded actor in memory
    changes nothing in what the audit reports."""
    if tamper is not None:
        forge_with_revoked_key(home, integrate=tamper != "raw-row")
    expected = verdict(home)
    assert isinstance(expected, AuditReport) == (tamper is None), expected
    assert (
        isinstance(expected, AuditReport)
        or "key-revoked" in expected[1]
        or "not yet in the log" in expected[1]
    )
    monkeypatch.setattr(sqlite_registry, "CACHED_ACTORS", 1)
    assert verdict(home) == expected


def test_the_registry_database_is_on_disk_during_the_audit_and_removed_after(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    loaded = Home.load(home)
    seen: list[Path] = []

    def progress(done: int) -> None:
        seen.extend(scratch.glob("saksi-registry-*/registry.sqlite3"))

    ledger = loaded.open(audit=True)
    try:
        audit_ledger(ledger, log_key=loaded.log_vkey(), progress=progress, workers=0)
    finally:
        ledger.close()
    assert len(seen) == 1 and not seen[0].exists()
    forge_with_revoked_key(home, integrate=True)
    assert isinstance(verdict(home), tuple)
    assert list(scratch.iterdir()) == []


def test_a_registry_closed_or_dropped_removes_its_directory() -> None:
    closed, dropped = SQLiteRegistry(), SQLiteRegistry()
    where = closed.directory, dropped.directory
    assert all(path.is_dir() for path in where)
    closed.close()
    closed.close()  # idempotent
    del dropped
    assert not any(path.exists() for path in where)
    with pytest.raises(ValueError):
        SQLiteRegistry(cached=0)

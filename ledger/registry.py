"""Actors, their keys and mandates (SPEC §1.1), and the one policy that decides
who may sign what, where and when (SPEC §1.2).

The ``Actor`` aggregate is the registry's state. The ledger loads actors from
its event store; the auditor (``ledger.audit``) replays registry entries into
plain in-memory actors through the very same functions, so the rules are
written once: ``apply_registry`` changes the registry, ``authorise`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import regions
from ledger.envelope import decode_b64, key_id
from ledger.errors import (
    GenesisViolation,
    InvariantBroken,
    KeyNotOfActor,
    KeyRevoked,
    NoMandate,
    OutsideJurisdiction,
    UnknownActor,
    UnknownKey,
)
from ledger.statements import (
    ActorKeyAdded,
    ActorKeyRevoked,
    ActorMandateGranted,
    ActorMandateRevoked,
    ActorRegistered,
    Statement,
    is_registry,
    parse_time,
)

NAMESPACE = uuid5(NAMESPACE_URL, "https://saksi.id/ns")

# SPEC §1.2: which roles' mandates allow which statement types.
ROLE_TABLE: dict[str, frozenset[str]] = {
    "commitment.declared": frozenset({"party", "candidate_pair"}),
    "commitment.endorsed": frozenset(
        {"party", "candidate_pair", "kpu", "bawaslu", "tni", "polri", "asn", "observer"}
    ),
    "commitment.breach_reported": frozenset({"bawaslu", "panwascam", "pkd", "ptps"}),
    "pledge.made": frozenset(
        {"asn", "tni", "polri", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd",
         "ptps", "dkpp"}
    ),  # fmt: skip
    "pledge.violation_reported": frozenset({"bawaslu", "panwascam", "pkd", "ptps", "observer"}),
    "pledge.violation_ruled": frozenset({"dkpp", "bkn"}),
    "logistics.dispatched": frozenset({"kpu", "ppk", "pps", "kpps"}),
    "logistics.received": frozenset({"kpu", "ppk", "pps", "kpps"}),
    "logistics.witnessed": frozenset(
        {"bawaslu", "panwascam", "pkd", "ptps", "candidate_witness", "observer"}
    ),
    "logistics.discrepancy_reported": frozenset(
        {"kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps"}
    ),
}

# Offices held by one actor per jurisdiction at a time: authority must not overlap.
SINGLE_HOLDER_ROLES = frozenset(
    {"kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps"}
)


@lru_cache(maxsize=16384)  # a working set, not every actor of a national log: an audit's memory must not grow
def actor_uuid(actor_id: str) -> UUID:
    return uuid5(NAMESPACE, "actor:" + actor_id)


class Actor(Aggregate):
    """A registered actor: its keys (in force or revoked) and mandates.

    ``keys`` maps key id → {"key", "added_at", "revoked_at"}; ``mandates`` maps
    mandate id → the mandate object plus ``granted_at`` and ``revoked_at``.
    Times are the ``recorded_at`` of the registry entry that made the change.
    """

    @staticmethod
    def create_id(actor_id: str, **_: Any) -> UUID:
        return actor_uuid(actor_id)

    @event("Registered")
    def __init__(
        self, actor_id: str, name: str, kind: str, keys: list[str], mandates: list[dict[str, Any]],
        at: str, digest: str,
    ) -> None:  # fmt: skip
        self.actor_id = actor_id
        self.name = name
        self.kind = kind
        self.registered_at = at
        self.registered_by = digest
        self.keys: dict[str, dict[str, Any]] = {}
        self.mandates: dict[str, dict[str, Any]] = {}
        for key in keys:
            self.add_key_state(key, at, digest)
        for mandate in mandates:
            self.grant_mandate_state(mandate, at, digest)

    def add_key_state(self, key: str, at: str, digest: str) -> None:
        self.keys[key_id(decode_b64(key))] = {"key": key, "added_at": at, "added_by": digest, "revoked_at": None}

    def grant_mandate_state(self, mandate: dict[str, Any], at: str, digest: str) -> None:
        self.mandates[mandate["id"]] = {**mandate, "granted_at": at, "granted_by": digest, "revoked_at": None}

    @event("KeyAdded")
    def add_key(self, key: str, at: str, digest: str) -> None:
        self.add_key_state(key, at, digest)

    @event("KeyRevoked")
    def revoke_key(self, keyid: str, at: str, digest: str) -> None:
        self.keys[keyid] = {**self.keys[keyid], "revoked_at": at}

    @event("MandateGranted")
    def grant_mandate(self, mandate: dict[str, Any], at: str, digest: str) -> None:
        self.grant_mandate_state(mandate, at, digest)

    @event("MandateRevoked")
    def revoke_mandate(self, mandate_id: str, at: str, digest: str) -> None:
        self.mandates[mandate_id] = {**self.mandates[mandate_id], "revoked_at": at}

    # ------------------------------------------------------------ queries

    def key_in_force(self, keyid: str) -> bool:
        entry = self.keys.get(keyid)
        return entry is not None and entry["revoked_at"] is None

    def mandates_in_force(self, at: str) -> list[dict[str, Any]]:
        """SPEC §1.1: valid_from ≤ at < valid_until and not revoked (revocations are
        applied in log order, so a revoked mandate is out of force for every later entry)."""
        moment = parse_time(at)
        return [
            m
            for m in self.mandates.values()
            if m["revoked_at"] is None
            and parse_time(m["valid_from"]) <= moment
            and (m.get("valid_until") is None or moment < parse_time(m["valid_until"]))
        ]


class RegistryView(Protocol):
    """What the policy needs to know about the registry, and how it records changes."""

    def actor(self, actor_id: str) -> Actor | None: ...

    def key_owner(self, keyid: str) -> str | None: ...

    def office_holders(self, role: str, jurisdiction: str) -> list[tuple[str, dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class GenesisRegistrar:
    """A genesis registrar fixed when the ledger is created (SPEC §1.1 "Genesis")."""

    actor: str
    key: str  # base64 raw Ed25519 key

    @property
    def keyid(self) -> str:
        return key_id(decode_b64(self.key))


@dataclass(frozen=True, slots=True)
class Authorisation:
    """Who signed, with which key, under which mandate (None for the actor acting on itself)."""

    actor: Actor | None
    public_key: bytes
    mandate: dict[str, Any] | None


def check_genesis(statement: Statement, keyid: str, genesis: GenesisRegistrar) -> bytes:
    """The genesis rule: a self-signed registration of exactly the fixed registrar,
    with a registrar mandate for ID. Returns the public key to verify with."""
    body = statement.body
    if (
        statement.type != "actor.registered"
        or statement.subject != genesis.actor
        or statement.actor != genesis.actor
        or keyid != genesis.keyid
        or not isinstance(body, ActorRegistered)
        or body.keys != [genesis.key]
        or not any(m.role == "registrar" and m.jurisdiction == regions.COUNTRY for m in body.mandates)
    ):
        raise GenesisViolation(
            f"the log starts with the self-signed registration of genesis registrar "
            f"{genesis.actor!r} (registrar for ID, its published key), not this statement"
        )
    return decode_b64(genesis.key)


def authorise(view: RegistryView, statement: Statement, keyid: str, at: str) -> Authorisation:
    """Decide whether ``statement``'s signer, signing with ``keyid``, may make it when
    recorded at ``at``. Does not check the signature itself (the caller does, with
    the returned key). Raises UnknownActor, UnknownKey, KeyNotOfActor, KeyRevoked,
    NoMandate or OutsideJurisdiction.
    """
    signer = view.actor(statement.actor)
    if signer is None:
        raise UnknownActor(f"actor {statement.actor!r} is not registered", actor=statement.actor)
    entry = signer.keys.get(keyid)
    if entry is None:
        owner = view.key_owner(keyid)
        if owner is not None:
            raise KeyNotOfActor(f"key {keyid[:16]}… belongs to {owner!r}, not {statement.actor!r}")
        raise UnknownKey(f"key {keyid[:16]}… is not registered", keyid=keyid)
    if entry["revoked_at"] is not None:
        raise KeyRevoked(
            f"key {keyid[:16]}… of {statement.actor!r} was revoked at {entry['revoked_at']}",
            keyid=keyid,
        )
    public_key = decode_b64(entry["key"])
    if is_registry(statement.type):
        mandate = _authorise_registry(view, signer, statement, at)
        return Authorisation(signer, public_key, mandate)
    return Authorisation(
        signer, public_key, mandate_for(signer, statement.type, statement.region, at)
    )


def mandate_for(signer: Actor, statement_type: str, region: str, at: str) -> dict[str, Any]:
    """The most specific mandate of ``signer`` in force at ``at`` allowing ``statement_type``
    over ``region``. Raises NoMandate or OutsideJurisdiction."""
    roles = ROLE_TABLE[statement_type]
    usable = [m for m in signer.mandates_in_force(at) if m["role"] in roles]
    if not usable:
        raise NoMandate(
            f"{signer.actor_id!r} holds no mandate in force at {at} for {statement_type} "
            f"(roles: {', '.join(sorted(roles))})"
        )
    inside = [m for m in usable if regions.contains(m["jurisdiction"], region)]
    if not inside:
        held = ", ".join(sorted({m["jurisdiction"] for m in usable}))
        raise OutsideJurisdiction(
            f"{region} is outside {signer.actor_id!r}'s jurisdiction ({held}) for {statement_type}"
        )
    return max(inside, key=lambda m: regions.level(m["jurisdiction"]))


def _registrar_over(signer: Actor, jurisdictions: list[str], at: str, what: str) -> dict[str, Any]:
    registrars = [m for m in signer.mandates_in_force(at) if m["role"] == "registrar"]
    if not registrars:
        raise NoMandate(f"{signer.actor_id!r} holds no registrar mandate in force for {what}")
    for mandate in sorted(registrars, key=lambda m: regions.level(m["jurisdiction"])):
        if all(regions.contains(mandate["jurisdiction"], j) for j in jurisdictions):
            return mandate
    raise OutsideJurisdiction(
        f"{what}: {', '.join(jurisdictions)} is outside the registrar jurisdiction of "
        f"{signer.actor_id!r}"
    )


def _authorise_registry(
    view: RegistryView, signer: Actor, statement: Statement, at: str
) -> dict[str, Any] | None:
    body = statement.body
    if isinstance(body, ActorRegistered):
        return _registrar_over(
            signer, [m.jurisdiction for m in body.mandates] or [regions.COUNTRY], at,
            f"registering {statement.subject!r}",
        )  # fmt: skip
    subject = view.actor(statement.subject)
    if subject is None:
        raise InvariantBroken("actor-exists", f"actor {statement.subject!r} is not registered")
    if isinstance(body, ActorKeyAdded | ActorKeyRevoked):
        if statement.actor == statement.subject:
            return None  # the actor acting on its own keys, with a key in force
        held = [m["jurisdiction"] for m in subject.mandates_in_force(at)]
        return _registrar_over(signer, held or [regions.COUNTRY], at, f"keys of {subject.actor_id!r}")
    if isinstance(body, ActorMandateGranted):
        return _registrar_over(
            signer, [body.mandate.jurisdiction], at, f"a mandate for {subject.actor_id!r}"
        )
    assert isinstance(body, ActorMandateRevoked)
    mandate = subject.mandates.get(body.mandate_id)
    if mandate is None:
        raise InvariantBroken(
            "mandate-exists", f"{subject.actor_id!r} has no mandate {body.mandate_id!r}"
        )
    return _registrar_over(
        signer, [mandate["jurisdiction"]], at, f"mandate {body.mandate_id!r} of {subject.actor_id!r}"
    )


def apply_registry(view: RegistryView, statement: Statement, at: str) -> Actor:
    """Apply an authorised ``actor.*`` statement; returns the changed actor (unsaved).

    Enforces: an actor id is registered once, a key belongs to one actor, a
    revoked key stays revoked, mandate ids are unique per actor, and offices
    (SINGLE_HOLDER_ROLES) never have two holders at once. Raises InvariantBroken.
    """
    body = statement.body
    digest = statement.digest
    if isinstance(body, ActorRegistered):
        if view.actor(statement.subject) is not None:
            raise InvariantBroken(
                "actor-registered-once", f"actor {statement.subject!r} is already registered"
            )
        for key in body.keys:
            _key_is_free(view, key)
        mandates = [m.model_dump(exclude_none=True) for m in body.mandates]
        for mandate in mandates:
            _office_is_free(view, statement.subject, mandate)
        return Actor(
            actor_id=statement.subject, name=body.name, kind=body.kind, keys=list(body.keys),
            mandates=mandates, at=at, digest=digest,
        )  # fmt: skip
    actor = view.actor(statement.subject)
    assert actor is not None  # authorise() checked
    if isinstance(body, ActorKeyAdded):
        _key_is_free(view, body.key)
        actor.add_key(key=body.key, at=at, digest=digest)
    elif isinstance(body, ActorKeyRevoked):
        if body.keyid not in actor.keys:
            raise InvariantBroken("key-exists", f"{actor.actor_id!r} has no key {body.keyid[:16]}…")
        if not actor.key_in_force(body.keyid):
            raise InvariantBroken("key-revoked-once", f"key {body.keyid[:16]}… is already revoked")
        actor.revoke_key(keyid=body.keyid, at=at, digest=digest)
    elif isinstance(body, ActorMandateGranted):
        mandate = body.mandate.model_dump(exclude_none=True)
        if mandate["id"] in actor.mandates:
            raise InvariantBroken(
                "mandate-id-unique", f"{actor.actor_id!r} already has a mandate {mandate['id']!r}"
            )
        _office_is_free(view, actor.actor_id, mandate)
        actor.grant_mandate(mandate=mandate, at=at, digest=digest)
    else:
        assert isinstance(body, ActorMandateRevoked)
        if actor.mandates[body.mandate_id]["revoked_at"] is not None:
            raise InvariantBroken(
                "mandate-revoked-once", f"mandate {body.mandate_id!r} is already revoked"
            )
        actor.revoke_mandate(mandate_id=body.mandate_id, at=at, digest=digest)
    return actor


def _key_is_free(view: RegistryView, key: str) -> None:
    owner = view.key_owner(key_id(decode_b64(key)))
    if owner is not None:
        raise InvariantBroken("key-belongs-to-one-actor", f"the key already belongs to {owner!r}")


def _office_is_free(view: RegistryView, actor_id: str, mandate: dict[str, Any]) -> None:
    """Authority must not overlap: one holder per office and jurisdiction at a time."""
    if mandate["role"] not in SINGLE_HOLDER_ROLES:
        return
    start = parse_time(mandate["valid_from"])
    end = parse_time(mandate["valid_until"]) if mandate.get("valid_until") else None
    for holder, other in view.office_holders(mandate["role"], mandate["jurisdiction"]):
        if holder == actor_id or other["revoked_at"] is not None:
            continue
        other_start = parse_time(other["valid_from"])
        other_end = parse_time(other["valid_until"]) if other.get("valid_until") else None
        if (end is None or other_start < end) and (other_end is None or start < other_end):
            raise InvariantBroken(
                "authority-must-not-overlap",
                f"{holder!r} already holds {mandate['role']} for {mandate['jurisdiction']} "
                f"in that period",
            )

"""Consignments: logistics handed down the chain KPU → PPK → PPS → KPPS and back.

A consignment is dispatched once by its sender, received once by the receiver
the dispatch names, witnessed by supervisors and candidates' witnesses, and may
carry discrepancy reports. Nothing is edited: a correction is a new statement.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import regions
from ledger.errors import InvariantBroken
from ledger.registry import NAMESPACE, Actor
from ledger.statements import (
    LogisticsDiscrepancyReported,
    LogisticsDispatched,
    LogisticsReceived,
    LogisticsWitnessed,
    Statement,
)

LOGISTICS_ROLES = frozenset({"kpu", "ppk", "pps", "kpps"})


@lru_cache(maxsize=16384)  # a working set, not every consignment of a national log (memory)
def consignment_uuid(consignment_id: str) -> UUID:
    return uuid5(NAMESPACE, "consignment:" + consignment_id)


class Consignment(Aggregate):
    """One hop of logistics. ``status``: dispatched, received, received_with_discrepancy."""

    @staticmethod
    def create_id(consignment_id: str, **_: Any) -> UUID:
        return consignment_uuid(consignment_id)

    @event("Dispatched")
    def __init__(
        self, consignment_id: str, sender: str, receiver: str, direction: str, region: str,
        items: dict[str, int], seals: list[str], due_by: str | None, parent: str | None,
        digest: str, at: str,
    ) -> None:  # fmt: skip
        self.consignment_id = consignment_id
        self.sender = sender
        self.receiver = receiver
        self.direction = direction
        self.region = region
        self.items = items
        self.seals = seals
        self.due_by = due_by
        self.parent = parent
        self.dispatch_digest = digest
        self.dispatched_at = at
        self.status = "dispatched"
        self.receipt_digest: str | None = None
        self.witnessed: list[tuple[str, str]] = []  # (witness actor, ref)
        self.discrepancies: list[str] = []

    @event("Received")
    def receive(
        self, receiver: str, items: dict[str, int], seals_intact: bool, condition: str,
        digest: str, at: str,
    ) -> None:  # fmt: skip
        self.receipt_digest = digest
        self.received_at = at
        self.received_items = items
        self.status = (
            "received"
            if items == self.items and seals_intact and condition == "good"
            else "received_with_discrepancy"
        )

    @event("Witnessed")
    def witness(self, witness: str, ref: str, digest: str, at: str) -> None:
        self.witnessed.append((witness, ref))

    @event("DiscrepancyReported")
    def report_discrepancy(self, reporter: str, kinds: list[str], ref: str, digest: str, at: str) -> None:
        self.discrepancies.append(digest)


class Lookup(Protocol):
    def consignment(self, consignment_id: str) -> Consignment | None: ...

    def actor(self, actor_id: str) -> Actor | None: ...


def _one_ref(statement: Statement, allowed: dict[str, str], invariant: str) -> str:
    if len(statement.refs) != 1 or statement.refs[0] not in allowed:
        raise InvariantBroken(
            invariant,
            f"{statement.type} has exactly one ref, the digest of the {' or '.join(allowed.values())}",
        )
    return statement.refs[0]


def _same_region(statement: Statement, consignment: Consignment) -> None:
    if statement.region != consignment.region:
        raise InvariantBroken(
            "same-region-as-dispatch",
            f"body.region {statement.region} differs from the dispatch's {consignment.region}",
        )


def handle(
    statement: Statement, mandate: dict[str, Any] | None, at: str, lookup: Lookup
) -> Consignment:
    """Apply a ``logistics.*`` statement, authorised under ``mandate``; returns the
    changed consignment (unsaved). Raises InvariantBroken naming the invariant."""
    body = statement.body
    existing = lookup.consignment(statement.subject)
    if isinstance(body, LogisticsDispatched):
        return _dispatch(statement, body, mandate, at, lookup, existing)
    if existing is None:
        raise InvariantBroken(
            "consignment-dispatched", f"consignment {statement.subject!r} was never dispatched"
        )
    consignment = existing
    if isinstance(body, LogisticsReceived):
        if statement.actor != consignment.receiver:
            raise InvariantBroken(
                "only-named-receiver",
                f"{consignment.consignment_id!r} names {consignment.receiver!r} as receiver",
            )
        _one_ref(statement, {consignment.dispatch_digest: "dispatch"}, "receipt-names-dispatch")
        _same_region(statement, consignment)
        if consignment.receipt_digest is not None:
            raise InvariantBroken(
                "received-once", f"{consignment.consignment_id!r} was already received"
            )
        consignment.receive(
            receiver=statement.actor, items=dict(body.items), seals_intact=body.seals_intact,
            condition=body.condition, digest=statement.digest, at=at,
        )  # fmt: skip
        return consignment
    hops = {consignment.dispatch_digest: "dispatch"}
    if consignment.receipt_digest:
        hops[consignment.receipt_digest] = "receipt"
    if isinstance(body, LogisticsWitnessed):
        ref = _one_ref(statement, hops, "witness-refs-hop")
        _same_region(statement, consignment)
        if (statement.actor, ref) in consignment.witnessed:
            raise InvariantBroken("witnessed-once", f"{statement.actor!r} already witnessed this")
        consignment.witness(witness=statement.actor, ref=ref, digest=statement.digest, at=at)
        return consignment
    assert isinstance(body, LogisticsDiscrepancyReported)
    ref = _one_ref(statement, hops, "discrepancy-refs-hop")
    _same_region(statement, consignment)
    if mandate is not None and mandate["role"] in LOGISTICS_ROLES and statement.actor not in (
        consignment.receiver, consignment.sender,
    ):  # fmt: skip
        raise InvariantBroken(
            "discrepancy-by-party-or-supervisor",
            "an organiser reports discrepancies only on consignments it sent or received",
        )
    consignment.report_discrepancy(
        reporter=statement.actor, kinds=list(body.kinds), ref=ref, digest=statement.digest, at=at
    )
    return consignment


def _logistics_levels(actor: Actor, at: str, region: str) -> set[int]:
    return {
        regions.level(m["jurisdiction"])
        for m in actor.mandates_in_force(at)
        if m["role"] in LOGISTICS_ROLES and regions.contains(m["jurisdiction"], region)
    }


def _dispatch(
    statement: Statement, body: LogisticsDispatched, mandate: dict[str, Any] | None, at: str,
    lookup: Lookup, existing: Consignment | None,
) -> Consignment:  # fmt: skip
    if existing is not None:
        raise InvariantBroken(
            "dispatched-once", f"consignment {statement.subject!r} was already dispatched"
        )
    if statement.refs:
        raise InvariantBroken("no-refs-on-dispatch", "a dispatch names its parent in body.parent")
    region = body.region
    lower = regions.level(region)
    if lower == 0:
        raise InvariantBroken("hop-region", "a hop's region is the lower end's, never ID")
    receiver = lookup.actor(body.receiver)
    if receiver is None:
        raise InvariantBroken("receiver-registered", f"receiver {body.receiver!r} is not registered")
    if body.receiver == statement.actor:
        raise InvariantBroken("receiver-not-sender", "a consignment goes to another actor")
    sender = lookup.actor(statement.actor)
    assert sender is not None
    upper, lower_end = (sender, receiver) if body.direction == "outbound" else (receiver, sender)
    # SPEC §1.2: region is the lower end's jurisdiction; the upper end sits one level above.
    if lower not in _logistics_levels(lower_end, at, region):
        raise InvariantBroken(
            "hop-one-level",
            f"the lower end of an {body.direction} hop ({lower_end.actor_id!r}) must hold a "
            f"logistics mandate for {region} itself",
        )
    if lower - 1 not in _logistics_levels(upper, at, region):
        raise InvariantBroken(
            "hop-one-level",
            f"the upper end of an {body.direction} hop ({upper.actor_id!r}) must hold a "
            f"logistics mandate one level above {region}",
        )
    if body.parent is not None:
        parent = lookup.consignment(body.parent)
        if parent is None:
            raise InvariantBroken("parent-exists", f"parent consignment {body.parent!r} is unknown")
        if parent.receiver != statement.actor:
            raise InvariantBroken(
                "parent-chain", f"the parent consignment went to {parent.receiver!r}, not the sender"
            )
    return Consignment(
        consignment_id=statement.subject, sender=statement.actor, receiver=body.receiver,
        direction=body.direction, region=region, items=dict(body.items), seals=list(body.seals),
        due_by=body.due_by, parent=body.parent, digest=statement.digest, at=at,
    )  # fmt: skip

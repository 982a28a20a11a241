"""Commitments (declared, endorsed, breach reported) and neutrality pledges
(made, violation reported, ruled): the two registers of promises."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import regions
from ledger.errors import InvariantBroken
from ledger.registry import NAMESPACE
from ledger.statements import (
    CommitmentBreachReported,
    CommitmentDeclared,
    CommitmentEndorsed,
    PledgeMade,
    PledgeViolationReported,
    PledgeViolationRuled,
    Statement,
)

ORGANISER_INSTITUTIONS = frozenset(
    {"kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps", "dkpp"}
)
# Who rules on whose pledges: DKPP on the organisers' ethics, BKN on civil servants.
COMPETENT_BODY = {**{i: "dkpp" for i in ORGANISER_INSTITUTIONS}, "asn": "bkn"}


def commitment_uuid(commitment_id: str) -> UUID:
    return uuid5(NAMESPACE, "commitment:" + commitment_id)


def pledge_uuid(pledge_id: str) -> UUID:
    return uuid5(NAMESPACE, "pledge:" + pledge_id)


class Commitment(Aggregate):
    """A declared commitment with its endorsements and breach reports."""

    @staticmethod
    def create_id(commitment_id: str, **_: Any) -> UUID:
        return commitment_uuid(commitment_id)

    @event("Declared")
    def __init__(self, commitment_id: str, declarer: str, region: str, digest: str, at: str) -> None:
        self.commitment_id = commitment_id
        self.declarer = declarer
        self.region = region
        self.declaration_digest = digest
        self.endorsers: list[str] = []
        self.breach_reports: list[str] = []

    @event("Endorsed")
    def endorse(self, endorser: str, digest: str, at: str) -> None:
        self.endorsers.append(endorser)

    @event("BreachReported")
    def report_breach(self, reporter: str, digest: str, at: str) -> None:
        self.breach_reports.append(digest)


class Pledge(Aggregate):
    """A neutrality pledge with its violation reports and their rulings."""

    @staticmethod
    def create_id(pledge_id: str, **_: Any) -> UUID:
        return pledge_uuid(pledge_id)

    @event("Made")
    def __init__(
        self, pledge_id: str, pledger: str, institution: str, region: str, digest: str, at: str
    ) -> None:
        self.pledge_id = pledge_id
        self.pledger = pledger
        self.institution = institution
        self.region = region
        self.pledge_digest = digest
        self.reports: dict[str, str] = {}  # report digest → its region
        self.rulings: dict[str, str] = {}  # report digest → ruling digest

    @event("ViolationReported")
    def report_violation(self, reporter: str, kind: str, region: str, digest: str, at: str) -> None:
        self.reports[digest] = region

    @event("ViolationRuled")
    def rule(self, ruler: str, report: str, ruling: str, digest: str, at: str) -> None:
        self.rulings[report] = digest


def _refs_exactly(statement: Statement, digest: str, invariant: str, what: str) -> None:
    if statement.refs != (digest,):
        raise InvariantBroken(invariant, f"{statement.type} has exactly one ref, the {what}")


def _within(statement: Statement, region: str, invariant: str) -> None:
    if not regions.contains(region, statement.region):
        raise InvariantBroken(invariant, f"{statement.region} is outside {region}")


def handle_commitment(
    statement: Statement, existing: Commitment | None, at: str
) -> Commitment:
    """Apply a ``commitment.*`` statement; returns the changed aggregate (unsaved)."""
    body = statement.body
    if isinstance(body, CommitmentDeclared):
        if existing is not None:
            raise InvariantBroken("declared-once", f"commitment {statement.subject!r} exists")
        if statement.refs:
            raise InvariantBroken("no-refs-on-declaration", "a declaration refs nothing")
        return Commitment(
            commitment_id=statement.subject, declarer=statement.actor, region=body.region,
            digest=statement.digest, at=at,
        )  # fmt: skip
    if existing is None:
        raise InvariantBroken("commitment-declared", f"no commitment {statement.subject!r}")
    _refs_exactly(statement, existing.declaration_digest, "refs-declaration", "declaration")
    _within(statement, existing.region, "within-commitment-region")
    if isinstance(body, CommitmentEndorsed):
        if statement.actor == existing.declarer:
            raise InvariantBroken("no-self-endorsement", "the declarer cannot endorse itself")
        if statement.actor in existing.endorsers:
            raise InvariantBroken("endorsed-once", f"{statement.actor!r} already endorsed")
        existing.endorse(endorser=statement.actor, digest=statement.digest, at=at)
    else:
        assert isinstance(body, CommitmentBreachReported)
        existing.report_breach(reporter=statement.actor, digest=statement.digest, at=at)
    return existing


def handle_pledge(
    statement: Statement, mandate: dict[str, Any] | None, existing: Pledge | None, at: str
) -> Pledge:
    """Apply a ``pledge.*`` statement under ``mandate``; returns the changed aggregate."""
    body = statement.body
    role = mandate["role"] if mandate else None
    if isinstance(body, PledgeMade):
        if existing is not None:
            raise InvariantBroken("pledged-once", f"pledge {statement.subject!r} exists")
        if statement.refs:
            raise InvariantBroken("no-refs-on-pledge", "a pledge refs nothing")
        if body.institution != role:
            raise InvariantBroken(
                "institution-matches-mandate",
                f"pledging for {body.institution} under a {role} mandate",
            )
        return Pledge(
            pledge_id=statement.subject, pledger=statement.actor, institution=body.institution,
            region=body.region, digest=statement.digest, at=at,
        )  # fmt: skip
    if existing is None:
        raise InvariantBroken("pledge-made", f"no pledge {statement.subject!r}")
    if isinstance(body, PledgeViolationReported):
        _refs_exactly(statement, existing.pledge_digest, "refs-pledge", "pledge")
        _within(statement, existing.region, "within-pledge-region")
        expected = "report" if role == "observer" else "finding"
        if body.kind != expected:
            raise InvariantBroken(
                "report-kind-matches-role", f"a {role} files a {expected}, not a {body.kind}"
            )
        existing.report_violation(
            reporter=statement.actor, kind=body.kind, region=body.region,
            digest=statement.digest, at=at,
        )  # fmt: skip
        return existing
    assert isinstance(body, PledgeViolationRuled)
    if len(statement.refs) != 1 or statement.refs[0] not in existing.reports:
        raise InvariantBroken("ruling-refs-report", "a ruling refs one violation report of this pledge")
    report = statement.refs[0]
    if report in existing.rulings:
        raise InvariantBroken("ruled-once", "that report was already ruled on")
    if COMPETENT_BODY.get(existing.institution) != role:
        raise InvariantBroken(
            "competent-body",
            f"{existing.institution} pledges are ruled on by "
            f"{COMPETENT_BODY.get(existing.institution, 'no body on this ledger')}, not {role}",
        )
    if statement.region != existing.reports[report]:
        raise InvariantBroken("ruling-region-matches-report", "a ruling carries the report's region")
    existing.rule(
        ruler=statement.actor, report=report, ruling=body.ruling, digest=statement.digest, at=at
    )
    return existing

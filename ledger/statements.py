"""Statements (SPEC §1) and the closed body of every type in DOMAIN.md's catalogue.

Every model is closed (unknown fields refused) and strict (no coercion: ``"1"``
is not ``1``, ``true`` is not ``1``). Integers are bounded to ±(2^53-1) by the
parser (``ledger.canonical``) before they reach these models, and counts are
bounded here again. ``Statement.parse`` is the one way in; it raises
``MalformedStatement`` or ``MalformedBody`` with the first problem found.

The JSON Schemas of the statement and of every body are published in
``ledger/schemas/`` (``python -m ledger.schemas`` writes them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from ledger import regions
from ledger.errors import MalformedBody, MalformedStatement

MAX_SAFE = 2**53 - 1
# A statement's canonical JSON is at most this many bytes, so that every valid
# statement fits in one 64 KiB envelope (base64 grows it by 4/3, the envelope's
# own fields add ~260 bytes). Field bounds count characters; this counts bytes,
# so four-byte characters or JCS's six-byte escapes cannot push a valid
# statement past what the server accepts.
MAX_STATEMENT_BYTES = 48_000


def check_size(payload: bytes) -> None:
    """Raises MalformedStatement for a canonical statement past MAX_STATEMENT_BYTES."""
    if len(payload) > MAX_STATEMENT_BYTES:
        raise MalformedStatement(f"a statement is at most {MAX_STATEMENT_BYTES:,} bytes of canonical JSON "
                                 f"(this one is {len(payload):,})")  # fmt: skip

ROLES = (
    "registrar", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps", "dkpp",
    "bkn", "party", "candidate_pair", "candidate_witness", "tni", "polri", "asn", "observer",
    "auditor", "witness",
)  # fmt: skip
Role = Literal[
    "registrar", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps", "dkpp",
    "bkn", "party", "candidate_pair", "candidate_witness", "tni", "polri", "asn", "observer",
    "auditor", "witness",
]  # fmt: skip

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def _time(text: str) -> str:
    if not _TIME.match(text):
        raise ValueError("must be an RFC 3339 UTC time ending in Z, at most microseconds")
    datetime.fromisoformat(text.replace("Z", "+00:00"))  # raises ValueError on 2024-02-30
    return text


def _statement_id(text: str) -> str:
    if not (_UUID.match(text) or _ULID.match(text)):
        raise ValueError("must be a lowercase hyphenated UUID or a ULID")
    return text


def _region(code: str) -> str:
    problem = regions.check_region(code)
    if problem:
        raise ValueError(problem)
    return code


def _tps(code: str) -> str:
    if regions.level(code) != 5:
        raise ValueError("must be a TPS code PP.KK.CC.DDDD.TTT")
    return _region(code)


def _key(text: str) -> str:
    from ledger.envelope import decode_b64  # the one base64 rule, shared with envelopes

    if len(decode_b64(text)) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return text


Time = Annotated[str, AfterValidator(_time), Field(description="RFC 3339 UTC, trailing Z")]
StatementId = Annotated[str, AfterValidator(_statement_id), Field(description="UUID or ULID")]
ActorId = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="registered actor id"),
]
Subject = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
Region = Annotated[
    str,
    AfterValidator(_region),
    Field(description="Kemendagri code PP[.KK[.CC[.DDDD[.TTT]]]] or ID for the whole country"),
]
TpsCode = Annotated[str, AfterValidator(_tps), Field(description="PP.KK.CC.DDDD.TTT")]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of a document")]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the raw key")]
PublicKey = Annotated[str, AfterValidator(_key), Field(description="base64 raw Ed25519 key")]
Count = Annotated[int, Field(ge=0, le=MAX_SAFE)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]
Race = Literal["governor", "regent", "mayor"]

ItemKind = Literal[
    "ballot_box_governor", "ballot_box_regent", "ballot_box_mayor", "booth",
    "ballots_governor", "ballots_regent", "ballots_mayor",
    "result_forms_governor", "result_forms_regent", "result_forms_mayor",
    "seals", "ink", "marking_tools", "voter_list_copies",
]  # fmt: skip


class Closed(BaseModel):
    """A closed, strict object. Optional fields are omitted, never ``null``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None:
                    raise ValueError(f"{key}: null is not allowed (omit an optional field)")
        return data


def parse_time(text: str) -> datetime:
    """An RFC 3339 UTC time string as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(moment: datetime) -> str:
    """SPEC §3: exactly six fractional digits, UTC, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- registry (SPEC §1.1)


# The level of jurisdiction each role works at (0 ID, 1 province, 2 regency/city,
# 3 kecamatan, 4 village, 5 TPS); roles not listed may hold any jurisdiction.
ROLE_LEVELS: dict[str, frozenset[int]] = {
    "kpu": frozenset({0, 1, 2}), "bawaslu": frozenset({0, 1, 2}),
    "ppk": frozenset({3}), "panwascam": frozenset({3}),
    "pps": frozenset({4}), "pkd": frozenset({4}),
    "kpps": frozenset({5}), "ptps": frozenset({5}), "candidate_witness": frozenset({5}),
    "dkpp": frozenset({0}), "bkn": frozenset({0}), "witness": frozenset({0}),
}  # fmt: skip


class Mandate(Closed):
    """A role over a jurisdiction for a period; ``valid_until`` is exclusive.

    The jurisdiction must fit the role (``ROLE_LEVELS``): a PPK works in a
    kecamatan, a KPPS at a TPS, a witness (SPEC §6) for the whole country.
    """

    id: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role
    jurisdiction: Region
    valid_from: Time
    valid_until: Time | None = None

    @model_validator(mode="after")
    def _period(self) -> Mandate:
        levels = ROLE_LEVELS.get(self.role)
        if levels is not None and regions.level(self.jurisdiction) not in levels:
            names = ", ".join(regions.LEVEL_NAMES[n] for n in sorted(levels))
            raise ValueError(f"a {self.role} mandate is for a jurisdiction at level: {names}")
        if self.valid_until is not None and parse_time(self.valid_until) <= parse_time(
            self.valid_from
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


class ActorRegistered(Closed):
    """``actor.registered``: a new actor, its keys (≥ 1) and its first mandates."""

    name: ShortText
    kind: Literal["organisation", "person"]
    keys: Annotated[list[PublicKey], Field(min_length=1, max_length=16)]
    mandates: Annotated[list[Mandate], Field(max_length=64)]

    @model_validator(mode="after")
    def _unique(self) -> ActorRegistered:
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be distinct")
        if len({m.id for m in self.mandates}) != len(self.mandates):
            raise ValueError("mandate ids must be distinct")
        return self


class ActorKeyAdded(Closed):
    """``actor.key_added``: one more key for the actor."""

    key: PublicKey


class ActorKeyRevoked(Closed):
    """``actor.key_revoked``: the key signs nothing recorded after this entry."""

    keyid: KeyId
    reason: ShortText | None = None


class ActorMandateGranted(Closed):
    """``actor.mandate_granted``: a new mandate (its id unique among the actor's)."""

    mandate: Mandate


class ActorMandateRevoked(Closed):
    """``actor.mandate_revoked``: the mandate authorises nothing recorded after this entry."""

    mandate_id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: ShortText | None = None


# ---------------------------------------------------------------- commitments


class CommitmentDeclared(Closed):
    """``commitment.declared`` (subject: the commitment id) by a party or candidate pair.

    ``race`` is absent for a commitment covering every race in ``region`` (a
    national party's declaration has region ``ID``). ``document_sha256`` is
    the hash of the signed paper document, which stays off the ledger.
    """

    region: Region
    race: Race | None = None
    kind: Literal[
        "peaceful_campaign", "integrity_pact", "anti_money_politics", "anti_hoax",
        "accept_result", "follow_procedures",
    ]  # fmt: skip
    title: ShortText
    text: Text
    document_sha256: Sha256

    @model_validator(mode="after")
    def _race_fits_region(self) -> CommitmentDeclared:
        if self.race is None:
            return self
        if self.region == regions.COUNTRY:
            raise ValueError("a race is held in a province, regency or city, not in ID")
        if self.race in ("regent", "mayor") and regions.level(self.region) < 2:
            raise ValueError(f"a {self.race} race is held in a regency or city")
        if regions.level(self.region) >= 2:
            city = int(self.region.split(".")[1]) >= 71
            if (self.race == "mayor") != city and self.race != "governor":
                raise ValueError(f"{self.region} is a {'city' if city else 'regency'}")
        return self


class CommitmentEndorsed(Closed):
    """``commitment.endorsed``: refs the declaration; region within the declaration's."""

    region: Region
    note: Annotated[str, Field(max_length=2000)] | None = None


class CommitmentBreachReported(Closed):
    """``commitment.breach_reported`` by an oversight body: refs the declaration."""

    region: Region
    occurred_at: Time
    place: ShortText
    facts: Text
    evidence_sha256: Sha256 | None = None


# ---------------------------------------------------------------- neutrality pledges

Institution = Literal[
    "asn", "tni", "polri", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps",
    "dkpp",
]  # fmt: skip
Undertaking = Literal[
    "neutral_before_during_after", "no_taking_sides", "no_intimidation", "no_hoax",
    "refuse_money_politics", "refuse_gifts",
]  # fmt: skip


class PledgeMade(Closed):
    """``pledge.made`` (subject: the pledge id): an institution's neutrality pledge.

    ``institution`` must be the role of the mandate the signer pledges under.
    """

    region: Region
    institution: Institution
    undertakings: Annotated[list[Undertaking], Field(min_length=1, max_length=6)]
    text: Text
    valid_until: Time
    document_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _unique(self) -> PledgeMade:
        if len(set(self.undertakings)) != len(self.undertakings):
            raise ValueError("undertakings must be distinct")
        return self


class PledgeViolationReported(Closed):
    """``pledge.violation_reported`` (subject: the pledge id): refs the pledge.

    ``kind`` is ``finding`` (temuan) for oversight bodies, ``report`` (laporan)
    for observers.
    """

    region: Region
    kind: Literal["finding", "report"]
    occurred_at: Time
    place: ShortText
    facts: Text
    evidence_sha256: Sha256 | None = None


class PledgeViolationRuled(Closed):
    """``pledge.violation_ruled`` (subject: the pledge id) by DKPP or BKN: refs the report."""

    region: Region
    ruling: Literal["upheld", "dismissed"]
    sanction: ShortText | None = None
    reasoning: Text


# ---------------------------------------------------------------- logistics

Items = Annotated[dict[ItemKind, Count], Field(min_length=1)]


class LogisticsDispatched(Closed):
    """``logistics.dispatched`` (subject: the consignment id) by the sender.

    ``region`` is the lower end of the hop (SPEC §1.2). ``receiver`` is the
    actor id of the receiver, one level below the sender outbound, one above
    on the return. ``parent`` is the consignment this one continues.
    """

    region: Region
    receiver: ActorId
    direction: Literal["outbound", "return"]
    items: Items
    seals: Annotated[list[ShortText], Field(max_length=64)] = []
    due_by: Time | None = None
    parent: Subject | None = None

    @model_validator(mode="after")
    def _unique(self) -> LogisticsDispatched:
        if len(set(self.seals)) != len(self.seals):
            raise ValueError("seal numbers must be distinct")
        return self


class LogisticsReceived(Closed):
    """``logistics.received`` by the named receiver: exactly one ref, the dispatch.

    ``items`` are the counted quantities; any difference from the dispatch or
    ``seals_intact: false`` makes the consignment received with discrepancy.
    """

    region: Region
    items: Items
    seals_intact: bool
    condition: Literal["good", "damaged", "wet", "incomplete"]
    note: Annotated[str, Field(max_length=2000)] | None = None


class LogisticsWitnessed(Closed):
    """``logistics.witnessed`` by a supervisor or candidate witness: refs a dispatch or receipt."""

    region: Region
    note: Annotated[str, Field(max_length=2000)] | None = None


class LogisticsDiscrepancyReported(Closed):
    """``logistics.discrepancy_reported`` by the receiver or a supervisor: refs a dispatch or receipt."""

    region: Region
    kinds: Annotated[
        list[Literal["shortage", "damage", "surplus", "broken_seal", "late"]],
        Field(min_length=1, max_length=5),
    ]
    items: dict[ItemKind, Count] = {}
    facts: Text
    evidence_sha256: Sha256 | None = None


BODIES: dict[str, type[Closed]] = {
    "actor.registered": ActorRegistered,
    "actor.key_added": ActorKeyAdded,
    "actor.key_revoked": ActorKeyRevoked,
    "actor.mandate_granted": ActorMandateGranted,
    "actor.mandate_revoked": ActorMandateRevoked,
    "commitment.declared": CommitmentDeclared,
    "commitment.endorsed": CommitmentEndorsed,
    "commitment.breach_reported": CommitmentBreachReported,
    "pledge.made": PledgeMade,
    "pledge.violation_reported": PledgeViolationReported,
    "pledge.violation_ruled": PledgeViolationRuled,
    "logistics.dispatched": LogisticsDispatched,
    "logistics.received": LogisticsReceived,
    "logistics.witnessed": LogisticsWitnessed,
    "logistics.discrepancy_reported": LogisticsDiscrepancyReported,
}
StatementType = Literal[
    "actor.registered", "actor.key_added", "actor.key_revoked", "actor.mandate_granted",
    "actor.mandate_revoked", "commitment.declared", "commitment.endorsed",
    "commitment.breach_reported", "pledge.made", "pledge.violation_reported",
    "pledge.violation_ruled", "logistics.dispatched", "logistics.received",
    "logistics.witnessed", "logistics.discrepancy_reported",
]  # fmt: skip


def is_registry(statement_type: str) -> bool:
    return statement_type.startswith("actor.")


class StatementModel(Closed):
    """The statement's envelope-level fields (SPEC §1); ``body`` is checked per type."""

    v: Annotated[StrictInt, Field(ge=1, le=1, description="format version, the integer 1")]
    type: StatementType
    id: StatementId
    actor: ActorId
    issued_at: Time
    subject: Subject
    body: dict[str, Any]
    refs: Annotated[list[Digest], Field(min_length=1, max_length=16)] | None = None

    @model_validator(mode="after")
    def _refs_unique(self) -> StatementModel:
        if self.refs is not None and len(set(self.refs)) != len(self.refs):
            raise ValueError("refs must be distinct")
        if is_registry(self.type) and self.subject != self.subject.lower():
            raise ValueError("an actor.* subject is an actor id")
        return self


class Statement:
    """A parsed, validated statement: its fields, its typed body, its digest.

    ``raw`` is the JSON object exactly as signed; ``payload`` its canonical bytes.
    """

    __slots__ = ("model", "body", "payload", "digest")

    def __init__(self, model: StatementModel, body: Closed, payload: bytes, digest: str) -> None:
        self.model = model
        self.body = body
        self.payload = payload
        self.digest = digest

    @classmethod
    def parse(cls, value: Any, *, payload: bytes, digest: str) -> Statement:
        """Validate a decoded statement object. Raises MalformedStatement / MalformedBody."""
        check_size(payload)
        if not isinstance(value, dict):
            raise MalformedStatement("a statement is a JSON object")
        try:
            model = StatementModel.model_validate(value)
        except ValidationError as error:
            raise MalformedStatement(_first_error(error), errors=_errors(error)) from None
        try:
            body = BODIES[model.type].model_validate(model.body)
        except ValidationError as error:
            raise MalformedBody(
                f"{model.type} body: {_first_error(error)}", errors=_errors(error)
            ) from None
        return cls(model, body, payload, digest)

    # Convenience accessors, in the domain's words.
    type = property(lambda self: self.model.type)
    id = property(lambda self: self.model.id)
    actor = property(lambda self: self.model.actor)
    subject = property(lambda self: self.model.subject)
    issued_at = property(lambda self: self.model.issued_at)
    refs = property(lambda self: tuple(self.model.refs or ()))
    # A body's fields are in its __dict__: getattr with a default would make pydantic raise
    # (and catch) an AttributeError for every body without a region.
    region = property(lambda self: vars(self.body).get("region"))


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}"


def _errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in error.errors()[:20]
    ]

"""Request and response schemas of the HTTP API (separate from domain objects)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.problems import Problem


MAX_INDEX = 2**53 - 1  # log indexes and sizes, like every integer on the wire


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    sig: str


class EnvelopeIn(BaseModel):
    """A DSSE envelope (SPEC §2), exactly these fields."""

    model_config = ConfigDict(extra="forbid")
    payloadType: str = "application/vnd.saksi.statement+json"  # noqa: N815
    payload: str
    signatures: list[Signature] = Field(min_length=1, max_length=1)


class ReceiptOut(BaseModel):
    """Where a statement sits in the log, and the C2SP tlog-proof proving it."""

    index: int
    statement_digest: str
    leaf_hash: str = Field(description="hex SHA-256(0x00 || leaf bytes)")
    recorded_at: str
    receipt: str = Field(description="c2sp.org/tlog-proof@v1 text")


class BatchItem(BaseModel):
    """One result of a batch, in the order submitted: a receipt or a problem."""

    status: int
    receipt: ReceiptOut | None = None
    problem: Problem | None = None


class LogEntry(BaseModel):
    """A log entry exactly as SPEC §3."""

    index: int
    recorded_at: str
    envelope: EnvelopeIn


class InclusionProof(BaseModel):
    index: int
    size: int
    leaf_hash: str
    proof: list[str] = Field(description="base64 hashes, the leaf's sibling first")


class ConsistencyProof(BaseModel):
    """SPEC §7: two signed checkpoints and the proof between them."""

    model_config = ConfigDict(extra="forbid")
    old: str
    new: str
    proof: list[str]


class KeysOut(BaseModel):
    """SPEC §8 keys.json."""

    log: str
    witnesses: list[str]
    genesis: list[dict[str, str]]


class CosignatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cosignature: str = Field(description="one tlog-cosignature line: '— NAME BASE64'")
    size: int | None = Field(default=None, ge=1, le=MAX_INDEX, description="the checkpoint size it cosigns (latest by default)")


class ProjectionOut(BaseModel):
    name: str
    size: int = Field(description="log entries this projection reflects")
    digest: str


class Page(BaseModel):
    """A page of results; pass ``next`` as ``cursor`` for the next page (null: no more)."""

    items: list[dict[str, Any]]
    next: str | None = None


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")
    region: str
    name: str
    tps: int
    holding_all: int
    by_deadline: int
    late: int
    not_received: int
    not_dispatched: int
    in_discrepancy: int
    missing_items: dict[str, int]
    problems: list[dict[str, Any]]
    children: list[dict[str, Any]] = []

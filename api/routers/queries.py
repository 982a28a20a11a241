"""Queries over every projection, with filters and cursor pagination."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import RuntimeDep
from api.problems import PROBLEM_RESPONSES, ProblemError
from api.schemas import MAX_INDEX, Page, ProjectionOut, Readiness
from ledger import regions
from ledger.errors import NotFound
from projections import actors, custody, registers

router = APIRouter(prefix="/v1", tags=["queries"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(description="the `next` of the previous page")]


def _page(items: list[dict[str, Any]], limit: int, key: str = "id") -> Page:
    return Page(items=items, next=str(items[-1][key]) if len(items) == limit else None)


def _region(code: str) -> str:
    problem = regions.check_region(code)
    if problem:
        raise ProblemError(422, problem, "malformed-region")
    return code


@router.get("/consignments", response_model=Page, responses=PROBLEM_RESPONSES)
def list_consignments(runtime: RuntimeDep, region: str | None = None, status: str | None = None,
                      cursor: Cursor = None, limit: Limit = 100) -> Page:  # fmt: skip
    """Consignments by id; filter by region prefix and status (dispatched, received,
    received_with_discrepancy)."""
    items = runtime.read(custody.consignments, region=region and _region(region), status=status,
                         after=cursor, limit=limit)  # fmt: skip
    return _page(items, limit)


@router.get("/consignments/{consignment_id}", responses=PROBLEM_RESPONSES)
def get_consignment(consignment_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """One consignment's chain of custody: every hop's signer, key, index and times,
    items dispatched against received, seals, witnesses, discrepancies."""
    found = runtime.read(custody.consignment, consignment_id)
    if found is None:
        raise NotFound(f"no consignment {consignment_id!r}")
    return found  # type: ignore[no-any-return]


@router.get("/tps/{code}/custody", responses=PROBLEM_RESPONSES)
def tps_custody(code: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Every hop out and back that carried a TPS's logistics, as the tree of parent consignments."""
    if regions.level(_region(code)) != 5:
        raise ProblemError(422, "a TPS code is PP.KK.CC.DDDD.TTT", "malformed-region")
    return runtime.read(custody.tps_custody, code)  # type: ignore[no-any-return]


@router.get("/regions/{code}/readiness", response_model=Readiness, responses=PROBLEM_RESPONSES)
def readiness(code: str, runtime: RuntimeDep, children: bool = True) -> dict[str, Any]:
    """How many TPS under a region (province, regency/city, kecamatan, village, TPS or ID)
    hold all their logistics, by the deadline or late; what is missing or in discrepancy.
    With ``children``, the same for each region one level down."""
    found = runtime.read(custody.readiness, _region(code))
    if children and regions.level(code) < 5:
        found["children"] = [{k: v for k, v in c.items() if k != "problems"}
                             for c in runtime.read(custody.children_readiness, code)]  # fmt: skip
    return found  # type: ignore[no-any-return]


@router.get("/commitments", response_model=Page, responses=PROBLEM_RESPONSES)
def list_commitments(runtime: RuntimeDep, region: str | None = None, declarer: str | None = None,
                     kind: str | None = None, cursor: Cursor = None, limit: Limit = 100) -> Page:  # fmt: skip
    """The commitments register with endorsements and breach reports; a region filter
    also shows commitments made for the regions containing it."""
    items = runtime.read(registers.commitments, region=region and _region(region), declarer=declarer,
                         kind=kind, after=cursor, limit=limit)  # fmt: skip
    return _page(items, limit)


@router.get("/pledges", response_model=Page, responses=PROBLEM_RESPONSES)
def list_pledges(runtime: RuntimeDep, region: str | None = None, institution: str | None = None,
                 pledger: str | None = None, cursor: Cursor = None, limit: Limit = 100) -> Page:  # fmt: skip
    """The neutrality register: pledges, violation reports and their rulings."""
    items = runtime.read(registers.pledges, region=region and _region(region), institution=institution,
                         pledger=pledger, after=cursor, limit=limit)  # fmt: skip
    return _page(items, limit)


@router.get("/actors", response_model=Page, responses=PROBLEM_RESPONSES)
def list_actors(runtime: RuntimeDep, role: str | None = None, jurisdiction: str | None = None,
                name: str | None = None, cursor: Cursor = None, limit: Limit = 100) -> Page:  # fmt: skip
    """Registered actors by id; filter by role, jurisdiction prefix, name."""
    items = runtime.read(actors.actors, role=role, jurisdiction=jurisdiction, name=name, after=cursor, limit=limit)
    return _page(items, limit)


@router.get("/actors/{actor_id}", responses=PROBLEM_RESPONSES)
def get_actor(actor_id: str, runtime: RuntimeDep,
              at_index: Annotated[int | None, Query(ge=0, le=MAX_INDEX, description="as the registry stood after this entry")] = None,
              ) -> dict[str, Any]:  # fmt: skip
    """An actor, its keys and mandates (with when each was added and revoked), now or
    as the registry stood at a log index."""
    found = runtime.read(actors.actor, actor_id, at_index=at_index)
    if found is None:
        raise NotFound(f"no actor {actor_id!r}" + (f" at index {at_index}" if at_index is not None else ""))
    return found  # type: ignore[no-any-return]


@router.get("/subjects/{subject}/trail", response_model=Page, responses=PROBLEM_RESPONSES)
def trail(subject: str, runtime: RuntimeDep, cursor: Annotated[int | None, Query(ge=-1, le=MAX_INDEX)] = None,
          limit: Limit = 100) -> Page:  # fmt: skip
    """The integrity trail of a subject: its entries with index, leaf hash, statement
    digest, signer and key id (a receipt for each at /v1/log/receipts/{index})."""
    items = runtime.read(actors.trail, subject, after=cursor, limit=limit)
    return _page(items, limit, key="index")


@router.get("/projections", response_model=list[ProjectionOut])
def projections(runtime: RuntimeDep) -> list[ProjectionOut]:
    """Each read model: the log size it reflects and the digest of its state, which
    anyone can reproduce with `saksi rebuild` on a copy of the log."""
    runtime.projector.catch_up()
    return [ProjectionOut(name=s.name, size=s.size, digest=s.digest) for s in runtime.projector.status()]

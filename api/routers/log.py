"""The integrity log: checkpoints, keys, entries, proofs, receipts, cosignatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from api.deps import RuntimeDep
from api.problems import PROBLEM_RESPONSES, ProblemError
from api.routers.statements import read_body
from api.schemas import MAX_INDEX, ConsistencyProof, CosignatureIn, InclusionProof, KeysOut, LogEntry
from ledger.audit import iter_entries
from ledger.bundle import keys_json
from ledger.canonical import canonical_bytes
from ledger.envelope import b64
from ledger.notes import format_consistency

router = APIRouter(prefix="/v1/log", tags=["log"])
TEXT = {"content": {"text/plain": {}}}


@router.get("/checkpoint", response_class=PlainTextResponse, responses={200: TEXT})
def checkpoint(runtime: RuntimeDep) -> str:
    """The latest signed checkpoint (C2SP signed note) with its cosignatures."""
    return runtime.ledger.checkpoint()


@router.get("/key", response_class=PlainTextResponse, responses={200: TEXT})
def key(runtime: RuntimeDep) -> str:
    """The log's public key in note verifier-key format."""
    return runtime.log_vkey + "\n"


@router.get("/keys", response_model=KeysOut)
def keys(runtime: RuntimeDep) -> KeysOut:
    """keys.json (SPEC §8): the log key, the witnesses' keys and the genesis registrars."""
    return KeysOut(**keys_json(runtime.ledger, runtime.log_vkey))


@router.get("/entries", response_class=Response, responses={200: {"content": {"application/jsonl": {}},
            "description": "one log entry (SPEC §3) per line"}, **PROBLEM_RESPONSES})  # fmt: skip
def entries(
    runtime: RuntimeDep,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_INDEX, description="exclusive; at most start + 1000")] = None,
) -> Response:
    """Log entries [start, end) as JSON lines, each exactly as SPEC §3."""
    size = runtime.ledger.tlog.size
    end = min(size, start + runtime.settings.max_page if end is None else end)
    if end - start > runtime.settings.max_page:
        raise ProblemError(422, f"at most {runtime.settings.max_page} entries per request")
    lines = b"".join(canonical_bytes(e) + b"\n" for e in iter_entries(runtime.ledger, start, max(start, end)))
    return Response(lines, media_type="application/jsonl")


@router.get("/entries/{index}", response_model=LogEntry, responses=PROBLEM_RESPONSES)
def entry(index: Annotated[int, Path(ge=0, le=MAX_INDEX)], runtime: RuntimeDep) -> Response:
    """One log entry, exactly as SPEC §3 (its canonical JSON is the leaf's bytes)."""
    return Response(canonical_bytes(runtime.ledger.tlog.entry(index)), media_type="application/json")


@router.get("/proofs/inclusion", response_model=InclusionProof, responses=PROBLEM_RESPONSES)
def inclusion(runtime: RuntimeDep, index: Annotated[int, Query(ge=0, le=MAX_INDEX)],
              size: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None) -> InclusionProof:  # fmt: skip
    """The RFC 6962 inclusion proof of entry ``index`` in the tree of ``size`` (latest)."""
    size = size or runtime.ledger.tlog.size
    if index >= size:
        raise ProblemError(422, f"index {index} is not below size {size}")
    proof = runtime.ledger.tlog.inclusion_proof(index, size)
    return InclusionProof(index=index, size=size, leaf_hash=runtime.ledger.tlog.leaf_hash(index).hex(),
                          proof=[b64(h) for h in proof])  # fmt: skip


@router.get("/proofs/consistency", response_model=ConsistencyProof, responses=PROBLEM_RESPONSES)
def consistency(runtime: RuntimeDep, old: Annotated[int, Query(ge=1, le=MAX_INDEX)],
                new: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None) -> ConsistencyProof:  # fmt: skip
    """SPEC §7: the consistency proof between the signed checkpoints of sizes ``old``
    and ``new`` (latest by default). Both must be sizes the log signed."""
    tlog = runtime.ledger.tlog
    new_note = tlog.note(new) if new else runtime.ledger.checkpoint()
    new_size = new or int(new_note.split("\n")[1])
    if old > new_size:
        raise ProblemError(422, f"old ({old}) is larger than new ({new_size})")
    proof = tlog.consistency_proof(old, new_size)
    return ConsistencyProof(**format_consistency(tlog.note(old), new_note, proof))


@router.get("/receipts/{index}", response_class=PlainTextResponse, responses={200: TEXT, **PROBLEM_RESPONSES})
def receipt(index: Annotated[int, Path(ge=0, le=MAX_INDEX)], runtime: RuntimeDep) -> str:
    """The receipt (c2sp.org/tlog-proof@v1, with the entry in ``extra``) of entry ``index``
    against the latest cosigned checkpoint."""
    return runtime.ledger.receipt(index).tlog_proof


@router.post(
    "/cosignatures", response_class=PlainTextResponse, responses={200: TEXT, **PROBLEM_RESPONSES},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": CosignatureIn.model_json_schema()}}}},
)  # fmt: skip
async def add_cosignature(request: Request, runtime: RuntimeDep) -> str:
    """A witness's cosignature (C2SP tlog-cosignature) on a checkpoint; verified against
    the registry (a registered witness with a mandate for ID) and stored. Returns the
    cosigned checkpoint. The body is size-checked before it is read in full."""
    raw = await read_body(request, runtime.settings.max_body_bytes)
    try:
        body = CosignatureIn.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        raise ProblemError(422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return await run_in_threadpool(runtime.ledger.add_cosignature, body.cosignature, size=body.size)

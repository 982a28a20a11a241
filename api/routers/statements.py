"""Submitting signed statements: one, or a batch of up to 1,000."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import RuntimeDep
from api.problems import PROBLEM_RESPONSES, ProblemError, from_saksi_error
from api.schemas import BatchItem, EnvelopeIn, ReceiptOut
from ledger.canonical import JSONRefused, strict_loads
from ledger.errors import MalformedEnvelope, SaksiError
from ledger.log import Receipt

router = APIRouter(prefix="/v1/statements", tags=["statements"])


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProblemError(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its ``$defs`` inlined: a schema placed in
    ``openapi_extra`` sits inside the OpenAPI document, where ``#/$defs/…`` would
    point at the document's root and dangle."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "", status_code=201, response_model=ReceiptOut, responses={200: {"model": ReceiptOut, "description":
    "the same envelope was recorded before: its first receipt"}, **PROBLEM_RESPONSES, 403: PROBLEM_RESPONSES[422],
    409: PROBLEM_RESPONSES[422]}, openapi_extra=_json_body(inline_schema(EnvelopeIn)),
)  # fmt: skip
async def submit(request: Request, response: Response, runtime: RuntimeDep) -> ReceiptOut:
    """Record one signed statement (a DSSE envelope). 201 with its receipt; 200 with the
    first receipt when the same envelope was recorded before; a problem otherwise."""
    body = await read_body(request, runtime.settings.max_body_bytes)
    receipt = await run_in_threadpool(runtime.ledger.submit, body)
    response.status_code = 200 if receipt.duplicate else 201
    return ReceiptOut(**receipt.to_json())


@router.post(
    "/batch", response_model=list[BatchItem], responses=PROBLEM_RESPONSES,
    openapi_extra=_json_body({"type": "array", "maxItems": 1000, "items": inline_schema(EnvelopeIn)}),
)  # fmt: skip
async def submit_batch(request: Request, runtime: RuntimeDep) -> Response:
    """Record up to 1,000 envelopes, each on its own: results in order, each a receipt
    (201, or 200 for a duplicate) or a problem. Accepted ones are durable whatever
    happens to the rest."""
    body = await read_body(request, runtime.settings.max_batch_bytes)
    try:
        items = strict_loads(body)
    except JSONRefused as error:
        raise MalformedEnvelope(f"the batch is not JSON we accept: {error}") from None
    if not isinstance(items, list):
        raise ProblemError(422, "a batch is a JSON array of envelopes")
    if len(items) > runtime.settings.max_batch_items:
        raise ProblemError(413, f"a batch holds at most {runtime.settings.max_batch_items} envelopes", "batch-too-large")
    results = await run_in_threadpool(runtime.ledger.submit_batch, items)
    return Response(orjson.dumps([batch_item(result) for result in results]), media_type="application/json")


def batch_item(result: Receipt | SaksiError) -> dict[str, Any]:
    """One item of a batch's answer, as ``BatchItem`` serialises it. A receipt's fields
    are plain strings and integers: encoded directly, they cost a twentieth of building
    two validated models per item (at 1,000 items, a tenth of a batch's time on the
    server); the rare problem goes through the model."""
    if isinstance(result, SaksiError):
        problem = from_saksi_error(result)
        return BatchItem(status=problem["status"], problem=problem).model_dump(mode="json")  # type: ignore[arg-type]
    return {"status": 200 if result.duplicate else 201, "receipt": result.to_json(), "problem": None}


@router.get("/schemas/{statement_type}", responses=PROBLEM_RESPONSES)
def schema(statement_type: str) -> dict[str, object]:
    """The published JSON Schema of a statement body (``statement`` for the statement itself)."""
    from ledger.errors import NotFound
    from ledger.jsonschema import schemas

    found = schemas().get(f"{statement_type}.json")
    if found is None:
        raise NotFound(f"no statement type {statement_type!r}")
    return found

"""Audit bundles and the live stream of accepted entries."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import RuntimeDep
from api.problems import PROBLEM_RESPONSES, ProblemError
from api.schemas import MAX_INDEX
from ledger.audit import iter_entries
from ledger.bundle import export_bundle
from ledger.canonical import canonical_bytes

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/export", response_class=StreamingResponse, responses={
    200: {"content": {"application/zip": {}}, "description": "an audit bundle (SPEC §8)"}, **PROBLEM_RESPONSES})  # fmt: skip
async def export(runtime: RuntimeDep, subject: str | None = None, full: bool = False) -> StreamingResponse:
    """An audit bundle as a .zip: ``full=true`` for every entry, or ``subject=`` (a
    consignment, TPS or region code, actor id) for a selective bundle with proofs."""
    if full == (subject is not None):
        raise ProblemError(422, "give exactly one of full=true or subject=")
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    await run_in_threadpool(export_bundle, runtime.ledger, spool, log_vkey=runtime.log_vkey, subject=subject)
    spool.seek(0)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while data := await run_in_threadpool(spool.read, 1 << 20):
                yield data
        finally:
            spool.close()

    # A header is latin-1: the file name keeps only safe ASCII of the subject.
    name = "saksi-full.zip" if full else "saksi-" + re.sub(r"[^A-Za-z0-9._-]", "_", subject or "") + ".zip"
    return StreamingResponse(chunks(), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.get("/events/stream", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "one SSE event per accepted entry"},
    **PROBLEM_RESPONSES})  # fmt: skip
async def stream(runtime: RuntimeDep,
                 start: Annotated[int, Query(alias="from", ge=0, le=MAX_INDEX)] = 0) -> StreamingResponse:  # fmt: skip
    """Server-sent events: every accepted entry from index ``from`` on, as it is
    integrated (event ``entry``, id = index, data = the entry's canonical JSON)."""

    async def events() -> AsyncIterator[bytes]:
        position, idle = start, 0
        while True:
            size = runtime.ledger.tlog.size
            if position < size:
                batch = await run_in_threadpool(lambda: list(iter_entries(runtime.ledger, position, min(size, position + 200))))
                for entry in batch:
                    yield b"event: entry\nid: %d\ndata: %s\n\n" % (entry["index"], canonical_bytes(entry))
                position += len(batch)
                idle = 0
            else:
                idle += 1
                if idle % 30 == 1:  # a comment every ~15 s keeps proxies from closing the stream
                    yield b": waiting\n\n"
                await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

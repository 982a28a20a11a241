"""The FastAPI application. Reads are public (this is a transparency log); writes
are authorised by the envelope's signature and the signer's mandate alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import problems
from api.deps import Runtime
from api.routers import export, log, queries, statements
from api.settings import Settings
from api.web import pages
from api.web.render import STATIC
from ledger.errors import SaksiError

DESCRIPTION = """
Saksi ("witness") records every commitment, neutrality pledge and handover of
Pilkada logistics as an Ed25519-signed statement in an RFC 6962 Merkle log.
Every figure here can be traced to signed statements and verified offline
(`saksi verify-bundle`). Errors are RFC 9457 problem documents whose `type` is
`https://saksi.id/problems/<code>`.
"""


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The app for ``settings`` (or an already opened ``runtime``, e.g. in tests)."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = runtime or Runtime.open(settings)
        opened.start()
        app.state.runtime = opened
        try:
            yield
        finally:
            if runtime is None:
                opened.close()  # the follower, then the ledger
            else:
                opened.halt()  # the follower; the caller's ledger stays open

    app = FastAPI(title="Saksi", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    app.add_exception_handler(SaksiError, problems.saksi_error_handler)
    app.add_exception_handler(problems.ProblemError, problems.problem_error_handler)
    app.add_exception_handler(RequestValidationError, problems.validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, problems.http_error_handler)
    app.add_exception_handler(Exception, problems.internal_error_handler)
    for router in (statements.router, log.router, queries.router, export.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""RFC 9457 problem details: every error the API returns, in one table.

The problem ``type`` is ``https://saksi.id/problems/<code>``, where ``code`` is
the stable code of the ``ledger.errors`` exception (or of an HTTP-level problem
below); the HTTP status comes from the same place.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import SaksiError

BASE = "https://saksi.id/problems/"
MEDIA_TYPE = "application/problem+json"

HTTP_PROBLEMS = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("malformed-request", "Malformed request"),
    500: ("internal", "Internal error"),
}


class Problem(BaseModel):
    """An RFC 9457 problem document (extension members allowed)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


class ProblemError(Exception):
    """An HTTP-level problem raised by the API itself (sizes, media types)."""

    def __init__(self, status: int, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code or HTTP_PROBLEMS[status][0]
        self.detail = detail


def problem_body(code: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    title = code.replace("-", " ").capitalize()
    return {"type": BASE + code, "title": title, "status": status, "detail": detail, **extra}


def from_saksi_error(error: SaksiError) -> dict[str, Any]:
    extra = {k: v for k, v in error.detail.items() if isinstance(v, str | int | list | type(None))}
    return problem_body(error.code, error.status, str(error), **extra)


def respond(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=MEDIA_TYPE)


async def saksi_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, SaksiError)
    return respond(from_saksi_error(error))


async def problem_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ProblemError)
    return respond(problem_body(error.code, error.status, error.detail))


async def validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [{"loc": ".".join(map(str, e.get("loc", ()))), "msg": str(e.get("msg"))} for e in error.errors()[:20]]
    first = errors[0] if errors else {"loc": "", "msg": "invalid"}
    return respond(problem_body("malformed-request", 422, f"{first['loc']}: {first['msg']}", errors=errors))


async def http_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code, _title = HTTP_PROBLEMS.get(error.status_code, ("http-error", "HTTP error"))
    return respond(problem_body(code, error.status_code, str(error.detail)))


async def internal_error_handler(_: Request, error: Exception) -> JSONResponse:
    return respond(problem_body("internal", 500, "the server could not complete the request"))


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": title}
    for status, (_, title) in HTTP_PROBLEMS.items()
    if status in (400, 404, 413, 422)
}

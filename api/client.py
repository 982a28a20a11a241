"""The Python client of the Saksi HTTP API (httpx). The CLI uses it for server work."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from ledger.canonical import strict_loads
from ledger.envelope import Envelope, decode_b64
from ledger.errors import SaksiError


class ServerError(SaksiError):
    """The server answered with a problem document; ``code`` is its problem code."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail", "")), **problem)
        self.code = str(problem.get("type", "")).rsplit("/", 1)[-1] or "server-error"
        self.status = int(problem.get("status", 500))
        self.problem = problem


class Client:
    """``Client("http://127.0.0.1:8000")``; use as a context manager."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"status": response.status_code, "detail": response.text[:200]}
            raise ServerError(problem)
        return response

    @staticmethod
    def _body(envelope: Envelope | dict[str, Any] | bytes) -> bytes:
        if isinstance(envelope, Envelope):
            return envelope.canonical()
        if isinstance(envelope, bytes):
            return envelope
        from ledger.canonical import canonical_bytes

        return canonical_bytes(envelope)

    def submit(self, envelope: Envelope | dict[str, Any] | bytes) -> dict[str, Any]:
        """POST /v1/statements: the receipt (``duplicate`` True for an envelope seen before).
        Raises ServerError with the problem's code."""
        response = self._check(self.http.post("/v1/statements", content=self._body(envelope),
                                              headers={"content-type": "application/json"}))  # fmt: skip
        return {**response.json(), "duplicate": response.status_code == 200}

    def submit_batch(self, envelopes: list[Envelope | dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /v1/statements/batch: per item, the receipt or the problem document."""
        body = b"[" + b",".join(self._body(e) for e in envelopes) + b"]"
        response = self._check(self.http.post("/v1/statements/batch", content=body,
                                              headers={"content-type": "application/json"}))  # fmt: skip
        return [
            {**item["receipt"], "duplicate": item["status"] == 200} if item["receipt"] else item["problem"]
            for item in response.json()
        ]

    def checkpoint(self) -> str:
        return self._check(self.http.get("/v1/log/checkpoint")).text

    def log_key(self) -> str:
        return self._check(self.http.get("/v1/log/key")).text.strip()

    def keys(self) -> dict[str, Any]:
        return self._check(self.http.get("/v1/log/keys")).json()  # type: ignore[no-any-return]

    def entry(self, index: int) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/log/entries/{index}")).json()  # type: ignore[no-any-return]

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Log entries [start, end) (to the current size by default), a page at a time."""
        while end is None or start < end:
            params = {"start": start} | ({"end": min(end, start + 1000)} if end is not None else {})
            lines = self._check(self.http.get("/v1/log/entries", params=params)).content.splitlines()
            if not lines:
                return
            for line in lines:
                yield strict_loads(line)
            start += len(lines)

    def receipt(self, index: int) -> str:
        return self._check(self.http.get(f"/v1/log/receipts/{index}")).text

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        params = {"old": old} | ({"new": new} if new else {})
        found = self._check(self.http.get("/v1/log/proofs/consistency", params=params)).json()
        return [decode_b64(h) for h in found["proof"]]

    def add_cosignature(self, line: str, *, size: int | None = None) -> str:
        body: dict[str, Any] = {"cosignature": line} | ({"size": size} if size is not None else {})
        return self._check(self.http.post("/v1/log/cosignatures", json=body)).text

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON query endpoint, e.g. ``get("/v1/regions/18.72/readiness")``."""
        return self._check(self.http.get(path, params={k: v for k, v in params.items() if v is not None})).json()

    def export(self, *, subject: str | None = None, full: bool = False) -> bytes:
        params = {"full": "true"} if full else {"subject": subject}
        return self._check(self.http.get("/v1/export", params=params)).content

"""Limits: what one request may carry, and what one client may hold.

The documented limits (README "Limits", ``api.settings.Settings``):

| limit | value | beyond it |
|---|---|---|
| one envelope, ``POST /v1/statements`` | 64 KiB body | 413 body-too-large |
| a batch, ``POST /v1/statements/batch`` | 1,000 envelopes, 16 MiB body | 413 batch-too-large / body-too-large |
| one statement | 48,000 bytes of canonical JSON | 422 malformed-statement |
| its fields | closed fields, texts ≤ 10,000 characters, lists bounded (DOMAIN.md) | 422 malformed-body |
| JSON nesting | 32 levels | 422 malformed-envelope / not-canonical |

Each limit is checked at, and just past, its edge, and nothing past a limit is
recorded. Then a real ``saksi serve`` gets many slow connections (headers or bodies
trickling in a byte at a time) while a normal client submits: it still gets its
receipts within a few seconds.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette.testclient's import-time warning
    from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from ledger import notes
from ledger.canonical import MAX_DEPTH
from ledger.canonical import canonical_bytes
from ledger.envelope import PAYLOAD_TYPE, Envelope, key_id, pae, raw_public_key, sign_statement
from ledger.errors import MalformedStatement
from ledger.statements import MAX_STATEMENT_BYTES
from ledger.scenario import kota_metro
from tests.conftest import stored_event_count
from tests.test_races import consignment_id, dispatch, serve, small_home

PROBLEM = "https://saksi.id/problems/"
SCENARIO = kota_metro()
KPU = SCENARIO.signer("kpu-18.72")
SETTINGS = Settings()
ENVELOPE_LIMIT = SETTINGS.max_body_bytes  # 64 KiB
BATCH_BYTES = SETTINGS.max_batch_bytes  # 16 MiB
BATCH_ITEMS = SETTINGS.max_batch_items  # 1,000


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, demo_template: Path) -> Path:
    home = tmp_path_factory.mktemp("limits") / "home"
    shutil.copytree(demo_template, home)
    return home


@pytest.fixture(scope="module")
def api(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as client:
        yield client


def recorded(api: TestClient) -> tuple[int, int]:
    """(log size, stored events): what a refused request must leave unchanged."""
    ledger = api.app.state.runtime.ledger  # type: ignore[attr-defined]
    return ledger.tlog.size, stored_event_count(ledger)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:400]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM + code, response.json()


def padded(envelope: Envelope, size: int) -> bytes:
    """The envelope's JSON, padded with insignificant whitespace to exactly ``size`` bytes."""
    body = envelope.canonical()
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def dispatch_statement(*, seal_chars: int, seals: int = 64, text: str = "x") -> dict[str, object]:
    """A valid dispatch made large by many long seal numbers (≤ 64 seals of ≤ 200 characters)."""
    body = {"region": "18.72.01", "receiver": "ppk-18.72.01", "direction": "outbound", "items": {"booth": 1},
            "seals": [f"{n:03d}" + text * (seal_chars - 3) for n in range(seals)]}  # fmt: skip
    return {"v": 1, "type": "logistics.dispatched", "actor": KPU.actor, "subject": consignment_id(),
            "body": body, "id": str(uuid.uuid4()), "issued_at": "2024-11-20T01:00:00.000000Z"}  # fmt: skip


def sign_unchecked(statement: dict[str, object]) -> Envelope:
    """Sign without ``sign_statement``'s size check: what a client of its own might send."""
    payload = canonical_bytes(statement)
    return Envelope(payload=payload, keyid=key_id(raw_public_key(KPU.key)), sig=KPU.key.sign(pae(PAYLOAD_TYPE, payload)))


def big_dispatch(*, seal_chars: int, seals: int = 64, text: str = "x") -> Envelope:
    return sign_unchecked(dispatch_statement(seal_chars=seal_chars, seals=seals, text=text))


def sized_dispatch(size: int, text: str) -> dict[str, object]:
    """A dispatch whose canonical JSON is exactly ``size`` bytes: its seals (each at
    most 200 characters) grown with ``text``, then topped up with ASCII."""
    statement = dispatch_statement(seal_chars=3, seals=64, text=text)
    seals: list[str] = statement["body"]["seals"]  # type: ignore[index]
    unit = len(canonical_bytes(text)) - 2  # bytes one character adds (six for an escaped control character)
    for n in range(64):
        room = (size - len(canonical_bytes(statement))) // unit
        seals[n] += text * max(0, min(room, 200 - len(seals[n]) - 1))
    for n in range(64):
        while len(canonical_bytes(statement)) < size and len(seals[n]) < 200:
            seals[n] += "x"
    assert len(canonical_bytes(statement)) == size
    return statement


# ---------------------------------------------------------------- documented as enforced
# ---------------------------------------------------------------- documented as enforced


def test_the_limits_are_documented_as_enforced() -> None:
    """README "Limits" states the values the server enforces; docs/statements.md states
    the statement bounds (generated from the published schemas)."""
    root = Path(__file__).resolve().parents[1]
    readme = root.joinpath("README.md").read_text("utf-8")
    limits = readme[readme.index("## Limits"):].split("\n## ", 1)[0]
    assert f"{ENVELOPE_LIMIT // 1024} KiB" in limits
    assert f"{BATCH_ITEMS:,} envelopes and {BATCH_BYTES // (1 << 20)} MiB" in limits
    assert f"{MAX_DEPTH} levels" in limits
    assert f"{MAX_STATEMENT_BYTES:,} bytes" in limits
    assert f"| {SETTINGS.max_page:,} |" in limits
    statements = root.joinpath("docs", "statements.md").read_text("utf-8")
    assert "maxLength `10000`" in statements and "maxItems `64`" in statements


# ---------------------------------------------------------------- one envelope


def test_an_envelope_at_the_limit_is_read_and_one_byte_more_is_413(api: TestClient) -> None:
    before = recorded(api)
    at_limit = padded(dispatch(consignment_id()), ENVELOPE_LIMIT)
    response = api.post("/v1/statements", content=at_limit)
    assert response.status_code != 413, "a body of exactly the limit is read"
    assert_problem(api.post("/v1/statements", content=at_limit + b" "), 413, "body-too-large")
    assert recorded(api)[0] == before[0] + (response.status_code == 201)


def test_an_oversized_envelope_is_413_even_without_content_length(api: TestClient) -> None:
    before = recorded(api)

    def trickle() -> Iterator[bytes]:
        yield dispatch(consignment_id()).canonical()[:-1]
        for _ in range(80):
            yield b" " * 1024

    assert_problem(api.post("/v1/statements", content=trickle()), 413, "body-too-large")
    assert recorded(api) == before


@pytest.mark.parametrize("text", ["\U0001f5f3", "\u0001"], ids=["four-byte characters", "control characters"])
def test_every_valid_statement_fits_in_one_envelope(api: TestClient, text: str) -> None:
    """Texts are bounded in characters, and a statement in bytes (MAX_STATEMENT_BYTES):
    the largest a server accepts — even of 4-byte characters (🗳) or of control
    characters JCS escapes as six bytes — makes an envelope under the envelope limit,
    so it can be submitted on its own; one past it is refused, by the server (422
    malformed-statement, nothing recorded) and already by ``sign_statement``."""
    statement = sized_dispatch(MAX_STATEMENT_BYTES - 8, text)
    assert MAX_STATEMENT_BYTES - 8 <= len(canonical_bytes(statement)) <= MAX_STATEMENT_BYTES
    envelope = sign_statement(statement, KPU.key)
    assert len(envelope.canonical()) <= ENVELOPE_LIMIT
    assert api.post("/v1/statements", content=envelope.canonical()).status_code == 201

    over = sized_dispatch(MAX_STATEMENT_BYTES + 1, text)
    assert len(canonical_bytes(over)) > MAX_STATEMENT_BYTES
    with pytest.raises(MalformedStatement, match="at most 48,000 bytes"):
        sign_statement(over, KPU.key)
    before = recorded(api)
    assert_problem(api.post("/v1/statements", content=sign_unchecked(over).canonical()), 422, "malformed-statement")
    assert recorded(api) == before


# ---------------------------------------------------------------- one statement


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("text over 10,000 characters",
         {"region": "18.72.01", "kinds": ["shortage"], "facts": "x" * 10_001}),
        ("a list over its bound",
         {"region": "18.72.01", "kinds": ["shortage", "damage", "surplus", "broken_seal", "late", "late"],
          "facts": "x"}),
        ("an unknown item kind",
         {"region": "18.72.01", "kinds": ["shortage"], "facts": "x", "items": {"gold": 1}}),
    ],
)  # fmt: skip
def test_a_statement_beyond_its_bounds_is_422(api: TestClient, what: str, body: dict[str, object]) -> None:
    before = recorded(api)
    subject = "out.18.72.01"
    refs = [api.app.state.runtime.ledger.consignment(subject).dispatch_digest]  # type: ignore[attr-defined]
    envelope = SCENARIO.signer("ppk-18.72.01").sign("logistics.discrepancy_reported", subject, body, refs=refs,
                                                   statement_id=str(uuid.uuid4()))  # fmt: skip
    assert len(envelope.canonical()) < ENVELOPE_LIMIT
    assert_problem(api.post("/v1/statements", content=envelope.canonical()), 422, "malformed-body")
    assert recorded(api) == before


def test_nesting_at_and_past_32_levels(api: TestClient) -> None:
    before = recorded(api)
    deep = b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2)
    assert_problem(api.post("/v1/statements", content=deep), 422, "malformed-envelope")
    assert recorded(api) == before


# ---------------------------------------------------------------- a batch


def test_a_batch_of_1000_is_read_and_1001_is_413(api: TestClient) -> None:
    before = recorded(api)
    full = api.post("/v1/statements/batch", content=b"[" + b",".join([b"{}"] * BATCH_ITEMS) + b"]")
    assert full.status_code == 200 and len(full.json()) == BATCH_ITEMS
    assert {item["problem"]["type"] for item in full.json()} == {PROBLEM + "malformed-envelope"}
    over = b"[" + b",".join([b"{}"] * (BATCH_ITEMS + 1)) + b"]"
    assert_problem(api.post("/v1/statements/batch", content=over), 413, "batch-too-large")
    assert recorded(api) == before


def test_a_batch_over_16_mib_is_413_declared_or_streamed(api: TestClient) -> None:
    before = recorded(api)
    body = b"[" + b" " * BATCH_BYTES + b"]"
    assert_problem(api.post("/v1/statements/batch", content=body), 413, "body-too-large")

    def trickle() -> Iterator[bytes]:
        yield b"["
        for _ in range(BATCH_BYTES // (1 << 20) + 1):
            yield b" " * (1 << 20)
        yield b"]"

    assert_problem(api.post("/v1/statements/batch", content=trickle()), 413, "body-too-large")
    assert recorded(api) == before


def test_an_envelope_over_the_envelope_limit_is_refused_inside_a_batch_too(api: TestClient) -> None:
    """The 64 KiB bound is per envelope: a batch must not be a way around it. (A valid
    statement whose envelope exceeds 64 KiB — 64 seal numbers of 200 control characters,
    each escaped as \\u00XX by JCS — is refused alone; it must be refused in a batch.)"""
    envelope = big_dispatch(seal_chars=200, text="\u0001")
    assert len(envelope.canonical()) > ENVELOPE_LIMIT
    assert_problem(api.post("/v1/statements", content=envelope.canonical()), 413, "body-too-large")
    before = recorded(api)
    response = api.post("/v1/statements/batch", content=b"[" + envelope.canonical() + b"]")
    assert response.status_code in (200, 413), response.text[:300]
    if response.status_code == 200:
        (item,) = response.json()
        assert item["status"] == 413 and item["receipt"] is None, (
            f"a {len(envelope.canonical())}-byte envelope was recorded through the batch at index "
            f"{(item['receipt'] or {}).get('index')}"
        )
    assert recorded(api) == before


# ---------------------------------------------------------------- other bodies


def test_a_cosignature_body_is_bounded_too(api: TestClient) -> None:
    """POST /v1/log/cosignatures carries one line of ~150 bytes: a body past the
    envelope limit is refused as too large, before it is read and parsed."""
    note = api.get("/v1/log/checkpoint").text
    line = notes.cosign(note, name="witness-nobody", key=KPU.key, timestamp=int(time.time()))
    body = json.dumps({"cosignature": line + " " * (4 * 1024 * 1024)}).encode()
    response = api.post("/v1/log/cosignatures", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 413, "body-too-large")
    assert api.get("/v1/log/checkpoint").text == note


# ---------------------------------------------------------------- slow clients


class Slowloris:
    """``count`` connections that send a request a few bytes at a time and never finish:
    half trickle their headers, half declare a 60,000-byte body and trickle it."""

    def __init__(self, port: int, count: int, *, every: float = 0.3) -> None:
        self.sockets: list[socket.socket] = []
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 2:
                sock.sendall(b"POST /v1/statements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 60000\r\n\r\n{")  # fmt: skip
            else:
                sock.sendall(b"POST /v1/statements HTTP/1.1\r\nHost: x\r\n")
            self.sockets.append(sock)
        self.every = every
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(self.every):
            for n, sock in enumerate(self.sockets):
                try:
                    sock.sendall(b" " if n % 2 else b"X")  # a body byte, or a header name byte
                    self.sent += 1
                except OSError:
                    pass

    def still_open(self) -> int:
        """How many connections the server has not closed."""
        open_ = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                open_ += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                open_ += 1  # nothing to read: still open
            except OSError:
                pass
        return open_

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def test_many_slow_connections_do_not_stop_a_normal_client(tmp_path: Path) -> None:
    home = small_home(tmp_path / "home", origin="saksi.test/limits")
    with serve(home.path, workers=1) as server:
        port = int(server.url.rsplit(":", 1)[1])
        slow = Slowloris(port, 50)
        try:
            time.sleep(1.0)  # the slow requests are well under way
            latencies = []
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for _ in range(10):
                    started = time.monotonic()
                    response = http.post("/v1/statements", content=dispatch(consignment_id()).canonical())
                    latencies.append(time.monotonic() - started)
                    assert response.status_code == 201, response.text
            with httpx.Client(base_url=server.url, timeout=10) as fresh:  # a new connection, too
                started = time.monotonic()
                assert fresh.post("/v1/statements", content=dispatch(consignment_id()).canonical()).status_code == 201
                latencies.append(time.monotonic() - started)
            assert slow.still_open() >= 45, "the slow connections were dropped, not withstood"
            assert slow.sent > 0
        finally:
            slow.close()
    assert max(latencies) < 3.0, latencies
    print(f"\n11 submits beside 50 slow connections: max {max(latencies) * 1000:.0f} ms, "
          f"median {sorted(latencies)[5] * 1000:.0f} ms")

"""Fixtures that build a small Saksi world quickly: a ledger whose genesis registrar
is recorded, helpers to register actors and sign as them, and the ``backend``
parameter for the contract tests that must hold on every backend.

Times: the ledger's clock starts at ``START`` (1 Sep 2024); every mandate starts
at ``MANDATE_START`` (1 Jan 2024) unless a test says otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.application import RECORD_TOPIC, Ledger
from ledger.envelope import Envelope, sign_statement
from ledger.errors import InvariantBroken, Refusal
from ledger.log import Receipt
from ledger.scenario import Population, Signer, SimulatedClock, registration

# Apps built in-process (TestClient) follow the log on a thread: hundreds of them start
# in a run, and a follower process each would cost a second of CPU apiece. Servers run as
# users run them (`saksi serve` with no SAKSI_* settings) start the follower process;
# tests/test_follower.py and tests/test_scale_out.py check that one.
os.environ.setdefault("SAKSI_FOLLOWER", "thread")

ORIGIN = "saksi.test/log"
START = datetime(2024, 9, 1, 1, tzinfo=UTC)

# Kota Metro (18.72): two kecamatan, a village in each, a TPS in each village.
CITY = "18.72"
KEC = "18.72.01"
VILLAGE = "18.72.01.1001"
TPS = "18.72.01.1001.001"
TPS_2 = "18.72.01.1001.002"
OTHER_KEC = "18.72.02"
OTHER_VILLAGE = "18.72.02.1001"


# ---------------------------------------------------------------- backends


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on backend ``kind``, for one test."""
    if kind == "memory":
        yield "memory:"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'saksi.sqlite'}"
    elif kind == "postgres":
        server = os.environ["SAKSI_TEST_POSTGRES_URL"]  # only a parameter when it is set
        with fresh_postgres_database(server) as url:
            yield url
    else:
        raise ValueError(f"unknown backend {kind!r}")


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url``, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"saksi_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# The PostgreSQL leg runs when SAKSI_TEST_POSTGRES_URL is set, and then fails (never
# skips) when the server is unreachable; .ci/run sets it.
BACKENDS = ["memory", "sqlite"] + (
    [pytest.param("postgres", marks=pytest.mark.postgres)] if os.environ.get("SAKSI_TEST_POSTGRES_URL") else []
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL, once per backend: the contract tests run on each."""
    with database_url(request.param, tmp_path) as url:
        yield url


# ---------------------------------------------------------------- counting what is stored


def stored_event_count(ledger: Ledger) -> int:
    """Every event the ledger's recorder holds (all aggregates, all topics).

    Counts notifications rather than trusting max_notification_id, since
    PostgreSQL's notification ids may have gaps."""
    count, start = 0, 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=1000)
        if not page:
            return count
        count += len(page)
        start = page[-1].id + 1


def stored_record_count(ledger: Ledger) -> int:
    """How many statements (Record.Accepted events) were recorded."""
    count, start = 0, 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=1000, topics=[RECORD_TOPIC])
        if not page:
            return count
        count += len(page)
        start = page[-1].id + 1


@dataclass(frozen=True)
class Snapshot:
    events: int
    records: int
    log_size: int


def snapshot(ledger: Ledger) -> Snapshot:
    return Snapshot(stored_event_count(ledger), stored_record_count(ledger), ledger.tlog.size)


def assert_refused(
    world: World,
    envelope: Envelope | bytes | str | dict[str, Any],
    code: str,
    *,
    invariant: str | None = None,
    message: str | None = None,
) -> Refusal:
    """Submit ``envelope``, expect a Refusal with ``code`` (and ``invariant``), and
    check that nothing was recorded: no event, no statement, no log entry."""
    before = world.snapshot()
    with pytest.raises(Refusal) as caught:
        world.submit(envelope)
    refusal = caught.value
    assert refusal.code == code, f"{refusal.code}: {refusal}"
    if invariant is not None:
        assert isinstance(refusal, InvariantBroken)
        assert refusal.invariant == invariant, str(refusal)
    if message is not None:
        assert message in str(refusal), str(refusal)
    assert world.snapshot() == before, "a refused statement left something recorded"
    return refusal


# ---------------------------------------------------------------- the world


@dataclass
class World:
    """A ledger with its genesis recorded, its clock, and the scenario's population."""

    ledger: Ledger
    population: Population
    clock: SimulatedClock
    log_key: Ed25519PrivateKey

    @property
    def registrar(self) -> Signer:
        return self.population.registrar

    def signer(self, actor: str) -> Signer:
        return self.population.signer(actor)

    def submit(self, envelope: Envelope | bytes | str | dict[str, Any]) -> Receipt:
        return self.ledger.submit(envelope)

    def advance(self, **delta: float) -> datetime:
        self.clock.now = self.clock.now + timedelta(**delta)
        return self.clock.now

    def register(
        self, actor: str, role: str, jurisdiction: str, *, kind: str = "organisation"
    ) -> Signer:
        """Register ``actor`` with one key and one mandate ``m1`` from MANDATE_START."""
        self.submit(
            self.population.register(actor, actor.upper(), role, jurisdiction, self.clock.now, kind)
        )
        return self.signer(actor)

    def registration(
        self, actor: str, mandates: list[dict[str, Any]], *, keys: list[str] | None = None
    ) -> Envelope:
        """The registrar's signed ``actor.registered`` for ``actor`` (not submitted)."""
        keys = keys if keys is not None else [self.signer(actor).public_key]
        body = registration(actor, actor.upper(), keys, mandates)
        return self.registrar.sign("actor.registered", actor, body, issued_at=self.clock.now)

    def register_with(self, actor: str, mandates: list[dict[str, Any]]) -> Signer:
        self.submit(self.registration(actor, mandates))
        return self.signer(actor)

    def sign(
        self, signer: Signer, type: str, subject: str, body: dict[str, Any], **kw: Any
    ) -> Envelope:
        kw.setdefault("issued_at", self.clock.now)
        return signer.sign(type, subject, body, **kw)

    def snapshot(self) -> Snapshot:
        return snapshot(self.ledger)


def new_ledger(
    url: str, population: Population, clock: SimulatedClock, log_key: Ed25519PrivateKey
) -> Ledger:
    return Ledger(
        database_url=url,
        origin=ORIGIN,
        genesis=population.genesis,
        log_key=log_key,
        clock=clock,
    )


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world() -> Iterator[WorldFactory]:
    """Build worlds on any database URL; closes their ledgers afterwards.

    ``make_world(url, genesis=True)``: the genesis registrar is recorded unless
    ``genesis=False``."""
    ledgers: list[Ledger] = []

    def make(url: str = "memory:", *, genesis: bool = True, seed: str | None = None) -> World:
        population = Population(seed or f"test-{uuid.uuid4()}")
        clock = SimulatedClock(START)
        log_key = Ed25519PrivateKey.generate()
        ledger = new_ledger(url, population, clock, log_key)
        ledgers.append(ledger)
        world = World(ledger, population, clock, log_key)
        if genesis:
            world.submit(population.genesis_envelope(clock.now))
        return world

    yield make
    for ledger in ledgers:
        ledger.close()


@pytest.fixture(params=["memory"] + BACKENDS[2:])
def world(request: pytest.FixtureRequest, tmp_path: Path, make_world: WorldFactory) -> Iterator[World]:
    """A ledger with its genesis registrar recorded: in memory, and on PostgreSQL too
    when SAKSI_TEST_POSTGRES_URL is set (so every invariant and refusal test runs there)."""
    with database_url(request.param, tmp_path) as url:
        yield make_world(url)


@pytest.fixture
def backend_world(backend: str, make_world: WorldFactory) -> World:
    """A ledger with its genesis recorded, once per backend. (``backend`` first, so
    its database outlives the ledgers ``make_world`` closes.)"""
    return make_world(backend)


# ---------------------------------------------------------------- a logistics chain


@dataclass
class Chain:
    """KPU Kota Metro → PPK 18.72.01 → PPS 18.72.01.1001 → KPPS TPS 001, with supervisors."""

    kpu: Signer
    ppk: Signer
    pps: Signer
    kpps: Signer
    panwascam: Signer
    pkd: Signer
    ptps: Signer
    saksi: Signer


def build_chain(world: World) -> Chain:
    return Chain(
        kpu=world.register("kpu-metro", "kpu", CITY),
        ppk=world.register("ppk-metro-pusat", "ppk", KEC),
        pps=world.register("pps-metro", "pps", VILLAGE),
        kpps=world.register("kpps-001", "kpps", TPS),
        panwascam=world.register("panwascam-metro-pusat", "panwascam", KEC),
        pkd=world.register("pkd-metro", "pkd", VILLAGE),
        ptps=world.register("ptps-001", "ptps", TPS),
        saksi=world.register("saksi-001", "candidate_witness", TPS, kind="person"),
    )


@pytest.fixture
def chain(world: World) -> Chain:
    return build_chain(world)


ITEMS = {
    "ballot_box_mayor": 1,
    "ballots_mayor": 410,
    "result_forms_mayor": 1,
    "booth": 4,
    "seals": 10,
}


def dispatch_body(
    region: str,
    receiver: str,
    *,
    direction: str = "outbound",
    items: dict[str, int] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region": region,
        "receiver": receiver,
        "direction": direction,
        "items": dict(items or ITEMS),
        "seals": ["SEGEL-0001"],
        "due_by": "2024-11-26T17:00:00Z",
    }
    if parent:
        body["parent"] = parent
    return body


def receipt_body(
    region: str,
    *,
    items: dict[str, int] | None = None,
    seals_intact: bool = True,
    condition: str = "good",
) -> dict[str, Any]:
    return {
        "region": region,
        "items": dict(items or ITEMS),
        "seals_intact": seals_intact,
        "condition": condition,
    }


def raw_envelope(statement: dict[str, Any], key: Ed25519PrivateKey) -> Envelope:
    """Sign an arbitrary statement dict (no helper fills anything in)."""
    return sign_statement(statement, key)


def statement_dict(
    signer: Signer, type: str, subject: str, body: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A complete statement as a dict, to alter before signing with ``raw_envelope``."""
    found: dict[str, Any] = {
        "v": 1,
        "type": type,
        "id": str(uuid.uuid4()),
        "actor": signer.actor,
        "issued_at": "2024-09-01T01:00:00Z",
        "subject": subject,
        "body": body,
    }
    found.update(extra)
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without SAKSI_TEST_POSTGRES_URL the PostgreSQL leg is not part of the run (it is
    deselected, and the summary says how many); with it, those tests must pass."""
    if os.environ.get("SAKSI_TEST_POSTGRES_URL"):
        return
    postgres = [item for item in items if item.get_closest_marker("postgres")]
    if postgres:
        config.hook.pytest_deselected(items=postgres)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Kota Metro demo home with its projections built, once per session; tests
    copy it before writing."""
    return build_demo_template(tmp_path_factory)


def build_demo_template(factory: pytest.TempPathFactory) -> Path:
    """The session's demo home (built on first use)."""
    from api.cli import build_demo
    from ledger.home import Home
    from projections.runner import Projector

    template = factory.getbasetemp() / "saksi-demo-template"
    if (template / "saksi.toml").exists():
        return template
    build_demo(template, fresh=True)
    ledger = Home.load(template).open()
    try:
        Projector(ledger).catch_up()
    finally:
        ledger.close()
    return template


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (for tests marked postgres, which run only when
    SAKSI_TEST_POSTGRES_URL is set, and then fail if it is unreachable)."""
    with fresh_postgres_database(os.environ["SAKSI_TEST_POSTGRES_URL"]) as url:
        yield url

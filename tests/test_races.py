"""Races through the HTTP API: many clients on the same consignment at the same
moment, against a real `saksi serve` with two worker processes sharing one
database (SQLite, and PostgreSQL when SAKSI_TEST_POSTGRES_URL is set).

For each race exactly one submission wins (201), the others get a clear answer
— a 409 problem naming why, or for the very same envelope a 200 with the
winner's receipt — and afterwards the log holds every acknowledged statement
exactly once and nothing else. Readers fetch checkpoints and receipts all along;
none of them may see a 5xx or an inconsistent checkpoint. The log verifies at
the end.

``small_home`` and ``serve`` are shared with tests/test_limits.py and bench/stress.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger import notes
from ledger.envelope import Envelope, decode_b64, statement_digest
from ledger.home import Home, init_home, record_genesis
from ledger.scenario import Population, Signer, kota_metro
from tests.conftest import fresh_postgres_database

POSTGRES = os.environ.get("SAKSI_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + ([pytest.param("postgres", marks=pytest.mark.postgres)] if POSTGRES else [])
PROBLEM = "https://saksi.id/problems/"
CONTENDERS = 8  # clients in each race
ROUNDS = int(os.environ.get("SAKSI_RACE_ROUNDS", "2"))  # races of each kind; bench/stress runs more
ITEMS = {"booth": 2, "ink": 1, "seals": 4}


# ---------------------------------------------------------------- a small world and a real server

# The actors of the small world: (actor, role, jurisdiction). Keys are Kota Metro's.
ACTORS = [
    ("kpu-18.72", "kpu", "18.72"),
    ("ppk-18.72.01", "ppk", "18.72.01"),
    ("ppk-18.72.02", "ppk", "18.72.02"),
    ("panwascam-18.72.01", "panwascam", "18.72.01"),
    ("witness-perludem", "witness", "ID"),
]


def population() -> Population:
    return kota_metro().population


def small_home(path: Path, *, database_url: str | None = None, origin: str = "saksi.test/races") -> Home:
    """A ledger home with the genesis registrar and ``ACTORS`` registered (real clock)."""
    people = population()
    registrar = people.registrar
    home = init_home(path, origin=origin, database_url=database_url, genesis_actors=[registrar.actor],
                     genesis_keys={registrar.actor: registrar.key})  # fmt: skip
    ledger = home.open()
    try:
        record_genesis(home, ledger)
        for actor, role, jurisdiction in ACTORS:
            envelope = people.register(actor, actor.upper(), role, jurisdiction, datetime.now(UTC))
            ledger.submit(envelope)
        ledger.tlog.publish()
    finally:
        ledger.close()
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `saksi serve` (its own process group, so kill -9 reaches every worker)."""

    home: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no graceful shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(home: Path, *, workers: int = 2, log: Path | None = None, timeout: float = 60) -> Server:
    """Start `saksi serve` over ``home`` on a free port and wait until it answers."""
    port = free_port()
    log = log or home.parent / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("SAKSI_DATABASE_URL", "SAKSI_SERVER", "SAKSI_HOME")}
    saksi = Path(sys.executable).parent / "saksi"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [str(saksi), "serve", "--home", str(home), "--port", str(port), "--workers", str(workers)],
            stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    server = Server(home, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"saksi serve exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/v1/log/checkpoint", timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"saksi serve did not answer within {timeout} s: {log.read_text()[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve(home: Path, *, workers: int = 2) -> Iterator[Server]:
    server = start_server(home, workers=workers)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- statements


def signer(actor: str) -> Signer:
    return kota_metro().signer(actor)


KPU, PPK, PPK_2 = signer("kpu-18.72"), signer("ppk-18.72.01"), signer("ppk-18.72.02")


def new_id() -> str:
    return str(uuid.uuid4())


def dispatch(subject: str, *, statement_id: str | None = None, seal: str = "SEGEL-RACE-1") -> Envelope:
    body = {"region": "18.72.01", "receiver": "ppk-18.72.01", "direction": "outbound", "items": dict(ITEMS),
            "seals": [seal], "due_by": "2030-01-01T00:00:00Z"}  # fmt: skip
    return KPU.sign("logistics.dispatched", subject, body, statement_id=statement_id or new_id())


def receipt(sent: Envelope, *, condition: str = "good", seals_intact: bool = True) -> Envelope:
    subject = json.loads(sent.payload)["subject"]
    body = {"region": "18.72.01", "items": dict(ITEMS), "seals_intact": seals_intact, "condition": condition}
    return PPK.sign("logistics.received", subject, body, refs=[sent.digest], statement_id=new_id())


def run_beside(workers: list[threading.Thread], readers: list[threading.Thread], stop: threading.Event) -> None:
    """Start ``workers`` and ``readers``; when the workers are done, set ``stop`` and
    wait for the readers."""
    for thread in workers + readers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()


def consignment_id() -> str:
    return f"race.{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- racing


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    envelope: Envelope

    @property
    def code(self) -> str:
        return str(self.body.get("type", "")).removeprefix(PROBLEM)

    @property
    def index(self) -> int | None:
        return self.body.get("index")


@dataclass
class Ledgerbook:
    """What the clients were told, to check against the log afterwards."""

    acknowledged: dict[str, int] = field(default_factory=dict)  # statement digest → index
    statuses: Counter[tuple[int, str]] = field(default_factory=Counter)
    checkpoints: set[str] = field(default_factory=set)  # every checkpoint a reader saw
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, outcome: Outcome) -> None:
        with self.lock:
            self.statuses[(outcome.status, outcome.code or "receipt")] += 1
            if outcome.status >= 500:
                self.server_errors.append(f"{outcome.status} {outcome.body}")
            if outcome.index is not None:
                digest = outcome.envelope.digest
                assert self.acknowledged.setdefault(digest, outcome.index) == outcome.index, "a receipt changed"


def post(http: httpx.Client, envelope: Envelope, *, batch: bool) -> Outcome:
    if batch:
        response = http.post("/v1/statements/batch", content=b"[" + envelope.canonical() + b"]")
        if response.status_code != 200:
            return Outcome(response.status_code, response.json(), envelope)
        (item,) = response.json()
        return Outcome(item["status"], item["receipt"] or item["problem"], envelope)
    response = http.post("/v1/statements", content=envelope.canonical())
    return Outcome(response.status_code, response.json(), envelope)


def race(base: str, book: Ledgerbook, envelopes: list[Envelope]) -> list[Outcome]:
    """Submit ``envelopes`` from as many threads, released at once (half of them in
    batches), while two readers fetch checkpoints and receipts. Returns the outcomes."""
    outcomes: list[Outcome | None] = [None] * len(envelopes)
    barrier = threading.Barrier(len(envelopes) + 2)
    done = threading.Event()

    def contender(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            http.get("/v1/log/key")  # connected before the start
            barrier.wait()
            outcomes[n] = post(http, envelopes[n], batch=n % 2 == 1)

    def reader() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            http.get("/v1/log/key")
            barrier.wait()
            while not done.is_set():
                for path in ("/v1/log/checkpoint", "/v1/log/receipts/0", f"/v1/log/receipts/{newest(http)}"):
                    try:
                        response = http.get(path)
                    except httpx.TransportError as error:  # the server dropped the connection
                        with book.lock:
                            book.server_errors.append(f"{path}: {error!r}")
                        continue
                    with book.lock:
                        if response.status_code >= 500:
                            book.server_errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                        elif path.endswith("checkpoint"):
                            book.checkpoints.add(response.text)
                done.wait(0.01)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(len(envelopes))]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    run_beside(threads, readers, done)
    found = [o for o in outcomes if o is not None]
    assert len(found) == len(envelopes)
    for outcome in found:
        book.note(outcome)
    return found


def newest(http: httpx.Client) -> int:
    """The index of the newest entry (its receipt may need a checkpoint not signed yet)."""
    return max(0, int(http.get("/v1/log/checkpoint").text.split("\n")[1]) - 1)


def only_winner(outcomes: list[Outcome]) -> Outcome:
    winners = [o for o in outcomes if o.status == 201]
    assert len(winners) == 1, Counter((o.status, o.code) for o in outcomes)
    return winners[0]


def size_of(http: httpx.Client) -> int:
    return int(http.get("/v1/log/checkpoint").text.split("\n")[1])


# ---------------------------------------------------------------- the fixtures


@dataclass
class Arena:
    server: Server
    home: Path
    book: Ledgerbook
    http: httpx.Client


@pytest.fixture(scope="module", params=BACKENDS)
def arena(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    path = tmp_path_factory.mktemp(f"races-{request.param}") / "home"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_postgres_database(POSTGRES)) if request.param == "postgres" else None  # type: ignore[arg-type]
        home = small_home(path, database_url=url)
        server = stack.enter_context(serve(home.path, workers=2))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
        yield Arena(server, home.path, Ledgerbook(), http)


def server_tracebacks(server: Server) -> list[str]:
    """The last line of every traceback the server logged."""
    lines = server.log.read_text(errors="replace").splitlines()
    found, inside = [], False
    for line in lines:
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith(" "):
            found.append(line)
            inside = False
    return found


def submit(arena: Arena, envelope: Envelope) -> int:
    response = arena.http.post("/v1/statements", content=envelope.canonical())
    assert response.status_code == 201, response.text
    arena.book.acknowledged[envelope.digest] = response.json()["index"]
    return int(response.json()["index"])


def trail(arena: Arena, subject: str) -> list[str]:
    items = arena.http.get(f"/v1/subjects/{subject}/trail").json()["items"]
    return [item["statement_digest"] for item in items]


# ---------------------------------------------------------------- the races


def test_two_receipts_for_one_dispatch(arena: Arena) -> None:
    """Contenders send different receipts (other ids, some reporting damage) for one
    dispatch: one is recorded, the others are refused as received-once."""
    for _ in range(ROUNDS):
        sent = dispatch(consignment_id())
        submit(arena, sent)
        before = size_of(arena.http)
        rivals = [receipt(sent, condition=random.choice(["good", "damaged", "wet"])) for _ in range(CONTENDERS)]
        outcomes = race(arena.server.url, arena.book, rivals)
        winner = only_winner(outcomes)
        for loser in (o for o in outcomes if o is not winner):
            assert loser.status == 409 and loser.code in ("invariant-broken", "concurrent-update"), loser.body
            if loser.code == "invariant-broken":
                assert loser.body["invariant"] == "received-once", loser.body
        assert size_of(arena.http) == before + 1
        subject = json.loads(sent.payload)["subject"]
        assert trail(arena, subject) == [sent.digest, winner.envelope.digest]
        consignment = arena.http.get(f"/v1/consignments/{subject}").json()
        assert consignment["receipt"]["index"] == winner.index


def test_the_same_envelope_many_times(arena: Arena) -> None:
    """Every contender sends the very same dispatch: one 201, the others 200 with the
    same receipt; it is in the log once."""
    for _ in range(ROUNDS):
        sent = dispatch(consignment_id())
        before = size_of(arena.http)
        outcomes = race(arena.server.url, arena.book, [sent] * CONTENDERS)
        winner = only_winner(outcomes)
        for other in (o for o in outcomes if o is not winner):
            assert other.status == 200, other.body
            assert (other.index, other.body["leaf_hash"]) == (winner.index, winner.body["leaf_hash"])
        assert size_of(arena.http) == before + 1
        assert trail(arena, json.loads(sent.payload)["subject"]) == [sent.digest]


def test_one_statement_id_with_different_content(arena: Arena) -> None:
    """Contenders send different dispatches (other consignments) under one statement id:
    one is recorded, the others are refused as duplicate-statement-id and their
    consignments do not exist."""
    for _ in range(ROUNDS):
        shared = new_id()
        rivals = [dispatch(consignment_id(), statement_id=shared) for _ in range(CONTENDERS)]
        before = size_of(arena.http)
        outcomes = race(arena.server.url, arena.book, rivals)
        winner = only_winner(outcomes)
        losers = [o for o in outcomes if o is not winner]
        for loser in losers:
            assert (loser.status, loser.code) == (409, "duplicate-statement-id"), loser.body
        for loser in losers[:2]:
            subject = json.loads(loser.envelope.payload)["subject"]
            assert arena.http.get(f"/v1/consignments/{subject}").status_code == 404
            assert trail(arena, subject) == []
        assert size_of(arena.http) == before + 1


def test_two_dispatches_of_one_consignment(arena: Arena) -> None:
    """Contenders dispatch the same consignment id with different seals: one dispatch stands."""
    for _ in range(ROUNDS):
        subject = consignment_id()
        rivals = [dispatch(subject, seal=f"SEGEL-{n}") for n in range(CONTENDERS)]
        before = size_of(arena.http)
        outcomes = race(arena.server.url, arena.book, rivals)
        winner = only_winner(outcomes)
        for loser in (o for o in outcomes if o is not winner):
            assert loser.status == 409 and loser.code in ("invariant-broken", "concurrent-update"), loser.body
        assert size_of(arena.http) == before + 1
        assert trail(arena, subject) == [winner.envelope.digest]


def test_a_receipt_racing_its_own_duplicates_and_rivals(arena: Arena) -> None:
    """The mix the scale-out test sees: the receipt twice and rival receipts at once."""
    for _ in range(ROUNDS):
        sent = dispatch(consignment_id())
        submit(arena, sent)
        mine = receipt(sent)
        rivals = [mine] * (CONTENDERS // 2) + [receipt(sent) for _ in range(CONTENDERS // 2)]
        random.shuffle(rivals)
        outcomes = race(arena.server.url, arena.book, rivals)
        winner = only_winner(outcomes)
        for other in (o for o in outcomes if o is not winner):
            if other.envelope.digest == winner.envelope.digest:
                assert other.status == 200 and other.index == winner.index, other.body
            else:
                assert other.status == 409, other.body
        assert trail(arena, json.loads(sent.payload)["subject"]) == [sent.digest, winner.envelope.digest]


def test_writers_and_checkpoint_readers_on_two_workers_never_see_a_5xx(arena: Arena) -> None:
    """Three clients submit fresh dispatches while four fetch the checkpoint, the
    receipt of the next index and a page of consignments, for a few seconds: every
    submit gets its 201, every read a 200 (or a 404 for the index not there yet). Both
    worker processes sign checkpoints, and both keep their projections caught up."""
    failures: list[str] = []
    stop = threading.Event()
    book = arena.book

    def writer() -> None:
        with httpx.Client(base_url=arena.server.url, timeout=60) as http:
            for _ in range(25):
                sent = dispatch(consignment_id())
                try:
                    outcome = post(http, sent, batch=False)
                except httpx.TransportError as error:
                    failures.append(f"submit: {error!r}")
                    continue
                book.note(outcome)
                if outcome.status != 201:
                    failures.append(f"submit: {outcome.status} {outcome.body}")

    def reader() -> None:
        size = 0
        with httpx.Client(base_url=arena.server.url, timeout=60) as http:
            while not stop.is_set():
                # the checkpoint, the receipt of the next index (404 until it exists), a projection read
                for path in ("/v1/log/checkpoint", f"/v1/log/receipts/{size}", "/v1/consignments?limit=1"):
                    try:
                        response = http.get(path)
                    except httpx.TransportError as error:
                        failures.append(f"{path}: {error!r}")
                        continue
                    if response.status_code not in (200, 404):
                        failures.append(f"{path}: {response.status_code} {response.text[:120]}")
                    elif path.endswith("checkpoint"):
                        size = int(response.text.split("\n")[1])
                        with book.lock:
                            book.checkpoints.add(response.text)

    writers = [threading.Thread(target=writer) for _ in range(3)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    run_beside(writers, readers, stop)
    assert not failures, f"{len(failures)} failures, e.g. {failures[:3]}; server: {server_tracebacks(arena.server)[:3]}"


def test_after_the_races_nothing_is_lost_or_doubled_and_the_log_verifies(arena: Arena) -> None:
    book = arena.book
    if not book.checkpoints:  # pytest-xdist ran this module's races on the other worker: race here
        test_writers_and_checkpoint_readers_on_two_workers_never_see_a_5xx(arena)
    size = size_of(arena.http)
    lines = arena.http.get("/v1/log/entries", params={"start": 0, "end": size}).content.splitlines()
    assert len(lines) == size
    digests = [statement_digest(decode_b64(json.loads(line)["envelope"]["payload"])) for line in lines]
    assert len(set(digests)) == size, "a statement is in the log twice"
    for digest, index in book.acknowledged.items():
        assert digests[index] == digest, f"acknowledged {digest} is not at index {index}"
    setup = 1 + len(ACTORS)  # genesis and registrations, recorded before the server started
    assert set(digests[setup:]) == set(book.acknowledged), "the log holds something nobody was told about"
    # Every checkpoint a reader saw is signed and a prefix of today's tree.
    log_key = arena.http.get("/v1/log/key").text.strip()
    assert book.checkpoints
    for note in book.checkpoints:
        old = notes.verify_checkpoint(note, log_key=log_key).checkpoint
        if 0 < old.size < size:
            proof = arena.http.get("/v1/log/proofs/consistency", params={"old": old.size, "new": size}).json()
            assert proof["old"].split("\n")[:3] == note.split("\n")[:3]
            notes.verify_consistency_proof(proof, log_key=log_key)
    result = CliRunner().invoke(app, ["verify", "--home", str(arena.home), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert f"ok: {size} entries" in result.output
    print(f"\nraces: {dict(book.statuses)}; {len(book.checkpoints)} checkpoints seen; log size {size}")


def test_no_reader_saw_a_5xx_and_no_worker_failed(arena: Arena) -> None:
    """Throughout the races: no 5xx or dropped connection for any reader, and no
    traceback in the server's log (a worker's request or background thread failing)."""
    assert not arena.book.server_errors, arena.book.server_errors[:5]
    assert not server_tracebacks(arena.server), server_tracebacks(arena.server)


def test_projections_follow_while_another_process_records(tmp_path: Path) -> None:
    """Another root of a worker failing, without HTTP: two ledgers over one SQLite home
    (as two worker processes are), one recording, the other's projector catching up as
    its background follower does (``Projector.follow`` → ``catch_up``) and as every
    read does. Catching up must never fail, and the projections end at the log's size."""
    from projections.runner import Projector

    home = small_home(tmp_path / "home", origin="saksi.test/projections")
    writer, reader = Home.load(home.path).open(), Home.load(home.path).open()
    projector = Projector(reader)
    errors: list[str] = []
    done = threading.Event()

    def record() -> None:
        try:
            for _ in range(150):
                writer.submit(dispatch(consignment_id()))
        finally:
            done.set()

    def follow() -> None:
        while not done.is_set():
            try:
                projector.catch_up()
            except Exception as error:  # noqa: BLE001 - the finding
                errors.append(repr(error))

    try:
        threads = [threading.Thread(target=record), threading.Thread(target=follow)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        size = projector.catch_up()
        positions = projector.positions()
    finally:
        writer.close()
        reader.close()
    assert not errors, f"{len(errors)} catch-ups failed, e.g. {errors[:2]}"
    assert set(positions.values()) == {size}


def test_two_processes_signing_checkpoints_at_once(tmp_path: Path) -> None:
    """The root of such 5xx, without HTTP: two ledgers over one home (as two worker
    processes are). One records; the other serves GET /v1/log/receipts/{index} for the
    newest index, which signs a checkpoint when the log has grown (IntegrityLog.receipt
    → publish, outside the writer lock). Every call must succeed, and last-checkpoint
    must end at the latest size."""
    home = small_home(tmp_path / "home", origin="saksi.test/signers")
    writer, reader = Home.load(home.path).open(), Home.load(home.path).open()
    errors: list[str] = []
    done = threading.Event()

    def record() -> None:
        try:
            for _ in range(150):
                writer.submit(dispatch(consignment_id()))
        except Exception as error:  # noqa: BLE001 - the finding
            errors.append(f"submit: {error!r}")
        finally:
            done.set()

    def publish() -> None:
        while not done.is_set():
            try:
                reader.receipt(reader.tlog.size - 1)
            except Exception as error:  # noqa: BLE001 - the finding
                errors.append(f"read: {error!r}")

    try:
        threads = [threading.Thread(target=record), threading.Thread(target=publish)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        size = writer.tlog.size
        last = notes.parse_note((home.path / "last-checkpoint").read_text("utf-8")).checkpoint.size
    finally:
        writer.close()
        reader.close()
    assert not errors, f"{len(errors)} failures, e.g. {errors[:2]}"
    assert last == size, f"last-checkpoint says {last}, the log signed {size}"


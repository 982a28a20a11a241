"""PostgreSQL scale-out: four API worker processes share one database while eight
clients submit about 5,000 statements — with racing receipts for the same
dispatch and duplicate envelopes. Afterwards every accepted statement is in the
log exactly once, every refused one got a clear problem, every receipt verifies
and the full audit is clean."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.client import Client, ServerError
from ledger import notes
from ledger.canonical import strict_loads
from ledger.envelope import Envelope, decode_b64, decode_statement, sign_statement, statement_digest
from ledger.home import init_home, record_genesis
from ledger.scenario import NATIONAL_ACTORS, Population, RegencyScenario, Scenario

pytestmark = pytest.mark.postgres

CITIES = ["13.72", "32.77", "64.74", "13.74", "12.73", "33.71", "11.72", "21.72"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rival(envelope: Envelope, population: Population) -> Envelope:
    """Another receipt for the same dispatch: same content, a new statement id."""
    statement = strict_loads(envelope.payload)
    statement["id"] = str(uuid.uuid4())
    return sign_statement(statement, population.signer(statement["actor"]).key)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: dict[str, dict[str, Any]] = {}  # statement digest → receipt
        self.refused: list[tuple[str, dict[str, Any]]] = []
        self.duplicates = 0
        self.races: list[tuple[str, str]] = []  # (original digest, rival digest)

    def note(self, envelope: Envelope, result: dict[str, Any]) -> None:
        with self.lock:
            if "receipt" in result:
                if result.get("duplicate") or envelope.digest in self.accepted:
                    self.duplicates += 1
                    assert self.accepted.get(envelope.digest, result)["index"] == result["index"]
                self.accepted.setdefault(envelope.digest, result)
            else:
                self.refused.append((envelope.digest, result))


def run_client(base: str, stream: list[Envelope], population: Population, tally: Tally) -> None:
    with Client(base) as client:
        pending: list[Envelope] = []

        def flush() -> None:
            if pending:
                for envelope, result in zip(pending, client.submit_batch(list(pending)), strict=True):
                    tally.note(envelope, result)
                pending.clear()

        for n, envelope in enumerate(stream):
            statement = decode_statement(envelope)
            if statement.type == "logistics.received" and n % 3 == 0:
                flush()
                # Race: the receipt, a rival receipt for the same dispatch, and the
                # receipt again, all at once from three threads.
                other = rival(envelope, population)
                tally.races.append((envelope.digest, other.digest))
                threads = [threading.Thread(target=_single, args=(base, e, tally)) for e in (envelope, other, envelope)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                continue
            pending.append(envelope)
            if len(pending) == 40:
                flush()
        flush()


def _single(base: str, envelope: Envelope, tally: Tally) -> None:
    with Client(base) as client:
        try:
            tally.note(envelope, client.submit(envelope))
        except ServerError as error:
            tally.note(envelope, error.problem)
        except Exception as error:  # noqa: BLE001 - a transport failure is a finding too
            tally.note(envelope, {"type": "transport", "detail": repr(error)})


def test_four_workers_eight_clients_five_thousand_statements(postgres_url: str, tmp_path: Path) -> None:
    population = Population("scale-out")
    parts = [RegencyScenario(population, code, tps_per_village=(2, 4), with_governor=False, quirks=False)
             for code in CITIES]  # fmt: skip
    scenario = Scenario(population, parts)
    prelude = [item.envelope for item in scenario.schedule()][: 1 + len(NATIONAL_ACTORS)]
    streams = [[item.envelope for item in sorted(part.build())] for part in parts]
    total = len(prelude) + sum(map(len, streams))
    assert 4800 <= total <= 6000, total

    registrar = population.registrar
    home = init_home(tmp_path / "home", origin="saksi.test/scale-out", database_url=postgres_url,
                     genesis_actors=[registrar.actor], genesis_keys={registrar.actor: registrar.key})  # fmt: skip
    ledger = home.open()
    record_genesis(home, ledger)
    ledger.close()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    saksi = Path(sys.executable).parent / "saksi"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [str(saksi), "serve", "--home", str(home.path), "--port", str(port), "--workers", "4"],
        stdout=log, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if k != "SAKSI_FOLLOWER"},  # a follower process per worker
    )  # fmt: skip
    try:
        _wait_for(base, server)
        tally = Tally()
        with Client(base) as client:
            for envelope in prelude[1:]:  # the genesis registration is already recorded
                tally.note(envelope, client.submit(envelope))
        clients = [threading.Thread(target=run_client, args=(base, stream, population, tally)) for stream in streams]
        started = time.monotonic()
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started

        with Client(base) as client:
            log_key = client.log_key()
            size = notes.parse_note(client.checkpoint()).checkpoint.size
            entries = list(client.entries(0, size))
            receipts = {digest: client.receipt(r["index"]) for digest, r in list(tally.accepted.items())[::25]}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        print((tmp_path / "server.log").read_text()[-3000:])

    # Every accepted statement is in the log exactly once, and nothing else is.
    logged = [statement_digest(decode_b64(e["envelope"]["payload"])) for e in entries]
    assert len(logged) == len(set(logged)), "a statement was recorded twice"
    unacknowledged = set(logged[1:]) - set(tally.accepted)  # entry 0: the genesis, recorded at init
    assert not unacknowledged, [(d, p) for d, p in tally.refused if d in unacknowledged]
    assert set(logged) >= set(tally.accepted)
    # Each race has exactly one winner; the loser got a clear refusal.
    for original, other in tally.races:
        assert (original in tally.accepted) != (other in tally.accepted), (original, other)
    assert total - 1 + 2 * len(tally.races) >= 5000  # submissions, races and duplicates included
    assert tally.duplicates >= len(tally.races) // 2
    assert tally.refused, "the races must have produced refusals"
    for _, problem in tally.refused:
        assert problem["type"].startswith("https://saksi.id/problems/")
        assert problem["type"].rsplit("/", 1)[1] in {"invariant-broken", "concurrent-update"}, problem
    # Receipts verify against the log key alone.
    for receipt in receipts.values():
        notes.verify_receipt(receipt, log_key=log_key)
    # The full audit is clean.
    result = CliRunner().invoke(app, ["verify", "--home", str(home.path), "--database-url", postgres_url])
    assert result.exit_code == 0, result.output
    assert f"ok: {size} entries" in result.output
    print(f"\n{len(tally.accepted)} accepted, {len(tally.refused)} refused, {tally.duplicates} duplicates "
          f"in {elapsed:.1f} s by 8 clients on 4 workers")  # fmt: skip


def _wait_for(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError("saksi serve exited")
        try:
            with Client(base, timeout=2) as client:
                client.log_key()
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    raise AssertionError("saksi serve did not start within 60 s")

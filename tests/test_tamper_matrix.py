"""The tamper matrix, on every durable backend: alter a real ledger's database
the way an insider with write access could, then ask `saksi verify` to find it
and name the first bad index. The rollback and truncation cases are also caught
by the ledger at start and by a witness that cosigned the newer checkpoint.

Each backend starts from the same Kota Metro demo (800 entries): SQLite copies
the home directory per test; PostgreSQL migrates the demo once per module
(``saksi migrate``, which proves the copy's root) and clones that database per
test with ``CREATE DATABASE … TEMPLATE``. The PostgreSQL leg runs when
SAKSI_TEST_POSTGRES_URL is set, and then fails — never skips — if the server is
unreachable.

Tables: events in ``stored_events`` (SQLite; the notification id is the rowid) or
``saksi_events`` (PostgreSQL; ``notification_id``), and the log's own
``saksi_entries``, ``saksi_nodes``, ``saksi_tracking``, ``saksi_checkpoints`` and
``saksi_cosignatures``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger import notes
from ledger.application import Record
from ledger.envelope import b64, decode_b64, decode_statement, key_id
from ledger.errors import InconsistentCheckpoint
from ledger.home import Home
from ledger.migrate import migrate
from ledger.scenario import SimulatedClock, kota_metro
from ledger.witness import Witness
from tests.conftest import fresh_postgres_database

POSTGRES = os.environ.get("SAKSI_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + ([pytest.param("postgres", marks=pytest.mark.postgres)] if POSTGRES else [])
DEMO_SIZE = 800
LOG_TABLES = ("saksi_entries", "saksi_nodes", "saksi_tracking", "saksi_checkpoints", "saksi_cosignatures")
runner = CliRunner()


# ---------------------------------------------------------------- the database under attack


@dataclass
class Store:
    """A demo ledger (its home and its database) that a test tampers with by SQL.

    ``sql`` takes ``?`` placeholders on both backends."""

    kind: str  # "sqlite" or "postgres"
    home: Path
    url: str

    @property
    def events(self) -> str:
        return "stored_events" if self.kind == "sqlite" else "saksi_events"

    @property
    def nid(self) -> str:
        """The events table's notification id column."""
        return "rowid" if self.kind == "sqlite" else "notification_id"

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.kind == "sqlite":
            connection = sqlite3.connect(self.home / "saksi.sqlite", isolation_level=None)
            try:
                connection.execute("BEGIN")
                yield connection
                connection.execute("COMMIT")
            finally:
                connection.close()
        else:
            import psycopg

            with psycopg.connect(self.url) as connection:  # one transaction, committed on exit
                yield connection

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; its rows (if any)."""
        with self.connect() as connection:
            return self._run(connection, statement, params)

    def script(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run several statements in one transaction."""
        with self.connect() as connection:
            for statement, params in statements:
                self._run(connection, statement, params)

    def _run(self, connection: Any, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            statement = statement.replace("?", "%s")
        cursor = connection.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []

    def notification_of(self, index: int) -> int:
        return int(self.sql("SELECT notification_id FROM saksi_entries WHERE idx = ?", (index,))[0][0])

    def state(self, notification_id: int) -> bytes:
        return bytes(self.sql(f"SELECT state FROM {self.events} WHERE {self.nid} = ?", (notification_id,))[0][0])

    def set_state(self, notification_id: int, state: bytes) -> None:
        self.sql(f"UPDATE {self.events} SET state = ? WHERE {self.nid} = ?", (state, notification_id))

    def snapshot_tables(self, tag: str) -> None:
        """Keep a copy of every table (events and log) to restore later."""
        self.script(*((f"CREATE TABLE {t}_{tag} AS SELECT * FROM {t}", ()) for t in (self.events, *LOG_TABLES)))

    def restore_tables(self, tag: str) -> None:
        """Put every table back as it was at ``snapshot_tables(tag)``."""
        self.script(*(step for t in (self.events, *LOG_TABLES)
                      for step in ((f"DELETE FROM {t}", ()), (f"INSERT INTO {t} SELECT * FROM {t}_{tag}", ()))))  # fmt: skip


@contextmanager
def clone_database(server_url: str, template_url: str) -> Iterator[str]:
    """A new database copied from ``template_url`` (which nobody may be connected to)."""
    import psycopg
    from psycopg import sql

    name = f"saksi_test_{uuid.uuid4().hex[:16]}"
    template = urlsplit(template_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def point_home_at(home: Path, url: str) -> None:
    """Make ``home``'s saksi.toml name ``url`` as its database."""
    config = home / "saksi.toml"
    lines = [line for line in config.read_text("utf-8").splitlines() if not line.startswith("database_url")]
    at = next(n for n, line in enumerate(lines) if line.startswith("origin"))
    lines.insert(at + 1, f'database_url = "{url}"')
    config.write_text("\n".join(lines) + "\n", "utf-8")


@dataclass(frozen=True)
class Template:
    kind: str
    home: Path  # the demo home (keys, last-checkpoint, witness states)
    url: str | None  # the PostgreSQL template database


@pytest.fixture(scope="module", params=BACKENDS)
def template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo_template: Path
) -> Iterator[Template]:
    sqlite_home = demo_template  # conftest: the Kota Metro demo, built once per session
    if request.param == "sqlite":
        yield Template("sqlite", sqlite_home, None)
        return
    assert POSTGRES
    with fresh_postgres_database(POSTGRES) as url:
        home = tmp_path_factory.mktemp("pg-template") / "home"
        shutil.copytree(sqlite_home, home, ignore=shutil.ignore_patterns("saksi.sqlite*"))
        source_home = Home.load(sqlite_home, database_url=f"sqlite:///{sqlite_home / 'saksi.sqlite'}")
        source, target, report = migrate(source_home, source_home.database_url, url)
        source.close()
        target.close()
        assert (report.size, report.checkpoints) == (DEMO_SIZE, DEMO_SIZE)
        point_home_at(home, url)
        yield Template("postgres", home, url)


@pytest.fixture
def store(template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A private copy of the demo ledger on the template's backend."""
    monkeypatch.delenv("SAKSI_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    shutil.copytree(template.home, home)
    if template.kind == "sqlite":
        yield Store("sqlite", home, f"sqlite:///{home / 'saksi.sqlite'}")
        return
    assert POSTGRES and template.url
    with clone_database(POSTGRES, template.url) as url:
        point_home_at(home, url)
        yield Store("postgres", home, url)


# ---------------------------------------------------------------- the verdicts


def verify(store: Store) -> tuple[int, str]:
    """`saksi verify` on the store's home: (exit code, everything it printed)."""
    result = runner.invoke(app, ["verify", "--home", str(store.home), "--workers", "0"])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def caught_at(store: Store, *phrases: str) -> int:
    """Assert `saksi verify` fails; the index it names (and that it says one of ``phrases``)."""
    code, output = verify(store)
    assert code == 1, output
    assert "error: audit-failed" in output, output
    if phrases:
        assert any(p in output for p in phrases), output
    found = re.search(r"index (\d+)", output)
    assert found, f"verify named no index: {output}"
    return int(found.group(1))


def witness_refuses(store: Store, witness: Witness, *, expected: str) -> None:
    """The database as it stands, were it served, shows a checkpoint that ``witness``
    (which cosigned a newer one) refuses to cosign."""
    ledger = Home.load(store.home).open(audit=True)
    try:
        note = ledger.tlog.latest_note()
    finally:
        ledger.close()
    with pytest.raises(InconsistentCheckpoint, match=expected):
        witness.cosign(note, None)


def demo_witness(store: Store, name: str = "witness-perludem") -> Witness:
    """A demo witness with its state as the demo left it: it cosigned checkpoint 800."""
    witness = Witness(name, kota_metro().signer(name).key, Home.load(store.home).log_vkey(),
                      store.home / f"{name}.state.json")  # fmt: skip
    seen = witness.last_seen()
    assert seen is not None and notes.parse_note(seen).checkpoint.size == DEMO_SIZE
    return witness


# ---------------------------------------------------------------- the matrix


def test_untouched_ledger_verifies(store: Store) -> None:
    code, output = verify(store)
    assert code == 0, output
    assert f"ok: {DEMO_SIZE} entries" in output


def test_byte_flipped_in_an_events_state(store: Store) -> None:
    notification = store.notification_of(300)
    state = bytearray(store.state(notification))
    position = state.index(b'"payload"') + 40  # inside the base64 of the signed payload
    state[position] = ord("A") if state[position] != ord("A") else ord("B")
    store.set_state(notification, bytes(state))
    assert caught_at(store) == 300


def test_byte_flipped_in_an_events_recorded_at(store: Store) -> None:
    """recorded_at lives in the event, outside the signed envelope: the leaf still pins it."""
    notification = store.notification_of(310)
    state = store.state(notification)
    at = re.search(rb'"recorded_at":"(\d{4})', state)
    assert at, state[:300]
    digit = at.start(1) + 3  # the year's last digit
    store.set_state(notification, state[:digit] + (b"1" if state[digit] != ord("1") else b"2") + state[digit + 1 :])
    assert caught_at(store) == 310


def test_byte_flipped_in_an_events_topic(store: Store) -> None:
    store.sql(f"UPDATE {store.events} SET topic = topic || 'x' WHERE {store.nid} = ?", (store.notification_of(200),))
    assert caught_at(store) == 200


def test_byte_flipped_in_an_events_originator_id(store: Store) -> None:
    notification = store.notification_of(250)
    original = str(store.sql(f"SELECT originator_id FROM {store.events} WHERE {store.nid} = ?", (notification,))[0][0])
    altered = original[:-1] + ("0" if original[-1] != "0" else "1")  # hex on SQLite, a uuid on PostgreSQL
    store.sql(f"UPDATE {store.events} SET originator_id = ? WHERE {store.nid} = ?", (altered, notification))
    assert caught_at(store) == 250


def test_middle_event_deleted(store: Store) -> None:
    store.sql(f"DELETE FROM {store.events} WHERE {store.nid} = ?", (store.notification_of(400),))
    assert caught_at(store) == 400


def test_last_event_deleted(store: Store) -> None:
    store.sql(f"DELETE FROM {store.events} WHERE {store.nid} = ?", (store.notification_of(DEMO_SIZE - 1),))
    assert caught_at(store) == DEMO_SIZE - 1


def test_two_events_swapped(store: Store) -> None:
    first, second = store.notification_of(500), store.notification_of(510)
    a, b = store.state(first), store.state(second)
    store.script(
        (f"UPDATE {store.events} SET state = ? WHERE {store.nid} = ?", (b, first)),
        (f"UPDATE {store.events} SET state = ? WHERE {store.nid} = ?", (a, second)),
    )
    assert caught_at(store) == 500


def test_notification_ids_reordered(store: Store) -> None:
    """Swap the notification ids of two Record rows: the log's order is no longer the events'."""
    first, second = store.notification_of(600), store.notification_of(601)
    move = f"UPDATE {store.events} SET {store.nid} = ? WHERE {store.nid} = ?"
    store.script((move, (-1, first)), (move, (first, second)), (move, (second, -1)))
    assert caught_at(store, "re-ordered", "does not match") == 600


def test_merkle_node_altered(store: Store) -> None:
    store.sql("UPDATE saksi_nodes SET hash = ? WHERE level = 3 AND idx = 40", (bytes(32),))
    assert caught_at(store, "Merkle node (3, 40)") == 40 * 8 + 7  # the leaf that completes node (3, 40)


def test_leaf_hash_altered(store: Store) -> None:
    store.sql("UPDATE saksi_nodes SET hash = ? WHERE level = 0 AND idx = 123", (bytes(32),))
    assert caught_at(store, "stored leaf") == 123


def test_entry_recorded_at_altered(store: Store) -> None:
    """The entry row's recorded_at (a leaf input) no longer matches the event's."""
    store.sql("UPDATE saksi_entries SET recorded_at = '2030-01-01T00:00:00.000000Z' WHERE idx = 650")
    assert caught_at(store, "recorded_at") == 650


def test_stored_checkpoint_note_altered(store: Store) -> None:
    """Altering a signed note breaks its signature: verify names the checkpoint."""
    store.sql("UPDATE saksi_checkpoints SET note = replace(note, ?, ?) WHERE size = 700", ("\n700\n", "\n701\n"))
    code, output = verify(store)
    assert code == 1 and "checkpoint of size 700" in output, output


def test_stored_checkpoint_root_altered(store: Store) -> None:
    """The root column beside a genuine note no longer matches: the last leaf it covers is named."""
    store.sql("UPDATE saksi_checkpoints SET root = ? WHERE size = 700", (bytes(32),))
    assert caught_at(store, "checkpoint of size 700") == 699


def test_stored_cosignature_altered(store: Store) -> None:
    (line,) = store.sql("SELECT line FROM saksi_cosignatures WHERE witness = 'witness-perludem'")[0]
    name, signature = line.rstrip("\n").removeprefix("— ").split(" ")
    raw = bytearray(decode_b64(signature))
    raw[-1] ^= 0x01
    forged = f"— {name} {b64(bytes(raw))}\n"
    store.sql("UPDATE saksi_cosignatures SET line = ? WHERE witness = 'witness-perludem'", (forged,))
    code, output = verify(store)
    assert code == 1 and f"cosignature on checkpoint {DEMO_SIZE}" in output, output


def forge_with_revoked_key(home: Path, *, integrate: bool, publish: bool = True) -> int:
    """Revoke a KPPS key (through the ledger), then write a statement signed with that
    key straight into the event store, bypassing submit: a forged row whose signature
    verifies; ``integrate`` puts it in the log too and ``publish`` (with it) signs a
    checkpoint over it. Returns the index the forged statement takes."""
    scenario = kota_metro()
    clock = SimulatedClock()
    ledger = Home.load(home).open(clock=clock)
    try:
        victim = "kpps-18.72.01.1001.001"
        signer = scenario.signer(victim)
        clock.now = clock.now.replace(year=2024, month=12, day=1)
        revoke = scenario.population.registrar.sign(
            "actor.key_revoked", victim, {"keyid": key_id(decode_b64(signer.public_key)), "reason": "lost"},
            statement_id=str(uuid.uuid4()),
        )  # fmt: skip
        revoked_at = ledger.submit(revoke).index
        forged = signer.sign(
            "logistics.discrepancy_reported", "out.18.72.01.1001.001",
            {"region": "18.72.01.1001.001", "kinds": ["shortage"], "facts": "forged after revocation"},
            refs=[ledger.consignment("out.18.72.01.1001.001").dispatch_digest], statement_id=str(uuid.uuid4()),
        )  # fmt: skip
        statement = decode_statement(forged)
        record = Record(
            statement_id=statement.id, envelope=forged.to_json(), digest=statement.digest,
            recorded_at="2024-12-01T00:00:01.000000Z", type=statement.type, actor=statement.actor,
            subject=statement.subject, keyid=forged.keyid, mandate_id="m1",
        )  # fmt: skip
        ledger.recorder.insert_events([ledger.mapper.to_stored_event(e) for e in record.collect_events()])
        if integrate:
            ledger.tlog.integrate()
            if publish:
                ledger.tlog.publish()  # the log even signs over it: the audit still refuses the entry
    finally:
        ledger.close()
    return revoked_at + 1


@pytest.mark.parametrize("integrate", [False, True], ids=["raw-row", "row-integrated-and-signed"])
def test_forged_event_signed_by_an_already_revoked_key(store: Store, integrate: bool) -> None:
    index = forge_with_revoked_key(store.home, integrate=integrate)
    assert caught_at(store, "key-revoked", "not yet in the log") == index
    if integrate:
        _, output = verify(store)
        assert "key-revoked" in output, output


def test_rolled_back_to_an_older_copy(store: Store, tmp_path: Path) -> None:
    """Keep a copy of the database, let the log grow by one entry and a witness cosign
    the new checkpoint, then restore the copy: the ledger refuses to start, verify names
    the first lost index, and the witness refuses what the restored database shows."""
    if store.kind == "sqlite":  # SQLite's backup API: a plain file copy would miss the WAL
        with sqlite3.connect(store.home / "saksi.sqlite") as source, sqlite3.connect(tmp_path / "old.sqlite") as old:
            source.backup(old)
        source.close()
        old.close()
    else:
        store.snapshot_tables("old")
    scenario = kota_metro()
    loaded = Home.load(store.home)
    ledger = loaded.open()
    try:
        extra = scenario.population.registrar.sign(
            "actor.registered", "observer-jppr",
            {"name": "JPPR", "kind": "organisation", "keys": [scenario.signer("observer-jppr").public_key],
             "mandates": [{"id": "m1", "role": "observer", "jurisdiction": "18.72",
                           "valid_from": "2024-01-01T00:00:00Z"}]},
            statement_id=str(uuid.uuid4()),
        )  # fmt: skip
        assert ledger.submit(extra).index == DEMO_SIZE
        note = ledger.tlog.publish()
        witness = demo_witness(store)
        ledger.add_cosignature(witness.cosign(note, ledger.tlog.consistency_proof(DEMO_SIZE, DEMO_SIZE + 1)))
    finally:
        ledger.close()

    if store.kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(str(store.home / "saksi.sqlite") + suffix).unlink(missing_ok=True)
        shutil.copy(tmp_path / "old.sqlite", store.home / "saksi.sqlite")
    else:
        store.restore_tables("old")
    assert store.sql("SELECT size FROM saksi_tracking")[0][0] == DEMO_SIZE

    with pytest.raises(InconsistentCheckpoint, match="rolled back"):
        loaded.open()
    assert caught_at(store, "rolled back or truncated") == DEMO_SIZE
    witness_refuses(store, witness, expected=f"already saw size {DEMO_SIZE + 1}")


def truncate_to_700(store: Store) -> None:
    """Cut the log back to 700 entries consistently: events, entries, nodes, tracking,
    later checkpoints and cosignatures."""
    first = store.notification_of(700)
    store.script(
        (f"DELETE FROM {store.events} WHERE {store.nid} >= ?", (first,)),
        ("DELETE FROM saksi_entries WHERE idx >= 700", ()),
        ("DELETE FROM saksi_nodes WHERE (idx + 1) * (1 << level) > 700", ()),
        ("DELETE FROM saksi_checkpoints WHERE size > 700", ()),
        ("DELETE FROM saksi_cosignatures WHERE size > 700", ()),
        ("UPDATE saksi_tracking SET size = 700, notification_id = ?", (first - 1,)),
    )


def test_log_truncated_after_a_published_checkpoint(store: Store) -> None:
    """Cut the log back to 700 entries consistently (events, entries, nodes, tracking,
    later checkpoints and cosignatures): the last-checkpoint file still says 800, and
    the demo's witnesses cosigned 800."""
    truncate_to_700(store)
    assert caught_at(store, "rolled back or truncated") == 700
    with pytest.raises(InconsistentCheckpoint):
        Home.load(store.home).open()
    witness_refuses(store, demo_witness(store), expected=f"already saw size {DEMO_SIZE}")
    witness_refuses(store, demo_witness(store, "witness-bawaslu"), expected=f"already saw size {DEMO_SIZE}")


def test_log_truncated_and_its_checkpoint_file_rolled_back_too(store: Store) -> None:
    """An insider who also replaces last-checkpoint with an older genuine note gets past
    the ledger's own check; the witnesses, which keep their own state, still refuse."""
    old_note = store.sql("SELECT note FROM saksi_checkpoints WHERE size = 700")[0][0]
    truncate_to_700(store)
    (store.home / "last-checkpoint").write_text(old_note, "utf-8")
    witness_refuses(store, demo_witness(store), expected=f"already saw size {DEMO_SIZE}")

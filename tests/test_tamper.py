"""Tamper with a real ledger's SQLite file, then ask `saksi verify` (and a witness)
to find it. Each case names the index that must be reported."""

from __future__ import annotations

import re
import shutil
import uuid
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app, build_demo
from ledger import notes
from ledger.errors import InconsistentCheckpoint
from ledger.home import Home
from ledger.scenario import kota_metro
from ledger.witness import Witness
from tests.test_tamper_matrix import forge_with_revoked_key

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("template") / "home"
    build_demo(home, fresh=True)
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(template, copy)
    return copy


def db(home: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(home / "saksi.sqlite", isolation_level=None)
    return connection


def rowid_of(home: Path, index: int) -> int:
    with db(home) as c:
        return c.execute("SELECT notification_id FROM saksi_entries WHERE idx = ?", (index,)).fetchone()[0]


def verify(home: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", "--home", str(home), "--workers", "0"])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def bad_index(output: str) -> int:
    found = re.search(r"index (\d+)", output)
    assert found, output
    return int(found.group(1))


def test_untouched_ledger_verifies(home: Path) -> None:
    code, output = verify(home)
    assert code == 0, output
    assert "ok: 800 entries" in output


def test_verify_uses_both_cores_and_agrees(home: Path) -> None:
    result = runner.invoke(app, ["verify", "--home", str(home), "--workers", "2"])
    assert result.exit_code == 0, result.output


def test_flipped_byte_in_event_state_is_found_at_its_index(home: Path) -> None:
    rowid = rowid_of(home, 300)
    with db(home) as c:
        state = bytearray(c.execute("SELECT state FROM stored_events WHERE rowid = ?", (rowid,)).fetchone()[0])
        position = state.index(b'"payload"') + 40  # inside the base64 of the signed payload
        state[position] = ord("A") if state[position] != ord("A") else ord("B")
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state), rowid))
    code, output = verify(home)
    assert code == 1
    assert bad_index(output) == 300


def test_garbled_event_state_is_found_at_its_index(home: Path) -> None:
    rowid = rowid_of(home, 120)
    with db(home) as c:
        c.execute("UPDATE stored_events SET state = X'00FF' || state WHERE rowid = ?", (rowid,))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 120


def test_flipped_topic_is_found(home: Path) -> None:
    rowid = rowid_of(home, 200)
    with db(home) as c:
        c.execute("UPDATE stored_events SET topic = topic || 'x' WHERE rowid = ?", (rowid,))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 200


def test_flipped_originator_id_is_found(home: Path) -> None:
    rowid = rowid_of(home, 250)
    with db(home) as c:
        c.execute(
            "UPDATE stored_events SET originator_id = substr(originator_id, 1, 31) || "
            "CASE substr(originator_id, 32, 1) WHEN '0' THEN '1' ELSE '0' END WHERE rowid = ?",
            (rowid,),
        )
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 250


def test_deleted_middle_event_is_found(home: Path) -> None:
    with db(home) as c:
        c.execute("DELETE FROM stored_events WHERE rowid = ?", (rowid_of(home, 400),))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 400


def test_deleted_last_event_is_found(home: Path) -> None:
    with db(home) as c:
        c.execute("DELETE FROM stored_events WHERE rowid = ?", (rowid_of(home, 787),))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 787


def test_swapped_events_are_found_at_the_first(home: Path) -> None:
    first, second = rowid_of(home, 500), rowid_of(home, 510)
    with db(home) as c:
        a = c.execute("SELECT state FROM stored_events WHERE rowid = ?", (first,)).fetchone()[0]
        b = c.execute("SELECT state FROM stored_events WHERE rowid = ?", (second,)).fetchone()[0]
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (b, first))
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (a, second))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 500


def test_reordered_notification_ids_are_found(home: Path) -> None:
    first, second = rowid_of(home, 600), rowid_of(home, 601)
    with db(home) as c:
        c.execute("UPDATE stored_events SET rowid = -1 WHERE rowid = ?", (first,))
        c.execute("UPDATE stored_events SET rowid = ? WHERE rowid = ?", (first, second))
        c.execute("UPDATE stored_events SET rowid = ? WHERE rowid = -1", (second,))
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 600


def test_altered_merkle_node_is_found(home: Path) -> None:
    with db(home) as c:
        c.execute("UPDATE saksi_nodes SET hash = zeroblob(32) WHERE level = 3 AND idx = 40")
    code, output = verify(home)
    assert code == 1
    assert bad_index(output) == 40 * 8 + 7  # the leaf that completes node (3, 40)


def test_altered_stored_checkpoint_is_found(home: Path) -> None:
    with db(home) as c:
        c.execute("UPDATE saksi_checkpoints SET note = replace(note, '\n700\n', '\n701\n') WHERE size = 700")
    code, output = verify(home)
    assert code == 1 and "checkpoint of size 700" in output


@pytest.mark.parametrize("integrate", [False, True], ids=["raw-row", "row-integrated"])
def test_forged_row_signed_by_revoked_key_is_found(home: Path, integrate: bool) -> None:
    index = forge_with_revoked_key(home, integrate=integrate, publish=False)
    code, output = verify(home)
    assert code == 1
    assert bad_index(output) == index
    assert "key-revoked" in output or "not yet in the log" in output


def test_truncated_tail_is_found_by_the_checkpoints(home: Path) -> None:
    """Cut the log back to 700 entries consistently (events, entries, nodes,
    tracking, later checkpoints): the last-checkpoint file still says 800."""
    with db(home) as c:
        first = c.execute("SELECT notification_id FROM saksi_entries WHERE idx = 700").fetchone()[0]
        c.execute("DELETE FROM stored_events WHERE rowid >= ?", (first,))
        c.execute("DELETE FROM saksi_entries WHERE idx >= 700")
        c.execute("DELETE FROM saksi_nodes WHERE (idx + 1) * (1 << level) > 700")
        c.execute("DELETE FROM saksi_checkpoints WHERE size > 700")
        c.execute("DELETE FROM saksi_cosignatures WHERE size > 700")
        c.execute("UPDATE saksi_tracking SET size = 700, notification_id = ?", (first - 1,))
    code, output = verify(home)
    assert code == 1
    assert "rolled back or truncated" in output and bad_index(output) == 700
    with pytest.raises(InconsistentCheckpoint):
        Home.load(home).open()


def test_rolled_back_file_is_refused_at_start_and_by_a_witness(template: Path, tmp_path: Path) -> None:
    """Keep an old copy of the database, let the log grow and a witness cosign, then
    restore the old copy: the ledger refuses to start, verify names the cut, and the
    witness refuses to cosign what the restored database would show."""
    home = tmp_path / "home"
    shutil.copytree(template, home)
    old_copy = tmp_path / "old.sqlite"
    with sqlite3.connect(home / "saksi.sqlite") as source, sqlite3.connect(old_copy) as target:
        source.backup(target)  # the WAL's pages too, as a real backup would
    loaded = Home.load(home)
    scenario = kota_metro()
    ledger = loaded.open()
    extra = scenario.population.registrar.sign(
        "actor.registered", "observer-jppr",
        {"name": "JPPR", "kind": "organisation", "keys": [scenario.signer("observer-jppr").public_key],
         "mandates": [{"id": "m1", "role": "observer", "jurisdiction": "18.72", "valid_from": "2024-01-01T00:00:00Z"}]},
        statement_id=str(uuid.uuid4()),
    )  # fmt: skip
    ledger.submit(extra)
    witness = Witness("witness-perludem", scenario.signer("witness-perludem").key, loaded.log_vkey(),
                      home / "witness-perludem.state.json")  # fmt: skip
    note = ledger.tlog.publish()
    ledger.add_cosignature(witness.cosign(note, ledger.tlog.consistency_proof(800, 801)))
    ledger.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(home / "saksi.sqlite") + suffix).unlink(missing_ok=True)
    shutil.copy(old_copy, home / "saksi.sqlite")

    with pytest.raises(InconsistentCheckpoint, match="rolled back"):
        loaded.open()
    code, output = verify(home)
    assert code == 1 and bad_index(output) == 800
    # The restored database, were it served, shows the old checkpoint of size 800.
    restored = loaded.open(audit=True)
    old_note = restored.tlog.latest_note()
    assert notes.parse_note(old_note).checkpoint.size == 800
    with pytest.raises(InconsistentCheckpoint, match="already saw size 801"):
        witness.cosign(old_note, None)

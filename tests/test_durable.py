"""The files that are promises reach the disk before anyone is told: the log's last
signed checkpoint (its guard against a rolled-back database) before the checkpoint is
stored and served, a witness's last cosigned checkpoint (its guard against a fork)
before its cosignature is returned. Each is written to a temporary file, fsynced,
renamed over the old one, and the directory fsynced so the rename itself survives a
crash; a failed write leaves the old promise whole.

A power cut cannot be staged in a test, so the system calls are recorded in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import notes
from ledger.durable import replace_durably
from ledger.home import Home
from ledger.witness import Witness
from tests.test_races import consignment_id, dispatch, small_home

Calls = list[tuple[str, ...]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """os.fsync and os.replace as they are called (SQLite's own syncs are not Python's)."""
    seen: Calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        seen.append(("replace", str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return seen


def assert_replaced_durably(calls: Calls, path: Path) -> None:
    """``path`` was written as a synced temporary, renamed over, and its directory synced."""
    renames = [call for call in calls if call[0] == "replace" and call[2] == str(path)]
    assert len(renames) == 1, calls
    at = calls.index(renames[0])
    temporary = renames[0][1]
    assert Path(temporary).parent == path.parent and temporary != str(path)
    assert ("fsync", temporary) in calls[:at], "the new contents were not synced before the rename"
    assert ("fsync", str(path.parent)) in calls[at + 1 :], "the rename itself was not synced"
    assert not list(path.parent.glob(f"{path.name}.*.tmp"))


def test_the_log_syncs_its_checkpoint_promise_before_storing_the_checkpoint(tmp_path: Path, calls: Calls) -> None:
    home = small_home(tmp_path / "home", origin="saksi.test/durable")
    ledger = Home.load(home.path).open()
    try:
        store = ledger.tlog.store.store_checkpoint

        def stored(*args: object, **kwargs: object) -> None:
            calls.append(("store_checkpoint",))
            store(*args, **kwargs)  # type: ignore[arg-type]

        ledger.tlog.store.store_checkpoint = stored  # type: ignore[method-assign]
        calls.clear()
        receipt = ledger.submit(dispatch(consignment_id()))
        assert_replaced_durably(calls, home.checkpoint_file)
        synced = calls.index(("fsync", str(home.checkpoint_file.parent)))
        assert calls.index(("store_checkpoint",)) > synced  # the promise is on disk first
        written = notes.parse_note(home.checkpoint_file.read_text("utf-8")).checkpoint
        assert written.size == receipt.index + 1 == ledger.tlog.size
    finally:
        ledger.close()


def signed_checkpoint(tmp_path: Path) -> tuple[Home, str]:
    """A small home that recorded one dispatch, and the checkpoint its log signed."""
    home = small_home(tmp_path / "home", origin="saksi.test/durable")
    ledger = Home.load(home.path).open()
    try:
        ledger.submit(dispatch(consignment_id()))
        return home, ledger.tlog.latest_note()
    finally:
        ledger.close()


def test_a_witness_syncs_what_it_saw_before_returning_its_cosignature(tmp_path: Path, calls: Calls) -> None:
    home, note = signed_checkpoint(tmp_path)
    key = Ed25519PrivateKey.generate()
    witness = Witness("witness-test", key, home.log_vkey(), tmp_path / "witness.state.json")
    calls.clear()
    line = witness.cosign(note, None)
    assert_replaced_durably(calls, witness.state_file)
    assert witness.last_seen() == note
    assert line.startswith("— witness-test ")


def test_a_failed_write_leaves_the_old_promise_whole_and_no_temporary_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "promise"
    replace_durably(path, "old promise\n")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        replace_durably(path, "new promise\n")
    assert path.read_text("utf-8") == "old promise\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["promise"]


def test_two_cosigns_at_once_cannot_make_a_witness_cosign_a_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack a witness exists to stop: a log (its key stolen) shows two witness runs
    at the same moment two different trees of one size. Each run checks the new
    checkpoint against the state file and then records it; were the two interleaved,
    both would check against the same old state and cosign both roots."""
    import os as _os
    import threading
    import time

    from ledger.errors import InconsistentCheckpoint

    home, honest = signed_checkpoint(tmp_path)
    checkpoint = notes.parse_note(honest).checkpoint
    forked = notes.sign_checkpoint(notes.Checkpoint(checkpoint.origin, checkpoint.size, _os.urandom(32)),
                                   origin_key=home.log_key())  # fmt: skip
    state = tmp_path / "witness.state.json"
    key = Ed25519PrivateKey.generate()
    real_cosign = notes.cosign

    def slow_cosign(*args: object, **kwargs: object) -> str:
        time.sleep(0.3)  # between the check and the record: where the two runs would interleave
        return real_cosign(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(notes, "cosign", slow_cosign)
    outcomes: dict[str, str] = {}

    def run(name: str, note: str) -> None:
        witness = Witness("witness-test", key, home.log_vkey(), state)  # a run of its own
        try:
            witness.cosign(note, None)
            outcomes[name] = "cosigned"
        except InconsistentCheckpoint as error:
            outcomes[name] = str(error)

    threads = [threading.Thread(target=run, args=item) for item in (("honest", honest), ("forked", forked))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes.values()).count("cosigned") == 1, outcomes
    refused = next(message for message in outcomes.values() if message != "cosigned")
    assert f"two different roots at size {checkpoint.size}" in refused
    cosigned = next(name for name, message in outcomes.items() if message == "cosigned")
    assert Witness("witness-test", key, home.log_vkey(), state).last_seen() == {"honest": honest, "forked": forked}[cosigned]

"""PostgreSQL operations: `saksi migrate` from SQLite proves the copy; verify,
rebuild and export work against PostgreSQL as on SQLite; projections follow by
LISTEN/NOTIFY and survive a worker restart."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app, build_demo
from ledger.bundle import verify_bundle
from ledger.home import Home
from ledger.scenario import kota_metro
from projections.custody import consignment
from projections.runner import Projector, query

pytestmark = pytest.mark.postgres
runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo") / "home"
    build_demo(home, fresh=True)
    return home


def saksi(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_migrate_sqlite_to_postgres_proves_the_copy(demo: Path, tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo, home)
    sqlite_digests = saksi("rebuild", "--home", home)
    output = saksi("migrate", "--home", home, "--from", f"sqlite:///{home / 'saksi.sqlite'}", "--to", postgres_url)
    assert "copied" in output and "800 entries" in output and "2 cosignatures" in output
    assert output.count("(same on both)") == 6
    # verify, rebuild and export work against PostgreSQL exactly as on SQLite
    assert "ok: 800 entries" in saksi("verify", "--home", home, "--database-url", postgres_url)
    assert saksi("rebuild", "--home", home, "--database-url", postgres_url).split() == sqlite_digests.split()
    saksi("export", tmp_path / "full.zip", "--full", "--home", home, "--database-url", postgres_url)
    loaded = Home.load(home)
    report = verify_bundle(tmp_path / "full.zip", log_key=loaded.log_vkey(), genesis=loaded.genesis)
    assert (report.kind, report.entries) == ("full", 800)
    # a second migration into a non-empty database is refused, in one line
    refused = runner.invoke(app, ["migrate", "--home", str(home), "--from", f"sqlite:///{home / 'saksi.sqlite'}",
                                  "--to", postgres_url])  # fmt: skip
    assert refused.exit_code == 1 and "empty database" in refused.output


def test_projections_follow_by_notification_and_survive_a_restart(demo: Path, tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo, home)
    saksi("migrate", "--home", home, "--from", f"sqlite:///{home / 'saksi.sqlite'}", "--to", postgres_url)
    loaded = Home.load(home, database_url=postgres_url)
    writer = loaded.open()
    scenario = kota_metro()
    kpu = scenario.signer("kpu-18.72")

    def dispatch(name: str) -> None:
        writer.submit(kpu.sign("logistics.dispatched", name, {
            "region": "18.72.01", "receiver": "ppk-18.72.01", "direction": "outbound", "items": {"ink": 3}},
            statement_id=str(uuid.uuid4())))  # fmt: skip

    def follower() -> tuple[Projector, threading.Event, threading.Thread]:
        projector = Projector(loaded.open(audit=True))
        stop = threading.Event()
        thread = threading.Thread(target=projector.follow, args=(stop,), kwargs={"interval": 5.0}, daemon=True)
        thread.start()
        return projector, stop, thread

    projector, stop, thread = follower()
    time.sleep(1.0)  # subscribed
    started = time.monotonic()
    dispatch("late.alpha")
    while query(projector, consignment, "late.alpha") is None:
        assert time.monotonic() - started < 4, "not woken by LISTEN/NOTIFY (the fallback interval is 5 s)"
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    dispatch("late.beta")  # recorded while no worker follows
    projector, stop, thread = follower()  # the restarted worker resumes from its stored position
    deadline = time.monotonic() + 10
    while query(projector, consignment, "late.beta") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    statuses = {s.name: s.size for s in projector.status()}
    assert set(statuses.values()) == {writer.tlog.size}

"""``saksi serve`` projects the log in a follower process of its own (on another core
than the write path): it keeps the read models current with no reader asking, and it
ends with its server, however the server ends."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.settings import Settings
from bench.measure import followers_of
from tests.test_cli import DEMO_SIZE, _free_port, home, signed_dispatch  # noqa: F401
from tests.test_races import consignment_id, dispatch, small_home


def state_of(pid: int) -> str | None:
    """The process's state letter (``Z``: exited, not yet reaped), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def eventually(check: object, *, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.1)


PLANTED = """
import pathlib
pathlib.Path(__file__).with_name("planted-code-ran").touch()
raise SystemExit("planted")
"""


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:  # noqa: F811
    """``saksi serve`` as a user runs it (no SAKSI_* settings: the follower default),
    the database named by URL, from a working directory holding a module named like
    one the follower imports; the server, its URL and its follower's pid."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (workdir / "argparse.py").write_text(PLANTED)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(Path(sys.executable).parent / "saksi"), "serve", "--home", str(home),
                                "--database-url", f"sqlite:///{home / 'saksi.sqlite'}", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    seen: list[int] = []
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/v1/log/key", timeout=1).status_code == 200
            return False

        eventually(ready, within=30)
        eventually(lambda: len(followers_of(process.pid)) == 1)
        seen += followers_of(process.pid)
        yield process, url, seen[0]
        assert not (workdir / "planted-code-ran").exists(), "the follower imported from the working directory"
    finally:
        for pid in [process.pid, *seen, *followers_of(process.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        log.close()


def projected(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "saksi.sqlite")) as db:
        return int(db.execute("SELECT MIN(position) FROM saksi_projections").fetchone()[0])


def submit_one(url: str) -> None:
    response = httpx.post(url + "/v1/statements", content=signed_dispatch().canonical(),
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 201, response.text


def test_the_follower_process_projects_what_the_server_records(served: tuple[subprocess.Popen[bytes], str, int],
                                                               home: Path) -> None:  # noqa: F811
    server, url, follower = served
    command = Path(f"/proc/{follower}/cmdline").read_bytes()
    assert b"projections.follower" in command and b"sqlite:" not in command  # the URL is not on show
    assert projected(home) == DEMO_SIZE
    submit_one(url)
    # No reader asks (a query would catch up by itself): the follower alone moves on.
    eventually(lambda: projected(home) == DEMO_SIZE + 1)
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)
    assert time.monotonic() - started < 8, "the follower did not stop at the end of its input"
    assert state_of(follower) is None, "the server neither stopped nor reaped its follower"


def test_the_follower_ends_when_its_server_is_killed(served: tuple[subprocess.Popen[bytes], str, int]) -> None:
    server, _, follower = served
    server.kill()  # no shutdown code runs: the follower sees its input end
    server.wait()
    eventually(lambda: state_of(follower) in (None, "Z"))


def test_a_dead_follower_is_started_again(served: tuple[subprocess.Popen[bytes], str, int], home: Path) -> None:  # noqa: F811
    server, url, follower = served
    os.kill(follower, signal.SIGKILL)
    eventually(lambda: followers_of(server.pid) not in ([], [follower]))
    submit_one(url)
    eventually(lambda: projected(home) == DEMO_SIZE + 1)


def test_an_unknown_follower_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAKSI_FOLLOWER", "fiber")
    with pytest.raises(ValueError, match="SAKSI_FOLLOWER"):
        Settings()
    monkeypatch.setenv("SAKSI_FOLLOWER", "thread")
    assert Settings().follower == "thread"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SAKSI_FOLLOWER", "fiber", "SAKSI_FOLLOWER must be process or thread"),
    ("SAKSI_AGGREGATE_CACHE", "lots", "SAKSI_AGGREGATE_CACHE must be a whole number"),
])  # fmt: skip
def test_serve_refuses_a_bad_setting_in_one_line(
    variable: str, value: str, message: str, home: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["serve", "--home", str(home), "--port", str(_free_port())])
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# ---------------------------------------------------------------- one follower per database


@dataclass
class Followers:
    """Followers over one database, as server processes run them (threads here, each
    with its own ledger and connections); ``readers`` names the threads that read entries."""

    writer: Any
    projectors: list[Any]
    stops: list[threading.Event]
    threads: list[threading.Thread]
    readers: list[str]

    def record(self, count: int) -> int:
        for _ in range(count):
            self.writer.submit(dispatch(consignment_id()))
        return int(self.writer.tlog.size)

    def projected(self, size: int) -> bool:
        return all(position >= size for position in self.projectors[0].positions().values())

    def leader(self) -> int:
        """The one follower that read entries since ``readers`` was last cleared."""
        leaders = set(self.readers)
        assert len(leaders) == 1, f"followers that read the log: {sorted(leaders)}"
        return int(leaders.pop().rsplit("-", 1)[1])

    def stop(self, number: int) -> None:
        self.stops[number].set()
        self.threads[number].join(10)
        assert not self.threads[number].is_alive(), f"follower {number} did not stop"


@contextlib.contextmanager
def followers(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int = 3) -> Iterator[tuple[Followers, str | None]]:
    from ledger.home import Home
    from projections import runner
    from tests.conftest import fresh_postgres_database

    readers: list[str] = []
    real_read = runner.read_entries

    def counted_read(ledger: Any, start: int, end: int) -> Any:
        readers.append(threading.current_thread().name)
        return real_read(ledger, start, end)

    monkeypatch.setattr(runner, "read_entries", counted_read)
    monkeypatch.setattr(runner, "LEASE_CHECK", 0.2)
    with contextlib.ExitStack() as stack:
        url = None
        if kind == "postgres":
            url = stack.enter_context(fresh_postgres_database(os.environ["SAKSI_TEST_POSTGRES_URL"]))
        home = small_home(tmp_path / "home", database_url=url, origin="saksi.test/leader")
        writer = Home.load(home.path, database_url=url).open()
        stack.callback(writer.close)
        group = Followers(writer, [], [], [], readers)
        for number in range(count):
            ledger = Home.load(home.path, database_url=url).open(audit=True)
            stack.callback(ledger.close)
            group.projectors.append(runner.Projector(ledger))
            group.stops.append(threading.Event())
            group.threads.append(threading.Thread(target=group.projectors[-1].follow, args=(group.stops[-1],),
                                                  kwargs={"interval": 0.05}, name=f"follower-{number}"))  # fmt: skip
        for thread, stop in zip(group.threads, group.stops, strict=True):
            stack.callback(thread.join, 10)
            stack.callback(stop.set)
            thread.start()
        yield group, url


def advisory_holders(url: str) -> list[int]:
    """Backends of ``url``'s database holding the followers' advisory lock."""
    import psycopg

    from projections.runner import FOLLOWER_LOCK_ID

    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (FOLLOWER_LOCK_ID,),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_one_follower_per_database_reads_the_log_and_another_takes_over_when_it_stops(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three followers over one database, as three server processes run them: only one
    reads and projects the log (N servers must not each read every entry); when it
    stops, one of the others takes over and projects what comes next."""
    with followers(kind, tmp_path, monkeypatch) as (group, url):
        size = group.record(20)
        eventually(lambda: group.projected(size))
        time.sleep(1.5)  # the others have looked (and waited) several times meanwhile
        leader = group.leader()

        group.stop(leader)
        group.readers.clear()
        size = group.record(20)
        eventually(lambda: group.projected(size))
        assert group.leader() != leader
        for number in range(len(group.threads)):  # every follower ends when told, leading or not
            group.stop(number)
        if url is not None:
            assert advisory_holders(url) == []  # no connection left holding the lead


@pytest.mark.postgres
def test_a_leader_whose_lock_connection_dies_stops_following_and_one_leads_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL drops a session's advisory locks with the session (a restart, a
    terminated backend, a lost network): the leader must notice, or it would go on
    following beside the follower that takes the lock next."""
    import psycopg

    with followers("postgres", tmp_path, monkeypatch, count=2) as (group, url):
        assert url is not None
        size = group.record(10)
        eventually(lambda: group.projected(size))
        eventually(lambda: len(advisory_holders(url)) == 1)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (advisory_holders(url)[0],))
        eventually(lambda: len(advisory_holders(url)) == 1)  # someone leads again
        time.sleep(1.5)  # a leader that did not notice would be reading beside the new one by now
        group.readers.clear()
        size = group.record(20)
        eventually(lambda: group.projected(size))
        group.leader()  # exactly one follower read the new entries

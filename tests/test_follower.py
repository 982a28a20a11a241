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
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.settings import Settings
from tests.test_cli import DEMO_SIZE, _free_port, home, signed_dispatch  # noqa: F401


def followers_of(pid: int) -> list[int]:
    """The ``projections.follower`` processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"projections.follower" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


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


def test_serve_refuses_an_unknown_follower_setting_in_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("SAKSI_FOLLOWER", "fiber")
    result = CliRunner().invoke(app, ["serve", "--home", str(home), "--port", str(_free_port())])
    assert result.exit_code == 1
    assert "SAKSI_FOLLOWER must be process or thread" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# ---------------------------------------------------------------- one follower per database


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_one_follower_per_database_reads_the_log_and_another_takes_over_when_it_stops(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three followers over one database, as three server processes run them: only one
    reads and projects the log (N servers must not each read every entry); when it
    stops, one of the others takes over and projects what comes next."""
    import threading

    from ledger.home import Home
    from projections import runner
    from tests.conftest import fresh_postgres_database
    from tests.test_races import consignment_id, dispatch, small_home

    readers: list[str] = []
    real_read = runner.read_entries

    def counted_read(ledger, start, end):  # type: ignore[no-untyped-def]
        readers.append(threading.current_thread().name)
        return real_read(ledger, start, end)

    monkeypatch.setattr(runner, "read_entries", counted_read)
    with contextlib.ExitStack() as stack:
        url = None
        if kind == "postgres":
            url = stack.enter_context(fresh_postgres_database(os.environ["SAKSI_TEST_POSTGRES_URL"]))
        home = small_home(tmp_path / "home", database_url=url, origin="saksi.test/leader")
        writer = Home.load(home.path, database_url=url).open()
        stack.callback(writer.close)
        projectors, stops, threads = [], [], []
        for number in range(3):
            ledger = Home.load(home.path, database_url=url).open(audit=True)
            stack.callback(ledger.close)
            projectors.append(runner.Projector(ledger))
            stops.append(threading.Event())
            threads.append(threading.Thread(target=projectors[-1].follow, args=(stops[-1],),
                                            kwargs={"interval": 0.05}, name=f"follower-{number}"))  # fmt: skip
        for thread in threads:
            thread.start()
            stack.callback(thread.join, 10)
        for stop in stops:
            stack.callback(stop.set)

        def projected(size: int) -> bool:
            return all(position >= size for position in projectors[0].positions().values())

        for _ in range(20):
            writer.submit(dispatch(consignment_id()))
        size = writer.tlog.size
        eventually(lambda: projected(size))
        time.sleep(1.5)  # the others have looked (and waited) several times meanwhile
        leaders = set(readers)
        assert len(leaders) == 1, f"followers that read the log: {sorted(leaders)}"
        leader = int(leaders.pop().rsplit("-", 1)[1])

        stops[leader].set()
        threads[leader].join(10)
        assert not threads[leader].is_alive()
        readers.clear()
        for _ in range(20):
            writer.submit(dispatch(consignment_id()))
        size = writer.tlog.size
        eventually(lambda: projected(size))
        assert readers and f"follower-{leader}" not in readers
        assert len(set(readers)) == 1, f"followers that read the log: {sorted(set(readers))}"
        for number, stop in enumerate(stops):  # every follower ends when told, leader or not
            stop.set()
            threads[number].join(10)
            assert not threads[number].is_alive()

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


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def eventually(check: object, *, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.1)


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:  # noqa: F811
    """``saksi serve`` as a user runs it (no SAKSI_* settings: the follower default)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKSI_")}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(Path(sys.executable).parent / "saksi"), "serve", "--home", str(home),
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/v1/log/key", timeout=1).status_code == 200
            return False

        eventually(ready, within=30)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def projected(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "saksi.sqlite")) as db:
        return int(db.execute("SELECT MIN(position) FROM saksi_projections").fetchone()[0])


def test_the_follower_process_projects_what_the_server_records(served: tuple[subprocess.Popen[bytes], str],
                                                               home: Path) -> None:  # noqa: F811
    server, url = served
    eventually(lambda: len(followers_of(server.pid)) == 1)
    (follower,) = followers_of(server.pid)
    assert projected(home) == DEMO_SIZE
    response = httpx.post(url + "/v1/statements", content=signed_dispatch().canonical(),
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 201, response.text
    # No reader asks (a query would catch up by itself): the follower alone moves on.
    eventually(lambda: projected(home) == DEMO_SIZE + 1)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)
    eventually(lambda: not alive(follower))


def test_the_follower_ends_when_its_server_is_killed(served: tuple[subprocess.Popen[bytes], str]) -> None:
    server, _ = served
    eventually(lambda: len(followers_of(server.pid)) == 1)
    (follower,) = followers_of(server.pid)
    server.kill()  # no shutdown code runs: the follower sees its input end
    server.wait()
    eventually(lambda: not alive(follower))


def test_an_unknown_follower_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAKSI_FOLLOWER", "fiber")
    with pytest.raises(ValueError, match="SAKSI_FOLLOWER"):
        Settings()
    monkeypatch.setenv("SAKSI_FOLLOWER", "thread")
    assert Settings().follower == "thread"

"""The server's runtime (one ledger, one projector) and its dependencies."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

import projections
from api.settings import Settings
from ledger.application import Ledger
from ledger.home import Home
from projections.runner import Projector, query

T = TypeVar("T")
log = logging.getLogger("saksi.projections")


@dataclass
class Runtime:
    """What one server process holds: the ledger, its projections, their follower."""

    settings: Settings
    home: Home
    ledger: Ledger
    projector: Projector
    log_vkey: str
    stop: threading.Event = field(default_factory=threading.Event)
    follower: threading.Thread | None = None
    follower_process: subprocess.Popen[bytes] | None = None
    _follower_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        home = Home.load(settings.home, database_url=settings.database_url)
        ledger = home.open()
        projector = Projector(ledger)
        projector.catch_up()
        return cls(settings, home, ledger, projector, home.log_vkey())

    def start(self) -> None:
        """Start the projection follower: a process of its own (``projections.follower``,
        on another core than the write path; watched, and started again if it dies) or a
        thread, with ``follower="thread"`` or an in-memory database no other process sees."""
        if self.settings.follower == "process" and self.ledger.backend.kind != "memory":
            self.follower_process = self._spawn_follower()
            self.follower = threading.Thread(target=self._watch_follower, daemon=True, name="projections-watch")
        else:
            self.follower = threading.Thread(
                target=self.projector.follow, args=(self.stop,),
                kwargs={"interval": self.settings.follow_interval}, daemon=True, name="projections",
            )  # fmt: skip
        self.follower.start()

    def _spawn_follower(self) -> subprocess.Popen[bytes]:
        # -P: nothing from the working directory is imported; the packages come from where
        # this process found them. The database URL goes in the environment, which only
        # its user can read (a command line is visible to every local user).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(projections.__file__).resolve().parent.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        ))  # fmt: skip
        if self.settings.database_url:
            env["SAKSI_DATABASE_URL"] = self.settings.database_url
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "projections.follower", "--home", str(self.home.path),
             "--interval", str(self.settings.follow_interval)],
            stdin=subprocess.PIPE, env=env,  # stdin: closed by halt(), or by the system when this process ends
        )  # fmt: skip

    def _watch_follower(self) -> None:
        """Start the follower process again when it dies: at once if it ran a minute or
        more, else after 2, 4 … 60 s (readers stay right meanwhile, catching up themselves)."""
        started, pause = time.monotonic(), 0.0
        while not self.stop.wait(1.0):
            process = self.follower_process
            if process is None or process.poll() is None:
                continue
            pause = 0.0 if time.monotonic() - started >= 60 else min(60.0, max(2.0, pause * 2))
            log.warning("the projection follower exited with %s; starting it again in %.0f s",
                        process.returncode, pause)  # fmt: skip
            if self.stop.wait(pause):
                return
            with self._follower_lock:
                if not self.stop.is_set():
                    self.follower_process, started = self._spawn_follower(), time.monotonic()

    def halt(self) -> None:
        """Stop the follower, thread or process."""
        self.stop.set()
        if self.follower is not None:
            self.follower.join(timeout=5)
        with self._follower_lock:
            process = self.follower_process
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.halt()
        self.ledger.close()

    def read(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a projection read function, after catching up with the log (so a reader
        sees at least what was acknowledged before its request)."""
        self.projector.catch_up()
        return query(self.projector, function, *args, **kwargs)  # type: ignore[no-any-return]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

"""The server's runtime (one ledger, one projector) and its dependencies."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from api.settings import Settings
from ledger.application import Ledger
from ledger.home import Home
from projections.runner import Projector, query

T = TypeVar("T")


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

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        home = Home.load(settings.home, database_url=settings.database_url)
        ledger = home.open()
        projector = Projector(ledger)
        projector.catch_up()
        return cls(settings, home, ledger, projector, home.log_vkey())

    def start(self) -> None:
        """Start the projection follower: a process of its own (``projections.follower``,
        on another core than the write path) or, with ``follower="thread"``, a thread."""
        if self.settings.follower == "process":
            url = self.settings.database_url
            self.follower_process = subprocess.Popen(
                [sys.executable, "-m", "projections.follower", "--home", str(self.home.path),
                 "--interval", str(self.settings.follow_interval), *(["--database-url", url] if url else [])],
                stdin=subprocess.PIPE,  # closed by halt(), or by the system when this process ends
            )  # fmt: skip
            return
        self.follower = threading.Thread(
            target=self.projector.follow, args=(self.stop,),
            kwargs={"interval": self.settings.follow_interval}, daemon=True, name="projections",
        )  # fmt: skip
        self.follower.start()

    def halt(self) -> None:
        """Stop the follower, thread or process."""
        self.stop.set()
        if self.follower is not None:
            self.follower.join(timeout=5)
        if self.follower_process is not None:
            assert self.follower_process.stdin is not None
            self.follower_process.stdin.close()
            try:
                self.follower_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.follower_process.kill()
                self.follower_process.wait()

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

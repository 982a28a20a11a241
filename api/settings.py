"""One Settings class for the server, read from the environment (and flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Server settings. Limits are documented in the README ("Limits")."""

    home: Path = field(default_factory=lambda: Path(os.environ.get("SAKSI_HOME", ".saksi")))
    database_url: str | None = field(default_factory=lambda: os.environ.get("SAKSI_DATABASE_URL"))
    max_body_bytes: int = 64 * 1024  # one envelope
    max_batch_bytes: int = 16 * 1024 * 1024
    max_batch_items: int = 1000
    max_page: int = 1000
    follow_interval: float = 0.25
    # The projection follower: "process" (python -m projections.follower, beside the
    # server, on another core) or "thread" (inside the server process).
    follower: str = field(default_factory=lambda: os.environ.get("SAKSI_FOLLOWER", "process"))

    def __post_init__(self) -> None:
        if self.follower not in ("process", "thread"):
            raise ValueError(f"SAKSI_FOLLOWER must be process or thread, not {self.follower!r}")

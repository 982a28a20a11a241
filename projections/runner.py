"""Runs the projections: catch up with the log, follow it, rebuild from zero.

On SQLite (and in memory) ``follow`` is a catch-up loop; on PostgreSQL it waits
on eventsourcing's LISTEN/NOTIFY subscription to the application's events and
catches up whenever something is recorded.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import PersistenceError

from ledger.application import RECORD_TOPIC, Ledger
from ledger.storage import schema_lock
from projections.actors import ActorsProjection, TrailProjection
from projections.base import Projection, Sql
from projections.custody import CustodyProjection, ReadinessProjection
from projections.entries import read_entries
from projections.registers import CommitmentsProjection, PledgesProjection

log = logging.getLogger("saksi.projections")

TRACKING = "saksi_projections"
PROJECTION_LOCK_ID = 0x5A4B5350  # PostgreSQL advisory lock: one projecting process at a time
REBUILD_BATCH = 5000  # entries per transaction when rebuilding: few commits, ~70 MB held at most


def all_projections() -> list[Projection]:
    return [CustodyProjection(), ReadinessProjection(), CommitmentsProjection(), PledgesProjection(),
            ActorsProjection(), TrailProjection()]  # fmt: skip


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    size: int  # log entries reflected
    digest: str


class Projector:
    """Keeps ``projections`` up to date with ``ledger``'s log."""

    def __init__(self, ledger: Ledger, projections: Sequence[Projection] | None = None) -> None:
        self.ledger = ledger
        self.projections = list(projections or all_projections())
        self.by_name = {p.name: p for p in self.projections}
        self.store = ledger.tlog.store
        self._lock = threading.Lock()
        with schema_lock(ledger.backend), self.sql(commit=True) as sql:
            sql.run(f"CREATE TABLE IF NOT EXISTS {TRACKING} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
            sql.take_write_lock(TRACKING)
            for projection in self.projections:
                projection.create(sql)
                if sql.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (projection.name,)) is None:
                    sql.run(f"INSERT INTO {TRACKING} VALUES (?, 0)", (projection.name,))

    @contextmanager
    def sql(self, *, commit: bool = False) -> Iterator[Sql]:
        with self.store.transaction(commit=commit) as cursor:
            yield Sql(cursor, self.store.dialect)

    def positions(self) -> dict[str, int]:
        with self.sql() as sql:
            rows = sql.all(f"SELECT name, position FROM {TRACKING}")
        return {r["name"]: r["position"] for r in rows if r["name"] in self.by_name}

    def catch_up(self, *, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Apply every integrated entry not yet projected; returns the log size reflected.
        Several processes may call it at once: one projects, the others wait, then
        find the work done."""
        with self._lock:
            while True:
                size = self.ledger.tlog.size
                positions = self.positions()
                low = min(positions.values(), default=size)
                if low >= size:
                    return size
                entries = read_entries(self.ledger, low, min(size, low + batch))  # read before writing
                with self._process_lock(), self.sql(commit=True) as sql:
                    if sql.postgres:  # released at commit or rollback
                        sql.run("SELECT pg_advisory_xact_lock(?)", (PROJECTION_LOCK_ID,))
                    sql.take_write_lock(TRACKING)
                    current = sql.all(f"SELECT name, position FROM {TRACKING}")
                    if {r["name"]: r["position"] for r in current if r["name"] in self.by_name} != positions:
                        continue  # another process projected meanwhile: look again
                    for projection in self.projections:
                        position = positions[projection.name]
                        todo = entries if position == low else [e for e in entries if e.index >= position]
                        if todo:
                            projection.apply_batch(sql, todo)
                            sql.run(f"UPDATE {TRACKING} SET position = ? WHERE name = ?",
                                    (todo[-1].index + 1, projection.name))  # fmt: skip
                if progress:
                    progress(entries[-1].index + 1)

    @contextmanager
    def _process_lock(self) -> Iterator[None]:
        """SQLite: one projecting process at a time (a file lock beside the database)."""
        if self.ledger.backend.kind != "sqlite":
            yield
            return
        assert self.ledger.backend.path
        with open(self.ledger.backend.path + ".projections-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rebuild(self, names: Sequence[str] | None = None, *,
                progress: Callable[[int], None] | None = None) -> list[ProjectionStatus]:  # fmt: skip
        """Clear the named projections (all by default) and rebuild them from entry 0."""
        chosen = [self.by_name[n] for n in names] if names else self.projections
        with self._lock, self.sql(commit=True) as sql, sql.deleting_plainly():
            for projection in chosen:
                projection.clear(sql)
                sql.run(f"UPDATE {TRACKING} SET position = 0 WHERE name = ?", (projection.name,))
        with _collector_paused():
            self.catch_up(batch=REBUILD_BATCH, progress=progress)
        return [s for s in self.status() if s.name in {p.name for p in chosen}]

    def status(self) -> list[ProjectionStatus]:
        """Each projection's name, the log size it reflects and its digest."""
        with self.sql() as sql:
            found = []
            for projection in self.projections:
                row = sql.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (projection.name,))
                found.append(ProjectionStatus(projection.name, row["position"], projection.digest(sql, row["position"])))
            return found

    def follow(self, stop: threading.Event, *, interval: float = 0.25) -> None:
        """Keep catching up until ``stop`` is set. On PostgreSQL a LISTEN/NOTIFY
        subscription to the application's records wakes the loop at once; the
        interval is the fallback (and the whole mechanism on SQLite)."""
        wake = threading.Event()
        subscription = None
        if self.ledger.backend.kind == "postgres":
            position = self.ledger.recorder.max_notification_id() or 0
            subscription = self.ledger.recorder.subscribe(gt=position, topics=[RECORD_TOPIC])
            threading.Thread(target=self._listen, args=(subscription, wake), daemon=True,
                             name="projections-listen").start()  # fmt: skip
        try:
            while not stop.is_set():
                try:
                    reached = self.catch_up()
                except PersistenceError as error:  # the database was busy or went away: try again
                    log.warning("projections: catching up failed, retrying: %r", error)
                    stop.wait(interval)
                    continue
                deadline = time.monotonic() + (interval if subscription is None else interval * 20)
                while not stop.is_set() and time.monotonic() < deadline:
                    if wake.wait(0.05):
                        wake.clear()
                        self._await_integration(stop, reached)
                        break
        finally:
            if subscription is not None:
                subscription.stop()

    def _await_integration(self, stop: threading.Event, reached: int, *, patience: float = 2.0) -> None:
        """A notification says a record was committed; its log entry is integrated
        right after, by the writer, so wait (briefly, polling) until the log grows
        past ``reached`` — a busy machine must not make the follower miss it and
        sleep until the next notification."""
        settle = time.monotonic() + patience
        while not stop.wait(0.02) and time.monotonic() < settle:
            try:
                if self.ledger.tlog.size > reached:
                    return
            except PersistenceError:
                return

    @staticmethod
    def _listen(subscription: Any, wake: threading.Event) -> None:
        try:
            for _ in subscription:  # ends when the subscription is stopped
                wake.set()
        except PersistenceError:
            pass  # the database went away: the follower falls back to its interval


@contextmanager
def _collector_paused() -> Iterator[None]:
    """CPython's cycle collector off for a while (as it was before, after). A rebuild
    makes and drops hundreds of thousands of containers — statements, models, rows —
    that reference counting frees, none in a cycle; the collector's passes over those
    alive at the time were a fifth of the rebuild's time. Process-wide: garbage in cycles
    that other threads make meanwhile waits until the rebuild is done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def query(projector: Projector, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a read function of a projection module in a read transaction."""
    with projector.sql() as sql:
        return function(sql, *args, **kwargs)

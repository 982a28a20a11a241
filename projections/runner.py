"""Runs the projections: catch up with the log, follow it, rebuild from zero.

On SQLite (and in memory) ``follow`` is a catch-up loop; on PostgreSQL it waits
on eventsourcing's LISTEN/NOTIFY subscription to the application's events and
catches up whenever something is recorded.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from eventsourcing.persistence import PersistenceError

from ledger.application import RECORD_TOPIC, Ledger
from ledger.collector import collector_paused
from ledger.storage import SQLiteConnectionPool, schema_lock
from projections.actors import ActorsProjection, TrailProjection
from projections.base import Plan, Projection, Sql
from projections.custody import CustodyProjection, ReadinessProjection
from projections.entries import read_entries
from projections.registers import CommitmentsProjection, PledgesProjection

log = logging.getLogger("saksi.projections")

TRACKING = "saksi_projections"
PROJECTION_LOCK_ID = 0x5A4B5350  # PostgreSQL advisory lock: one projecting process at a time
FOLLOWER_LOCK_ID = 0x5A4B5346  # PostgreSQL advisory lock: one following process per database
LEASE_CHECK = 5.0  # seconds between a leading follower's looks at whether it still leads
REBUILD_BATCH = 5000  # entries per transaction when rebuilding: few commits, ~70 MB held at most
PARALLEL_FROM = 2000  # entries: a smaller log is rebuilt by one process (see parallel_rebuild)


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

    def __init__(self, ledger: Ledger, projections: Sequence[Projection] | None = None, *,
                 indexes: bool = True) -> None:  # fmt: skip
        """``indexes``: create the projections' indexes where missing (a rebuild's second
        process does not: the rebuild dropped them, and builds them when it ends)."""
        self.ledger = ledger
        self.projections = list(projections or all_projections())
        self.by_name = {p.name: p for p in self.projections}
        self.store = ledger.tlog.store
        self._lock = threading.Lock()
        with schema_lock(ledger.backend), self.sql(commit=True) as sql:
            sql.run(f"CREATE TABLE IF NOT EXISTS {TRACKING} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
            sql.take_write_lock(TRACKING)
            for projection in self.projections:
                projection.create(sql, indexes=indexes)
                if sql.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (projection.name,)) is None:
                    sql.run(f"INSERT INTO {TRACKING} VALUES (?, 0)", (projection.name,))

    @contextmanager
    def sql(self, *, commit: bool = False) -> Iterator[Sql]:
        with self.store.transaction(commit=commit) as cursor:
            yield Sql(cursor, self.store.dialect)

    def positions(self) -> dict[str, int]:
        with self.sql() as sql:
            return self._positions(sql, self.by_name.keys())

    def catch_up(self, *, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Apply every integrated entry not yet projected; returns the log size reflected.
        Several processes may call it at once: one projects, the others wait, then
        find the work done."""
        return self._catch_up(self.projections, batch=batch, progress=progress)

    def _catch_up(self, projections: Sequence[Projection], *, batch: int,
                  progress: Callable[[int], None] | None = None) -> int:  # fmt: skip
        """``catch_up`` of ``projections`` only (others may be caught up by another process).

        Each batch's writes are worked out in a read transaction (``Plan``) and made in a
        write transaction that first checks that no projection moved meanwhile: the
        database's write lock is held only while they are made, so the ledger's writers
        (and a rebuild's other process) wait for it less. A projection's tables are a
        function of its position, so equal positions mean the rows the plan read are
        still there."""
        names = {p.name for p in projections}
        with self._lock:
            while True:
                size = self.ledger.tlog.size
                positions = {name: at for name, at in self.positions().items() if name in names}
                low = min(positions.values(), default=size)
                if low >= size:
                    return size
                entries = read_entries(self.ledger, low, min(size, low + batch))  # read before writing
                with self.sql() as sql:
                    if sql.postgres:  # positions and rows from one snapshot
                        sql.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    if self._positions(sql, names) != positions:
                        continue  # another process projected meanwhile: look again
                    plan = Plan(sql)
                    for projection in projections:
                        position = positions[projection.name]
                        todo = entries if position == low else [e for e in entries if e.index >= position]
                        if todo:
                            projection.apply_batch(plan, todo)
                            plan.run(f"UPDATE {TRACKING} SET position = ? WHERE name = ?",
                                     (todo[-1].index + 1, projection.name))  # fmt: skip
                with self._process_lock(), self.sql(commit=True) as sql:
                    if sql.postgres:  # released at commit or rollback
                        sql.run("SELECT pg_advisory_xact_lock(?)", (PROJECTION_LOCK_ID,))
                    sql.take_write_lock(TRACKING)
                    if self._positions(sql, names) != positions:
                        continue  # another process projected meanwhile: look again
                    plan.replay(sql)
                if progress:
                    progress(entries[-1].index + 1)

    @staticmethod
    def _positions(sql: Sql, names: Collection[str]) -> dict[str, int]:
        return {r["name"]: r["position"] for r in sql.all(f"SELECT name, position FROM {TRACKING}") if r["name"] in names}

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

    def rebuild(self, names: Sequence[str] | None = None, *, progress: Callable[[int], None] | None = None,
                workers: int | None = None) -> list[ProjectionStatus]:  # fmt: skip
        """Clear the named projections (all by default) and rebuild them from entry 0.

        ``workers``: 1, or 2 to split the projections into two groups of about equal
        weight and rebuild the second in a forked process, on the other core (each
        process reads the log itself and writes only its own projections; SQLite files
        only). By default 2 where that is safe and worth it (``parallel_rebuild``)."""
        chosen = [self.by_name[n] for n in names] if names else self.projections
        if workers is None:
            workers = 2 if parallel_rebuild(self.ledger) else 1
        if workers not in (1, 2):
            raise ValueError(f"a rebuild runs on 1 or 2 processes, not {workers}")
        if workers == 2 and (refusal := _cannot_fork(self.ledger)):
            raise ValueError(refusal)
        with self._lock, self.sql(commit=True) as sql, sql.deleting_plainly():
            for projection in chosen:
                projection.clear(sql, drop_indexes=True)
                sql.run(f"UPDATE {TRACKING} SET position = 0 WHERE name = ?", (projection.name,))
        groups = _split(chosen) if workers > 1 and len(chosen) > 1 else [chosen]
        with collector_paused():
            helper = _Helper.start(self.ledger, groups[1]) if len(groups) > 1 else None
            mine = groups[0] if helper is not None else chosen
            try:
                self._catch_up(mine, batch=REBUILD_BATCH, progress=progress)
                self._create_indexes(mine)
                found = self.status(mine)
                if helper is not None:
                    found += helper.result()
            finally:
                if helper is not None:
                    helper.stop()
                self._create_indexes(chosen)  # those not built yet: also when the rebuild failed
        order = [p.name for p in chosen]
        return sorted(found, key=lambda s: order.index(s.name))

    def _create_indexes(self, projections: Sequence[Projection]) -> None:
        with self._lock, self.sql(commit=True) as sql:
            for projection in projections:
                projection.create_indexes(sql)

    def status(self, projections: Sequence[Projection] | None = None) -> list[ProjectionStatus]:
        """Each projection's (of ``projections``, all by default) name, the log size it
        reflects and its digest."""
        with self.sql() as sql:
            found = []
            for projection in self.projections if projections is None else projections:
                row = sql.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (projection.name,))
                found.append(ProjectionStatus(projection.name, row["position"], projection.digest(sql, row["position"])))
            return found

    def follow(self, stop: threading.Event, *, interval: float = 0.25) -> None:
        """Keep catching up until ``stop`` is set, while this process leads: one follower
        per database follows (``_leadership``), the others wait to take over, so N server
        processes do not each read every entry. On PostgreSQL a LISTEN/NOTIFY subscription
        to the application's records wakes the loop at once; the interval is the fallback
        (and the whole mechanism on SQLite)."""
        while not stop.is_set():
            with self._leadership(stop, interval) as lease:
                if lease is None:
                    return  # stopped while waiting to lead
                self._follow(stop, interval, lease)

    def _follow(self, stop: threading.Event, interval: float, lease: Lease) -> None:
        """Follow until ``stop`` is set or the lease is lost (looked at every ``LEASE_CHECK`` s)."""
        wake = threading.Event()
        subscription = None
        if self.ledger.backend.kind == "postgres":
            position = self.ledger.recorder.max_notification_id() or 0
            subscription = self.ledger.recorder.subscribe(gt=position, topics=[RECORD_TOPIC])
            threading.Thread(target=self._listen, args=(subscription, wake), daemon=True,
                             name="projections-listen").start()  # fmt: skip
        looked = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() - looked >= LEASE_CHECK:
                    if not lease.held():
                        log.warning("projections: lost the lead in following the log; waiting to lead again")
                        return
                    looked = time.monotonic()
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

    @contextmanager
    def _leadership(self, stop: threading.Event, interval: float) -> Iterator[Lease | None]:
        """The lease of the follower that leads, held until the block ends; None when
        ``stop`` was set while it waited. SQLite: a file lock beside the database;
        PostgreSQL: a session advisory lock on a connection of its own (the lock goes
        with the connection, so a leader that dies, however it dies, makes way, and a
        leader whose connection died finds out from ``Lease.held``); in memory no other
        process can see the database. A follower that does not lead tries again every
        ``interval`` (at least a second on PostgreSQL)."""
        backend = self.ledger.backend
        if backend.kind == "memory":
            yield Lease()
        elif backend.kind == "sqlite":
            assert backend.path
            with open(backend.path + ".follower-lock", "a") as handle:
                while not _try_flock(handle):
                    if stop.wait(interval):
                        break
                else:
                    try:
                        yield Lease()
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                    return
            yield None
        else:
            with _postgres_leadership(backend.url, stop, max(1.0, interval)) as lease:
                yield lease

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


class Lease:
    """A follower's lead: ``held`` says whether it still has it (a file lock, or the
    only process, always has)."""

    def held(self) -> bool:
        return True


class _AdvisoryLease(Lease):
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def held(self) -> bool:
        """Whether the connection holding the advisory lock is still alive (a session's
        locks go when the session goes: a restart, a terminated backend, a lost network)."""
        import psycopg

        try:
            self.connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _try_advisory_lock(url: str) -> Any | None:
    """A new connection to ``url`` holding the follower lock, or None when another
    holds it; raises psycopg.Error when the database cannot be reached."""
    import psycopg

    connection = psycopg.connect(url, autocommit=True, connect_timeout=5,
                                 keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)  # fmt: skip
    try:
        taken = connection.execute("SELECT pg_try_advisory_lock(%s)", (FOLLOWER_LOCK_ID,)).fetchone()
    except BaseException:
        connection.close()
        raise
    if taken and taken[0]:
        return connection
    connection.close()
    return None


@contextmanager
def _postgres_leadership(url: str, stop: threading.Event, pause: float) -> Iterator[Lease | None]:
    """``Projector._leadership`` on PostgreSQL: ``pg_try_advisory_lock`` on a connection
    of its own, kept open while leading; a database that cannot be reached is tried again."""
    import psycopg

    connection = None
    while not stop.is_set():
        try:
            connection = _try_advisory_lock(url)
        except psycopg.Error as error:
            log.warning("projections: cannot reach the database to follow it, retrying: %r", error)
        if connection is not None:
            break
        stop.wait(pause)
    if connection is None:
        yield None
        return
    with connection:  # closing it releases the lock
        yield _AdvisoryLease(connection)


def parallel_rebuild(ledger: Ledger) -> bool:
    """Whether a rebuild of ``ledger`` forks a second process: it can (``_cannot_fork``)
    and the log holds at least PARALLEL_FROM entries (below that one process is done
    before a second would be)."""
    return _cannot_fork(ledger) is None and ledger.tlog.size >= PARALLEL_FROM


def _cannot_fork(ledger: Ledger) -> str | None:
    """Why a rebuild of ``ledger`` cannot fork its second process, or None. Fork copies the
    calling thread only, so a lock another thread held (in SQLite, in logging …) would stay
    held in the copy forever."""
    if ledger.backend.kind != "sqlite":
        return "only a SQLite file database is rebuilt on two processes"
    if threading.active_count() > 1:
        return "a rebuild on two processes forks, which only a process running one thread may do"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "a rebuild on two processes forks, which this platform cannot do"
    return None


def _split(projections: Sequence[Projection]) -> list[list[Projection]]:
    """Two groups of about equal total weight (heaviest first, each to the lighter group)."""
    groups: list[list[Projection]] = [[], []]
    weights = [0, 0]
    for projection in sorted(projections, key=lambda p: -p.weight):
        lighter = weights.index(min(weights))
        groups[lighter].append(projection)
        weights[lighter] += projection.weight
    return groups


class _Helper:
    """A forked process rebuilding ``projections`` (already cleared) of ``ledger``'s
    database through its own connections, then sending back their statuses."""

    @classmethod
    def start(cls, ledger: Ledger, projections: Sequence[Projection]) -> _Helper | None:
        """The helper, forked; None (rebuild in one process) when this process cannot
        close its connections to the database first (one is in use)."""
        pool = ledger.recorder.datastore.pool  # type: ignore[attr-defined]
        if not (isinstance(pool, SQLiteConnectionPool) and pool.close_idle()):
            log.warning("rebuild: a database connection is in use, so no second process is forked")
            return None
        return cls(ledger, projections)

    def __init__(self, ledger: Ledger, projections: Sequence[Projection]) -> None:
        context = multiprocessing.get_context("fork")
        self.receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_rebuild_in_helper, name="saksi-rebuild",
            args=(ledger.backend.url, ledger.tlog.origin, ledger.genesis, ledger.env_overrides,
                  list(projections), send),
        )  # fmt: skip
        self.process.start()
        send.close()  # the helper holds the only sending end: if it dies, receiving ends

    def result(self) -> list[ProjectionStatus]:
        try:
            answer = self.receive.recv()
        except EOFError:
            answer = f"it ended with exit code {self.process.exitcode} and sent nothing"
        if isinstance(answer, str):
            raise RebuildFailed(f"the rebuild's second process failed: {answer}")
        return [ProjectionStatus(*status) for status in answer]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.receive.close()


class RebuildFailed(RuntimeError):
    """The process rebuilding part of the projections failed; what it committed stays
    (a later catch-up resumes from there)."""


def _rebuild_in_helper(database_url: str, origin: str, genesis: Sequence[Any], env: dict[str, str],
                       projections: list[Projection], send: Connection) -> None:  # fmt: skip
    """In the forked process (the parent closed its connections first): open the database
    afresh, catch ``projections`` up from where they are (cleared: zero) and send their
    statuses, or the error."""
    try:
        ledger = Ledger(database_url=database_url, origin=origin, genesis=genesis, log_key=None,
                        env=env, audit=True)  # fmt: skip
        try:
            projector = Projector(ledger, projections, indexes=False)
            projector._catch_up(projections, batch=REBUILD_BATCH)
            projector._create_indexes(projections)
            send.send([(s.name, s.size, s.digest) for s in projector.status()])
        finally:
            ledger.close()
    except BaseException as error:  # whatever it is, the parent must hear of it
        send.send(f"{type(error).__name__}: {error}")
        raise


def query(projector: Projector, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a read function of a projection module in a read transaction."""
    with projector.sql() as sql:
        return function(sql, *args, **kwargs)

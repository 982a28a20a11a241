"""Where a ledger keeps its data: the eventsourcing environment for each backend,
and the log's own tables (entries, Merkle nodes, tracking, checkpoints,
cosignatures) in the same database as the events.

Backends, chosen by a database URL:

- ``sqlite:///PATH`` (the default, a file under ``SAKSI_HOME``),
- ``postgresql://USER@HOST:PORT/DB`` (eventsourcing's postgres module),
- ``memory:`` (eventsourcing's POPO recorders; the log tables then live in a
  private in-memory SQLite database) for fast unit tests.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteDatastore

_memory_counter = itertools.count()
# Stored nodes are perfect subtrees, written once: for the proofs a process serves
# (read_proof_nodes), those of this level and above (subtrees of 256 leaves or more: 2 per 256
# leaves, some 200 bytes each: 1.6 MB at 1 M leaves, 8 MB at the national 5 M) stay in memory
# once read. Every proof of a big tree passes through them: at 1 M leaves 12 of an inclusion
# proof's 20 nodes are theirs, so a proof reads 8 nodes from the database at any size above
# 256 leaves. What is signed or checked is always read afresh.
UPPER_LEVEL = 8
STATEMENT_CACHE = 256  # prepared statements each SQLite connection keeps


class SQLiteConnectionPool(es_sqlite.SQLiteConnectionPool):
    """eventsourcing 9.5's SQLite pool, its connections keeping ``STATEMENT_CACHE``
    prepared statements. eventsourcing opens them with ``cached_statements=True``, which
    sqlite3 takes for a cache of one statement: every statement but the connection's last
    was parsed and planned again on each use (a single submit runs some 55). With the
    cache, a single ``Ledger.submit`` took 3.1 ms instead of 3.6 here. (No memory map of
    the file: its touched pages count in the process's resident memory, an audit's at
    1 M entries 2.2 GiB instead of 0.15.)"""

    def _create_connection(self) -> es_sqlite.SQLiteConnection:
        # eventsourcing.sqlite.SQLiteConnectionPool._create_connection of 9.5, but for the cache.
        try:
            connection = sqlite3.connect(
                database=self.db_name, uri=True, check_same_thread=False,
                isolation_level=None,  # autocommit: eventsourcing issues BEGIN itself
                cached_statements=STATEMENT_CACHE,
                timeout=self.lock_timeout or es_sqlite.SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )  # fmt: skip
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode;")
            if cursor.fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL;")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        connection.row_factory = sqlite3.Row
        return es_sqlite.SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)

    def close_idle(self) -> bool:
        """Close the pooled connections no one is using; whether none is left open.
        Before a fork: SQLite must not see a connection carried into the child (its
        per-process lock records would go with it, and the child's own connections
        would count on locks it does not hold)."""
        with self._put_condition:
            while self._pool:
                self._pool.popleft().close()
            return not self._in_use


def with_statement_cache(datastore: SQLiteDatastore) -> SQLiteDatastore:
    """``datastore`` with its (still unused) pool replaced by one whose connections
    keep their prepared statements."""
    old = datastore.pool
    datastore.pool = SQLiteConnectionPool(
        db_name=old.db_name, lock_timeout=old.lock_timeout, pool_size=old.pool_size,
        max_overflow=old.max_overflow, pool_timeout=old.pool_timeout, max_age=old.max_age,
        pre_ping=old.pre_ping,
    )  # fmt: skip
    old.close()
    return datastore


def es_sqlite_error(error: sqlite3.Error) -> Exception:
    """The eventsourcing exception its SQLite transactions raise for ``error``."""
    for raw, ours in ((sqlite3.IntegrityError, IntegrityError), (sqlite3.OperationalError, OperationalError),
                      (sqlite3.DataError, DataError), (sqlite3.InternalError, InternalError),
                      (sqlite3.InterfaceError, InterfaceError)):  # fmt: skip
        if isinstance(error, raw):
            return ours(error)
    return error


class PinningDatastore(SQLiteDatastore):
    """eventsourcing's SQLite datastore, its connections keeping their prepared statements
    (``SQLiteConnectionPool``), and able to lend a thread one connection for a while
    (``pinned``)."""

    def __init__(self, db_name: str, **options: Any) -> None:
        super().__init__(db_name, **options)
        with_statement_cache(self)
        self._pinned = threading.local()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within this, every transaction of the calling thread runs on one connection,
        taken from the pool once, instead of each taking its own from the pool. For the
        writer: a single ``Ledger.submit`` runs some 27 transactions under the writer lock,
        and the pool's checkout and return, with a ``BEGIN`` and ``ROLLBACK`` around each
        read, cost about as much as the queries themselves. Each write is still its own
        transaction (``BEGIN`` … ``COMMIT``) and each read statement its own read, so the
        thread's reads see its commits; other threads and processes are unaffected."""
        if getattr(self._pinned, "connection", None) is not None:
            yield  # already pinned, further up this thread's stack
            return
        connection = self.pool.get_connection()
        self._pinned.connection = connection
        try:
            yield
        finally:
            self._pinned.connection = None
            self.pool.put_connection(connection)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[es_sqlite.SQLiteCursor]:
        connection = getattr(self._pinned, "connection", None)
        if connection is None:
            with super().transaction(commit=commit) as cursor:
                yield cursor
        elif not commit:
            # No BEGIN and ROLLBACK around a read: on this autocommit connection each
            # statement is a read transaction of its own, and every read transaction Saksi
            # and eventsourcing make is one statement.
            cursor = connection.cursor()  # the wrapper eventsourcing's transactions yield
            try:
                with cursor:
                    yield cursor
            except sqlite3.Error as error:  # as eventsourcing's transactions raise them
                raise es_sqlite_error(error) from error
        else:
            with connection.transaction(commit=commit) as cursor:
                yield cursor


class SQLiteFactory(es_sqlite.SQLiteFactory):
    """eventsourcing's SQLite persistence (``PERSISTENCE_MODULE``) on a ``PinningDatastore``."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        stock = self.datastore  # its pool has opened no connection yet
        self.datastore = PinningDatastore(
            stock.pool.db_name, lock_timeout=stock.pool.lock_timeout,
            single_row_tracking=stock.single_row_tracking, originator_id_type=stock.originator_id_type,
        )  # fmt: skip
        stock.close()


@dataclass(frozen=True)
class Backend:
    """A parsed database URL."""

    kind: str  # "sqlite", "postgres" or "memory"
    url: str
    path: str | None = None

    @classmethod
    def parse(cls, url: str) -> Backend:
        """Raises ValueError for a URL Saksi cannot use."""
        if url in ("memory:", "popo:"):
            return cls("memory", url)
        if url.startswith("sqlite:///"):
            return cls("sqlite", url, path=url.removeprefix("sqlite:///") or None)
        if url.startswith(("postgresql://", "postgres://")):
            return cls("postgres", url)
        raise ValueError(f"unsupported database URL {url!r} (sqlite:///PATH, postgresql://…)")

    def environment(self) -> dict[str, str]:
        """The eventsourcing environment for this backend."""
        if self.kind == "memory":
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        if self.kind == "sqlite":
            assert self.path
            return {
                "PERSISTENCE_MODULE": "ledger.storage:SQLiteFactory",
                "SQLITE_DBNAME": self.path,
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        parts = urlsplit(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_LOCK_TIMEOUT": "10",
        }


def select_events_of(recorder: Any, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
    """Every stored event of the given aggregates, each aggregate's in version order:
    what ``recorder.select_events`` returns for each id, in one query per 500 ids
    (SQLite and PostgreSQL; one query per id for other recorders)."""
    found: list[StoredEvent] = []
    wanted = list(dict.fromkeys(originator_ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        if type(recorder).__module__ == "eventsourcing.sqlite":
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(
                    "SELECT originator_id, originator_version, topic, state "
                    f"FROM {recorder.events_table_name} WHERE originator_id IN ({', '.join('?' * len(chunk))}) "
                    "ORDER BY originator_id, originator_version",
                    [i.hex for i in chunk],
                )
                found += [
                    StoredEvent(recorder.convert_originator_id(r["originator_id"]), r["originator_version"],
                                r["topic"], r["state"])
                    for r in c.fetchall()
                ]  # fmt: skip
        elif type(recorder).__module__ == "eventsourcing.postgres":
            from psycopg.sql import SQL, Identifier

            datastore = recorder.datastore
            statement = SQL(
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            ).format(schema=Identifier(datastore.schema), table=Identifier(recorder.events_table_name))
            ids = chunk if datastore.originator_id_type == "uuid" else [str(i) for i in chunk]
            with datastore.get_connection() as connection, connection.cursor() as cursor:
                cursor.execute(statement, [ids])
                found += [
                    StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                    for r in cursor.fetchall()
                ]
        else:
            for originator_id in chunk:
                found += recorder.select_events(originator_id)
    return found


SCHEMA_LOCK_ID = 0x5A4B5353  # PostgreSQL advisory lock held while creating tables


@contextmanager
def schema_lock(backend: Backend) -> Iterator[None]:
    """Serialise table creation: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe
    when several worker processes start at once."""
    if backend.kind != "postgres":
        yield
        return
    import psycopg

    with psycopg.connect(backend.url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_ID,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_ID,))


class LogStore:
    """The log's tables, in the database that holds the events.

    All writes of one integration step (entries, nodes and the tracking row)
    happen in one transaction; the tracking row is updated with a compare-and-set,
    so two integrators racing on one database can never both commit a step.
    """

    def __init__(self, datastore: Any, *, dialect: str, prefix: str = "saksi") -> None:
        self.datastore = datastore
        self.dialect = dialect
        self.p = "?" if dialect == "sqlite" else "%s"
        self._upper: dict[tuple[int, int], bytes] = {}  # see UPPER_LEVEL and read_proof_nodes
        self._seen_size = 0
        blob = "BLOB" if dialect == "sqlite" else "BYTEA"
        big = "INTEGER" if dialect == "sqlite" else "BIGINT"
        self.t = {name: f"{prefix}_{name}" for name in ("entries", "nodes", "tracking", "checkpoints", "cosignatures")}
        self.ddl = [
            f"CREATE TABLE IF NOT EXISTS {self.t['entries']} (idx {big} PRIMARY KEY, "
            f"notification_id {big} NOT NULL UNIQUE, record_id TEXT NOT NULL UNIQUE, "
            "recorded_at TEXT NOT NULL, digest TEXT NOT NULL UNIQUE)",
            f"CREATE TABLE IF NOT EXISTS {self.t['nodes']} (level INTEGER NOT NULL, "
            f"idx {big} NOT NULL, hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
            f"CREATE TABLE IF NOT EXISTS {self.t['tracking']} (id INTEGER PRIMARY KEY, "
            f"notification_id {big} NOT NULL, size {big} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t['checkpoints']} (size {big} PRIMARY KEY, "
            f"root {blob} NOT NULL, note TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.t['cosignatures']} (size {big} NOT NULL, "
            f"witness TEXT NOT NULL, ts {big} NOT NULL, line TEXT NOT NULL, "
            "PRIMARY KEY (size, witness))",
        ]

    @classmethod
    def in_memory(cls) -> LogStore:
        name = f"file:saksi-log-{next(_memory_counter)}?mode=memory&cache=shared"
        return cls(with_statement_cache(SQLiteDatastore(name)), dialect="sqlite")

    def create_tables(self) -> None:
        with self.transaction() as c:
            for statement in self.ddl:
                c.execute(statement)
            c.execute(f"SELECT COUNT(*) AS n FROM {self.t['tracking']}")
            if c.fetchone()["n"] == 0:
                c.execute(f"INSERT INTO {self.t['tracking']} VALUES (0, 0, 0)")

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.transaction(commit=False) as c:
            c.execute(sql.replace("?", self.p), params)
            return c.fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.transaction(commit=False) as c:
            c.execute(sql.replace("?", self.p), params)
            return c.fetchall()

    # ---------------------------------------------------------------- reads

    def tracking(self) -> tuple[int, int]:
        """(last integrated notification id, log size); (0, 0) when nothing is integrated."""
        row = self._one(f"SELECT notification_id, size FROM {self.t['tracking']} WHERE id = 0")
        found = (row["notification_id"], row["size"]) if row else (0, 0)
        if found[1] < self._seen_size:  # the database went back (a restore): forget its old tree
            self._upper.clear()
        self._seen_size = found[1]
        return found

    def read_nodes(self, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored Merkle nodes among ``ids`` (one query), as the database holds them now."""
        return self._read_nodes(list(dict.fromkeys(ids)))

    def read_proof_nodes(self, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """``read_nodes`` for the proofs and receipts this process serves: nodes of
        UPPER_LEVEL and above come from memory once read. Never for what is signed or
        checked (roots, rollback checks, audits): those read the database as it is."""
        found: dict[tuple[int, int], bytes] = {}
        wanted = []
        for node in dict.fromkeys(ids):
            upper = self._upper.get(node)
            if upper is None:
                wanted.append(node)
            else:
                found[node] = upper
        read = self._read_nodes(wanted)
        self._upper.update((node, value) for node, value in read.items() if node[0] >= UPPER_LEVEL)
        found.update(read)
        return found

    def _read_nodes(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            params = [v for pair in chunk for v in pair]
            for row in self._all(f"SELECT level, idx, hash FROM {self.t['nodes']} WHERE {where}", params):
                found[(row["level"], row["idx"])] = bytes(row["hash"])
        return found

    def entry(self, index: int) -> tuple[int, str, str] | None:
        """(notification id, record id, recorded_at) of entry ``index``, or None."""
        row = self._one(
            f"SELECT notification_id, record_id, recorded_at FROM {self.t['entries']} WHERE idx = ?",
            (index,),
        )
        return (row["notification_id"], row["record_id"], row["recorded_at"]) if row else None

    def index_of_digest(self, digest: str) -> int | None:
        """The log index of the statement with this digest, or None."""
        row = self._one(f"SELECT idx FROM {self.t['entries']} WHERE digest = ?", (digest,))
        return row["idx"] if row else None

    def locate(self, record_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """record id → (index, recorded_at) for those of ``record_ids`` in the log."""
        found: dict[str, tuple[int, str]] = {}
        wanted = list(dict.fromkeys(record_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._all(
                f"SELECT idx, record_id, recorded_at FROM {self.t['entries']} "
                f"WHERE record_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            found.update((r["record_id"], (r["idx"], r["recorded_at"])) for r in rows)
        return found

    def index_of(self, record_id: str) -> int | None:
        row = self._one(f"SELECT idx FROM {self.t['entries']} WHERE record_id = ?", (record_id,))
        return row["idx"] if row else None

    def entries(self, start: int, end: int) -> list[tuple[int, int, str, str]]:
        """[(index, notification id, record id, recorded_at)] for start <= index < end."""
        rows = self._all(
            f"SELECT idx, notification_id, record_id, recorded_at FROM {self.t['entries']} "
            "WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [(r["idx"], r["notification_id"], r["record_id"], r["recorded_at"]) for r in rows]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        row = self._one(f"SELECT size, note FROM {self.t['checkpoints']} ORDER BY size DESC LIMIT 1")
        return (row["size"], row["note"]) if row else None

    def checkpoint(self, size: int) -> str | None:
        row = self._one(f"SELECT note FROM {self.t['checkpoints']} WHERE size = ?", (size,))
        return row["note"] if row else None

    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        rows = self._all(f"SELECT size, root, note FROM {self.t['checkpoints']} ORDER BY size")
        return [(r["size"], bytes(r["root"]), r["note"]) for r in rows]

    def cosignatures(self, size: int) -> list[str]:
        rows = self._all(
            f"SELECT line FROM {self.t['cosignatures']} WHERE size = ? ORDER BY witness", (size,)
        )
        return [r["line"] for r in rows]

    def last_cosignatures(self) -> list[tuple[str, int, int]]:
        """[(witness, size, timestamp)] of each witness's latest cosignature."""
        rows = self._all(
            f"SELECT witness, MAX(size) AS size, MAX(ts) AS ts FROM {self.t['cosignatures']} "
            "GROUP BY witness ORDER BY witness"
        )
        return [(r["witness"], r["size"], r["ts"]) for r in rows]

    # ---------------------------------------------------------------- writes

    def append(
        self,
        *,
        expected: tuple[int, int],
        position: int,
        entries: Sequence[tuple[int, int, str, str, str]],
        nodes: Sequence[tuple[tuple[int, int], bytes]],
    ) -> bool:
        """Append entries and their nodes and move tracking to ``position`` in one
        transaction, if tracking still equals ``expected``. Returns False (writing
        nothing) when another integrator moved first."""
        old_position, old_size = expected
        new_size = old_size + len(entries)
        p = self.p
        with self.transaction() as c:
            c.execute(
                f"UPDATE {self.t['tracking']} SET notification_id = {p}, size = {p} "
                f"WHERE id = 0 AND notification_id = {p} AND size = {p}",
                (position, new_size, old_position, old_size),
            )
            if getattr(c, "sqlite_cursor", c).rowcount != 1:
                return False
            if entries:
                c.executemany(
                    f"INSERT INTO {self.t['entries']} VALUES ({p}, {p}, {p}, {p}, {p})", list(entries)
                )
                c.executemany(
                    f"INSERT INTO {self.t['nodes']} VALUES ({p}, {p}, {p})",
                    [(level, idx, h) for (level, idx), h in nodes],
                )
        return True

    def store_checkpoint(self, size: int, root: bytes, note: str) -> None:
        p = self.p
        with self.transaction() as c:
            # Two processes may sign the same size: Ed25519 is deterministic, so the
            # notes are identical and the second insert changes nothing.
            c.execute(
                f"INSERT INTO {self.t['checkpoints']} VALUES ({p}, {p}, {p}) ON CONFLICT (size) DO NOTHING",
                (size, root, note),
            )

    def store_cosignature(self, size: int, witness: str, timestamp: int, line: str) -> None:
        """Store (or replace with a newer) cosignature of ``witness`` on checkpoint ``size``."""
        p = self.p
        with self.transaction() as c:
            c.execute(
                f"DELETE FROM {self.t['cosignatures']} WHERE size = {p} AND witness = {p}",
                (size, witness),
            )
            c.execute(
                f"INSERT INTO {self.t['cosignatures']} VALUES ({p}, {p}, {p}, {p})",
                (size, witness, timestamp, line),
            )

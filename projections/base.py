"""Read models that follow the integrity log, entry by entry, in index order.

Each projection keeps its tables in the ledger's own database and its position
(the number of log entries it reflects) in ``saksi_projections``; a batch of
entries and the new position are written in one transaction, so a restart
resumes exactly where the last commit left off — nothing lost, nothing doubled.

A projection's *digest* is the SHA-256 of a canonical dump of its tables
(every row, ordered by primary key, as RFC 8785 JSON lines) preceded by the
log size it reflects. The state is a pure function of the log prefix, so an
incremental follow and a rebuild from zero — on any machine — give the same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.canonical import canonical_bytes
from ledger.statements import Statement


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry as projections see it."""

    index: int
    recorded_at: str
    statement: Statement
    keyid: str
    leaf_hash: bytes


class Sql:
    """A cursor that speaks "?" placeholders on both SQLite and PostgreSQL."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self.cursor = getattr(cursor, "sqlite_cursor", cursor)  # eventsourcing wraps sqlite3's
        self.postgres = dialect == "postgres"

    def run(self, sql: str, params: Sequence[Any] = ()) -> Sql:
        self.cursor.execute(sql.replace("?", "%s") if self.postgres else sql, params)
        return self

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(sql.replace("?", "%s") if self.postgres else sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params).cursor.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.run(sql, params).cursor.fetchall())

    def take_write_lock(self, table: str) -> None:
        """SQLite: take the database's write lock before the transaction reads.

        eventsourcing opens deferred transactions; one that reads and then writes
        cannot wait for the lock when another process committed since its read
        ("database is locked" at once, whatever the busy timeout). A write as the
        first statement waits for the lock, and the reads after it see the latest
        commit. PostgreSQL needs nothing here."""
        if not self.postgres:
            self.run(f"UPDATE {table} SET position = position WHERE 0")


def dumps(value: Any) -> str:
    """JSON for a view column: canonical, so digests never depend on dict order."""
    return canonical_bytes(value).decode("utf-8")


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Projection:
    """A read model. Subclasses name their tables (with primary keys, used for the
    digest's order) and apply entries; they never read anything but their own
    tables and the entry."""

    name: ClassVar[str]
    # table name → (DDL column list, ORDER BY for the dump)
    tables: ClassVar[dict[str, tuple[str, str]]]
    indexes: ClassVar[Sequence[str]] = ()

    def create(self, sql: Sql) -> None:
        for table, (columns, _) in self.tables.items():
            if sql.postgres:  # byte order, as SQLite sorts: digests agree across backends
                columns = columns.replace(" TEXT", ' TEXT COLLATE "C"')
            sql.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        for statement in self.indexes:
            sql.run(statement)

    def clear(self, sql: Sql) -> None:
        for table in self.tables:
            sql.run(f"DELETE FROM {table}")

    def apply(self, sql: Sql, entry: Entry) -> None:
        raise NotImplementedError  # abstract: every projection defines it

    def dump(self, sql: Sql) -> Iterator[bytes]:
        for table, (_, order) in sorted(self.tables.items()):
            cursor = sql.run(f"SELECT * FROM {table} ORDER BY {order}").cursor
            names = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                yield canonical_bytes([table, dict(zip(names, _plain(row), strict=True))])

    def digest(self, sql: Sql, size: int) -> str:
        hasher = hashlib.sha256(f"{self.name}\n{size}\n".encode())
        for line in self.dump(sql):
            hasher.update(line + b"\n")
        return "sha256:" + hasher.hexdigest()


def _plain(row: Any) -> list[Any]:
    values = row.values() if isinstance(row, dict) else tuple(row)
    return [bytes(v).hex() if isinstance(v, bytes | memoryview) else v for v in values]

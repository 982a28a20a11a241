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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import orjson

from ledger.accepted import accepted_statement
from ledger.canonical import MAX_DEPTH, MAX_SAFE_INTEGER, canonical_bytes
from ledger.envelope import statement_digest
from ledger.statements import BODIES, Statement

# canonical_bytes' fast path: for values of ASCII keys and text, safe integers, booleans and
# None, RFC 8785 is sorted-key JSON without spaces, which orjson writes (several times faster
# than the standard library's C encoder; the tests compare the two on every row and value).
_SORTED = orjson.OPT_SORT_KEYS
_SIMPLE_KINDS = {str, int, type(None)}
DUMP_ROWS = 10_000  # rows of a table held at once while its digest is computed
_SCALARS = {str, int, bool, type(None)}
_CONTAINERS = {dict, list, tuple}


class Entry:
    """One log entry as projections see it: where it is in the log, when it was
    recorded, the key that signed it, its leaf hash and its statement.

    An entry read from the log (``Entry.accepted``) builds its statement from the payload
    only when a projection first asks for it: a process rebuilding projections that read
    none of a type's entries (``Projection.reads``) never builds those statements.
    ``value`` (the statement's JSON, as signed: the ledger accepted it, so its fields
    are the model's), ``type`` and ``digest`` are there without building it."""

    __slots__ = ("index", "recorded_at", "keyid", "leaf_hash", "payload", "_value", "_statement")

    def __init__(self, index: int, recorded_at: str, statement: Statement, keyid: str, leaf_hash: bytes) -> None:
        self.index, self.recorded_at, self.keyid, self.leaf_hash = index, recorded_at, keyid, leaf_hash
        self.payload: bytes = statement.payload
        self._value: dict[str, Any] | None = None
        self._statement: Statement | None = statement

    @classmethod
    def accepted(cls, index: int, recorded_at: str, payload: bytes, keyid: str, leaf_hash: bytes) -> Entry:
        """The entry of a payload the ledger accepted (its statement is not validated again)."""
        entry = cls.__new__(cls)
        entry.index, entry.recorded_at, entry.keyid, entry.leaf_hash = index, recorded_at, keyid, leaf_hash
        entry.payload, entry._value, entry._statement = payload, orjson.loads(payload), None
        return entry

    @property
    def statement(self) -> Statement:
        if self._statement is None:
            self._statement = accepted_statement(self.payload, self.value)
        return self._statement

    @property
    def value(self) -> dict[str, Any]:
        if self._value is None:
            self._value = orjson.loads(self.payload)
        return self._value

    @property
    def type(self) -> str:
        return self.value["type"]  # type: ignore[no-any-return]

    @property
    def digest(self) -> str:
        return statement_digest(self.payload) if self._statement is None else self._statement.digest


def statement_types(*bodies: type) -> frozenset[str]:
    """The statement types whose bodies are of the classes ``bodies``."""
    return frozenset(kind for kind, body in BODIES.items() if body in bodies)


class Sql:
    """A cursor that speaks "?" placeholders on both SQLite and PostgreSQL."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self.cursor = getattr(cursor, "sqlite_cursor", cursor)  # eventsourcing wraps sqlite3's
        self.postgres = dialect == "postgres"

    def run(self, sql: str, params: Sequence[Any] = ()) -> Sql:
        self._execute(sql, params)
        return self

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(sql.replace("?", "%s") if self.postgres else sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(sql, params).fetchall())

    def chunks(self, sql: str, size: int, params: Sequence[Any] = ()) -> Iterator[list[Any]]:
        """The rows of ``sql``, ``size`` at a time (the cursor is busy until the last). On
        SQLite, plain tuples (from a cursor of their own, in the same transaction), which
        sqlite3 makes faster than its named rows; on PostgreSQL, dicts."""
        if self.postgres:
            cursor = self._execute(sql, params)
        else:
            cursor = self.cursor.connection.cursor()
            cursor.row_factory = None
            cursor.execute(sql, params)
        while rows := list(cursor.fetchmany(size)):
            yield rows

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        self.cursor.execute(sql.replace("?", "%s") if self.postgres else sql, params)
        return self.cursor

    @contextmanager
    def deleting_plainly(self) -> Iterator[None]:
        """SQLite: for the rest of this transaction's work, deleted rows are dropped, not
        overwritten with zeros first (``secure_delete``, on in many builds); clearing a
        projection then no longer writes each freed page once more (at the 0.001 scale,
        10 MB of WAL, 0.1 s). Projections hold nothing but what the public log says.
        The connection's setting is restored before the transaction ends. PostgreSQL
        needs nothing here."""
        if self.postgres:
            yield
            return
        previous = int(self.one("PRAGMA secure_delete")[0])
        self.run("PRAGMA secure_delete = 0")
        try:
            yield
        finally:
            self.run(f"PRAGMA secure_delete = {'FAST' if previous == 2 else previous}")  # 2 reads FAST

    def take_write_lock(self, table: str) -> None:
        """SQLite: take the database's write lock before the transaction reads.

        eventsourcing opens deferred transactions; one that reads and then writes
        cannot wait for the lock when another process committed since its read
        ("database is locked" at once, whatever the busy timeout). A write as the
        first statement waits for the lock, and the reads after it see the latest
        commit. PostgreSQL needs nothing here."""
        if not self.postgres:
            self.run(f"UPDATE {table} SET position = position WHERE 0")


class Plan(Sql):
    """The writes of projections applying a batch, worked out in a read transaction and
    made later in a write transaction (``replay``), so that the database's write lock is
    held only while they are made. Projections read with ``one``, ``all`` and ``chunks``
    (answered at once, from the read transaction) and write with ``run`` and ``many``
    (kept, in order): a read does not see the batch's own writes, so a projection that
    reads what it wrote keeps its rows in memory (``Rows``)."""

    def __init__(self, sql: Sql) -> None:
        super().__init__(sql.cursor, "postgres" if sql.postgres else "sqlite")
        self.writes: list[tuple[str, Sequence[Any], bool]] = []

    def run(self, sql: str, params: Sequence[Any] = ()) -> Plan:
        self.writes.append((sql, tuple(params), False))
        return self

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.writes.append((sql, list(rows), True))  # a copy: callers may reuse their list

    def replay(self, sql: Sql) -> None:
        """Make the kept writes through ``sql``, in the order they were asked for."""
        for statement, params, many in self.writes:
            if many:
                sql.many(statement, params)  # type: ignore[arg-type]
            else:
                sql.run(statement, params)
        self.writes.clear()


class Rows:
    """The rows of one table a batch touches, by primary key, held in memory and
    written by ``flush``: each row is read at most once per batch, and the
    batch's inserts and updates go out in one ``executemany`` each."""

    def __init__(self, sql: Sql, table: str, key: str, columns: Sequence[str]) -> None:
        self.sql, self.table, self.key, self.columns = sql, table, key, tuple(columns)
        self.rows: dict[Any, dict[str, Any] | None] = {}
        self.inserted: dict[Any, None] = {}  # keys, in insertion order
        self.updated: dict[Any, None] = {}

    def get(self, key: Any) -> dict[str, Any] | None:
        """The row as the batch has left it so far, or None."""
        if key not in self.rows:
            row = self.sql.one(f"SELECT * FROM {self.table} WHERE {self.key} = ?", (key,))
            self.rows[key] = None if row is None else dict(row)
        return self.rows[key]

    def insert(self, row: dict[str, Any]) -> None:
        """A new row (every column). A key already present fails, here or at ``flush``."""
        key = row[self.key]
        if self.rows.get(key) is not None:
            raise ValueError(f"{self.table}: a second row {key!r}")
        self.rows[key] = row
        self.inserted[key] = None

    def update(self, key: Any, **changes: Any) -> None:
        """Change columns of a row ``get`` returned."""
        row = self.rows[key]
        assert row is not None
        row.update(changes)
        if key not in self.inserted:
            self.updated[key] = None

    def flush(self) -> None:
        rows = [self.rows[k] for k in self.inserted]
        self.sql.many(
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({', '.join('?' * len(self.columns))})",
            [[row[c] for c in self.columns] for row in rows if row is not None],
        )
        others = [c for c in self.columns if c != self.key]
        rows = [self.rows[k] for k in self.updated]
        self.sql.many(
            f"UPDATE {self.table} SET {', '.join(c + ' = ?' for c in others)} WHERE {self.key} = ?",
            [[*(row[c] for c in others), row[self.key]] for row in rows if row is not None],
        )
        self.rows.clear()
        self.inserted.clear()
        self.updated.clear()


def dumps(value: Any) -> str:
    """JSON for a view column: canonical, so digests never depend on dict order.
    Values of ASCII text, safe integers, booleans and None (nearly all) skip
    canonical_bytes' checks: for them it is this same sorted-key JSON."""
    if _plain_json(value, 0):
        text = _orjson(value, _SORTED)
        if text is not None and text.isascii():  # every key and text ASCII (others kept as they are)
            return text.decode("ascii")
    return canonical_bytes(value).decode("utf-8")


def _plain_json(value: Any, depth: int) -> bool:
    """Whether ``value`` is made of text, integers within ±(2^53-1), booleans, None, and
    lists and string-keyed dicts of them, nested at most MAX_DEPTH deep. Each container's
    members are checked together (their types as a set, their integers by min and max)."""
    kind = type(value)
    if kind is dict:
        if not set(map(type, value)) <= {str}:
            return False
        members = value.values()
    elif kind is list or kind is tuple:
        members = value
    elif kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[no-any-return]
    else:
        return kind in _SCALARS
    if depth >= MAX_DEPTH:
        return False
    kinds = set(map(type, members))
    if int in kinds and not _safe_integers([member for member in members if type(member) is int]):
        return False
    if kinds <= _SCALARS:
        return True
    if not kinds <= _SCALARS | _CONTAINERS:
        return False
    return all(_plain_json(member, depth + 1) for member in members if type(member) in _CONTAINERS)


def _safe_integers(values: list[int]) -> bool:
    """Whether every one of ``values`` (at least one) is within ±(2^53-1)."""
    return min(values) >= -MAX_SAFE_INTEGER and max(values) <= MAX_SAFE_INTEGER


def loads(text: str | None) -> Any:
    """A view column's JSON (written by ``dumps``: canonical, so nothing but what orjson
    reads as json.loads does: no integer past ±(2^53-1), no lone surrogate)."""
    return None if text is None else orjson.loads(text)


class Projection:
    """A read model. Subclasses name their tables (with primary keys, used for the
    digest's order) and apply entries; they never read anything but their own
    tables and the entry."""

    name: ClassVar[str]
    # table name → (DDL column list, ORDER BY for the dump)
    tables: ClassVar[dict[str, tuple[str, str]]]
    # index name → what it indexes ("table (columns)"): for the API's queries, not for
    # applying entries (a rebuild drops them and builds them once at its end)
    indexes: ClassVar[dict[str, str]] = {}
    # Its share of a rebuild's work (building the statements it reads, applying them and
    # the digest), relative to the others: a parallel rebuild splits the projections into
    # groups of about equal weight. Set from each one rebuilt alone on the 1 % benchmark
    # ledger, less the reading of entries every process does: tenths of a CPU second.
    weight: ClassVar[int] = 1
    # The statement types of the entries it looks at (None: every entry, by ``Entry.value``
    # only). ``apply_batch`` passes over the others, whose statements it then never builds.
    reads: ClassVar[frozenset[str] | None] = None

    def create(self, sql: Sql, *, indexes: bool = True) -> None:
        """Create its tables, and its indexes unless ``indexes`` is false, where missing."""
        for table, (columns, _) in self.tables.items():
            if sql.postgres:  # byte order, as SQLite sorts: digests agree across backends
                columns = columns.replace(" TEXT", ' TEXT COLLATE "C"')
            sql.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        if indexes:
            self.create_indexes(sql)

    def create_indexes(self, sql: Sql) -> None:
        for name, on in self.indexes.items():
            sql.run(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")

    def clear(self, sql: Sql, *, drop_indexes: bool = False) -> None:
        """Delete every row; with ``drop_indexes``, first drop the indexes too (rows are
        then inserted faster, and ``create_indexes`` builds each index in one sort)."""
        if drop_indexes:
            for name in self.indexes:
                sql.run(f"DROP INDEX IF EXISTS {name}")
        for table in self.tables:
            sql.run(f"DELETE FROM {table}")

    def apply(self, sql: Sql, entry: Entry) -> None:
        raise NotImplementedError  # abstract: every projection defines it

    def apply_batch(self, sql: Sql, entries: Sequence[Entry]) -> None:
        """Apply consecutive entries, in index order, as ``apply`` one by one would.
        Projections that gain from it hold the batch's rows in memory and write them once."""
        for entry in self.read(entries):
            self.apply(sql, entry)

    def read(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        """The entries of the types it reads."""
        reads = self.reads
        return entries if reads is None else [entry for entry in entries if entry.type in reads]

    def dump(self, sql: Sql) -> Iterator[bytes]:
        """The digest's lines, tables by name, ``DUMP_ROWS`` rows at a time (memory does not
        grow with a table): each row, in primary key order, as ``canonical_bytes([table,
        row])`` and a newline."""
        for table, (_, order) in sorted(self.tables.items()):
            names = [c[0] for c in sql.run(f"SELECT * FROM {table} WHERE 1 = 0").cursor.description]
            names.sort()  # read in key order: for ASCII names, the order canonical JSON writes
            columns = ", ".join(f'"{name}"' for name in names)
            for rows in sql.chunks(f"SELECT {columns} FROM {table} ORDER BY {order}", DUMP_ROWS):
                yield _table_lines(table, names, rows)

    def digest(self, sql: Sql, size: int) -> str:
        hasher = hashlib.sha256(f"{self.name}\n{size}\n".encode())
        for lines in self.dump(sql):
            hasher.update(lines)
        return "sha256:" + hasher.hexdigest()


class RowsProjection(Projection):
    """A projection of one table written through ``Rows``: a batch's rows are read at
    most once and written together. Subclasses name ``row_table``, its ``row_key`` and
    ``columns``, and define ``_apply(rows, entry)``."""

    row_table: str
    row_key: str
    columns: tuple[str, ...]

    def apply(self, sql: Sql, entry: Entry) -> None:
        self.apply_batch(sql, [entry])

    def apply_batch(self, sql: Sql, entries: Sequence[Entry]) -> None:
        rows = Rows(sql, self.row_table, self.row_key, self.columns)
        for entry in self.read(entries):
            self._apply(rows, entry)
        rows.flush()

    def _apply(self, rows: Rows, entry: Entry) -> None:
        raise NotImplementedError  # abstract: every such projection defines it


def _table_lines(table: str, names: list[str], rows: Sequence[Any]) -> bytes:
    """``b"".join(_row_line(table, names, _plain(row), …) + b"\n" for row in rows)``, for
    rows holding the values of ``names`` (sorted) in that order. When every column holds
    only text, safe integers and NULLs, and names are ASCII, each row's line is the JSON
    orjson writes for it in key order — plain JSON is canonical for ASCII — and a
    line with other text goes through canonical_bytes; any other table goes row by row."""
    if rows and isinstance(rows[0], dict):  # PostgreSQL's rows
        rows = [list(row.values()) for row in rows]
    plain_names = table.isascii() and all(name.isascii() for name in names)
    if not (plain_names and all(map(_simple_column, zip(*rows, strict=True)))):
        return b"".join(_row_line(table, names, _plain(row), plain_names=plain_names) + b"\n" for row in rows)
    if not rows:
        return b""
    try:  # one call for all the rows, keys in order
        whole = orjson.dumps([[table, dict(zip(names, row, strict=True))] for row in rows])
    except orjson.JSONEncodeError:  # text orjson refuses (a lone surrogate): canonical_bytes decides
        return b"".join(_row_line(table, names, _plain(row), plain_names=plain_names) + b"\n" for row in rows)
    # ``whole`` is the lines joined by commas, in brackets. A line holds no array but its
    # own and no bare quote inside a string, so '],["table",' is found only between lines.
    head = orjson.dumps([table])[:-1] + b","  # '["table",' as the lines begin
    text = whole[1:-1].replace(b"]," + head, b"]\n" + head) + b"\n"
    if text.isascii():
        return text
    lines = text.split(b"\n")[:-1]  # a newline in a string is written \n
    return b"".join(
        (line if line.isascii() else _row_line(table, names, list(row), plain_names=True)) + b"\n"
        for line, row in zip(lines, rows, strict=True)
    )


def _simple_column(values: Sequence[Any]) -> bool:
    """Whether a column holds only text, integers within ±(2^53-1) and None."""
    kinds = set(map(type, values))
    if not kinds <= _SIMPLE_KINDS:
        return False
    return int not in kinds or _safe_integers([value for value in values if type(value) is int])


def _row_line(table: str, names: list[str], values: list[Any], *, plain_names: bool) -> bytes:
    """``canonical_bytes([table, row])``. With ASCII table and column names
    (``plain_names``), a row of ASCII text, safe integers and NULLs (nearly
    every row) is plain sorted-key JSON, written without canonical_bytes' walk
    over the value; any other row goes through it."""
    row = dict(zip(names, values, strict=True))
    if plain_names and _simple(values):
        text = _orjson([table, row], _SORTED)
        if text is not None:
            return text
    return canonical_bytes([table, row])


def _orjson(value: Any, option: int) -> bytes | None:
    """orjson's JSON for ``value``, or None where orjson refuses it (a lone surrogate in its
    text): canonical_bytes then decides, as it does for everything off the fast path."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        return None


def _simple(values: list[Any]) -> bool:
    """Whether every value is ASCII text, an integer within ±(2^53-1) or None."""
    for value in values:
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                return False
        elif value is not None:
            return False
    return True


def _plain(row: Any) -> list[Any]:
    values = row.values() if isinstance(row, dict) else tuple(row)
    return [bytes(v).hex() if isinstance(v, bytes | memoryview) else v for v in values]

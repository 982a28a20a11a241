"""How a ledger talks to SQLite: connections that keep their prepared statements, and
the log's upper Merkle nodes kept in memory once read.

- eventsourcing 9.5 opens its SQLite connections with ``cached_statements=True``,
  which sqlite3 takes for a cache of one statement; the ledger's connections keep
  ``STATEMENT_CACHE`` (and do not map the file).
- ``LogStore.read_proof_nodes`` keeps nodes of ``UPPER_LEVEL`` and above (perfect
  subtrees, written once) after reading them: proofs from a store that has them in
  memory equal those from a fresh store, and only lower nodes are queried again.
  ``read_nodes`` (roots that are signed, rollback checks, audits) always reads the
  database: a node changed under a running process is seen there.
- The writer, under its lock, runs every transaction on one pinned connection
  (``PinningDatastore.pinned``); other threads take theirs from the pool.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import OperationalError
from eventsourcing.sqlite import SQLiteDatastore

from ledger import merkle
from ledger.application import Ledger
from ledger.scenario import kota_metro
from ledger.storage import (
    STATEMENT_CACHE,
    UPPER_LEVEL,
    LogStore,
    PinningDatastore,
    with_statement_cache,
)


def test_a_ledgers_sqlite_connections_keep_their_statements_and_do_not_map_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[dict[str, Any]] = []
    connect = sqlite3.connect

    def recording(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(kwargs)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", recording)
    scenario = kota_metro()
    ledger = Ledger(database_url=f"sqlite:///{tmp_path / 'x.sqlite'}", origin="saksi.test/log",
                    genesis=scenario.genesis, log_key=Ed25519PrivateKey.generate())  # fmt: skip
    try:
        for item in list(scenario.schedule())[:20]:
            ledger.submit(item.envelope)
        assert opened and all(kwargs["cached_statements"] == STATEMENT_CACHE for kwargs in opened)
        with ledger.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA mmap_size")
            assert cursor.fetchone()[0] == 0  # no mapped pages counted in the process's memory
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        assert ledger.tlog.size == 20
    finally:
        ledger.close()


def stored_tree(path: Path, size: int) -> tuple[LogStore, list[bytes]]:
    """A log store holding the perfect nodes of a tree of ``size`` leaves; its roots
    at every size (``roots[k]`` is the root of the first k + 1 leaves)."""
    store = LogStore(with_statement_cache(SQLiteDatastore(str(path))), dialect="sqlite")
    store.create_tables()
    frontier = merkle.CompactRange()
    nodes, roots = [], []
    for index in range(size):
        nodes += frontier.append(merkle.leaf_hash(index.to_bytes(8, "big")))
        roots.append(frontier.root())
    with store.transaction() as cursor:
        cursor.executemany(
            f"INSERT INTO {store.t['nodes']} VALUES (?, ?, ?)", [(l, i, v) for (l, i), v in nodes]
        )
    return store, roots


def test_upper_nodes_read_once_serve_proofs_equal_to_a_fresh_stores(tmp_path: Path) -> None:
    size = 5 * 1024 + 77
    store, roots = stored_tree(tmp_path / "tree.sqlite", size)
    queried: list[list[Any]] = []
    query = store._all

    def recording(sql: str, params: Any = ()) -> Any:
        queried.append(list(params))
        return query(sql, params)

    store._all = recording  # type: ignore[method-assign]
    rng = random.Random(7)
    fresh = LogStore(store.datastore, dialect="sqlite")  # the same rows, nothing in memory
    for _ in range(60):
        index, old = rng.randrange(size), rng.randrange(1, size)
        proof = merkle.inclusion_proof(index, size, store.read_proof_nodes)
        assert proof == merkle.inclusion_proof(index, size, fresh.read_nodes)
        merkle.verify_inclusion(merkle.leaf_hash(index.to_bytes(8, "big")), index, size, proof, roots[-1])
        consistency = merkle.consistency_proof(old, size, store.read_proof_nodes)
        assert consistency == merkle.consistency_proof(old, size, fresh.read_nodes)
        merkle.verify_consistency(old, size, roots[old - 1], roots[-1], consistency)
    upper = set(store._upper)
    assert upper and all(level >= UPPER_LEVEL for level, _ in upper)
    # Read a second time, the upper nodes come from memory: only lower levels are queried.
    for index in range(0, size, 97):
        merkle.inclusion_proof(index, size, store.read_proof_nodes)
    queried.clear()
    for index in range(0, size, 97):
        merkle.inclusion_proof(index, size, store.read_proof_nodes)
    levels = [params[k] for params in queried for k in range(0, len(params), 2)]
    assert levels and max(levels) < UPPER_LEVEL
    store.datastore.close()


def test_what_is_signed_or_checked_reads_the_database_not_the_upper_nodes_in_memory(tmp_path: Path) -> None:
    """A node of UPPER_LEVEL altered under a running process: proofs it serves keep the node
    it read (the one the signed checkpoints commit to), but roots — what check_rollback
    compares with the last signed checkpoint before every signature — see the change."""
    size = 3 * 2**UPPER_LEVEL  # the root's right child is the perfect node (UPPER_LEVEL, 2)
    store, roots = stored_tree(tmp_path / "tree.sqlite", size)
    proof = merkle.inclusion_proof(5, size, store.read_proof_nodes)
    assert (UPPER_LEVEL, 2) in store._upper
    with store.transaction() as cursor:
        cursor.execute(f"UPDATE {store.t['nodes']} SET hash = ? WHERE level = ? AND idx = 2",
                       (bytes(32), UPPER_LEVEL))  # fmt: skip
    assert merkle.root_at(size, store.read_nodes) != roots[-1]  # the alteration is seen
    assert merkle.inclusion_proof(5, size, store.read_proof_nodes) == proof
    # The database going back (a restore of an older copy) empties the upper nodes in memory.
    with store.transaction() as cursor:
        cursor.execute(f"UPDATE {store.t['tracking']} SET size = ?", (size,))
    assert store.tracking()[1] == size and store._upper
    with store.transaction() as cursor:
        cursor.execute(f"UPDATE {store.t['tracking']} SET size = ?", (size // 3,))
    assert store.tracking()[1] == size // 3 and not store._upper
    store.datastore.close()


def test_a_pinned_thread_runs_every_transaction_on_one_connection_and_others_do_not(tmp_path: Path) -> None:
    datastore = PinningDatastore(str(tmp_path / "pinned.sqlite"))
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")

    def connection_of(commit: bool) -> sqlite3.Connection:
        with datastore.transaction(commit=commit) as cursor:
            return cursor.sqlite_cursor.connection

    others: list[sqlite3.Connection] = []
    with datastore.pinned():
        pinned = connection_of(False)
        assert connection_of(True) is pinned and connection_of(False) is pinned
        with datastore.pinned():  # nested: the same one, still lent afterwards
            assert connection_of(False) is pinned
        assert connection_of(False) is pinned
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        with datastore.transaction(commit=False) as cursor:  # a read sees the thread's commit
            cursor.execute("SELECT COUNT(*) FROM t")
            assert cursor.fetchone()[0] == 1
        assert not pinned.in_transaction  # reads leave no transaction open behind them
        thread = threading.Thread(target=lambda: others.append(connection_of(False)))
        thread.start()
        thread.join(10)
        assert others and others[0] is not pinned  # another thread takes its own from the pool
        with pytest.raises(OperationalError), datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT * FROM no_such_table")  # as eventsourcing's transactions raise it
        with pytest.raises(OperationalError), datastore.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO no_such_table VALUES (1)")
        assert not pinned.in_transaction
    assert connection_of(False) is not None  # unpinned: the pool's again
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT COUNT(*) FROM t")
        assert cursor.fetchone()[0] == 1
    datastore.close()


def test_a_ledger_on_sqlite_pins_its_writers_connection_while_it_submits(tmp_path: Path) -> None:
    scenario = kota_metro()
    ledger = Ledger(database_url=f"sqlite:///{tmp_path / 'x.sqlite'}", origin="saksi.test/log",
                    genesis=scenario.genesis, log_key=Ed25519PrivateKey.generate())  # fmt: skip
    try:
        datastore = ledger.recorder.datastore
        assert isinstance(datastore, PinningDatastore)
        used: set[int] = set()
        transaction = datastore.transaction

        def watching(*, commit: bool) -> Any:
            connection = getattr(datastore._pinned, "connection", None)
            used.add(id(connection))
            return transaction(commit=commit)

        datastore.transaction = watching  # type: ignore[method-assign]
        items = list(scenario.schedule())[:5]
        ledger.submit(items[0].envelope)
        writer = used - {id(None)}
        assert len(writer) == 1  # under the writer lock, one connection throughout
        used.clear()
        for item in items[1:]:
            ledger.submit(item.envelope)
        assert used - {id(None)} == writer  # and the same one for every later submit
        assert ledger.tlog.size == 5
    finally:
        ledger.close()

"""Proofs (issue item 5): inclusion and consistency proofs from trees of 1 k, 100 k
and 1 M leaves, each tree in its own SQLite file through ``LogStore``'s node table
and ``LogStore.read_proof_nodes`` (what the API's proof routes use: upper nodes
stay in memory once read).

Trees are built without signing anything: leaf ``i`` hashes the 8 bytes of ``i``,
and ``merkle.CompactRange.append`` says which perfect nodes to store. Every proof
timed is then checked (``verify_inclusion``, ``verify_consistency``) untimed.
"""

from __future__ import annotations

import random
from pathlib import Path

from eventsourcing.sqlite import SQLiteDatastore

from bench.measure import Stopwatch
from ledger import merkle
from ledger.storage import LogStore, with_statement_cache

INSERT_CHUNK = 100_000


class Tree:
    """A stored tree of ``size`` leaves and its root."""

    def __init__(self, path: Path, size: int) -> None:
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        self.size = size
        self.datastore = with_statement_cache(SQLiteDatastore(str(path)))  # as a Ledger's
        self.store = LogStore(self.datastore, dialect="sqlite")
        self.store.create_tables()
        frontier = merkle.CompactRange()
        nodes: list[tuple[int, int, bytes]] = []
        for index in range(size):
            for (level, at), value in frontier.append(merkle.leaf_hash(index.to_bytes(8, "big"))):
                nodes.append((level, at, value))
            if len(nodes) >= INSERT_CHUNK:
                self._insert(nodes)
                nodes = []
        self._insert(nodes)
        self.root = frontier.root()
        if merkle.root_at(size, self.store.read_nodes) != self.root:
            raise AssertionError("the stored tree's root differs from the compact range's")

    def _insert(self, nodes: list[tuple[int, int, bytes]]) -> None:
        with self.store.transaction() as cursor:
            cursor.executemany(f"INSERT INTO {self.store.t['nodes']} VALUES (?, ?, ?)", nodes)

    def root_at(self, size: int) -> bytes:
        return merkle.root_at(size, self.store.read_nodes)

    def close(self) -> None:
        self.datastore.close()


def time_inclusion(tree: Tree, count: int, rng: random.Random) -> float:
    """Seconds per inclusion proof (mean over ``count`` random leaves), each checked after."""
    indexes = [rng.randrange(tree.size) for _ in range(count)]
    watch = Stopwatch()
    proofs = []
    for index in indexes:
        with watch:
            proofs.append(merkle.inclusion_proof(index, tree.size, tree.store.read_proof_nodes))
    for index, proof in zip(indexes[:50], proofs, strict=False):
        leaf = merkle.leaf_hash(index.to_bytes(8, "big"))
        merkle.verify_inclusion(leaf, index, tree.size, proof, tree.root)
    return watch.seconds / count


def time_consistency(tree: Tree, count: int, rng: random.Random) -> float:
    """Seconds per consistency proof from a random older size to the whole tree, each
    of the first 50 checked after."""
    olds = [rng.randrange(1, tree.size) for _ in range(count)]
    watch = Stopwatch()
    proofs = []
    for old in olds:
        with watch:
            proofs.append(merkle.consistency_proof(old, tree.size, tree.store.read_proof_nodes))
    for old, proof in zip(olds[:50], proofs, strict=False):
        merkle.verify_consistency(old, tree.size, tree.root_at(old), tree.root, proof)
    return watch.seconds / count

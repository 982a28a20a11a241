"""The auditor's replayed registry on disk: ``SQLiteRegistry`` keeps actors, the key
and office indexes and the registry entries' digest → index map in a temporary
SQLite database, with the most recently used decoded actors in memory.

In the national scenario the number of actors grows with the log (a third of the
entries are ``actor.*``), so a registry held in memory made ``saksi verify``'s
peak memory grow with the log (issue #7 item 4). Here memory is bounded by
``cached`` decoded actors and SQLite's page cache, whatever the log's size.

It answers exactly as the in-memory registry it replaced (tests/test_audit_registry.py
keeps it as the reference) did (the same ``RegistryView``,
``put`` and orders), so ``registry.authorise``, ``registry.apply_registry`` and
``witness.check_cosignature`` give the same verdicts and messages on either.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import weakref
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ledger.registry import Actor, actor_uuid

CACHED_ACTORS = 4096
PAGE_CACHE_KIB = 4096

_SCHEMA = """
CREATE TABLE actors (id TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE keys (keyid TEXT PRIMARY KEY, actor TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE offices (role TEXT NOT NULL, jurisdiction TEXT NOT NULL, holder TEXT NOT NULL,
                      mandate TEXT NOT NULL, UNIQUE (role, jurisdiction, holder, mandate));
CREATE TABLE entries (digest TEXT PRIMARY KEY, log_index INTEGER NOT NULL) WITHOUT ROWID;
"""

_ACTOR = "SELECT state FROM actors WHERE id = ?"
_KEY_OWNER = "SELECT actor FROM keys WHERE keyid = ?"
_HOLDERS = (  # in the order first stored, as the in-memory registry listed them
    "SELECT holder, mandate FROM offices WHERE role = ? AND jurisdiction = ? ORDER BY rowid"
)
_INDEX_OF = "SELECT log_index FROM entries WHERE digest = ?"
_PUT_ACTOR = "INSERT OR REPLACE INTO actors (id, state) VALUES (?, ?)"
_PUT_KEY = "INSERT OR REPLACE INTO keys (keyid, actor) VALUES (?, ?)"
_PUT_OFFICE = (
    "INSERT OR IGNORE INTO offices (role, jurisdiction, holder, mandate) VALUES (?, ?, ?, ?)"
)
_PUT_ENTRY = "INSERT OR REPLACE INTO entries (digest, log_index) VALUES (?, ?)"

_NOT_STORED = ("_id", "_pending_events", "_created_on", "_modified_on")


def _encode(actor: Actor) -> bytes:
    """An actor's state as compact JSON (its id is the row's key)."""
    state = {k: v for k, v in vars(actor).items() if k not in _NOT_STORED}
    state["_created_on"] = actor.created_on.isoformat()
    state["_modified_on"] = actor.modified_on.isoformat()
    return orjson.dumps(state)  # what json.dumps writes, compact, UTF-8, several times faster


def _decode(actor_id: str, data: bytes) -> Actor:
    """The ``Actor`` whose state ``_encode`` wrote: the same attributes, no pending events."""
    state: dict[str, Any] = orjson.loads(data)
    state["_id"] = actor_uuid(actor_id)
    state["_created_on"] = datetime.fromisoformat(state["_created_on"])
    state["_modified_on"] = datetime.fromisoformat(state["_modified_on"])
    state["_pending_events"] = []
    actor: Actor = object.__new__(Actor)
    object.__setattr__(actor, "__dict__", state)
    return actor


def _remove(connection: sqlite3.Connection, directory: str) -> None:
    connection.close()
    shutil.rmtree(directory, ignore_errors=True)


class SQLiteRegistry:
    """A registry (``RegistryView`` plus ``put``) in a temporary SQLite database,
    with at most ``cached`` decoded actors kept in memory (least recently used out).

    ``actor`` returns the cached object while it stays cached; a caller that changes
    an actor (``registry.apply_registry``) must ``put`` it, which stores it and makes
    it the cached one. The database lives in a new temporary directory (under ``TMPDIR``:
    where /tmp is a RAM disk, point it at a disk, or the registry is in memory after all),
    removed by ``close`` (or when the registry is garbage-collected, or at exit).
    """

    def __init__(self, *, cached: int | None = None) -> None:
        """``cached`` defaults to ``CACHED_ACTORS`` (read at each call). Raises ValueError
        when it is below 1."""
        self.cached = CACHED_ACTORS if cached is None else cached
        if self.cached < 1:
            raise ValueError("cached must be at least 1")
        self.directory = Path(tempfile.mkdtemp(prefix="saksi-registry-"))
        path = self.directory / "registry.sqlite3"
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._close = weakref.finalize(self, _remove, self._db, str(self.directory))
        # A scratch database: nothing to recover after a crash, so no journal and no fsync;
        # one transaction, never committed (SQLite spills pages to the file as its cache fills).
        self._db.executescript(
            f"PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;"
            f"PRAGMA cache_size = -{PAGE_CACHE_KIB}; {_SCHEMA}"
        )
        self._db.execute("BEGIN")
        self._actors: OrderedDict[str, Actor] = OrderedDict()

    def close(self) -> None:
        """Remove the database. The registry is unusable afterwards."""
        self._actors.clear()
        self._close()

    # ------------------------------------------------------------ RegistryView

    def actor(self, actor_id: str) -> Actor | None:
        actor = self._actors.get(actor_id)
        if actor is not None:
            self._actors.move_to_end(actor_id)
            return actor
        row = self._db.execute(_ACTOR, (actor_id,)).fetchone()
        if row is None:
            return None
        actor = _decode(actor_id, row[0])
        self._remember(actor)
        return actor

    def key_owner(self, keyid: str) -> str | None:
        row = self._db.execute(_KEY_OWNER, (keyid,)).fetchone()
        return None if row is None else str(row[0])

    def office_holders(self, role: str, jurisdiction: str) -> list[tuple[str, dict[str, Any]]]:
        """Every mandate ever granted for the office, in the order first stored."""
        found = []
        for holder, mandate_id in self._db.execute(_HOLDERS, (role, jurisdiction)).fetchall():
            actor = self.actor(holder)
            assert actor is not None  # stored by put() with its offices
            found.append((holder, actor.mandates[mandate_id]))
        return found

    def put(self, actor: Actor) -> None:
        """Store ``actor``'s current state and index its keys and offices (as
        the in-memory registry did); it becomes the cached object for its id."""
        actor_id = actor.actor_id
        self._db.execute(_PUT_ACTOR, (actor_id, _encode(actor)))
        self._db.executemany(_PUT_KEY, [(keyid, actor_id) for keyid in actor.keys])
        offices = [
            (m["role"], m["jurisdiction"], actor_id, m["id"]) for m in actor.mandates.values()
        ]
        self._db.executemany(_PUT_OFFICE, offices)
        self._remember(actor)

    # ------------------------------------------------------------ registry entries

    def record_index(self, digest: str, index: int) -> None:
        """Remember that the registry statement with ``digest`` is log entry ``index``."""
        self._db.execute(_PUT_ENTRY, (digest, index))

    def index_of(self, digest: str) -> int | None:
        """The log index recorded for ``digest``; None when there is none."""
        row = self._db.execute(_INDEX_OF, (digest,)).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------ the decoded actors

    def cached_actors(self) -> int:
        """How many decoded actors are held in memory now (never more than ``cached``)."""
        return len(self._actors)

    def _remember(self, actor: Actor) -> None:
        self._actors[actor.actor_id] = actor
        self._actors.move_to_end(actor.actor_id)
        if len(self._actors) > self.cached:
            self._actors.popitem(last=False)

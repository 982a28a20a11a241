"""The actor registry, as it stands now and as it stood at any log index, and the
integrity trail: for any subject, its entries with index, leaf hash, statement
digest, signer and key id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.envelope import decode_b64, key_id
from ledger.statements import (
    ActorKeyAdded,
    ActorKeyRevoked,
    ActorMandateGranted,
    ActorMandateRevoked,
    ActorRegistered,
)
from projections.base import Entry, Projection, Sql, statement_types


class ActorsProjection(Projection):
    name = "actors"
    weight = 8
    reads = statement_types(ActorRegistered, ActorKeyAdded, ActorKeyRevoked, ActorMandateGranted, ActorMandateRevoked)
    tables = {
        "v_actors": (
            "id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, "
            "registered_index BIGINT NOT NULL, registered_by TEXT NOT NULL",
            "id",
        ),
        "v_actor_keys": (
            "actor TEXT NOT NULL, keyid TEXT NOT NULL, key TEXT NOT NULL, added_index BIGINT NOT NULL, "
            "revoked_index BIGINT, PRIMARY KEY (actor, keyid)",
            "actor, keyid",
        ),
        "v_actor_mandates": (
            "actor TEXT NOT NULL, mandate_id TEXT NOT NULL, role TEXT NOT NULL, "
            "jurisdiction TEXT NOT NULL, valid_from TEXT NOT NULL, valid_until TEXT, "
            "granted_index BIGINT NOT NULL, revoked_index BIGINT, PRIMARY KEY (actor, mandate_id)",
            "actor, mandate_id",
        ),
    }
    indexes = {"v_actor_mandates_j": "v_actor_mandates (role, jurisdiction)"}

    def apply(self, sql: Sql, entry: Entry) -> None:
        self.apply_batch(sql, [entry])

    def apply_batch(self, sql: Sql, entries: Sequence[Entry]) -> None:
        """New actors, keys and mandates are inserted together (in log order), before
        any revocation that follows them and at the end of the batch."""
        inserts: dict[str, list[tuple[Any, ...]]] = {"v_actors": [], "v_actor_keys": [], "v_actor_mandates": []}
        for entry in self.read(entries):
            statement, body = entry.statement, entry.statement.body
            actor, index = statement.subject, entry.index
            if isinstance(body, ActorRegistered):
                inserts["v_actors"].append((actor, body.name, body.kind, index, statement.actor))
                for key in body.keys:
                    inserts["v_actor_keys"].append(self._key(actor, key, index))
                for mandate in body.mandates:
                    inserts["v_actor_mandates"].append(self._mandate(actor, mandate, index))
            elif isinstance(body, ActorKeyAdded):
                inserts["v_actor_keys"].append(self._key(actor, body.key, index))
            elif isinstance(body, ActorMandateGranted):
                inserts["v_actor_mandates"].append(self._mandate(actor, body.mandate, index))
            elif isinstance(body, ActorKeyRevoked):
                self._insert(sql, inserts)
                sql.run("UPDATE v_actor_keys SET revoked_index = ? WHERE actor = ? AND keyid = ?",
                        (index, actor, body.keyid))  # fmt: skip
            elif isinstance(body, ActorMandateRevoked):
                self._insert(sql, inserts)
                sql.run("UPDATE v_actor_mandates SET revoked_index = ? WHERE actor = ? AND mandate_id = ?",
                        (index, actor, body.mandate_id))  # fmt: skip
        self._insert(sql, inserts)

    @staticmethod
    def _insert(sql: Sql, inserts: dict[str, list[tuple[Any, ...]]]) -> None:
        for table, rows in inserts.items():
            if rows:
                sql.many(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
                rows.clear()

    @staticmethod
    def _key(actor: str, key: str, index: int) -> tuple[Any, ...]:
        return (actor, key_id(decode_b64(key)), key, index, None)

    @staticmethod
    def _mandate(actor: str, mandate: Any, index: int) -> tuple[Any, ...]:
        return (actor, mandate.id, mandate.role, mandate.jurisdiction, mandate.valid_from, mandate.valid_until,
                index, None)  # fmt: skip


def actor(sql: Sql, actor_id: str, *, at_index: int | None = None) -> dict[str, Any] | None:
    """The actor as it stood after entry ``at_index`` (now when None): keys and
    mandates in the registry then, each with when it was added and revoked."""
    row = sql.one("SELECT * FROM v_actors WHERE id = ?", (actor_id,))
    if row is None or (at_index is not None and row["registered_index"] > at_index):
        return None
    limit = at_index if at_index is not None else 2**62

    def state(added: int, revoked: int | None) -> str:
        return "revoked" if revoked is not None and revoked <= limit else "in_force"

    keys = [
        {"keyid": k["keyid"], "key": k["key"], "added_index": k["added_index"],
         "revoked_index": k["revoked_index"] if state(0, k["revoked_index"]) == "revoked" else None,
         "state": state(k["added_index"], k["revoked_index"])}
        for k in sql.all("SELECT * FROM v_actor_keys WHERE actor = ? AND added_index <= ? ORDER BY added_index, keyid",
                         (actor_id, limit))
    ]  # fmt: skip
    mandates = [
        {"id": m["mandate_id"], "role": m["role"], "jurisdiction": m["jurisdiction"],
         "valid_from": m["valid_from"], "valid_until": m["valid_until"], "granted_index": m["granted_index"],
         "revoked_index": m["revoked_index"] if state(0, m["revoked_index"]) == "revoked" else None,
         "state": state(m["granted_index"], m["revoked_index"])}
        for m in sql.all("SELECT * FROM v_actor_mandates WHERE actor = ? AND granted_index <= ? "
                         "ORDER BY granted_index, mandate_id", (actor_id, limit))
    ]  # fmt: skip
    return {"id": actor_id, "name": row["name"], "kind": row["kind"], "registered_index": row["registered_index"],
            "registered_by": row["registered_by"], "as_of_index": at_index, "keys": keys, "mandates": mandates}  # fmt: skip


def actors(sql: Sql, *, role: str | None = None, jurisdiction: str | None = None, name: str | None = None,
           after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    where, params = ["1 = 1"], []
    if role or jurisdiction:
        clauses, extra = [], []
        if role:
            clauses.append("m.role = ?")
            extra.append(role)
        if jurisdiction:
            clauses.append("(m.jurisdiction = ? OR m.jurisdiction LIKE ?)")
            extra += [jurisdiction, jurisdiction + ".%"]
        where.append(f"id IN (SELECT actor FROM v_actor_mandates m WHERE {' AND '.join(clauses)})")
        params += extra
    if name:
        where.append("LOWER(name) LIKE ?")
        params.append(f"%{name.lower()}%")
    if after:
        where.append("id > ?")
        params.append(after)
    rows = sql.all(f"SELECT * FROM v_actors WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
    return [dict(r) for r in rows]


class TrailProjection(Projection):
    name = "trail"
    weight = 8
    tables = {
        "v_trail": (
            "subject TEXT NOT NULL, idx BIGINT NOT NULL, type TEXT NOT NULL, actor TEXT NOT NULL, "
            "keyid TEXT NOT NULL, statement_digest TEXT NOT NULL, leaf_hash TEXT NOT NULL, "
            "region TEXT, issued_at TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (subject, idx)",
            "subject, idx",
        ),
    }
    indexes = {"v_trail_digest": "v_trail (statement_digest)"}

    def apply(self, sql: Sql, entry: Entry) -> None:
        self.apply_batch(sql, [entry])

    def apply_batch(self, sql: Sql, entries: Sequence[Entry]) -> None:
        rows = []
        for e in entries:  # every entry's fields as signed (Entry.value): its statement is not built
            value = e.value
            rows.append((value["subject"], e.index, value["type"], value["actor"], e.keyid, e.digest,
                         e.leaf_hash.hex(), value["body"].get("region"), value["issued_at"], e.recorded_at))
        sql.many("INSERT INTO v_trail VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)  # fmt: skip


def trail(sql: Sql, subject: str, *, after: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    rows = sql.all(
        "SELECT * FROM v_trail WHERE subject = ? AND idx > ? ORDER BY idx LIMIT ?",
        (subject, -1 if after is None else after, limit),
    )
    return [{**dict(r), "index": r["idx"]} for r in rows]


def index_of_digest(sql: Sql, digest: str) -> int | None:
    row = sql.one("SELECT idx FROM v_trail WHERE statement_digest = ?", (digest,))
    return None if row is None else row["idx"]

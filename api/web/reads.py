"""The dashboard's own reads over the projection tables (``projections/*.py`` own
them; nothing here writes). Each function takes the projector's ``Sql`` first, as
the projections' query functions do, and runs through ``runtime.read``.

Lookups by id or code use the tables' primary keys as prefix ranges
(``code >= q AND code < q + '~'``; ids and codes hold only characters below
``~``), so they stay fast on a national ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger import regions
from projections.base import Sql
from projections.custody import consignment

_AFTER_ALL = "~"  # sorts after every character allowed in ids, subjects and codes
PARTY_ROLES = ("party", "candidate_pair")


def _prefix(text: str) -> tuple[str, str]:
    return text, text + _AFTER_ALL


def counts(sql: Sql) -> dict[str, int]:
    """How many consignments, commitments, pledges and actors the read models hold."""
    tables = {"consignments": "v_consignments", "commitments": "v_commitments",
              "pledges": "v_pledges", "actors": "v_actors"}  # fmt: skip
    return {name: sql.one(f"SELECT COUNT(*) AS n FROM {table}")["n"] for name, table in tables.items()}


def activity(sql: Sql) -> list[tuple[str, int]]:
    """Statements recorded per UTC day, ``[(YYYY-MM-DD, count)]`` ascending."""
    rows = sql.all("SELECT SUBSTR(recorded_at, 1, 10) AS day, COUNT(*) AS n FROM v_trail GROUP BY day ORDER BY day")
    return [(r["day"], r["n"]) for r in rows]


def actor_names(sql: Sql, ids: Iterable[str]) -> dict[str, str]:
    """Registered names of the given actor ids (ids not registered are left out)."""
    wanted = sorted(set(ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = sql.all(f"SELECT id, name FROM v_actors WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        found.update({r["id"]: r["name"] for r in rows})
    return found


def continuations(sql: Sql, consignment_id: str) -> list[dict[str, Any]]:
    """The consignments whose parent is ``consignment_id`` (the next hops), by id."""
    rows = sql.all("SELECT id FROM v_consignments WHERE parent = ? ORDER BY id", (consignment_id,))
    return [c for r in rows if (c := consignment(sql, r["id"])) is not None]


def ancestry(sql: Sql, consignment_id: str, *, limit: int = 8) -> list[dict[str, Any]]:
    """The chain of parent consignments above ``consignment_id``, nearest last."""
    chain: list[dict[str, Any]] = []
    found = consignment(sql, consignment_id)
    while found and found["parent"] and len(chain) < limit:
        found = consignment(sql, found["parent"])
        if found:
            chain.insert(0, found)
    return chain


def officers(sql: Sql, region: str) -> list[dict[str, Any]]:
    """Actors holding a mandate exactly for ``region`` (a TPS's KPPS, PTPS, witnesses)."""
    rows = sql.all(
        "SELECT m.actor, m.role, m.revoked_index, a.name FROM v_actor_mandates m "
        "JOIN v_actors a ON a.id = m.actor WHERE m.jurisdiction = ? ORDER BY m.role, m.actor",
        (region,),
    )
    return [dict(r) for r in rows]


def tps_row(sql: Sql, tps: str) -> dict[str, Any] | None:
    """The readiness row of one TPS, or None when the ledger knows no such TPS."""
    row = sql.one("SELECT * FROM v_tps WHERE tps = ?", (tps,))
    return None if row is None else dict(row)


def has_tps(sql: Sql, region: str) -> bool:
    """True when the ledger knows at least one TPS in ``region`` (or is it)."""
    if region == regions.COUNTRY:
        return sql.one("SELECT tps FROM v_tps LIMIT 1") is not None
    low, high = _prefix(region)
    return sql.one("SELECT tps FROM v_tps WHERE tps >= ? AND tps < ? LIMIT 1", (low, high)) is not None


def find_consignments(sql: Sql, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Consignments whose id starts with ``text``, by id."""
    rows = sql.all("SELECT id, sender, receiver, direction, region, status FROM v_consignments "
                   "WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", (*_prefix(text), limit))  # fmt: skip
    return [dict(r) for r in rows]


def find_tps(sql: Sql, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """TPS whose code starts with ``text``, by code."""
    rows = sql.all("SELECT tps, status, discrepancy FROM v_tps WHERE tps >= ? AND tps < ? ORDER BY tps LIMIT ?",
                   (*_prefix(text), limit))  # fmt: skip
    return [dict(r) for r in rows]


def find_actors(sql: Sql, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Actors whose id starts with ``text`` or whose name contains it (any case)."""
    rows = sql.all(
        "SELECT id, name, kind FROM v_actors WHERE (id >= ? AND id < ?) OR LOWER(name) LIKE ? ORDER BY id LIMIT ?",
        (*_prefix(text.lower()), f"%{text.lower()}%", limit),
    )
    return [dict(r) for r in rows]


def actor_consignments(sql: Sql, actor_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Consignments ``actor_id`` sent or received, by id."""
    rows = sql.all("SELECT id, sender, receiver, direction, region, status FROM v_consignments "
                   "WHERE sender = ? OR receiver = ? ORDER BY id LIMIT ?", (actor_id, actor_id, limit))  # fmt: skip
    return [dict(r) for r in rows]


def parties(sql: Sql) -> list[dict[str, Any]]:
    """Parties and candidate pairs (for the commitments register's filter), by name."""
    rows = sql.all(
        "SELECT DISTINCT a.id, a.name FROM v_actors a JOIN v_actor_mandates m ON m.actor = a.id "
        f"WHERE m.role IN ({','.join('?' * len(PARTY_ROLES))}) ORDER BY a.name, a.id",
        PARTY_ROLES,
    )
    return [dict(r) for r in rows]


def distinct(sql: Sql, table: str, column: str) -> list[str]:
    """The distinct values of a register column (``kind``, ``institution``, ``region``)."""
    allowed = {("v_commitments", "kind"), ("v_commitments", "region"), ("v_pledges", "institution"),
               ("v_pledges", "region")}  # fmt: skip
    if (table, column) not in allowed:
        raise ValueError(f"not a register column: {table}.{column}")
    return [r["v"] for r in sql.all(f"SELECT DISTINCT {column} AS v FROM {table} ORDER BY v")]

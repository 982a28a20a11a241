"""Chain of custody (per consignment, per TPS) and readiness (per region prefix).

``custody``: one row per consignment — sender, receiver, direction, items
dispatched against items received, seals, due by, on time or late, witnesses,
discrepancies, and the signer, key, index and times of every hop.

``readiness``: one row per TPS (known from its KPPS's mandate or from a hop to
it) — whether its outbound logistics arrived complete, by the deadline or late,
what is missing, what is in discrepancy. On time means the receiver's signed
``issued_at`` is at or before ``due_by``; the ledger's ``recorded_at`` is kept
beside it, and the gap is shown, so offline signing stays visible to auditors.
"""

from __future__ import annotations

from typing import Any

from ledger import regions
from ledger.statements import (
    ActorMandateGranted,
    ActorRegistered,
    LogisticsDiscrepancyReported,
    LogisticsDispatched,
    LogisticsReceived,
    LogisticsWitnessed,
    parse_time,
)
from projections.base import Entry, Rows, RowsProjection, Sql, dumps, loads, statement_types


def _hop(entry: Entry) -> dict[str, Any]:
    """Who signed a hop, with which key, when (claimed and recorded), where in the log."""
    return {
        "index": entry.index, "actor": entry.statement.actor, "keyid": entry.keyid,
        "digest": entry.statement.digest, "issued_at": entry.statement.issued_at,
        "recorded_at": entry.recorded_at, "leaf_hash": entry.leaf_hash.hex(),
    }  # fmt: skip


def _missing(dispatched: dict[str, int], received: dict[str, int] | None) -> dict[str, int]:
    received = received or {}
    return {k: v - received.get(k, 0) for k, v in sorted(dispatched.items()) if received.get(k, 0) < v}


class CustodyProjection(RowsProjection):
    name = "custody"
    weight = 16
    reads = statement_types(LogisticsDispatched, LogisticsReceived, LogisticsWitnessed, LogisticsDiscrepancyReported)
    tables = {
        "v_consignments": (
            "id TEXT PRIMARY KEY, sender TEXT NOT NULL, receiver TEXT NOT NULL, "
            "direction TEXT NOT NULL, region TEXT NOT NULL, parent TEXT, status TEXT NOT NULL, "
            "items TEXT NOT NULL, received_items TEXT, seals TEXT NOT NULL, seals_intact BIGINT, "
            "condition TEXT, due_by TEXT, on_time BIGINT, dispatch TEXT NOT NULL, receipt TEXT, "
            "witnesses TEXT NOT NULL, discrepancies TEXT NOT NULL",
            "id",
        ),
    }
    indexes = {"v_consignments_region": "v_consignments (region)", "v_consignments_parent": "v_consignments (parent)"}

    row_table, row_key = "v_consignments", "id"
    columns = ("id", "sender", "receiver", "direction", "region", "parent", "status", "items",
               "received_items", "seals", "seals_intact", "condition", "due_by", "on_time", "dispatch",
               "receipt", "witnesses", "discrepancies")  # fmt: skip

    def _apply(self, rows: Rows, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, LogisticsDispatched):
            rows.insert({
                "id": statement.subject, "sender": statement.actor, "receiver": body.receiver,
                "direction": body.direction, "region": body.region, "parent": body.parent,
                "status": "dispatched", "items": dumps(body.items), "received_items": None,
                "seals": dumps(body.seals), "seals_intact": None, "condition": None, "due_by": body.due_by,
                "on_time": None, "dispatch": dumps(_hop(entry)), "receipt": None, "witnesses": "[]",
                "discrepancies": "[]",
            })  # fmt: skip
            return
        if not isinstance(body, LogisticsReceived | LogisticsWitnessed | LogisticsDiscrepancyReported):
            return
        row = rows.get(statement.subject)
        if row is None:
            return
        if isinstance(body, LogisticsReceived):
            items = loads(row["items"])
            complete = body.items == items and body.seals_intact and body.condition == "good"
            on_time = None if row["due_by"] is None else int(
                parse_time(statement.issued_at) <= parse_time(row["due_by"])
            )  # fmt: skip
            rows.update(
                statement.subject, status="received" if complete else "received_with_discrepancy",
                received_items=dumps(body.items), seals_intact=int(body.seals_intact),
                condition=body.condition, on_time=on_time, receipt=dumps(_hop(entry)),
            )  # fmt: skip
        elif isinstance(body, LogisticsWitnessed):
            witnesses = loads(row["witnesses"]) + [{**_hop(entry), "ref": statement.refs[0]}]
            rows.update(statement.subject, witnesses=dumps(witnesses))
        else:
            reports = loads(row["discrepancies"]) + [
                {**_hop(entry), "kinds": body.kinds, "items": body.items, "facts": body.facts,
                 "ref": statement.refs[0]}
            ]  # fmt: skip
            rows.update(statement.subject, discrepancies=dumps(reports))


class ReadinessProjection(RowsProjection):
    name = "readiness"
    weight = 6
    reads = statement_types(ActorRegistered, ActorMandateGranted, LogisticsDispatched, LogisticsReceived,
                            LogisticsDiscrepancyReported)  # fmt: skip
    tables = {
        "v_tps": (
            "tps TEXT PRIMARY KEY, consignment TEXT, status TEXT NOT NULL, due_by TEXT, "
            "received_issued_at TEXT, received_recorded_at TEXT, on_time BIGINT, "
            "missing TEXT NOT NULL, discrepancy BIGINT NOT NULL",
            "tps",
        ),
    }

    row_table, row_key = "v_tps", "tps"
    columns = ("tps", "consignment", "status", "due_by", "received_issued_at", "received_recorded_at",
               "on_time", "missing", "discrepancy")  # fmt: skip

    def _apply(self, rows: Rows, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, ActorRegistered | ActorMandateGranted):
            mandates = body.mandates if isinstance(body, ActorRegistered) else [body.mandate]
            for mandate in mandates:
                if mandate.role == "kpps":
                    self._ensure(rows, mandate.jurisdiction)
            return
        region = statement.region
        if region is None or regions.level(region) != 5:
            return
        if isinstance(body, LogisticsDispatched):
            if body.direction != "outbound":
                return
            if self._ensure(rows, region)["consignment"] is None:
                rows.update(region, consignment=statement.subject, status="dispatched", due_by=body.due_by,
                            missing=dumps(body.items))  # fmt: skip
            return
        if not isinstance(body, LogisticsReceived | LogisticsDiscrepancyReported):
            return
        row = rows.get(region)
        if row is None or row["consignment"] != statement.subject:
            return  # a return hop, or a hop this TPS's outbound consignment is not
        if isinstance(body, LogisticsReceived):
            dispatched = loads(row["missing"])
            missing = _missing(dispatched, body.items)
            complete = not missing and body.items == dispatched and body.seals_intact and body.condition == "good"
            on_time = None if row["due_by"] is None else int(
                parse_time(statement.issued_at) <= parse_time(row["due_by"])
            )  # fmt: skip
            rows.update(
                region, status="received" if complete else "received_with_discrepancy",
                received_issued_at=statement.issued_at, received_recorded_at=entry.recorded_at,
                on_time=on_time, missing=dumps(missing), discrepancy=max(row["discrepancy"], int(not complete)),
            )  # fmt: skip
        else:
            rows.update(region, discrepancy=1)

    def _ensure(self, rows: Rows, tps: str) -> dict[str, Any]:
        row = rows.get(tps)
        if row is None:
            row = {"tps": tps, "consignment": None, "status": "missing", "due_by": None, "received_issued_at": None,
                   "received_recorded_at": None, "on_time": None, "missing": "{}", "discrepancy": 0}  # fmt: skip
            rows.insert(row)
        return row


# ---------------------------------------------------------------- queries


def _consignment(row: Any) -> dict[str, Any]:
    found = dict(row)
    for key in ("items", "received_items", "seals", "dispatch", "receipt", "witnesses", "discrepancies"):
        found[key] = loads(found[key])
    for key in ("seals_intact", "on_time"):
        found[key] = None if found[key] is None else bool(found[key])
    found["missing"] = _missing(found["items"], found["received_items"]) if found["receipt"] else found["items"]
    return found


def consignment(sql: Sql, consignment_id: str) -> dict[str, Any] | None:
    row = sql.one("SELECT * FROM v_consignments WHERE id = ?", (consignment_id,))
    return None if row is None else _consignment(row)


def consignments(sql: Sql, *, region: str | None = None, status: str | None = None,
                 after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    """Consignments ordered by id, filtered by region prefix and status, after a cursor."""
    where, params = ["1 = 1"], []
    if region and region != regions.COUNTRY:
        where.append("(region = ? OR region LIKE ?)")
        params += [region, region + ".%"]
    if status:
        where.append("status = ?")
        params.append(status)
    if after:
        where.append("id > ?")
        params.append(after)
    rows = sql.all(f"SELECT * FROM v_consignments WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
    return [_consignment(r) for r in rows]


def tps_custody(sql: Sql, tps: str) -> dict[str, Any]:
    """Every hop that carried this TPS's logistics, out and back, as the tree of
    parent consignments (roots first; each node lists its children)."""
    village = regions.parent(tps)
    kecamatan = regions.parent(village)
    rows = sql.all(
        "SELECT * FROM v_consignments WHERE region IN (?, ?, ?) ORDER BY id", (tps, village, kecamatan)
    )
    # Every hop to or from the TPS, its village or its kecamatan carried its logistics.
    relevant = {r["id"]: {**_consignment(r), "children": []} for r in rows}
    roots = []
    for node in sorted(relevant.values(), key=lambda n: (n["dispatch"]["index"])):
        parent = node["parent"]
        if parent in relevant:
            relevant[parent]["children"].append(node)
        else:
            roots.append(node)
    return {"tps": tps, "name": regions.name(tps), "hops": roots}


def readiness(sql: Sql, region: str, *, detail_limit: int = 200) -> dict[str, Any]:
    """Readiness of every TPS under ``region`` (a prefix at any level, or ID)."""
    where, params = ("1 = 1", []) if region == regions.COUNTRY else ("tps LIKE ?", [region + ".%"])
    if regions.level(region) == 5:
        where, params = "tps = ?", [region]
    rows = sql.all(f"SELECT * FROM v_tps WHERE {where} ORDER BY tps", params)
    missing_items: dict[str, int] = {}
    summary = {"tps": 0, "holding_all": 0, "by_deadline": 0, "late": 0, "not_received": 0,
               "not_dispatched": 0, "in_discrepancy": 0}  # fmt: skip
    problems = []
    for row in rows:
        summary["tps"] += 1
        received = row["status"] in ("received", "received_with_discrepancy")
        summary["holding_all"] += row["status"] == "received"
        summary["by_deadline"] += row["status"] == "received" and row["on_time"] != 0
        summary["late"] += received and row["on_time"] == 0
        summary["not_received"] += row["status"] == "dispatched"
        summary["not_dispatched"] += row["status"] == "missing"
        summary["in_discrepancy"] += bool(row["discrepancy"])
        missing = loads(row["missing"]) if row["status"] != "received" else {}
        for kind, count in missing.items():
            missing_items[kind] = missing_items.get(kind, 0) + count
        if row["status"] != "received" or row["discrepancy"] or row["on_time"] == 0:
            problems.append({"tps": row["tps"], "status": row["status"], "consignment": row["consignment"],
                             "on_time": None if row["on_time"] is None else bool(row["on_time"]),
                             "discrepancy": bool(row["discrepancy"]), "missing": missing,
                             "received_issued_at": row["received_issued_at"],
                             "received_recorded_at": row["received_recorded_at"]})  # fmt: skip
    return {"region": region, "name": regions.name(region), **summary,
            "missing_items": dict(sorted(missing_items.items())), "problems": problems[:detail_limit]}  # fmt: skip


def children_readiness(sql: Sql, region: str) -> list[dict[str, Any]]:
    """Readiness of each region one level below ``region`` that has TPS (for drill-down)."""
    level = regions.level(region)
    if level >= 4:
        return [readiness(sql, r["tps"]) for r in sql.all(
            "SELECT tps FROM v_tps WHERE tps LIKE ? ORDER BY tps", (region + ".%",))]  # fmt: skip
    width = {0: 2, 1: 5, 2: 8, 3: 13}[level]
    codes = sorted({r["tps"][:width] for r in sql.all(
        "SELECT tps FROM v_tps" + ("" if level == 0 else " WHERE tps LIKE ?"),
        () if level == 0 else (region + ".%",))})  # fmt: skip
    return [readiness(sql, code) for code in codes]

"""The commitments register and the neutrality register, with endorsements,
breach and violation reports, and rulings beside what they concern."""

from __future__ import annotations

from typing import Any

from ledger import regions
from ledger.statements import (
    CommitmentBreachReported,
    CommitmentDeclared,
    CommitmentEndorsed,
    PledgeMade,
    PledgeViolationReported,
    PledgeViolationRuled,
)
from projections.base import Entry, Projection, Sql, dumps, loads
from projections.custody import _hop


class CommitmentsProjection(Projection):
    name = "commitments"
    tables = {
        "v_commitments": (
            "id TEXT PRIMARY KEY, declarer TEXT NOT NULL, region TEXT NOT NULL, race TEXT, "
            "kind TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, document_sha256 TEXT NOT NULL, "
            "declaration TEXT NOT NULL, endorsements TEXT NOT NULL, breach_reports TEXT NOT NULL",
            "id",
        ),
    }

    def apply(self, sql: Sql, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, CommitmentDeclared):
            sql.run(
                "INSERT INTO v_commitments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]')",
                (statement.subject, statement.actor, body.region, body.race, body.kind, body.title,
                 body.text, body.document_sha256, dumps(_hop(entry))),
            )  # fmt: skip
        elif isinstance(body, CommitmentEndorsed | CommitmentBreachReported):
            column = "endorsements" if isinstance(body, CommitmentEndorsed) else "breach_reports"
            row = sql.one(f"SELECT {column} FROM v_commitments WHERE id = ?", (statement.subject,))
            if row is not None:
                added = loads(row[column]) + [{**_hop(entry), **body.model_dump(exclude_none=True)}]
                sql.run(f"UPDATE v_commitments SET {column} = ? WHERE id = ?", (dumps(added), statement.subject))


class PledgesProjection(Projection):
    name = "pledges"
    tables = {
        "v_pledges": (
            "id TEXT PRIMARY KEY, pledger TEXT NOT NULL, institution TEXT NOT NULL, "
            "region TEXT NOT NULL, undertakings TEXT NOT NULL, text TEXT NOT NULL, "
            "valid_until TEXT NOT NULL, pledge TEXT NOT NULL, reports TEXT NOT NULL",
            "id",
        ),
    }

    def apply(self, sql: Sql, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, PledgeMade):
            sql.run(
                "INSERT INTO v_pledges VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]')",
                (statement.subject, statement.actor, body.institution, body.region,
                 dumps(body.undertakings), body.text, body.valid_until, dumps(_hop(entry))),
            )  # fmt: skip
            return
        if not isinstance(body, PledgeViolationReported | PledgeViolationRuled):
            return
        row = sql.one("SELECT reports FROM v_pledges WHERE id = ?", (statement.subject,))
        if row is None:
            return
        reports = loads(row["reports"])
        if isinstance(body, PledgeViolationReported):
            reports.append({**_hop(entry), **body.model_dump(exclude_none=True), "ruling": None})
        else:
            for report in reports:
                if report["digest"] == statement.refs[0]:
                    report["ruling"] = {**_hop(entry), **body.model_dump(exclude_none=True)}
        sql.run("UPDATE v_pledges SET reports = ? WHERE id = ?", (dumps(reports), statement.subject))


def _decode(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    found = dict(row)
    for column in columns:
        found[column] = loads(found[column])
    return found


def _filters(region: str | None, extra: dict[str, str | None], after: str | None) -> tuple[str, list[Any]]:
    where, params = ["1 = 1"], []
    if region and region != regions.COUNTRY:
        # A commitment made for a wider region (ID, a province) covers this one too.
        where.append("(region = ? OR region LIKE ? OR region IN (" + ",".join("?" * len(_ancestors(region))) + "))")
        params += [region, region + ".%", *_ancestors(region)]
    for column, value in extra.items():
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if after:
        where.append("id > ?")
        params.append(after)
    return " AND ".join(where), params


def _ancestors(region: str) -> list[str]:
    found = []
    while region != regions.COUNTRY:
        region = regions.parent(region)
        found.append(region)
    return found


def commitments(sql: Sql, *, region: str | None = None, declarer: str | None = None,
                kind: str | None = None, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    where, params = _filters(region, {"declarer": declarer, "kind": kind}, after)
    rows = sql.all(f"SELECT * FROM v_commitments WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
    return [_decode(r, ("declaration", "endorsements", "breach_reports")) for r in rows]


def pledges(sql: Sql, *, region: str | None = None, institution: str | None = None,
            pledger: str | None = None, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    where, params = _filters(region, {"institution": institution, "pledger": pledger}, after)
    rows = sql.all(f"SELECT * FROM v_pledges WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
    return [_decode(r, ("undertakings", "pledge", "reports")) for r in rows]

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
from projections.base import Entry, Rows, RowsProjection, Sql, dumps, loads, statement_types
from projections.custody import _hop


class CommitmentsProjection(RowsProjection):
    name = "commitments"
    reads = statement_types(CommitmentDeclared, CommitmentEndorsed, CommitmentBreachReported)
    tables = {
        "v_commitments": (
            "id TEXT PRIMARY KEY, declarer TEXT NOT NULL, region TEXT NOT NULL, race TEXT, "
            "kind TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, document_sha256 TEXT NOT NULL, "
            "declaration TEXT NOT NULL, endorsements TEXT NOT NULL, breach_reports TEXT NOT NULL",
            "id",
        ),
    }

    row_table, row_key = "v_commitments", "id"
    columns = ("id", "declarer", "region", "race", "kind", "title", "text", "document_sha256", "declaration",
               "endorsements", "breach_reports")  # fmt: skip

    def _apply(self, rows: Rows, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, CommitmentDeclared):
            rows.insert({
                "id": statement.subject, "declarer": statement.actor, "region": body.region, "race": body.race,
                "kind": body.kind, "title": body.title, "text": body.text, "document_sha256": body.document_sha256,
                "declaration": dumps(_hop(entry)), "endorsements": "[]", "breach_reports": "[]",
            })  # fmt: skip
        elif isinstance(body, CommitmentEndorsed | CommitmentBreachReported):
            column = "endorsements" if isinstance(body, CommitmentEndorsed) else "breach_reports"
            row = rows.get(statement.subject)
            if row is not None:
                added = loads(row[column]) + [{**_hop(entry), **body.model_dump(exclude_none=True)}]
                rows.update(statement.subject, **{column: dumps(added)})


class PledgesProjection(RowsProjection):
    name = "pledges"
    reads = statement_types(PledgeMade, PledgeViolationReported, PledgeViolationRuled)
    tables = {
        "v_pledges": (
            "id TEXT PRIMARY KEY, pledger TEXT NOT NULL, institution TEXT NOT NULL, "
            "region TEXT NOT NULL, undertakings TEXT NOT NULL, text TEXT NOT NULL, "
            "valid_until TEXT NOT NULL, pledge TEXT NOT NULL, reports TEXT NOT NULL",
            "id",
        ),
    }

    row_table, row_key = "v_pledges", "id"
    columns = ("id", "pledger", "institution", "region", "undertakings", "text", "valid_until", "pledge", "reports")

    def _apply(self, rows: Rows, entry: Entry) -> None:
        statement, body = entry.statement, entry.statement.body
        if isinstance(body, PledgeMade):
            rows.insert({
                "id": statement.subject, "pledger": statement.actor, "institution": body.institution,
                "region": body.region, "undertakings": dumps(body.undertakings), "text": body.text,
                "valid_until": body.valid_until, "pledge": dumps(_hop(entry)), "reports": "[]",
            })  # fmt: skip
            return
        if not isinstance(body, PledgeViolationReported | PledgeViolationRuled):
            return
        row = rows.get(statement.subject)
        if row is None:
            return
        reports = loads(row["reports"])
        if isinstance(body, PledgeViolationReported):
            reports.append({**_hop(entry), **body.model_dump(exclude_none=True), "ruling": None})
        else:
            for report in reports:
                if report["digest"] == statement.refs[0]:
                    report["ruling"] = {**_hop(entry), **body.model_dump(exclude_none=True)}
        rows.update(statement.subject, reports=dumps(reports))


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

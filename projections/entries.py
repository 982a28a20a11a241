"""The log's entries as projections see them, read a batch at a time.

The log integrates the application's ``Record.Accepted`` notifications in
notification order, and its entries table keeps each entry's notification id:
the events of entries [start, end) are therefore the record notifications from
the first entry's notification id to the last one's. One ``select_notifications``
page per batch replaces a repository read per entry; an entry whose
notification is not on that page (never expected) is read on its own.

Only accepted statements reach the log, and the write path already parsed
their envelopes strictly, checked their payloads canonical and validated their
statements: none of that is done again here. A statement is built from its
payload with the same models holding the same values as ``Statement.parse``
builds (the models' validators only check, they never change a value), by
``model_construct``; the tests compare both on every statement type.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

from ledger.application import RECORD_TOPIC, Ledger
from ledger.envelope import statement_digest
from ledger.statements import BODIES, Statement, StatementModel
from projections.base import Entry


def read_entries(ledger: Ledger, start: int, end: int) -> list[Entry]:
    """The integrated entries with start <= index < end, in index order (fewer when
    the log is shorter). Requires 0 <= start."""
    store = ledger.tlog.store
    rows = store.entries(start, end)
    if not rows:
        return []
    leaves = _leaf_hashes(ledger, rows[0][0], rows[-1][0] + 1)
    envelopes = _record_envelopes(ledger, first=rows[0][1], last=rows[-1][1], count=len(rows))
    entries = []
    for index, notification_id, record_id, recorded_at in rows:
        found = envelopes.get(notification_id)
        if found is not None and found[0] == record_id:
            envelope = found[1]
        else:
            envelope = _envelope_of(ledger, record_id)
        payload = base64.b64decode(envelope["payload"])
        keyid = envelope["signatures"][0]["keyid"]
        entries.append(Entry(index, recorded_at, accepted_statement(payload), keyid, leaves[index]))
    return entries


def accepted_statement(payload: bytes) -> Statement:
    """The statement of an accepted payload, as ``Statement.parse`` gave it when it
    was accepted, without validating it again. Requires a payload the ledger accepted."""
    value = json.loads(payload)
    body_model = BODIES[value["type"]]
    if _nested(StatementModel) is None or _nested(body_model) is None:  # shapes _construct does not know
        return Statement.parse(value, payload=payload, digest=statement_digest(payload))
    model = _construct(StatementModel, value)
    return Statement(model, _construct(body_model, model.body), payload, statement_digest(payload))


def _construct(model: type[BaseModel], data: dict[str, Any]) -> Any:
    values = dict(data)
    nested = _nested(model)
    assert nested is not None
    for name, (many, inner) in nested.items():
        if name in values:
            values[name] = [_construct(inner, v) for v in values[name]] if many else _construct(inner, values[name])
    return model.model_construct(**values)


@cache
def _nested(model: type[BaseModel]) -> dict[str, tuple[bool, type[BaseModel]]] | None:
    """The fields holding a model (``many``: a list of them), or None when some field
    holds models in another shape (a union, a dict …)."""
    found = {}
    for name, field in model.model_fields.items():
        many = get_origin(field.annotation) is list
        inner = get_args(field.annotation)[0] if many else field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            if _nested(inner) is None:
                return None
            found[name] = (many, inner)
        elif _holds_model(field.annotation):
            return None
    return found


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in get_args(annotation))


def _leaf_hashes(ledger: Ledger, start: int, end: int) -> dict[int, bytes]:
    """index → leaf hash for start <= index < end (the log's level-0 Merkle nodes)."""
    store = ledger.tlog.store
    with store.transaction(commit=False) as cursor:
        query = f"SELECT idx, hash FROM {store.t['nodes']} WHERE level = 0 AND idx >= ? AND idx < ?"
        cursor.execute(query.replace("?", store.p), (start, end))
        return {row["idx"]: bytes(row["hash"]) for row in cursor.fetchall()}


def _record_envelopes(
    ledger: Ledger, *, first: int, last: int, count: int
) -> dict[int, tuple[str, dict[str, Any]]]:
    """notification id → (record id, envelope) of at most ``count`` record
    notifications with first <= id <= last (decoded as ``Mapper.to_domain_event`` does)."""
    mapper = ledger.mapper
    found = {}
    page = ledger.recorder.select_notifications(start=first, limit=count, stop=last, topics=[RECORD_TOPIC])
    for notification in page:
        state = notification.state
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        found[notification.id] = (str(notification.originator_id), mapper.transcoder.decode(state)["envelope"])
    return found


def _envelope_of(ledger: Ledger, record_id: str) -> dict[str, Any]:
    for accepted in ledger.events.get(UUID(record_id), lte=1):
        return accepted.envelope  # type: ignore[attr-defined, no-any-return]
    raise LookupError(f"log entry for record {record_id} has no stored event")

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
builds (the models' validators only check, they never change a value), as
``model_construct`` builds them but in a few dict operations (``_builder``); the
tests compare it with both on every statement type of a full scenario.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from functools import cache
from typing import Any, get_args, get_origin
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder
from eventsourcing.sqlite import SQLiteApplicationRecorder
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
        if found is not None and found[0] == record_id.replace("-", ""):
            envelope = found[1]
        else:
            envelope = _envelope_of(ledger, record_id)
        payload = binascii.a2b_base64(envelope["payload"])  # base64.b64decode, without its wrapper
        keyid = envelope["signatures"][0]["keyid"]
        entries.append(Entry(index, recorded_at, accepted_statement(payload), keyid, leaves[index]))
    return entries


def accepted_statement(payload: bytes) -> Statement:
    """The statement of an accepted payload, as ``Statement.parse`` gave it when it
    was accepted, without validating it again. Requires a payload the ledger accepted."""
    value = orjson.loads(payload)  # what json.loads gives for JSON the write path accepted
    statement, body = _builder(StatementModel), _builder(BODIES[value["type"]])
    if statement is None or body is None:  # shapes _builder does not know
        return Statement.parse(value, payload=payload, digest=statement_digest(payload))
    model = statement(value)
    return Statement(model, body(model.body), payload, statement_digest(payload))


_setattr = object.__setattr__
_IMMUTABLE = (str, int, bool, float, bytes, type(None))  # defaults shared, not copied


@cache
def _builder(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any] | None:
    """A function building ``model`` from data it validated as ``model.model_construct(**data)``
    does (the same ``__dict__``, in field order, defaults filled in, the same fields set),
    nested models included, in a few dict operations instead of model_construct's walk
    over every field. None for shapes it does not know: a field holding models other than
    as a model or a list of them (a union, a dict …), aliases, ``model_post_init``, a root
    model, extra fields allowed."""
    if (model.__pydantic_post_init__ or model.__pydantic_root_model__
            or model.model_config.get("extra") == "allow"):  # fmt: skip
        return None
    template: dict[str, Any] = {}  # every field in order: its default, or None while required
    copied: list[tuple[str, Any]] = []  # fields whose default is built afresh for each instance
    nesting: list[tuple[str, bool, Callable[[dict[str, Any]], Any]]] = []
    for name, field in model.__pydantic_fields__.items():
        if field.alias not in (None, name) or field.validation_alias not in (None, name):
            return None
        many = get_origin(field.annotation) is list
        inner = get_args(field.annotation)[0] if many else field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            nested = _builder(inner)
            if nested is None:
                return None
            nesting.append((name, many, nested))
        elif _holds_model(field.annotation):
            return None
        template[name] = None
        if not field.is_required():
            if field.default_factory is None and isinstance(field.default, _IMMUTABLE):
                template[name] = field.default
            else:
                copied.append((name, field))

    def build(data: dict[str, Any]) -> Any:
        values = template.copy()
        values.update(data)  # validated data: every required field, no others; order kept
        for name, field in copied:
            if name not in data:
                values[name] = field.get_default(call_default_factory=True, validated_data=values)
        for name, many, nested in nesting:
            if name in data:
                values[name] = [nested(v) for v in data[name]] if many else nested(data[name])
        instance = model.__new__(model)
        _setattr(instance, "__dict__", values)
        _setattr(instance, "__pydantic_fields_set__", set(data))
        _setattr(instance, "__pydantic_extra__", None)
        _setattr(instance, "__pydantic_private__", None)
        return instance

    return build


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
    """notification id → (record id as 32 hex digits, envelope) of at most ``count``
    record notifications with first <= id <= last (decoded as ``Mapper.to_domain_event``
    does). On SQLite the rows are read as ``select_notifications`` reads them, without
    making a Notification and a UUID of each."""
    mapper = ledger.mapper
    # An envelope holds only JSON's own types (SPEC §2: exactly its fields, all text), which
    # JSONTranscoder decodes as json.loads does, and orjson faster; its hook on every object is
    # for other fields.
    decode = _json_state if type(mapper.transcoder) is JSONTranscoder else mapper.transcoder.decode
    recorder = ledger.recorder
    rows: list[tuple[int, str, bytes]]
    if type(recorder) is SQLiteApplicationRecorder:
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT rowid, originator_id, state FROM {recorder.events_table_name} "
                "WHERE rowid >= ? AND rowid <= ? AND topic = ? ORDER BY rowid LIMIT ?",
                (first, last, RECORD_TOPIC, count),
            )
            rows = [tuple(row) for row in cursor.fetchall()]  # type: ignore[misc]
    else:
        page = recorder.select_notifications(start=first, limit=count, stop=last, topics=[RECORD_TOPIC])
        rows = [(n.id, n.originator_id.hex, n.state) for n in page]  # type: ignore[union-attr]
    found = {}
    for notification_id, originator_id, state in rows:
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        found[notification_id] = (originator_id, decode(state)["envelope"])
    return found


def _json_state(state: bytes) -> Any:
    return orjson.loads(state)


def _envelope_of(ledger: Ledger, record_id: str) -> dict[str, Any]:
    for accepted in ledger.events.get(UUID(record_id), lte=1):
        return accepted.envelope  # type: ignore[attr-defined, no-any-return]
    raise LookupError(f"log entry for record {record_id} has no stored event")

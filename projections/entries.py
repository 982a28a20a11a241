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
payload without validating it again (``ledger.accepted``).
"""

from __future__ import annotations

import binascii
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger.accepted import record_state
from ledger.application import RECORD_TOPIC, Ledger
from projections.base import Entry, Sql


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
        entries.append(Entry.accepted(index, recorded_at, payload, keyid, leaves[index]))
    return entries


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
    recorder = ledger.recorder
    rows: list[tuple[int, str, bytes]]
    if type(recorder) is SQLiteApplicationRecorder:
        query = (f"SELECT rowid, originator_id, state FROM {recorder.events_table_name} "
                 "WHERE rowid >= ? AND rowid <= ? AND topic = ? ORDER BY rowid LIMIT ?")  # fmt: skip
        with recorder.datastore.transaction(commit=False) as cursor:  # plain tuples (Sql.chunks)
            rows = [row for chunk in Sql(cursor, "sqlite").chunks(query, count, (first, last, RECORD_TOPIC, count))
                    for row in chunk]  # fmt: skip
    else:
        page = recorder.select_notifications(start=first, limit=count, stop=last, topics=[RECORD_TOPIC])
        rows = [(n.id, n.originator_id.hex, n.state) for n in page]  # type: ignore[union-attr]
    found = {}
    for notification_id, originator_id, state in rows:
        found[notification_id] = (originator_id, record_state(mapper, state)["envelope"])
    return found


def _envelope_of(ledger: Ledger, record_id: str) -> dict[str, Any]:
    for accepted in ledger.events.get(UUID(record_id), lte=1):
        return accepted.envelope  # type: ignore[attr-defined, no-any-return]
    raise LookupError(f"log entry for record {record_id} has no stored event")

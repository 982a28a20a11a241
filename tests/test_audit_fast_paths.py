"""The audit's shortcuts against the slow, obviously correct definitions they replace:
the leaf bytes written directly from a parsed envelope equal the JCS form of the
entry (``log.leaf_bytes``); the statement decoding equals ``decode_statement``; a
deferred node check still names the first bad entry when a later entry fails too;
and the audit with two workers (signatures checked on threads, nodes a chunk at a
time) finds what the inline audit finds, at the same index, with the same message."""

from __future__ import annotations

import base64
import gc
import json
import pickle
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.audit as ledger_audit
from ledger import merkle
from ledger.application import record_uuid, record_uuid_bytes
from ledger.audit import (
    Brief,
    NodeChecker,
    Replay,
    SignatureChecker,
    _for_the_auditor,
    audit_ledger,
    entry_leaf_bytes,
    entry_parser,
    parse_entry,
    records,
)
from ledger.canonical import JSONRefused, strict_loads
from ledger.envelope import Envelope, decode_statement, parse_envelope, sign_statement
from ledger.errors import AuditFailure, NotCanonical, SaksiError
from ledger.home import Home
from ledger.log import leaf_bytes
from ledger.merkle import leaf_hash
from ledger.registry import authorise
from ledger.statements import Statement
from tests.test_tamper import db, home, rowid_of, template  # noqa: F401 - the demo ledger and its fixtures

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, 2**53 - 1),
    recorded_at=st.one_of(st.just("2024-11-27T06:00:00.000000Z"), texts),
    subject=texts,
    words=texts,
)
def test_entry_leaf_bytes_is_the_canonical_entry(index: int, recorded_at: str, subject: str, words: str) -> None:
    statement = {
        "v": 1, "id": "0d7bb1a6-2d3b-4c36-9c0b-6b0d3c1b8e55", "type": "commitment.declared",
        "actor": "party-x", "subject": subject, "issued_at": "2024-11-01T00:00:00Z",
        "body": {"words": words, "n": index % 1000},
    }  # fmt: skip
    envelope_json: dict[str, Any] = sign_statement(statement, KEY).to_json()
    parsed = parse_envelope(envelope_json)
    assert entry_leaf_bytes(index, recorded_at, parsed) == leaf_bytes(index, recorded_at, envelope_json)


VALID = {
    "v": 1, "id": "0d7bb1a6-2d3b-4c36-9c0b-6b0d3c1b8e55", "type": "actor.key_revoked",
    "actor": "kpu-ri", "subject": "kpu-ri", "issued_at": "2024-11-01T00:00:00Z",
    "body": {"keyid": "ab" * 32, "reason": "lost"},
}  # fmt: skip
PAYLOADS = [
    b'{"a":1}', b'{"a":1.5}', b'{"a":1,"a":2}', b'{"b":1,"a":2}', b'{ "a":1}', b'{"a":"\\u0041"}',
    b'{"a":"\xc3\xa9"}', b'{"\xee\x80\x80":1,"z":2}', b'{"a":9007199254740992}', b'[1]', b'"x"', b"nul",
    b'\xff', b'{"a":NaN}', b'{"a":"\\ud800"}',
]  # fmt: skip


def _outcome(decode: Any, payload: bytes) -> tuple[str, str]:
    try:
        statement = decode(Envelope(payload=payload, keyid="ab" * 32, sig=bytes(64)))
    except SaksiError as error:
        return type(error).__name__, str(error)
    return "ok", repr((statement.model, statement.body, statement.payload, statement.digest))


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(
        st.sampled_from(PAYLOADS),
        st.builds(lambda words: sign_statement(VALID | {"body": {"keyid": "ab" * 32, "reason": words}}, KEY).payload,
                  texts),  # fmt: skip
        st.builds(lambda a, b: a + b, st.sampled_from(PAYLOADS), st.binary(max_size=4)),
        st.binary(max_size=40),
    )
)
def test_decode_statement_decides_as_the_rfc8785_reference(payload: bytes) -> None:
    assert _outcome(decode_statement, payload) == _outcome(reference_decode_statement, payload)


def reference_decode_statement(envelope: Envelope) -> Statement:
    """SPEC §2 read literally: strict JSON, then its RFC 8785 form (the rfc8785 package)
    must be the payload byte for byte. ``decode_statement`` takes a fast path to this."""
    try:
        value = strict_loads(envelope.payload)
    except JSONRefused as error:
        raise NotCanonical(f"payload: {error}") from None
    if rfc8785.dumps(value) != envelope.payload:
        raise NotCanonical("payload is not in RFC 8785 canonical form")
    return Statement.parse(value, payload=envelope.payload, digest=envelope.digest)


def test_parse_entry_names_the_index() -> None:
    with pytest.raises(AuditFailure) as caught:
        parse_entry(7, {"payloadType": "x"})
    assert caught.value.index == 7


class Nodes:
    """A stand-in for the log store: stored hashes of level-0 nodes."""

    def __init__(self, stored: dict[tuple[int, int], bytes]) -> None:
        self.stored = stored
        self.reads = 0

    def read_nodes(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        self.reads += 1
        return {node: self.stored[node] for node in ids if node in self.stored}


def test_node_checker_reads_once_and_names_the_first_bad_entry() -> None:
    store = Nodes({(0, i): bytes([i]) for i in range(10)} | {(0, 4): b"tampered", (0, 6): b"tampered"})
    checker = NodeChecker(store)
    for i in range(10):
        checker.add(i, [((0, i), bytes([i]))])
    with pytest.raises(AuditFailure, match="stored leaf") as caught:
        checker.check()
    assert caught.value.index == 4 and store.reads == 1


def test_a_deferred_node_failure_wins_over_a_later_failure() -> None:
    store = Nodes({(0, i): bytes([i]) for i in range(10)} | {(0, 3): b"tampered"})
    checker = NodeChecker(store)
    for i in range(6):
        checker.add(i, [((0, i), bytes([i]))])
    assert checker.check_first_failure(AuditFailure(5, "later")).index == 3
    checker = NodeChecker(store)
    for i in range(6):
        checker.add(i, [((0, i), bytes([i]))])
    later = AuditFailure(2, "earlier than the bad node")
    assert checker.check_first_failure(later) is later


# ---------------------------------------------------------------- two workers find what one finds


def flip_payload(path: Path, index: int) -> None:
    with db(path) as c:
        rowid = rowid_of(path, index)
        state = bytearray(c.execute("SELECT state FROM stored_events WHERE rowid = ?", (rowid,)).fetchone()[0])
        position = state.index(b'"payload"') + 40
        state[position] = ord("A") if state[position] != ord("A") else ord("B")
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state), rowid))


def forge_signature(path: Path, index: int) -> None:
    """Another signature on the same payload, the stored Merkle nodes recomputed to match
    (as a tamperer with the database would): only the signature check can see it."""
    with db(path) as c:
        rowid = rowid_of(path, index)
        state = bytearray(c.execute("SELECT state FROM stored_events WHERE rowid = ?", (rowid,)).fetchone()[0])
        position = state.index(b'"sig":"') + 7 + 10
        state[position] = ord("A") if state[position] != ord("A") else ord("B")
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state), rowid))
    loaded = Home.load(path)
    ledger = loaded.open(audit=True)
    frontier, nodes = merkle.CompactRange(), []
    for at, (_, _, notification) in enumerate(records(ledger)):
        envelope = parse_envelope(ledger.mapper.to_domain_event(notification).envelope)
        recorded_at = ledger.tlog.store.entries(at, at + 1)[0][3]
        nodes += [(value, *node) for node, value in frontier.append(leaf_hash(entry_leaf_bytes(at, recorded_at, envelope)))]
    ledger.close()
    with db(path) as c:
        c.executemany("UPDATE saksi_nodes SET hash = ? WHERE level = ? AND idx = ?", nodes)


def garble(path: Path, index: int) -> None:
    with db(path) as c:
        c.execute("UPDATE stored_events SET state = X'00FF' || state WHERE rowid = ?", (rowid_of(path, index),))


def zero_node(path: Path, level: int, index: int) -> None:
    with db(path) as c:
        c.execute("UPDATE saksi_nodes SET hash = zeroblob(32) WHERE level = ? AND idx = ?", (level, index))


def edit_state(path: Path, index: int, change: Any) -> None:
    """Rewrite the stored event of entry ``index`` as ``change`` leaves its decoded state
    (a tamperer who writes well-formed JSON)."""
    with db(path) as c:
        rowid = rowid_of(path, index)
        state = json.loads(c.execute("SELECT state FROM stored_events WHERE rowid = ?", (rowid,)).fetchone()[0])
        change(state)
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (json.dumps(state).encode(), rowid))


def huge_integer_in_payload(state: dict[str, Any]) -> None:
    """A payload holding an integer of 5000 digits, past what int() parses (4300)."""
    payload = base64.b64decode(state["envelope"]["payload"])
    state["envelope"]["payload"] = base64.b64encode(b'{"a":' + b"7" * 5000 + b"," + payload[1:]).decode()


def huge_integer_in_state(path: Path, index: int) -> None:
    with db(path) as c:
        c.execute("UPDATE stored_events SET state = CAST('{\"x\":' || ? || ',' AS BLOB) || substr(state, 2) "
                  "WHERE rowid = ?", ("7" * 5000, rowid_of(path, index)))  # fmt: skip


def last_entry_not_integrated(path: Path, change: Any) -> int:
    """The last entry's row gone and the tracking row one short, as if the statement were
    recorded but not yet integrated, and its stored event changed by ``change``."""
    with db(path) as c:
        last = c.execute("SELECT MAX(idx) FROM saksi_entries").fetchone()[0]
    edit_state(path, last, change)
    with db(path) as c:
        c.execute("DELETE FROM saksi_entries WHERE idx = ?", (last,))
        c.execute("UPDATE saksi_tracking SET size = ?, notification_id = ?", (last, rowid_of(path, last - 1)))
    return int(last)


def audit_outcome(path: Path, workers: int) -> tuple[int | None, str]:
    loaded = Home.load(path)
    ledger = loaded.open(audit=True)
    try:
        audit_ledger(ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file, workers=workers)
    except AuditFailure as failure:
        return failure.index, str(failure)
    finally:
        ledger.close()
    return None, "ok"


TAMPERS: dict[str, tuple[Any, int | None]] = {
    "untouched": (lambda p: None, None),
    "payload-300": (lambda p: flip_payload(p, 300), 300),
    "garbled-120": (lambda p: garble(p, 120), 120),
    "signature-250": (lambda p: forge_signature(p, 250), 250),
    "signature-then-leaf": (lambda p: (forge_signature(p, 60), zero_node(p, 0, 61)), 60),
    "leaf-then-signature": (lambda p: (forge_signature(p, 60), zero_node(p, 0, 59)), 59),
    "leaf-77": (lambda p: zero_node(p, 0, 77), 77),
    "node-then-payload": (lambda p: (zero_node(p, 3, 40), flip_payload(p, 330)), 40 * 8 + 7),
    "payload-then-node": (lambda p: (flip_payload(p, 200), zero_node(p, 3, 40)), 200),
    "garbled-then-leaf": (lambda p: (garble(p, 90), zero_node(p, 0, 91)), 90),
    "leaf-then-garbled": (lambda p: (zero_node(p, 0, 89), garble(p, 90)), 89),
    # Well-formed JSON that is not what the event class wrote: each fails its entry, in order.
    "no-envelope-150": (lambda p: edit_state(p, 150, lambda s: s.pop("envelope")), 150),
    "recorded-at-a-number-150": (lambda p: edit_state(p, 150, lambda s: s.update(recorded_at=5)), 150),
    "huge-integer-in-payload-170": (lambda p: edit_state(p, 170, huge_integer_in_payload), 170),
    "huge-integer-in-state-180": (lambda p: huge_integer_in_state(p, 180), 180),
    "garbled-then-huge-integer": (lambda p: (edit_state(p, 170, huge_integer_in_payload), garble(p, 160)), 160),
    # A record the log has not integrated yet is checked all the same, envelope or not.
    "not-integrated-no-envelope": (lambda p: last_entry_not_integrated(p, lambda s: s.pop("envelope")), "last"),
    "not-integrated": (lambda p: last_entry_not_integrated(p, lambda s: None), "last"),
}


AUDIT_IN_PROCESSES = """
import json, os, sys, threading
from pathlib import Path
import ledger.audit
from ledger.audit import audit_ledger
from ledger.errors import AuditFailure
from ledger import merkle
from ledger.home import Home
from ledger.merkle import leaf_hash

ledger.audit.PARSE_CHUNK = 16  # many jobs in flight, results settled out of their workers' order
loaded = Home.load(Path(sys.argv[1]))
opened = loaded.open(audit=True)
found = {"threads": threading.active_count()}
try:
    report = audit_ledger(opened, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file,
                          workers=2, processes=int(sys.argv[2]))
    found["outcome"] = [None, "ok"]
except AuditFailure as failure:
    found["outcome"] = [failure.index, str(failure)]
found["children"] = os.times().children_user + os.times().children_system
opened.close()
print(json.dumps(found))
"""


def audit_in_processes(path: Path, processes: int = 2) -> dict[str, Any]:
    """``audit_ledger(processes=…)`` in a process of its own: it forks its parse workers,
    which a process running other threads (pytest's workers do) may not."""
    done = subprocess.run([sys.executable, "-c", AUDIT_IN_PROCESSES, str(path), str(processes)], capture_output=True,
                          text=True, timeout=300, check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
def test_workers_and_processes_report_what_the_inline_audit_does(home: Path, tamper: str) -> None:  # noqa: F811
    change, expected = TAMPERS[tamper]
    last = change(home)
    inline = audit_outcome(home, 0)
    if expected == "last":
        expected = last
    assert inline[0] == expected, inline
    if tamper.startswith("signature"):
        assert "bad-signature" in inline[1]
    assert audit_outcome(home, 2) == inline  # signatures on threads
    in_processes = audit_in_processes(home)  # entries parsed by two forked processes as well
    assert tuple(in_processes["outcome"]) == inline
    assert in_processes["children"] > 0  # the parsing really happened elsewhere


def test_the_parse_workers_do_the_parsing(home: Path) -> None:  # noqa: F811
    inline = audit_in_processes(home, processes=0)
    forked = audit_in_processes(home, processes=2)
    assert inline["outcome"] == forked["outcome"] == [None, "ok"]
    assert inline["children"] == 0 and forked["children"] > 0


def test_the_audit_refuses_to_fork_beside_other_threads(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(ledger_audit, "PARALLEL_FROM", 0)  # the log is large enough: only the thread decides
    monkeypatch.setattr(ledger_audit.os, "cpu_count", lambda: 2)  # and the machine has the cores
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with pytest.raises(ValueError, match="one thread"):
            audit_ledger(ledger, log_key=loaded.log_vkey(), processes=2)
        assert entry_parser(ledger, None).in_flight == 0  # the automatic choice parses inline
    finally:
        stop.set()
        other.join()
        ledger.close()


def test_the_parse_workers_are_shut_down_when_the_audit_cannot_start(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    closed: list[str] = []

    class Parser(ledger_audit.EntryParser):
        def close(self) -> None:
            closed.append("parser")

    def no_registry(*_: Any) -> None:
        raise OSError("no room for the registry")

    monkeypatch.setattr(ledger_audit, "entry_parser", lambda ledger, processes: Parser(ledger.mapper))
    monkeypatch.setattr(ledger_audit, "Replay", no_registry)
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    try:
        with pytest.raises(OSError, match="no room"):
            audit_ledger(ledger, log_key=loaded.log_vkey(), workers=0)
    finally:
        ledger.close()
    assert closed == ["parser"]


# ---------------------------------------------------------------- what a parse worker sends back


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_record_uuid_bytes_are_the_record_uuids_bytes(statement_id: str) -> None:
    assert record_uuid_bytes(statement_id) == record_uuid(statement_id).bytes


def test_an_envelope_survives_pickling() -> None:
    envelope = Envelope(b'{"a":1}', "ab" * 32, bytes(range(64)), "text/plain")
    copy = pickle.loads(pickle.dumps(envelope))
    assert copy == envelope and type(copy) is Envelope


def test_a_brief_is_authorised_as_its_statement(home: Path) -> None:  # noqa: F811 - the fixture
    """Workers send the auditing process a Brief for every statement outside the registry:
    at every such entry of the demo, the Brief's verdict is its statement's, and so is the
    refusal when the statement is put in the mouth of each other signer seen so far."""
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    replay = Replay(ledger.genesis, SignatureChecker(0))
    signers: dict[str, None] = {}
    compared = refused = 0
    try:
        for index, (_, _, notification) in enumerate(records(ledger)):
            accepted = ledger.mapper.to_domain_event(notification)
            envelope, statement = parse_entry(index, accepted.envelope)
            at = ledger.tlog.store.entries(index, index + 1)[0][3]
            parsed = _for_the_auditor(("parsed", at, envelope, b"", True, statement))
            if parsed[-1] is not None:
                brief = Brief._make(parsed[-1])
                assert brief == (statement.type, statement.actor, statement.region)
                for signer in [statement.actor, *signers]:
                    model = statement.model.model_copy(update={"actor": signer})
                    as_made = Statement(model, statement.body, statement.payload, statement.digest)
                    verdicts = []
                    for candidate in (as_made, brief._replace(actor=signer)):
                        try:
                            verdicts.append(authorise(replay.registry, candidate, envelope.keyid, at))
                        except SaksiError as error:
                            verdicts.append((type(error), str(error)))
                    assert verdicts[0] == verdicts[1]
                    refused += isinstance(verdicts[0], tuple)
                compared += 1
                signers[statement.actor] = None
            replay.parsed(index, at, envelope, statement)
    finally:
        replay.close()
        ledger.close()
    assert compared > 20 and refused > 20


def test_the_audit_pauses_the_collector_and_still_collects_cycles(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The audit runs with the cycle collector paused and settles it every CHUNK entries:
    the cycles its entries make are collected as it goes, not kept to the end."""
    monkeypatch.setattr(ledger_audit, "CHUNK", 100)
    made: list[int] = []
    freed: list[int] = []
    seen: list[tuple[int, int, bool]] = []
    authorise_ = ledger_audit.registry.authorise

    class Cycle:
        pass

    def authorise_with_a_cycle(*args: Any) -> Any:
        cycle = Cycle()
        cycle.me = cycle  # type: ignore[attr-defined]
        weakref.finalize(cycle, freed.append, 1)
        made.append(1)
        return authorise_(*args)

    monkeypatch.setattr(ledger_audit.registry, "authorise", authorise_with_a_cycle)
    loaded = Home.load(home)
    ledger = loaded.open(audit=True)
    try:
        report = audit_ledger(ledger, log_key=loaded.log_vkey(), processes=0, workers=0,
                              progress=lambda done: seen.append((done, len(freed), gc.isenabled())))  # fmt: skip
    finally:
        ledger.close()
    assert gc.isenabled()
    assert report.size == 800 and len(made) == 799  # every entry but the genesis registration
    assert not any(enabled for _, _, enabled in seen)
    done, collected, _ = seen[-2]  # the last chunk's progress, before the final report
    assert done == 800 and collected >= 700

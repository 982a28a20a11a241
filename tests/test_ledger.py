"""The Ledger's write path (``submit``/``submit_batch``) as a contract that holds on
every backend: round trips with verifiable receipts, idempotency, refusals that
record nothing, offline signing, batches, the Kota Metro scenario, and
concurrent writers — threads in one process and two processes on one SQLite file."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import notes, regions
from ledger.application import Ledger
from ledger.audit import audit_ledger
from ledger.custody import consignment_uuid
from ledger.envelope import Envelope, decode_statement, parse_envelope, raw_public_key
from ledger.errors import ConcurrentUpdate, InvariantBroken, NotFound, Refusal
from ledger.log import Receipt
from ledger.scenario import Population, Signer, SimulatedClock, kota_metro, mandate, play
from ledger.statements import format_time, parse_time
from tests.conftest import (
    CITY,
    KEC,
    ORIGIN,
    OTHER_KEC,
    START,
    Chain,
    World,
    WorldFactory,
    assert_refused,
    build_chain,
    dispatch_body,
    new_ledger,
    receipt_body,
    snapshot,
    stored_event_count,
)


def log_vkey(world: World) -> str:
    return notes.format_vkey(ORIGIN, raw_public_key(world.log_key))


def check_receipt(world: World, receipt: Receipt, envelope: Envelope) -> dict[str, Any]:
    """Verify the receipt as an outside verifier would; returns the proven log entry."""
    proven = notes.verify_receipt(receipt.tlog_proof, log_key=log_vkey(world))
    entry = json.loads(proven.leaf_bytes)
    assert entry == {
        "index": receipt.index,
        "recorded_at": receipt.recorded_at,
        "envelope": envelope.to_json(),
    }
    assert proven.index == receipt.index
    assert receipt.statement_digest == envelope.digest
    return entry


def dispatch_kec(world: World, chain: Chain, subject: str = "out.kec") -> Envelope:
    return world.sign(
        chain.kpu, "logistics.dispatched", subject, dispatch_body(KEC, chain.ppk.actor)
    )


def receive_kec(world: World, chain: Chain, dispatch: Envelope, **body: Any) -> Envelope:
    return world.sign(
        chain.ppk,
        "logistics.received",
        "out.kec",
        receipt_body(KEC, **body),
        refs=[dispatch.digest],
    )


# ---------------------------------------------------------------- contract: every backend


def test_submit_round_trips_with_a_verifiable_receipt(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    size = world.ledger.tlog.size
    dispatch = dispatch_kec(world, chain)
    first = world.submit(dispatch)
    assert (first.index, first.duplicate) == (size, False)
    entry = check_receipt(world, first, dispatch)
    assert world.ledger.tlog.entry(first.index) == entry
    got = receive_kec(world, chain, dispatch)
    second = world.submit(got.canonical())  # as bytes, the way the API receives it
    assert second.index == size + 1
    check_receipt(world, second, got)
    record = world.ledger.record(decode_statement(got).id)
    assert (record.digest, record.type, record.actor, record.keyid) == (
        got.digest,
        "logistics.received",
        chain.ppk.actor,
        got.keyid,
    )
    assert record.mandate_id == "m1"
    assert world.ledger.consignment("out.kec").status == "received"


def test_log_indexes_are_dense_and_every_entry_is_its_envelope(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    world.submit(dispatch_kec(world, chain))
    size = world.ledger.tlog.size
    assert size == 10  # genesis + 8 registrations + 1 dispatch
    for index in range(size):
        entry = world.ledger.tlog.entry(index)
        assert entry["index"] == index
        decode_statement(parse_envelope(entry["envelope"]))


def test_same_envelope_twice_returns_the_first_receipt(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    first = world.submit(dispatch)
    before = world.snapshot()
    world.advance(hours=5)
    again = world.submit(dispatch)
    assert again.duplicate and not first.duplicate
    assert (again.index, again.recorded_at, again.leaf_hash, again.statement_digest) == (
        first.index,
        first.recorded_at,
        first.leaf_hash,
        first.statement_digest,
    )
    check_receipt(world, again, dispatch)
    # the same envelope sent as differently formatted JSON text is the same envelope
    spaced = json.dumps(dispatch.to_json(), indent=2).encode()
    assert world.submit(spaced).index == first.index
    assert world.snapshot() == before


def test_same_id_with_other_content_is_duplicate_statement_id(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    world.submit(dispatch)
    statement_id = decode_statement(dispatch).id
    other = world.sign(
        chain.kpu,
        "logistics.dispatched",
        "out.kec-2",
        dispatch_body(KEC, chain.ppk.actor),
        statement_id=statement_id,
    )
    assert other.digest != dispatch.digest
    refusal = assert_refused(world, other, "duplicate-statement-id")
    assert refusal.status == 409
    with pytest.raises(NotFound):
        world.ledger.consignment("out.kec-2")


def test_same_id_signed_by_another_actor_is_duplicate_statement_id(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    world.submit(dispatch)
    pledge = world.sign(
        chain.ppk,
        "pledge.made",
        "pledge-ppk",
        {
            "region": KEC,
            "institution": "ppk",
            "undertakings": ["no_hoax"],
            "text": "Ikrar.",
            "valid_until": "2025-01-01T00:00:00Z",
        },
        statement_id=decode_statement(dispatch).id,
    )
    assert_refused(world, pledge, "duplicate-statement-id")


def _forged(envelope: Envelope) -> Envelope:
    return Envelope(envelope.payload, envelope.keyid, bytes(64))


REFUSALS: dict[str, tuple[str, Callable[[World, Chain, Envelope], Any]]] = {
    "malformed-envelope": ("malformed-envelope", lambda w, c, d: {**d.to_json(), "x": 1}),
    "not-canonical": (
        "not-canonical",
        lambda w, c, d: {
            **d.to_json(),
            "payload": Envelope(d.payload + b" ", d.keyid, d.sig).to_json()["payload"],
        },
    ),
    "bad-signature": (
        "bad-signature",
        lambda w, c, d: _forged(
            w.sign(c.kpu, "logistics.dispatched", "out.x", dispatch_body(KEC, c.ppk.actor))
        ),
    ),
    "unknown-actor": (
        "unknown-actor",
        lambda w, c, d: w.sign(
            w.signer("kpu-hantu"), "logistics.dispatched", "out.x", dispatch_body(KEC, c.ppk.actor)
        ),
    ),
    "no-mandate": (
        "no-mandate",
        lambda w, c, d: w.sign(
            c.pkd, "logistics.dispatched", "out.x", dispatch_body(KEC, c.ppk.actor)
        ),
    ),
    "outside-jurisdiction": (
        "outside-jurisdiction",
        lambda w, c, d: w.sign(
            c.ppk, "logistics.dispatched", "out.x", dispatch_body(OTHER_KEC, c.pps.actor)
        ),
    ),
    "invariant": (
        "invariant-broken",
        lambda w, c, d: w.sign(
            c.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, c.ppk.actor)
        ),
    ),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_refusal_records_nothing_and_leaves_no_gap(
    backend_world: World, case: tuple[str, Callable[[World, Chain, Envelope], Any]]
) -> None:
    world = backend_world
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    world.submit(dispatch)
    code, make = case
    assert_refused(world, make(world, chain, dispatch), code)
    following = receive_kec(world, chain, dispatch)
    receipt = world.submit(following)
    assert receipt.index == world.ledger.tlog.size - 1 == 10
    check_receipt(world, receipt, following)


def test_state_survives_reopening_the_sqlite_file(make_world: WorldFactory, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saksi.sqlite'}"
    world = make_world(url)
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    first = world.submit(dispatch)
    world.ledger.close()
    reopened = new_ledger(url, world.population, world.clock, world.log_key)
    try:
        assert reopened.tlog.size == first.index + 1
        assert reopened.consignment("out.kec").dispatch_digest == dispatch.digest
        again = reopened.submit(dispatch)
        assert (again.index, again.duplicate) == (first.index, True)
        got = reopened.submit(receive_kec(world, chain, dispatch))
        assert got.index == first.index + 1
        assert reopened.consignment("out.kec").status == "received"
    finally:
        reopened.close()


# ---------------------------------------------------------------- offline signing


def test_statement_signed_offline_days_earlier_keeps_its_issued_at(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    world.clock.now = START + timedelta(days=10)
    signed_at = world.clock.now - timedelta(days=5)
    dispatch = world.sign(
        chain.kpu,
        "logistics.dispatched",
        "out.kec",
        dispatch_body(KEC, chain.ppk.actor),
        issued_at=signed_at,
    )
    receipt = world.submit(dispatch)
    recorded_at = format_time(world.clock.now)
    assert receipt.recorded_at == recorded_at
    entry = world.ledger.tlog.entry(receipt.index)
    assert entry["recorded_at"] == recorded_at
    kept = decode_statement(parse_envelope(entry["envelope"]))
    assert kept.issued_at == format_time(signed_at)
    assert parse_time(entry["recorded_at"]) - parse_time(kept.issued_at) == timedelta(days=5)
    record = world.ledger.record(kept.id)
    assert record.recorded_at == recorded_at
    assert world.ledger.consignment("out.kec").dispatched_at == recorded_at


def test_offline_statement_is_judged_by_the_mandates_in_force_when_recorded(world: World) -> None:
    # signed while the mandate was in force, recorded after it ended: refused
    tni = world.register_with(
        "tni-metro",
        [
            {
                "id": "m1",
                "role": "tni",
                "jurisdiction": CITY,
                "valid_from": "2024-01-01T00:00:00Z",
                "valid_until": format_time(START + timedelta(days=2)),
            }
        ],
    )
    pledge = world.sign(
        tni,
        "pledge.made",
        "pledge-tni",
        {
            "region": CITY,
            "institution": "tni",
            "undertakings": ["no_hoax"],
            "text": "Ikrar.",
            "valid_until": "2025-01-01T00:00:00Z",
        },
        issued_at=START + timedelta(days=1),
    )
    world.clock.now = START + timedelta(days=3)
    assert_refused(world, pledge, "no-mandate")


def test_clock_stepping_back_cannot_authorise_an_entry_outside_its_mandate(world: World) -> None:
    # SPEC §1.1: a mandate is in force for an entry when valid_from <= recorded_at <
    # valid_until, and §3: recorded_at never decreases along the index. After an entry
    # recorded past the mandate's end, no later entry can fall inside the mandate,
    # even if the ledger's clock steps back (NTP, or another process's clock).
    until = START + timedelta(days=1)
    tni = world.register_with("tni-metro", [mandate("tni", CITY, valid_until=format_time(until))])
    world.clock.now = until + timedelta(hours=1)
    world.register("polri-metro", "polri", CITY)
    world.clock.now = until - timedelta(hours=1)
    assert_refused(world, _tni_pledge(world, tni), "no-mandate")


def test_a_ledger_passes_its_own_audit_after_its_clock_steps_back(world: World) -> None:
    until = START + timedelta(days=1)
    tni = world.register_with("tni-metro", [mandate("tni", CITY, valid_until=format_time(until))])
    world.clock.now = until + timedelta(hours=1)
    world.register("polri-metro", "polri", CITY)
    world.clock.now = until - timedelta(hours=1)
    world.ledger.submit_batch([_tni_pledge(world, tni)])  # accepted or refused, it must be sound
    report = audit_ledger(world.ledger, log_key=log_vkey(world), workers=0)
    assert report.size == world.ledger.tlog.size


def _tni_pledge(world: World, tni: Signer) -> Envelope:
    return world.sign(
        tni,
        "pledge.made",
        "pledge-tni",
        {
            "region": CITY,
            "institution": "tni",
            "undertakings": ["no_hoax"],
            "text": "Ikrar.",
            "valid_until": "2025-01-01T00:00:00Z",
        },
    )


def test_read_only_ledger_refuses_to_submit_and_records_nothing() -> None:
    # Ledger(log_key=None) is "a read-only process": submit must raise having recorded
    # nothing, not record the statement and then fail to sign the checkpoint.
    population = Population(f"read-only-{uuid.uuid4()}")
    clock = SimulatedClock(START)
    ledger = Ledger(
        database_url="memory:", origin=ORIGIN, genesis=population.genesis, log_key=None, clock=clock
    )
    try:
        with pytest.raises(Refusal):
            ledger.submit(population.genesis_envelope(clock.now))
        assert stored_event_count(ledger) == 0 and ledger.tlog.size == 0
    finally:
        ledger.close()


# ---------------------------------------------------------------- batches


def test_submit_batch_returns_per_item_results_in_order(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    before = world.snapshot()
    dispatch = dispatch_kec(world, chain)
    received = receive_kec(world, chain, dispatch)  # depends on the dispatch earlier in the batch
    reused_id = world.sign(
        chain.kpu,
        "logistics.dispatched",
        "out.lain",
        dispatch_body(KEC, chain.ppk.actor),
        statement_id=decode_statement(dispatch).id,
    )
    twice = receive_kec(world, chain, dispatch, condition="wet")
    pledge = world.sign(
        chain.ppk,
        "pledge.made",
        "pledge-ppk",
        {
            "region": KEC,
            "institution": "ppk",
            "undertakings": ["no_hoax"],
            "text": "Ikrar.",
            "valid_until": "2025-01-01T00:00:00Z",
        },
    )
    batch: list[Any] = [
        dispatch,
        b"not json",
        received,
        reused_id,
        dispatch,
        twice,
        pledge.to_json(),
    ]
    results = world.ledger.submit_batch(batch)

    assert len(results) == len(batch)
    kinds = [type(r).__name__ if isinstance(r, Receipt) else r.code for r in results]
    assert kinds == [
        "Receipt",
        "malformed-envelope",
        "Receipt",
        "duplicate-statement-id",
        "Receipt",
        "invariant-broken",
        "Receipt",
    ]
    assert isinstance(results[5], InvariantBroken) and results[5].invariant == "received-once"
    assert all(isinstance(r, Refusal) for r in (results[1], results[3], results[5]))
    first, second, dup, last = results[0], results[2], results[4], results[6]
    assert isinstance(first, Receipt) and isinstance(second, Receipt)
    assert isinstance(dup, Receipt) and isinstance(last, Receipt)
    assert [first.index, second.index, last.index] == [
        before.log_size,
        before.log_size + 1,
        before.log_size + 2,
    ]
    assert (dup.index, dup.duplicate) == (first.index, True)
    for receipt, envelope in ((first, dispatch), (second, received), (last, pledge)):
        check_receipt(world, receipt, envelope)
    after = world.snapshot()
    assert (after.records, after.log_size) == (before.records + 3, before.log_size + 3)
    assert world.ledger.consignment("out.kec").status == "received"


def test_submit_batch_of_refusals_records_nothing(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    before = world.snapshot()
    results = world.ledger.submit_batch(
        [
            b"{}",
            world.sign(
                chain.pkd, "logistics.dispatched", "out.x", dispatch_body(KEC, chain.ppk.actor)
            ),
        ]
    )
    assert [r.code for r in results if isinstance(r, Refusal)] == [
        "malformed-envelope",
        "no-mandate",
    ]
    assert world.snapshot() == before


def test_accepted_batch_items_stay_durable_after_a_refusal(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'saksi.sqlite'}"
    world = make_world(url)
    chain = build_chain(world)
    dispatch = dispatch_kec(world, chain)
    results = world.ledger.submit_batch([dispatch, b"[]"])
    assert isinstance(results[0], Receipt) and isinstance(results[1], Refusal)
    world.ledger.close()
    reopened = new_ledger(url, world.population, world.clock, world.log_key)
    try:
        assert reopened.tlog.size == results[0].index + 1
        assert reopened.consignment("out.kec").dispatch_digest == dispatch.digest
    finally:
        reopened.close()


# ---------------------------------------------------------------- the Kota Metro scenario


def test_kota_metro_plays_without_refusal(backend: str) -> None:
    scenario = kota_metro()
    clock = SimulatedClock()
    ledger = Ledger(
        database_url=backend,
        origin=ORIGIN,
        genesis=scenario.genesis,
        log_key=Ed25519PrivateKey.generate(),
        clock=clock,
    )
    try:
        count = play(ledger, scenario, clock)
        assert count > 700
        assert ledger.tlog.size == count
        assert snapshot(ledger).records == count
        assert notes.parse_note(ledger.tlog.latest_note()).checkpoint.size == count
        statuses = {ledger.consignment(f"out.{kec}").status for kec in ("18.72.01", "18.72.02")}
        assert statuses == {"received"}
        # the demo's quirks: a short count and a broken seal give discrepancies,
        # and one TPS never receives
        tps_statuses = [
            ledger.consignment(f"out.{village}.{n:03d}").status
            for village in _villages()
            for n in range(1, 5)
            if _exists(ledger, f"out.{village}.{n:03d}")
        ]
        assert tps_statuses.count("received_with_discrepancy") == 2
        assert tps_statuses.count("dispatched") == 1
        # the same scenario again (same seed: the same envelopes) is all duplicates
        for item in list(kota_metro().schedule())[::10]:
            assert ledger.submit(item.envelope).duplicate
        assert ledger.tlog.size == count
    finally:
        ledger.close()


def _villages() -> list[str]:
    return [v for kec in regions.children(CITY) for v in regions.children(kec)]


def _exists(ledger: Ledger, consignment_id: str) -> bool:
    try:
        ledger.consignment(consignment_id)
    except NotFound:
        return False
    return True


# ---------------------------------------------------------------- concurrency


def race(*calls: Callable[[], Receipt]) -> list[Receipt | BaseException]:
    """Run ``calls`` at once on threads; returns each one's receipt or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Receipt | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(position: int, call: Callable[[], Receipt]) -> None:
        barrier.wait()
        try:
            results[position] = call()
        except BaseException as error:  # noqa: BLE001 - reported to the test
            results[position] = error

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_threads_receiving_one_dispatch_accept_exactly_one(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    for round_ in range(3):
        subject = f"out.kec-{round_}"
        dispatch = world.sign(
            chain.kpu, "logistics.dispatched", subject, dispatch_body(KEC, chain.ppk.actor)
        )
        world.submit(dispatch)
        before = world.snapshot()
        receipts = [
            world.sign(
                chain.ppk,
                "logistics.received",
                subject,
                receipt_body(KEC, condition=condition),
                refs=[dispatch.digest],
            )
            for condition in ("good", "damaged")
        ]
        results = race(*(lambda r=r: world.submit(r) for r in receipts))
        accepted = [r for r in results if isinstance(r, Receipt)]
        refused = [r for r in results if not isinstance(r, Receipt)]
        assert len(accepted) == 1 and len(refused) == 1, results
        assert isinstance(refused[0], InvariantBroken) and refused[0].invariant == "received-once"
        after = world.snapshot()
        assert (after.records, after.log_size) == (before.records + 1, before.log_size + 1)
        consignment = world.ledger.consignment(subject)
        assert consignment.version == 2
        assert consignment.receipt_digest == receipts[results.index(accepted[0])].digest


def test_two_processes_on_one_sqlite_file_receiving_one_dispatch_accept_exactly_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'saksi.sqlite'}"
    population = Population(f"two-processes-{uuid.uuid4()}")
    clock = SimulatedClock(START)
    log_key = Ed25519PrivateKey.generate()
    first = new_ledger(url, population, clock, log_key)
    world = World(first, population, clock, log_key)
    world.submit(population.genesis_envelope(clock.now))
    chain = build_chain(world)
    second = new_ledger(url, population, clock, log_key)  # another process on the same file
    try:
        for round_ in range(5):
            subject = f"out.kec-{round_}"
            dispatch = world.sign(
                chain.kpu, "logistics.dispatched", subject, dispatch_body(KEC, chain.ppk.actor)
            )
            (first if round_ % 2 else second).submit(dispatch)
            second.consignment(subject), first.consignment(subject)  # both have it cached
            events_before = stored_event_count(first)
            size_before = first.tlog.size
            receipts = [
                world.sign(
                    chain.ppk,
                    "logistics.received",
                    subject,
                    receipt_body(KEC, condition=condition),
                    refs=[dispatch.digest],
                )
                for condition in ("good", "damaged")
            ]
            a, b = receipts
            results = race(lambda a=a: first.submit(a), lambda b=b: second.submit(b))
            accepted = [r for r in results if isinstance(r, Receipt)]
            refused = [r for r in results if not isinstance(r, Receipt)]
            assert len(accepted) == 1 and len(refused) == 1, results
            loser = refused[0]
            assert isinstance(loser, Refusal), repr(loser)
            assert isinstance(loser, ConcurrentUpdate) or (
                isinstance(loser, InvariantBroken) and loser.invariant == "received-once"
            ), repr(loser)
            winner = receipts[results.index(accepted[0])]
            for ledger in (first, second):
                ledger.tlog.integrate()
                consignment = ledger.consignment(subject)
                assert consignment.version == 2
                assert consignment.receipt_digest == winner.digest
                events = list(ledger.events.get(consignment_uuid(subject)))
                assert [type(e).__name__ for e in events] == ["Dispatched", "Received"]
                assert ledger.tlog.size == size_before + 1
            # the winner's record, its Received event, nothing from the loser
            assert stored_event_count(first) == events_before + 2
            loser_id = decode_statement(receipts[1 - results.index(accepted[0])]).id
            with pytest.raises(NotFound):
                first.record(loser_id)
            entry = first.tlog.entry(size_before)
            assert entry["envelope"] == winner.to_json()
    finally:
        second.close()
        first.close()


def test_two_processes_publishing_the_same_checkpoint_do_not_fail_the_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes on one database accept different statements at the same time;
    # both integrate, then both sign "the" checkpoint of the new size. Here the
    # other process signs it between this one's look at the latest checkpoint and
    # its own store: the submit must still return the (durable) statement's receipt.
    url = f"sqlite:///{tmp_path / 'saksi.sqlite'}"
    population = Population(f"checkpoint-race-{uuid.uuid4()}")
    clock = SimulatedClock(START)
    log_key = Ed25519PrivateKey.generate()
    first = new_ledger(url, population, clock, log_key)
    world = World(first, population, clock, log_key)
    world.submit(population.genesis_envelope(clock.now))
    chain = build_chain(world)
    second = new_ledger(url, population, clock, log_key)
    try:
        real = first.tlog.store.latest_checkpoint
        calls = iter(range(1_000))

        def meanwhile() -> Any:
            seen = real()
            if next(calls) == 0:  # the other process integrates and signs right now
                second.tlog.integrate()
                second.tlog.publish()
            return seen

        monkeypatch.setattr(first.tlog.store, "latest_checkpoint", meanwhile)
        dispatch = dispatch_kec(world, chain)
        receipt = first.submit(dispatch)
        assert receipt.index == second.tlog.size - 1
        check_receipt(world, receipt, dispatch)
    finally:
        second.close()
        first.close()

"""The batched reads behind fast ingest: all receipts' proofs from one node read,
a batch's aggregates from one query per round, and cached aggregates read without
copies that a failed save can never leave changed."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import merkle
from ledger.application import UnitOfWork
from ledger.custody import consignment_uuid
from ledger.envelope import decode_statement
from ledger.registry import actor_uuid
from ledger.storage import select_events_of
from tests.conftest import KEC, OTHER_KEC, Chain, World, build_chain, dispatch_body, receipt_body
from tests.test_merkle import Reader, build, leaves, ref_path  # the slow, obviously correct tree


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64])
def test_inclusion_proofs_equal_the_reference_paths_from_one_read(size: int) -> None:
    hashes = leaves(size)
    store, _ = build(hashes)
    read = Reader(store, size)
    indices = list(range(size)) + [size - 1, 0]
    assert merkle.inclusion_proofs(indices, size, read) == [ref_path(i, hashes) for i in indices]
    assert len(read.calls) <= 1
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_proofs([0, size], size, read)


def _dispatch_and_receive(world: World, chain: Chain) -> None:
    body = dispatch_body(KEC, chain.ppk.actor)
    dispatch = world.sign(chain.kpu, "logistics.dispatched", "out.kec", body)
    world.submit(dispatch)
    received = world.sign(
        chain.ppk, "logistics.received", "out.kec", receipt_body(KEC), refs=[dispatch.digest]
    )
    assert world.submit(received).index > 0


def test_select_events_of_equals_one_select_per_aggregate(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    _dispatch_and_receive(world, chain)
    recorder = world.ledger.recorder
    ids = [
        actor_uuid(chain.kpu.actor), consignment_uuid("out.kec"), actor_uuid("nobody"),
        actor_uuid(chain.ppk.actor),
    ]  # fmt: skip
    expected = [event for i in ids for event in recorder.select_events(i)]
    found = select_events_of(recorder, ids + ids)
    key = lambda e: (str(e.originator_id), e.originator_version)  # noqa: E731
    assert sorted(found, key=key) == sorted(expected, key=key)
    assert [e.originator_version for e in found if e.originator_id == ids[0]] == [1]


def test_load_finds_what_get_finds_and_marks_the_rest_absent(backend_world: World) -> None:
    world = backend_world
    chain = build_chain(world)
    _dispatch_and_receive(world, chain)
    ids = [actor_uuid(chain.ppk.actor), consignment_uuid("out.kec"), consignment_uuid("never")]
    world.ledger._fresh_cache()
    world.ledger.repository.cache = type(world.ledger.repository.cache)(100)  # cold: from the store
    loaded = UnitOfWork(world.ledger)
    loaded.load(ids)
    for aggregate_id in ids:
        one = UnitOfWork(world.ledger).get(aggregate_id)
        got = loaded.loaded[aggregate_id]
        assert (got is None) == (one is None)
        if one is not None:
            assert vars(got) == vars(one)


def test_a_failed_save_leaves_the_cached_aggregates_as_stored(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = build_chain(world)
    dispatch = world.sign(
        chain.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, chain.ppk.actor)
    )
    world.submit(dispatch)
    receipt = world.sign(
        chain.ppk, "logistics.received", "out.kec", receipt_body(KEC), refs=[dispatch.digest]
    )
    before = vars(world.ledger.consignment("out.kec")).copy()

    def failing_save(*_: Any, **__: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(world.ledger.recorder, "insert_events", failing_save)  # the disk refuses the write
    with pytest.raises(OSError):
        world.ledger.submit(receipt)
    monkeypatch.undo()
    # The decision changed a copy; the cache still holds the consignment as stored.
    assert vars(world.ledger.consignment("out.kec")) == before
    assert world.ledger.consignment("out.kec").status == "dispatched"
    assert world.submit(receipt).index > 0
    assert world.ledger.consignment("out.kec").status == "received"


def test_verifying_before_the_writer_lock_leaves_the_cache_alone(world: World) -> None:
    """What _preverify reads outside the writer lock may be older than what a concurrent
    save puts in the cache: it must never replace it there."""
    chain = build_chain(world)
    envelope = world.sign(
        chain.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, chain.ppk.actor)
    )
    ledger = world.ledger
    ledger.repository.cache = type(ledger.repository.cache)(100)  # cold
    parsed = [(0, envelope, decode_statement(envelope))]
    verification, _, signers = ledger._preverify(parsed)
    assert verification.result() == {0: True}
    assert signers[actor_uuid(chain.kpu.actor)] is not None  # read, for the batch to reuse if still current
    with pytest.raises(KeyError):
        ledger.repository.cache.get(actor_uuid(chain.kpu.actor))


def _count_reads(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> list[set[Any]]:
    """The aggregate ids of each read of stored events from now on."""
    import ledger.application as application

    reads: list[set[Any]] = []
    real = application.select_events_of

    def counted(recorder: Any, ids: Any) -> Any:
        ids = list(ids)
        reads.append(set(ids))
        return real(recorder, ids)

    monkeypatch.setattr(application, "select_events_of", counted)
    return reads


def test_a_batch_reads_its_signers_once_when_nothing_was_recorded_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = build_chain(world)
    envelope = world.sign(chain.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, chain.ppk.actor))
    ledger = world.ledger
    ledger.repository.cache = type(ledger.repository.cache)(100)  # cold: the signer must be read
    reads = _count_reads(ledger, monkeypatch)
    [receipt] = ledger.submit_batch([envelope])
    assert receipt.index > 0  # type: ignore[union-attr]
    kpu = actor_uuid(chain.kpu.actor)
    assert sum(kpu in ids for ids in reads) == 1, reads


def test_a_key_revoked_after_the_signatures_were_checked_is_still_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signers read to check signatures, before the writer lock, are stale once
    anything is recorded before the batch takes the lock: here the registrar revokes
    the signer's key in between. The batch must decide on the registry as it is then."""
    from ledger.envelope import decode_b64, key_id
    from ledger.errors import Refusal

    chain = build_chain(world)
    envelope = world.sign(chain.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, chain.ppk.actor))
    revocation = world.registrar.sign("actor.key_revoked", chain.kpu.actor,
                                      {"keyid": key_id(decode_b64(chain.kpu.public_key))}, issued_at=world.clock.now)  # fmt: skip
    ledger = world.ledger
    real = ledger._preverify
    revoked: list[Any] = []
    calls = 0

    def preverify_then_revoke(parsed: Any) -> Any:
        nonlocal calls
        calls += 1
        found = real(parsed)
        if calls == 1:  # the batch's: its signer still holds the key here
            assert found[0].result() == {0: True}
            revoked.append(ledger.submit(revocation))  # (its own _preverify is call 2)
        return found

    monkeypatch.setattr(ledger, "_preverify", preverify_then_revoke)
    [result] = ledger.submit_batch([envelope])
    assert revoked and isinstance(result, Refusal), result
    assert "revoked" in str(result)
    assert ledger.tlog.size == revoked[0].index + 1  # nothing after the revocation


@pytest.mark.parametrize("value", ["0", "-5", "lots", "4e5", "٣"])
def test_a_bad_aggregate_cache_size_is_refused_in_one_clear_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.application import aggregate_cache_size

    monkeypatch.setenv("SAKSI_AGGREGATE_CACHE", value)
    with pytest.raises(ValueError, match="SAKSI_AGGREGATE_CACHE must be a whole number"):
        aggregate_cache_size()


def test_the_aggregate_cache_size_comes_from_the_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.application import AGGREGATE_CACHE, Ledger

    assert world.ledger.repository.cache.maxsize == AGGREGATE_CACHE
    monkeypatch.setenv("SAKSI_AGGREGATE_CACHE", "1234")
    ledger = Ledger(database_url="memory:", origin="saksi.test/cache", genesis=world.ledger.genesis, log_key=None)
    try:
        assert ledger.repository.cache.maxsize == 1234
    finally:
        ledger.close()


def _observers(world: World, count: int) -> list[Any]:
    """``count`` registrations of observers (any number may hold that role), signed by
    the registrar, whose key the ledger knows: each is a signature checked on the
    verifier threads."""
    return [world.population.register(f"observer-{n}", f"Observer {n}", "observer", KEC, world.clock.now)
            for n in range(count)]  # fmt: skip


def test_a_batch_is_decided_while_its_signatures_are_still_being_checked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification is pipelined: a checker that waits until deciding has begun must
    not hold the batch up (were every signature checked first, it would wait forever)."""
    import threading

    import ledger.application as application

    ledger = world.ledger
    deciding = threading.Event()
    real_decide, real_verify = ledger._decide_all, application.verify_signature

    def decide(*args: Any, **kwargs: Any) -> Any:
        deciding.set()
        return real_decide(*args, **kwargs)

    def verify_once_deciding(envelope: Any, public_key: bytes) -> None:
        if not deciding.wait(timeout=20):
            raise AssertionError("every signature was checked before anything was decided")
        real_verify(envelope, public_key)

    monkeypatch.setattr(ledger, "_decide_all", decide)
    monkeypatch.setattr(application, "verify_signature", verify_once_deciding)
    results = ledger.submit_batch(_observers(world, 20))
    assert [type(r).__name__ for r in results] == ["Receipt"] * 20


def test_a_forged_signature_in_a_big_batch_refuses_it_and_what_depends_on_it(world: World) -> None:
    """Decided as if every signature were good, the batch is decided again once one
    turns out forged: the forged registration is refused, so is the dispatch to the
    actor it would have registered, and nothing of the first decision is saved."""
    from ledger.errors import BadSignature, Refusal
    from ledger.registry import actor_uuid
    from tests.test_api import forged

    chain = build_chain(world)
    ledger = world.ledger
    size = ledger.tlog.size
    items: list[Any] = _observers(world, 20)
    newcomer = world.population.register("ppk-metro-selatan", "PPK Metro Selatan", "ppk", OTHER_KEC, world.clock.now)
    items[10] = forged(newcomer)
    items.append(world.sign(chain.kpu, "logistics.dispatched", "out.selatan",
                            dispatch_body(OTHER_KEC, "ppk-metro-selatan")))  # fmt: skip
    results = ledger.submit_batch(items)
    assert isinstance(results[10], BadSignature), results[10]
    assert isinstance(results[20], Refusal) and not isinstance(results[20], BadSignature), results[20]
    assert "ppk-metro-selatan" in str(results[20])
    accepted = [r for n, r in enumerate(results) if n not in (10, 20)]
    assert [r.index for r in accepted] == list(range(size, size + 19))  # type: ignore[union-attr]
    assert ledger.tlog.size == size + 19
    assert UnitOfWork(ledger).get(actor_uuid("ppk-metro-selatan")) is None
    with pytest.raises(Exception, match="out.selatan"):
        ledger.consignment("out.selatan")
    # And the same envelopes, signed properly, go in afterwards.
    assert ledger.submit(newcomer).index == size + 19
    assert ledger.submit(items[20]).index == size + 20


def test_records_and_key_owners_are_saved_but_not_cached(world: World) -> None:
    """What is written once and read again only for a resubmission or a reused key stays
    out of the aggregate cache, where it would push out what the next batches read."""
    from ledger.application import KeyOwner, record_uuid
    from ledger.envelope import decode_b64, key_id

    ledger = world.ledger
    observer = world.population.register("observer-x", "Observer X", "observer", KEC, world.clock.now)
    chain = build_chain(world)
    dispatch = world.sign(chain.kpu, "logistics.dispatched", "out.kec", dispatch_body(KEC, chain.ppk.actor))
    ledger.submit_batch([observer, dispatch])
    cache = ledger.repository.cache
    cache.get(actor_uuid("observer-x"))  # raises KeyError if absent
    cache.get(consignment_uuid("out.kec"))
    owner = KeyOwner.create_id(key_id(decode_b64(world.signer("observer-x").public_key)))
    for uncached in (record_uuid(decode_statement(observer).id), record_uuid(decode_statement(dispatch).id), owner):
        with pytest.raises(KeyError):
            cache.get(uncached)
    # Saved all the same: a resubmission gets its first receipt, the key stays taken.
    assert UnitOfWork(ledger).get(owner).actor_id == "observer-x"
    first = ledger.tlog.size - 2
    assert [r.index for r in ledger.submit_batch([observer, dispatch])] == [first, first + 1]  # type: ignore[union-attr]

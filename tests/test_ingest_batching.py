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
from tests.conftest import KEC, Chain, World, build_chain, dispatch_body, receipt_body
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
    assert ledger._preverify(parsed) == {0: True}
    with pytest.raises(KeyError):
        ledger.repository.cache.get(actor_uuid(chain.kpu.actor))

"""The cycle collector pause: off inside, back as it was once the last block ends,
whatever the threads' blocks overlap."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Iterator

import pytest

from ledger.collector import collector_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_off_inside_and_on_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_on_again_after_an_exception() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("refused")
    assert gc.isenabled()


def test_a_collector_turned_off_before_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_blocks_on_two_threads_resume_once_the_last_ends() -> None:
    inside, release_other = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            release_other.wait(10)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled(), "the other thread's block still runs"
    release_other.set()
    thread.join(10)
    assert gc.isenabled()


def test_cycles_made_while_paused_are_collected_afterwards() -> None:
    class Node:
        pass

    collected = threading.Event()
    with collector_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        weakref.finalize(a, collected.set)
        del a, b
        assert not collected.is_set()
    gc.collect()
    assert collected.is_set()


class Node:
    """Something the collector tracks that can be made into a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def tracked(thing: object) -> bool:
    """Whether the collector still looks at ``thing`` (frozen objects it does not)."""
    return any(o is thing for o in gc.get_objects())


@pytest.fixture
def fresh_freezer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from ledger import collector

    gc.unfreeze()
    gc.collect()
    gc.freeze()  # what the test process holds: out of the way, as after a full collection
    monkeypatch.setattr(collector, "_alive_at_full", gc.get_freeze_count())
    monkeypatch.setattr(collector, "_frozen_since_count", 0)
    yield
    gc.unfreeze()


def test_settle_collects_the_young_cycles_and_freezes_what_is_alive(fresh_freezer: None) -> None:
    from ledger.collector import settle

    kept = [Node() for _ in range(10)]
    garbage, gone = cycle()
    del garbage
    settle()
    assert gone() is None  # the dropped cycle was collected
    assert not tracked(kept[0]) and not tracked(kept)  # the survivors are frozen
    assert gc.get_freeze_count() >= len(kept)


def test_frozen_garbage_is_kept_while_the_cache_turns_over_and_collected_when_it_doubles(
    fresh_freezer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import collector

    monkeypatch.setattr(collector, "FULL_AFTER", 1000)
    alive = collector._alive_at_full
    garbage, gone = cycle()
    collector.settle()
    assert not tracked(garbage)  # frozen while alive
    del garbage
    # Turning over twice as many objects as are alive, a quarter at a time (frozen, then
    # freed by reference counting, as the cache drops what it held), counts the frozen
    # ones but makes no full collection.
    for _ in range(8):
        churn = [Node() for _ in range(alive // 4)]
        collector.settle()
        del churn
    assert collector._alive_at_full == alive  # no full collection was made
    assert gone() is not None
    # Doubling them makes a full collection, which finds the garbage.
    grown = [Node() for _ in range(alive + 1000)]
    collector.settle()
    assert gone() is None
    assert not tracked(grown[0])  # and what is alive is frozen again


def test_counting_never_breaks_a_tuple_another_thread_is_building(
    fresh_freezer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``settle`` counts tracked objects while request threads run. Counted as
    ``len(gc.get_objects())``, the list's reference to a tuple another thread is still
    growing from an iterator made that thread fail (SystemError from tupleobject.c,
    a 500 from FastAPI's route set-up): here within the first few of these rounds."""
    from ledger import collector

    monkeypatch.setattr(collector, "FULL_AFTER", 1000)
    stop, failures = threading.Event(), []

    def build() -> None:
        while not stop.is_set():
            try:
                for _ in range(1000):
                    tuple(str(x) for x in range(50))  # grown and resized as the iterator yields
            except SystemError as error:
                failures.append(error)
                return

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns often: the race, soon
    thread = threading.Thread(target=build)
    thread.start()
    rounds = 0
    try:
        while rounds < 50 and not failures:
            # A full collection at every settle: both counts, the young survivors' and everything's.
            monkeypatch.setattr(collector, "_alive_at_full", 0)
            with collector_paused():
                kept = [[i] for i in range(2000)]  # survivors for settle to count and freeze
                collector.settle()
                del kept
            rounds += 1
    finally:
        stop.set()
        thread.join(10)
        sys.setswitchinterval(switching)
    assert not failures, failures[0]

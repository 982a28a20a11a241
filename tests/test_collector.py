"""The cycle collector pause: off inside, back as it was once the last block ends,
whatever the threads' blocks overlap."""

from __future__ import annotations

import gc
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

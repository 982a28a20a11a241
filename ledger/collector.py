"""CPython's cycle collector, paused while a bulk step runs.

The write path and the rebuild make and drop hundreds of thousands of
containers (statements, aggregates, events, rows) that reference counting frees;
few are in cycles. Each time enough of them are alive at once the collector walks
every tracked object in the process, the ledger's aggregate cache included: with
a large cache that was a full collection per batch of 1,000 statements and a sixth
of the write path's time (bench/RESULTS.md, "Where the time went").

``collector_paused`` turns the collector off for the length of a ``with`` block and
back on when the last overlapping block in the process ends (it is process-wide:
blocks on several threads share one count). Cycles made meanwhile are collected
then, so memory stays bounded as long as the process is not inside a paused block
all the time: the write path pauses only under its writer lock, one batch at a time.

``settle`` (the write path's last step, under its writer lock) keeps the collector
off the aggregate cache altogether. What a batch leaves alive (cached aggregates,
mostly) is never garbage until the cache lets it go, and freed by reference counting
then; but CPython's full collection walks every tracked object whenever the old
generation has grown by a quarter. With 400,000 aggregates cached (some 3 M objects)
each walk took 1.5–3.5 s, and in the national run at 1.6–2.5 M entries they were 10–15 %
of the server's time (py-spy), wherever a batch next allocated outside the pause
(reading its body, parsing its statements). ``settle`` collects the young generations
(the cycles the step made and dropped) and freezes the survivors (``gc.freeze``: out of
every later collection's sight). A cycle that becomes garbage once frozen is kept until
the next full collection, which ``settle`` makes when the frozen objects have doubled
since the last one: while the cache only turns over (what it drops is freed by reference
counting), never; and frozen garbage never outgrows what is alive.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False  # whether the collector was on when the outermost block began
FULL_AFTER = 100_000  # frozen objects below which no full collection is made
_alive_at_full = 0  # tracked objects right after the last full collection
_frozen_since_count = 0  # objects frozen since the frozen ones were last counted


def count_tracked(generation: int | None = None) -> int:
    """How many objects the collector tracks (in ``generation``; all when None), counted
    without a list of them that Python code can see. ``len(gc.get_objects())`` holds a
    reference to every tracked object, and between the two calls this thread may hand the
    GIL to another: if that one is building a tuple from an iterator, its resize (which
    needs the only reference) fails with ``SystemError: Objects/tupleobject.c: bad
    argument to internal function``. A server under load answered 500 for it, from
    FastAPI's route set-up (tests/test_collector.py repeats the race). Here the list is
    made, measured and dropped within C calls (``map``, ``len``, ``sum``), during which
    no other thread runs."""
    return sum(map(len, map(gc.get_objects, (generation,))))


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector off inside the block; as it was before once no block runs."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def settle() -> None:
    """Collect the young generations, then freeze what survives. Once as many objects
    were frozen since they were last counted as were alive after the last full
    collection, count them; if they have doubled since it, make a full one."""
    global _alive_at_full, _frozen_since_count
    with _lock:
        gc.collect(1)
        # What survived since the last freeze is all in the old generation now (the rest
        # is frozen already): counting it costs this step's objects, not the process's.
        _frozen_since_count += count_tracked(generation=2)
        gc.freeze()
        if _frozen_since_count > max(_alive_at_full, FULL_AFTER):
            _frozen_since_count = 0
            # A walk of the frozen list, not a collection: some milliseconds per million.
            if gc.get_freeze_count() > max(2 * _alive_at_full, FULL_AFTER):
                gc.unfreeze()
                gc.collect()
                _alive_at_full = count_tracked()
                gc.freeze()

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
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False  # whether the collector was on when the outermost block began


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

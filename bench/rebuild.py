"""Rebuild (issue item 3): every projection from zero (``Projector.rebuild``) against
the baseline of reading and decoding every notification of the ledger's
application (``select_notifications`` by thousands, ``mapper.to_domain_event``)."""

from __future__ import annotations

from pathlib import Path

from bench.measure import Stopwatch
from ledger.home import Home
from projections.runner import Projector, parallel_rebuild


def read_notifications(home: Path) -> tuple[float, int]:
    """(seconds, notifications) to read and decode every stored event, in order."""
    ledger = Home.load(home).open(audit=True)
    watch = Stopwatch()
    count, position = 0, 0
    try:
        while True:
            with watch:
                page = ledger.recorder.select_notifications(start=position, limit=1000, inclusive_of_start=False)
                for notification in page:
                    ledger.mapper.to_domain_event(notification)
            if not page:
                return watch.seconds, count
            count += len(page)
            position = page[-1].id
    finally:
        ledger.close()


def rebuild(home: Path) -> tuple[float, int]:
    """(seconds, processes) of ``Projector.rebuild()`` (all projections, as ``saksi rebuild``
    runs it) on ``home``; opening the ledger and creating the projector are not timed.
    Processes: 2 where the rebuild forked its second process (``parallel_rebuild``)."""
    ledger = Home.load(home).open()
    try:
        projector = Projector(ledger)
        processes = 2 if parallel_rebuild(ledger) else 1
        watch = Stopwatch()
        with watch:
            projector.rebuild()
        return watch.seconds, processes
    finally:
        ledger.close()


def rebuild_target(home: Path) -> None:
    """What the profile runs: a rebuild, opening included."""
    ledger = Home.load(home).open()
    try:
        Projector(ledger).rebuild()
    finally:
        ledger.close()

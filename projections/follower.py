"""The projection follower as a process of its own: ``python -m projections.follower``.

``saksi serve`` starts one beside each server process (``api.deps.Runtime``), so that
projecting the log runs on the other core instead of taking turns with the write path
for one interpreter's lock (a fifth of the server's time under batch ingest). It opens
the ledger as an auditor does (it never writes the log, and holds no key), writes only
the projections (``Projector.catch_up`` is safe across processes: one projects, the
others find the work done), and stops when its standard input reaches end of file,
which happens when the server that started it exits, however it exits. Readers never
depend on it: every query catches up first (``Runtime.read``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ledger.home import Home
from projections.runner import Projector


def _stop_at_end_of_input(stop: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read1(4096):
            pass
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projections.follower", description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="the ledger home")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between looks at the log")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=_stop_at_end_of_input, args=(stop,), daemon=True, name="parent-watch").start()
    ledger = Home.load(args.home).open(audit=True)  # SAKSI_DATABASE_URL, or the home's
    try:
        Projector(ledger).follow(stop, interval=args.interval)
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sys.exit(main())

"""``python -m bench.stress [crash|fuzz|tamper|suite|all] [--kills N] [--examples N]``

Runs the long reliability checks and rewrites their sections of bench/RELIABILITY.md.
Set SAKSI_TEST_POSTGRES_URL to run the PostgreSQL legs as well.
"""

from __future__ import annotations

import argparse
import time

from bench import stress


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stress", description=__doc__.splitlines()[2])
    parser.add_argument("part", nargs="?", default="all", choices=["crash", "fuzz", "tamper", "suite", "all"])
    parser.add_argument("--kills", type=int, default=stress.KILLS, help="kill -9 per backend (crash)")
    parser.add_argument("--examples", type=int, default=stress.FUZZ_EXAMPLES,
                        help="examples per operation and generation mode (fuzz)")
    arguments = parser.parse_args()
    started = time.monotonic()
    if arguments.part in ("tamper", "all"):
        stress.tamper()
    if arguments.part in ("crash", "all"):
        stress.crash_all(kills=arguments.kills)
    if arguments.part in ("fuzz", "all"):
        stress.fuzz(examples=arguments.examples)
    if arguments.part in ("suite", "all"):
        stress.suite()
    stress.say(f"done in {time.monotonic() - started:.0f} s; see {stress.REPORT}")


if __name__ == "__main__":
    main()

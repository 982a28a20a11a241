"""kill -9 a process in the middle of recording, several times: the log resumes
with no gap, duplicate or fork, and every receipt handed out stays true."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ledger import notes
from ledger.audit import audit_ledger
from ledger.home import Home, init_home
from ledger.scenario import kota_metro

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ledger.home import Home
    from ledger.scenario import kota_metro, SimulatedClock
    clock = SimulatedClock()
    ledger = Home.load(Path(sys.argv[1])).open(clock=clock)
    for item in kota_metro().schedule():
        clock.now = item.at
        receipt = ledger.submit(item.envelope)
        print(receipt.index, receipt.statement_digest, flush=True)
    print("done", flush=True)
    """
)


def test_killed_writers_leave_a_log_that_resumes_cleanly(tmp_path: Path) -> None:
    scenario = kota_metro()
    registrar = scenario.population.registrar
    home = init_home(tmp_path / "home", origin="saksi.test/crash",
                     genesis_actors=[registrar.actor], genesis_keys={registrar.actor: registrar.key})  # fmt: skip
    acknowledged: dict[int, str] = {}
    notes_seen: list[str] = []
    rng = random.Random(7)
    for _ in range(4):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(home.path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        first = process.stdout.readline()  # recording has begun (however slow the start)
        time.sleep(rng.uniform(0.1, 1.0))
        process.kill()  # SIGKILL: no cleanup, possibly mid-transaction
        output, _ = process.communicate()
        for line in (first + output).splitlines():
            if line != "done":
                index, digest = line.split()
                assert acknowledged.setdefault(int(index), digest) == digest  # a receipt never changes
        ledger = Home.load(home.path).open()  # resumes: integrates leftovers, checks the last checkpoint
        notes_seen.append(ledger.tlog.publish())
        for index, digest in acknowledged.items():
            entry = ledger.tlog.entry(index)
            assert ledger.receipt(index).statement_digest == digest, entry
        ledger.close()
    assert acknowledged, "the writer never got to record anything"
    # The signed checkpoints, in order, are consistent with each other.
    ledger = Home.load(home.path).open()
    for older, newer in zip(notes_seen, notes_seen[1:], strict=False):
        old, new = notes.parse_note(older).checkpoint, notes.parse_note(newer).checkpoint
        assert old.size <= new.size
        if 0 < old.size < new.size:
            proof = ledger.tlog.consistency_proof(old.size, new.size)
            notes.verify_consistency_proof(notes.format_consistency(older, newer, proof), log_key=home.log_vkey())
    report = audit_ledger(Home.load(home.path).open(audit=True), log_key=home.log_vkey(),
                          checkpoint_file=home.checkpoint_file, workers=0)  # fmt: skip
    assert report.size >= max(acknowledged) + 1

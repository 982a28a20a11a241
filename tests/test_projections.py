"""The read models (projections) follow the integrity log and answer the users' questions.

Two halves:

* Determinism and restarts, on generated scenarios whose independent statements
  (the regencies' streams) are interleaved differently from one play to the next:
  an incremental follow equals a rebuild from zero; two machines fed the same log
  agree; a crash mid-batch rolls back whole and a restart (fresh projector, or a
  closed and reopened ledger) neither loses nor doubles anything.
* Answers, on a small world built by hand (Kota Metro, one kecamatan, one village,
  two TPS) whose every count, time and index is known: chain of custody,
  readiness, the commitments and neutrality registers, the actor registry at any
  index, and the integrity trail.

Self-contained on purpose: of tests/conftest.py it uses only ``fresh_postgres_database``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.audit import iter_entries
from ledger.canonical import JSONRefused, canonical_bytes
from ledger.envelope import Envelope, decode_statement, key_id, parse_envelope, raw_public_key
from ledger.log import Receipt
from ledger.scenario import (
    Population,
    RegencyScenario,
    Scenario,
    Scheduled,
    Signer,
    derived_key,
    kota_metro,
    mandate,
)
from ledger.statements import format_time
from projections import actors as actors_view
from projections import custody as custody_view
from projections import registers as registers_view
from projections.actors import ActorsProjection, TrailProjection
from projections.base import Entry, Plan, Projection, Rows, Sql, _row_line, dumps
from projections.custody import CustodyProjection, ReadinessProjection
from projections.entries import read_entries
from projections.registers import CommitmentsProjection, PledgesProjection
from projections.runner import (
    ProjectionStatus,
    Projector,
    RebuildFailed,
    all_projections,
    parallel_rebuild,
    query,
)
from tests.conftest import fresh_postgres_database

ORIGIN = "saksi.test/log"
NAMES = ["custody", "readiness", "commitments", "pledges", "actors", "trail"]


# ---------------------------------------------------------------- shared helpers


class MonotoneClock:
    """The ledger's clock for interleaved plays: never goes back (interleaved
    regencies' times are not monotone), so two plays of one order record the
    very same ``recorded_at`` values."""

    def __init__(self, start: datetime = datetime(2024, 8, 1, tzinfo=UTC)) -> None:
        self.now = start

    def advance_to(self, at: datetime) -> None:
        self.now = max(self.now, at)

    def __call__(self) -> datetime:
        return self.now


def small_scenario(seed: str = "projections") -> Scenario:
    """Two small regencies (Kepulauan Seribu 31.01 with the demo's quirks — late,
    missing, short and broken-seal TPS, a breach report, a violation report and its
    ruling — and Kota Solok 13.72): about 480 statements, and two
    independent streams for ``schedule(interleave=...)`` to shuffle.

    A fresh Scenario per play: ``schedule()`` must be called once per object
    (see test_a_scenario_object_schedules_the_same_statements_on_every_play)."""
    population = Population(seed)
    return Scenario(population, [
        RegencyScenario(population, "31.01", tps_per_village=(2, 2), with_governor=True, quirks=True),
        RegencyScenario(population, "13.72", tps_per_village=(1, 1), with_governor=False, quirks=False),
    ])  # fmt: skip


def shuffled(n: int) -> list[Scheduled]:
    """The small scenario in the n-th interleaving of its regencies."""
    return list(small_scenario().schedule(interleave=random.Random(n)))


@pytest.fixture
def open_ledger() -> Iterator[Callable[..., Ledger]]:
    """Open ledgers (closed after the test) with the small scenario's genesis."""
    opened: list[Ledger] = []

    def make(url: str, clock: Callable[[], datetime], *, genesis: Sequence[Any] | None = None,
             log_key: Ed25519PrivateKey | None = None) -> Ledger:  # fmt: skip
        ledger = Ledger(
            database_url=url, origin=ORIGIN,
            genesis=genesis if genesis is not None else small_scenario().genesis,
            log_key=log_key or Ed25519PrivateKey.generate(), clock=clock,
        )  # fmt: skip
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def play(ledger: Ledger, clock: MonotoneClock, items: Sequence[Scheduled], *,
         projector: Projector | None = None, every: int = 0) -> None:  # fmt: skip
    """Submit ``items`` in order; with ``projector``, catch up after every ``every`` submits."""
    for count, item in enumerate(items, 1):
        clock.advance_to(item.at)
        ledger.submit(item.envelope)
        if projector is not None and every and count % every == 0:
            projector.catch_up()


def digests(statuses: Sequence[ProjectionStatus]) -> dict[str, tuple[int, str]]:
    return {s.name: (s.size, s.digest) for s in statuses}


def reference_digests(open_ledger: Callable[..., Ledger], items: Sequence[Scheduled]) -> dict[str, tuple[int, str]]:
    """Another machine: a fresh in-memory ledger fed ``items``, projected once from zero."""
    clock = MonotoneClock()
    ledger = open_ledger("memory:", clock)
    play(ledger, clock, items)
    projector = Projector(ledger)
    projector.catch_up()
    return digests(projector.status())


def row_counts(projector: Projector) -> dict[str, int]:
    with projector.sql() as sql:
        return {
            table: sql.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]
            for projection in projector.projections
            for table in projection.tables
        }


# ---------------------------------------------------------------- the scenarios themselves


def test_interleavings_are_different_orders_of_the_same_statements() -> None:
    """Otherwise the determinism tests below would shuffle nothing."""
    orders = [[item.envelope.digest for item in shuffled(n)] for n in (1, 2, 3)]
    assert len({tuple(order) for order in orders}) == 3
    assert all(sorted(order) == sorted(orders[0]) for order in orders)
    assert len(orders[0]) == len(set(orders[0])) > 400


# ---------------------------------------------------------------- (a) incremental = rebuild


@pytest.mark.parametrize("order", [1, 2])
def test_incremental_follow_and_rebuild_from_zero_give_the_same_digests(
    order: int, tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    items = shuffled(order)
    clock = MonotoneClock()
    ledger = open_ledger("sqlite:///" + str(tmp_path / "x.sqlite"), clock)
    projector = Projector(ledger)
    play(ledger, clock, items, projector=projector, every=7)
    assert projector.catch_up(batch=13) == ledger.tlog.size == len(items)
    followed = digests(projector.status())
    assert list(followed) == NAMES
    assert all(size == len(items) for size, _ in followed.values())

    assert digests(projector.rebuild()) == followed
    assert digests(projector.status()) == followed
    # Rebuilding one projection alone, while the others stay put, changes nothing either.
    assert digests(projector.rebuild(["readiness", "trail"])) == {n: followed[n] for n in ("readiness", "trail")}
    assert digests(projector.status()) == followed
    # Another Projector object on the same database shares the positions; its rebuild agrees.
    fresh = Projector(ledger, all_projections())
    assert fresh.positions() == dict.fromkeys(NAMES, len(items))
    assert digests(fresh.rebuild()) == followed


class WhoApplied(Projection):
    """Records which process applied it: where a rebuild on two processes ran it. Heavy,
    so that two of them go to different groups (the heaviest to this process's)."""

    weight = 1000

    def __init__(self, label: str, *, fail_elsewhere: bool = False) -> None:
        self.name, self.table = f"who_{label}", f"v_who_{label}"
        self.tables = {self.table: ("pid BIGINT PRIMARY KEY", "pid")}
        self.fail_elsewhere, self.parent = fail_elsewhere, os.getpid()

    def apply(self, sql: Sql, entry: Entry) -> None:
        if self.fail_elsewhere and os.getpid() != self.parent:
            raise Crash(f"the second process fails at entry {entry.index}")
        sql.run(f"INSERT OR IGNORE INTO {self.table} VALUES (?)", (os.getpid(),))


REBUILD_ON_TWO = """
import json, os, sys, threading
from ledger.application import Ledger
from projections.runner import Projector, RebuildFailed, all_projections
from tests.test_projections import ORIGIN, WhoApplied, small_scenario

ledger = Ledger(database_url=sys.argv[1], origin=ORIGIN, genesis=small_scenario().genesis, log_key=None)
projector = Projector(ledger, [*all_projections(), WhoApplied("a"), WhoApplied("b", fail_elsewhere=sys.argv[2] == "fail")])
found = {"pid": os.getpid(), "threads": threading.active_count()}
try:
    found["digests"] = {s.name: [s.size, s.digest] for s in projector.rebuild(workers=2)}
except RebuildFailed as error:
    found["error"] = str(error)
found["positions"] = projector.positions()
with projector.sql() as sql:
    found["appliers"] = sorted({row[0] for label in "ab" for row in sql.all(f"SELECT pid FROM v_who_{label}")})
    found["indexes"] = sorted(row[0] for row in sql.all(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'"))
ledger.close()
print(json.dumps(found))
"""


PROJECTION_INDEXES = {name for projection in all_projections() for name in projection.indexes}


def rebuild_on_two(url: str, mode: str = "") -> dict[str, Any]:
    """``Projector.rebuild(workers=2)`` in a process of its own: it forks, which a process
    running other threads (pytest's workers do) may not."""
    done = subprocess.run([sys.executable, "-c", REBUILD_ON_TWO, url, mode], capture_output=True, text=True,
                          timeout=300, check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def projected_with_who_applied(tmp_path: Path, open_ledger: Callable[..., Ledger], items: Sequence[Scheduled], *,
                               fail_elsewhere: bool = False) -> tuple[str, Projector]:  # fmt: skip
    """A SQLite ledger fed ``items`` and projected, WhoApplied "a" and "b" beside the usual
    projections (the order REBUILD_ON_TWO builds them in); its URL and projector."""
    clock = MonotoneClock()
    url = "sqlite:///" + str(tmp_path / "x.sqlite")
    ledger = open_ledger(url, clock)
    play(ledger, clock, items)
    projector = Projector(ledger, [*all_projections(), WhoApplied("a"), WhoApplied("b", fail_elsewhere=fail_elsewhere)])
    projector.catch_up()
    return url, projector


def test_a_rebuild_on_two_processes_gives_the_digests_of_one(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    items = shuffled(3)
    url, projector = projected_with_who_applied(tmp_path, open_ledger, items)
    followed = {name: value for name, value in digests(projector.status()).items() if name in NAMES}

    found = rebuild_on_two(url)
    assert found["threads"] == 1
    assert PROJECTION_INDEXES <= set(found["indexes"])  # dropped for the rebuild, built at its end
    parallel = {name: tuple(value) for name, value in found["digests"].items()}
    assert list(parallel) == [*NAMES, "who_a", "who_b"]
    assert {name: parallel[name] for name in NAMES} == followed
    assert {size for size, _ in parallel.values()} == {len(items)}
    assert found["positions"] == dict.fromkeys([*NAMES, "who_a", "who_b"], len(items))
    appliers = found["appliers"]
    assert found["pid"] in appliers and len(appliers) == 2  # the other group: another process
    assert {name: value for name, value in digests(projector.status()).items() if name in NAMES} == followed
    assert {name: value for name, value in digests(projector.rebuild(workers=1)).items() if name in NAMES} \
        == followed  # fmt: skip
    with projector.sql() as sql:
        assert {sql.one(f"SELECT pid FROM v_who_{label}")["pid"] for label in "ab"} == {os.getpid()}
    assert reference_digests(open_ledger, items) == followed


def test_a_failure_in_the_rebuilds_second_process_is_raised_and_a_catch_up_finishes_the_work(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    items = shuffled(1)
    url, projector = projected_with_who_applied(tmp_path, open_ledger, items, fail_elsewhere=True)
    before = digests(projector.status())

    found = rebuild_on_two(url, "fail")
    assert "Crash: the second process fails at entry 0" in found["error"]
    assert PROJECTION_INDEXES <= set(found["indexes"])  # dropped for the rebuild, built again all the same
    positions = found["positions"]
    assert positions["who_b"] == 0 and positions["who_a"] == len(items)  # that process's own group is done
    assert projector.catch_up() == len(items)  # here, who_b applies: the rest of the work gets done
    after = digests(projector.status())
    del after["who_a"], before["who_a"]  # it holds the pid of the process that rebuilt it
    assert after == before


def test_a_rebuild_refuses_what_it_cannot_do_before_clearing_anything(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    clock = MonotoneClock()
    ledger = open_ledger("memory:", clock)
    play(ledger, clock, shuffled(1)[:50])
    projector = Projector(ledger)
    projector.catch_up()
    before = digests(projector.status())
    with pytest.raises(ValueError, match="only a SQLite file database"):
        projector.rebuild(workers=2)
    with pytest.raises(ValueError, match="1 or 2 processes, not 3"):
        projector.rebuild(workers=3)
    file_ledger = open_ledger(f"sqlite:///{tmp_path / 'x.sqlite'}", clock)
    other = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
    other.start()  # pytest's workers may run threads of their own: this one is certain
    with pytest.raises(ValueError, match="only a process running one thread"):
        Projector(file_ledger).rebuild(workers=2)
    assert digests(projector.status()) == before
    assert not parallel_rebuild(ledger)  # in memory: one process, whatever the size


PARALLEL_CHECK = """
import sys, threading
from ledger.application import Ledger
from ledger.scenario import kota_metro
from projections import runner
ledger = Ledger(database_url=sys.argv[1], origin="saksi.test/log", genesis=kota_metro().genesis,
                log_key=None, audit=True)
runner.PARALLEL_FROM = int(sys.argv[2])
alone = runner.parallel_rebuild(ledger)
stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()
print(alone, runner.parallel_rebuild(ledger))
stop.set()
"""


def test_a_rebuild_forks_by_default_only_from_a_single_thread_and_a_big_enough_sqlite_log(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    """In a process of its own (pytest's workers run threads): alone, with enough entries,
    it forks; with another thread running, or too few entries, it does not."""
    clock = MonotoneClock()
    url = "sqlite:///" + str(tmp_path / "x.sqlite")
    ledger = open_ledger(url, clock)
    play(ledger, clock, shuffled(1)[:30])

    def check(threshold: int) -> str:
        done = subprocess.run([sys.executable, "-c", PARALLEL_CHECK, url, str(threshold)],
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return done.stdout.strip()

    assert check(30) == "True False"
    assert check(31) == "False False"


def test_digests_reflect_the_log_not_a_constant(open_ledger: Callable[..., Ledger]) -> None:
    """A different interleaving puts statements at other indexes: the trail (which
    holds indexes) must not hash the same — the digest really covers the rows."""
    one, two = reference_digests(open_ledger, shuffled(1)), reference_digests(open_ledger, shuffled(2))
    assert one["trail"] != two["trail"]
    assert one["custody"] != two["custody"]  # hops carry their index and leaf hash


# ---------------------------------------------------------------- (b) two machines


def test_two_ledgers_fed_the_same_log_in_the_same_order_give_the_same_digests(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    """Machine A: SQLite, follows every 5 submits. Machine B: in memory, its own log
    key, projects once at the end. Same statements, same order, same digests."""
    items = shuffled(3)
    clock_a = MonotoneClock()
    a = open_ledger("sqlite:///" + str(tmp_path / "a.sqlite"), clock_a)
    projector_a = Projector(a)
    play(a, clock_a, items, projector=projector_a, every=5)
    projector_a.catch_up()
    b = reference_digests(open_ledger, items)
    assert digests(projector_a.status()) == b
    assert all(size == len(items) for size, _ in b.values())


def test_read_models_answer_the_same_whatever_the_interleaving(open_ledger: Callable[..., Ledger]) -> None:
    """Indexes differ between interleavings; what the users are told must not."""
    answers = []
    for order in (1, 2):
        clock = MonotoneClock()
        ledger = open_ledger("memory:", clock)
        projector = Projector(ledger)
        play(ledger, clock, shuffled(order), projector=projector, every=50)
        projector.catch_up()
        summary = {}
        for region in ("ID", "31", "31.01", "31.01.01", "13.72"):
            found = query(projector, custody_view.readiness, region)
            summary[region] = {k: v for k, v in found.items() if k != "problems"}
            summary[region]["problems"] = [(p["tps"], p["status"], p["on_time"], p["discrepancy"], p["missing"])
                                           for p in found["problems"]]  # fmt: skip
        consignments = query(projector, custody_view.consignments, limit=10_000)
        summary["consignments"] = [(c["id"], c["status"], c["on_time"], c["missing"], len(c["witnesses"]),
                                    len(c["discrepancies"])) for c in consignments]  # fmt: skip
        summary["commitments"] = [(c["id"], len(c["endorsements"]), len(c["breach_reports"]))
                                  for c in query(projector, registers_view.commitments)]  # fmt: skip
        summary["pledges"] = [(p["id"], [r["ruling"] and r["ruling"]["ruling"] for r in p["reports"]])
                              for p in query(projector, registers_view.pledges)]  # fmt: skip
        answers.append(summary)
    assert answers[0] == answers[1]
    seribu = answers[0]["31.01"]
    # The demo's quirks: three TPS late (complete, so holding all), one never received,
    # one short and one with a broken seal (in discrepancy).
    assert (seribu["tps"], seribu["holding_all"], seribu["by_deadline"], seribu["late"],
            seribu["not_received"], seribu["in_discrepancy"]) == (12, 9, 6, 3, 1, 2)  # fmt: skip
    assert answers[0]["13.72"]["tps"] == answers[0]["13.72"]["by_deadline"] == 13


# ---------------------------------------------------------------- (c) crashes and restarts


class Crash(Exception):
    pass


class PledgesCrashingAt(PledgesProjection):
    """The pledges projection (4th of 6: custody and readiness have already worked out
    the batch's writes) dying on one entry while the batch's writes are worked out."""

    reads = None  # every entry, so that it can die on any

    def __init__(self, index: int) -> None:
        self.index = index

    def _apply(self, rows: Rows, entry: Entry) -> None:
        if entry.index == self.index:
            raise Crash(f"power cut at entry {entry.index}")
        super()._apply(rows, entry)


class TrailFailingAt(TrailProjection):
    """The trail projection (6th of 6) whose writes fail in the write transaction, after
    the five others' writes of the batch were made in it: on the batch holding entry
    ``index`` it also copies a row it already holds (a second primary key)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def apply_batch(self, sql: Sql, entries: Sequence[Entry]) -> None:
        super().apply_batch(sql, entries)
        if any(e.index == self.index for e in entries):
            sql.run("INSERT INTO v_trail SELECT * FROM v_trail WHERE idx = 0")


def crashing_projections(index: int, where: str) -> list[Any]:
    pledges, trail = (PledgesCrashingAt(index), TrailProjection()) if where == "planning" else (
        PledgesProjection(), TrailFailingAt(index))  # fmt: skip
    return [CustodyProjection(), ReadinessProjection(), CommitmentsProjection(), pledges, ActorsProjection(), trail]


@pytest.mark.parametrize("where", ["planning", "writing"])
def test_a_crash_mid_batch_rolls_back_the_whole_batch_and_a_fresh_projector_resumes(
    tmp_path: Path, open_ledger: Callable[..., Ledger], where: str
) -> None:
    """A batch dies while its writes are worked out (a projection raises) or while they
    are made (the database refuses the last projection's): either way none of it stays."""
    items = shuffled(4)
    first, second = len(items) * 2 // 5, len(items) * 4 // 5
    clock = MonotoneClock()
    ledger = open_ledger("sqlite:///" + str(tmp_path / "x.sqlite"), clock)
    play(ledger, clock, items[:first])
    projector = Projector(ledger)
    projector.catch_up()
    before, rows_before = digests(projector.status()), row_counts(projector)
    play(ledger, clock, items[first:second])  # integrated, not yet projected

    # A crash inside the only batch: nothing of it stays, no projection moves.
    crashing = Projector(ledger, crashing_projections(first + 25, where))
    failure = Crash if where == "planning" else IntegrityError
    with pytest.raises(failure):
        crashing.catch_up(batch=500)
    assert crashing.positions() == dict.fromkeys(NAMES, first)
    assert digests(crashing.status()) == before
    assert row_counts(crashing) == rows_before

    # A crash in the third batch of ten: the first two batches are committed whole.
    crashing = Projector(ledger, crashing_projections(first + 25, where))
    with pytest.raises(failure):
        crashing.catch_up(batch=10)
    assert crashing.positions() == dict.fromkeys(NAMES, first + 20)
    with crashing.sql() as sql:
        assert tuple(sql.one("SELECT MAX(idx), COUNT(*) FROM v_trail")) == (first + 19, first + 20)
    assert digests(crashing.status()) == reference_digests(open_ledger, items[: first + 20])

    # The restart: a fresh projector on the same database resumes where the last commit left off.
    resumed = Projector(ledger)
    assert resumed.positions() == dict.fromkeys(NAMES, first + 20)
    play(ledger, clock, items[second:], projector=resumed, every=9)
    resumed.catch_up()
    final = digests(resumed.status())
    assert all(size == len(items) for size, _ in final.values())
    with resumed.sql() as sql:
        assert sql.one("SELECT COUNT(*) AS n FROM v_trail")["n"] == len(items)  # nothing doubled
    assert digests(resumed.rebuild()) == final
    assert reference_digests(open_ledger, items) == final


def test_closing_and_reopening_ledger_and_projector_mid_follow_loses_and_doubles_nothing(
    tmp_path: Path, open_ledger: Callable[..., Ledger]
) -> None:
    items = shuffled(5)
    half = len(items) // 2
    url = "sqlite:///" + str(tmp_path / "x.sqlite")
    clock, log_key = MonotoneClock(), Ed25519PrivateKey.generate()
    ledger = open_ledger(url, clock, log_key=log_key)
    projector = Projector(ledger)
    play(ledger, clock, items[:half], projector=projector, every=7)
    projected = projector.catch_up()
    play(ledger, clock, items[half : half + 17])  # recorded, not projected, when the process stops
    ledger.close()

    ledger = open_ledger(url, clock, log_key=log_key)
    assert ledger.tlog.size == half + 17
    projector = Projector(ledger)
    assert projector.positions() == dict.fromkeys(NAMES, projected)
    play(ledger, clock, items[half + 17 :], projector=projector, every=11)
    projector.catch_up()
    final = digests(projector.status())
    assert all(size == len(items) for size, _ in final.values())
    assert row_counts(projector)["v_trail"] == len(items)
    assert digests(projector.rebuild()) == final
    assert reference_digests(open_ledger, items) == final


# ---------------------------------------------------------------- (d) a world built by hand

CITY, KEC, VILLAGE = "18.72", "18.72.01", "18.72.01.1001"
TPS_1, TPS_2 = "18.72.01.1001.001", "18.72.01.1001.002"
DUE_KEC, DUE_VILLAGE, DUE_TPS = "2024-11-19T17:00:00Z", "2024-11-23T17:00:00Z", "2024-11-26T17:00:00Z"
ITEMS_1 = {"ballot_box_mayor": 1, "ballots_mayor": 410, "result_forms_mayor": 1, "booth": 4, "seals": 10}
ITEMS_2 = {"ballot_box_mayor": 1, "ballots_mayor": 308, "result_forms_mayor": 1, "booth": 4, "seals": 10}
ITEMS_V = {"ballot_box_mayor": 2, "ballots_mayor": 718, "result_forms_mayor": 2, "booth": 8, "seals": 20}
SHORT_1 = {**ITEMS_1, "ballots_mayor": 360}
BACK_1 = {"ballot_box_mayor": 1, "result_forms_mayor": 1}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def t(text: str) -> str:
    """The ledger's time format (SPEC §3: six fractional digits)."""
    return format_time(at(text))


@dataclass
class Hand:
    """The hand-built world: every envelope and its receipt by name."""

    ledger: Ledger
    projector: Projector
    population: Population
    clock: MonotoneClock
    sent: dict[str, tuple[Envelope, Receipt]] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)  # name → the clock's time at submit
    mid: dict[str, Any] = field(default_factory=dict)  # answers taken before the receipts

    def submit(self, name: str, when: str, envelope: Envelope) -> Receipt:
        assert at(when) >= self.clock.now, "the hand world's clock only moves forward"
        self.clock.now = at(when)
        receipt = self.ledger.submit(envelope)
        self.sent[name], self.recorded[name] = (envelope, receipt), t(when)
        return receipt

    def index(self, name: str) -> int:
        return self.sent[name][1].index

    def envelope(self, name: str) -> Envelope:
        return self.sent[name][0]

    def digest(self, name: str) -> str:
        return self.sent[name][0].digest

    def hop(self, name: str, actor: str, issued_at: str) -> dict[str, Any]:
        """The hop as it must appear: signer, key, digest, both times, index, leaf hash."""
        envelope, receipt = self.sent[name]
        return {"index": receipt.index, "actor": actor, "keyid": envelope.keyid, "digest": envelope.digest,
                "issued_at": issued_at, "recorded_at": self.recorded[name],
                "leaf_hash": self.ledger.tlog.leaf_hash(receipt.index).hex()}  # fmt: skip

    def ask(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return query(self.projector, function, *args, **kwargs)


def dispatch(region: str, receiver: str, items: dict[str, int], due_by: str, seal: str, *,
             direction: str = "outbound", parent: str | None = None) -> dict[str, Any]:  # fmt: skip
    body = {"region": region, "receiver": receiver, "direction": direction, "items": items,
            "seals": [seal], "due_by": due_by}  # fmt: skip
    if parent:
        body["parent"] = parent
    return body


def receipt(region: str, items: dict[str, int], *, condition: str = "good") -> dict[str, Any]:
    return {"region": region, "items": items, "seals_intact": True, "condition": condition}


PLEDGE_BODY = {
    "region": CITY, "institution": "asn", "undertakings": ["neutral_before_during_after", "no_taking_sides"],
    "text": "Ikrar netralitas ASN Kota Metro.", "valid_until": "2025-03-01T00:00:00Z",
}  # fmt: skip
DECLARATION_BODY = {
    "region": CITY, "race": "mayor", "kind": "peaceful_campaign", "title": "Deklarasi kampanye damai",
    "text": "Kami berjanji berkampanye damai.", "document_sha256": "ab" * 32,
}  # fmt: skip


@pytest.fixture(scope="module")
def hand() -> Iterator[Hand]:
    """Kota Metro by hand: KPU → PPK Metro Pusat → PPS Metro → KPPS TPS 001 and 002,
    with a PTPS (granted TPS 002 as well, mid-way), a Panwascam, Bawaslu, a candidate
    pair, ASN, BKN and an observer. The PPS rotates its key before dispatching to
    the TPS. TPS 001 receives 50 ballots short (signed offline on time, recorded
    after the deadline) and reports it; TPS 002 receives everything, late. TPS 001's
    sealed box goes back to the PPS on voting night."""
    population = Population("hand-checked")
    clock = MonotoneClock(at("2024-09-01T01:00:00"))
    ledger = Ledger(database_url="memory:", origin=ORIGIN, genesis=population.genesis,
                    log_key=Ed25519PrivateKey.generate(), clock=clock)  # fmt: skip
    world = Hand(ledger, Projector(ledger), population, clock)
    reg, s = population.registrar, population.signer
    world.submit("genesis", "2024-09-01T01:00:00", population.genesis_envelope(clock.now))
    for actor, role, jurisdiction in [
        ("kpu-metro", "kpu", CITY), ("ppk-metro-pusat", "ppk", KEC), ("pps-metro", "pps", VILLAGE),
        ("kpps-001", "kpps", TPS_1), ("kpps-002", "kpps", TPS_2), ("ptps-001", "ptps", TPS_1),
        ("panwascam-metro-pusat", "panwascam", KEC), ("bawaslu-metro", "bawaslu", CITY),
        ("paslon-1", "candidate_pair", CITY), ("asn-metro", "asn", CITY), ("bkn", "bkn", "ID"),
        ("perludem", "observer", "ID"),
    ]:  # fmt: skip
        world.submit(f"register {actor}", "2024-09-01T02:00:00",
                     population.register(actor, actor.upper(), role, jurisdiction, clock.now))  # fmt: skip

    # The two registers. Commitments: a declaration, two endorsements, a breach report.
    # Neutrality: a pledge, a finding ruled on by BKN, an observer's report not yet ruled on.
    w = lambda name, when, signer, type, subject, body, refs=None: world.submit(  # noqa: E731
        name, when, signer.sign(type, subject, body, refs=refs, issued_at=at(when)))
    w("pledged", "2024-09-20T02:00:00", s("asn-metro"), "pledge.made", "pledge-asn-metro", PLEDGE_BODY)
    w("declared", "2024-09-24T02:00:00", s("paslon-1"), "commitment.declared", "commitment-paslon-1-damai",
      DECLARATION_BODY)  # fmt: skip
    for endorser, when in (("kpu-metro", "2024-09-24T05:00:00"), ("bawaslu-metro", "2024-09-24T05:30:00")):
        w(f"endorsed by {endorser}", when, s(endorser), "commitment.endorsed",
          "commitment-paslon-1-damai", {"region": CITY, "note": f"Disaksikan {endorser}"},
          [world.digest("declared")])  # fmt: skip
    w("finding", "2024-10-15T03:00:00", s("panwascam-metro-pusat"), "pledge.violation_reported",
      "pledge-asn-metro", {"region": KEC, "kind": "finding", "occurred_at": "2024-10-13T03:00:00Z",
                           "place": "Kantor kelurahan", "facts": "Lurah mengunggah dukungan."},
      [world.digest("pledged")])  # fmt: skip
    w("report", "2024-10-20T03:00:00", s("perludem"), "pledge.violation_reported", "pledge-asn-metro",
      {"region": CITY, "kind": "report", "occurred_at": "2024-10-19T03:00:00Z", "place": "Pasar Cendrawasih",
       "facts": "Camat membagikan stiker paslon."}, [world.digest("pledged")])  # fmt: skip
    w("ruling", "2024-11-05T03:00:00", s("bkn"), "pledge.violation_ruled", "pledge-asn-metro",
      {"region": KEC, "ruling": "upheld", "sanction": "Teguran tertulis", "reasoning": "Terbukti."},
      [world.digest("finding")])  # fmt: skip
    w("breach", "2024-11-10T05:00:00", s("panwascam-metro-pusat"), "commitment.breach_reported",
      "commitment-paslon-1-damai",
      {"region": KEC, "occurred_at": "2024-11-09T05:00:00Z", "place": "Lapangan Samber",
       "facts": "Pembagian sembako saat kampanye.", "evidence_sha256": "cd" * 32},
      [world.digest("declared")])  # fmt: skip

    # Logistics down to the village.
    w("out kec", "2024-11-15T02:00:00", s("kpu-metro"), "logistics.dispatched", f"out.{KEC}",
      dispatch(KEC, "ppk-metro-pusat", ITEMS_V, DUE_KEC, "SEGEL-K1"))  # fmt: skip
    w("out kec witnessed", "2024-11-15T02:05:00", s("panwascam-metro-pusat"), "logistics.witnessed",
      f"out.{KEC}", {"region": KEC}, [world.digest("out kec")])  # fmt: skip
    w("out kec received", "2024-11-15T06:00:00", s("ppk-metro-pusat"), "logistics.received", f"out.{KEC}",
      receipt(KEC, ITEMS_V), [world.digest("out kec")])  # fmt: skip
    w("out village", "2024-11-21T02:00:00", s("ppk-metro-pusat"), "logistics.dispatched", f"out.{VILLAGE}",
      dispatch(VILLAGE, "pps-metro", ITEMS_V, DUE_VILLAGE, "SEGEL-V1", parent=f"out.{KEC}"))  # fmt: skip
    w("out village received", "2024-11-21T05:00:00", s("pps-metro"), "logistics.received", f"out.{VILLAGE}",
      receipt(VILLAGE, ITEMS_V), [world.digest("out village")])  # fmt: skip

    # The PPS rotates its key: adds a new one (signed with the old), revokes the old (signed with the new).
    old_pps = s("pps-metro")
    new_pps = Signer("pps-metro", derived_key("hand-checked", "pps-metro/2"), random.Random("pps-metro/2"))
    w("pps key added", "2024-11-22T01:00:00", old_pps, "actor.key_added", "pps-metro", {"key": new_pps.public_key})
    w("pps key revoked", "2024-11-22T01:10:00", new_pps, "actor.key_revoked", "pps-metro",
      {"keyid": key_id(raw_public_key(old_pps.key)), "reason": "Perangkat hilang"})

    # Down to the TPS.
    w("out tps1", "2024-11-25T02:00:00", new_pps, "logistics.dispatched", f"out.{TPS_1}",
      dispatch(TPS_1, "kpps-001", ITEMS_1, DUE_TPS, "SEGEL-T1", parent=f"out.{VILLAGE}"))  # fmt: skip
    w("out tps1 witnessed", "2024-11-25T02:05:00", s("ptps-001"), "logistics.witnessed", f"out.{TPS_1}",
      {"region": TPS_1}, [world.digest("out tps1")])  # fmt: skip
    w("out tps2", "2024-11-25T03:00:00", new_pps, "logistics.dispatched", f"out.{TPS_2}",
      dispatch(TPS_2, "kpps-002", ITEMS_2, DUE_TPS, "SEGEL-T2", parent=f"out.{VILLAGE}"))  # fmt: skip
    world.projector.catch_up()
    world.mid["village"] = world.ask(custody_view.readiness, VILLAGE)
    world.mid["tps1"] = world.ask(custody_view.consignment, f"out.{TPS_1}")

    # PTPS 001 is granted TPS 002 too, and witnesses its dispatch under that mandate.
    w("ptps granted", "2024-11-26T10:00:00", reg, "actor.mandate_granted", "ptps-001",
      {"mandate": mandate("ptps", TPS_2, mandate_id="m2")})
    w("out tps2 witnessed", "2024-11-26T10:05:00", s("ptps-001"), "logistics.witnessed", f"out.{TPS_2}",
      {"region": TPS_2}, [world.digest("out tps2")])  # fmt: skip
    world.projector.catch_up()

    # TPS 001: counted 50 ballots short, signed offline on the 25th, recorded after the deadline.
    world.submit("out tps1 received", "2024-11-27T01:00:00", s("kpps-001").sign(
        "logistics.received", f"out.{TPS_1}", receipt(TPS_1, SHORT_1, condition="incomplete"),
        refs=[world.digest("out tps1")], issued_at=at("2024-11-25T05:00:00")))  # fmt: skip
    w("out tps1 short", "2024-11-27T01:20:00", s("kpps-001"), "logistics.discrepancy_reported",
      f"out.{TPS_1}", {"region": TPS_1, "kinds": ["shortage"], "items": {"ballots_mayor": 50},
                       "facts": "Surat suara kurang 50 lembar."}, [world.digest("out tps1 received")])  # fmt: skip
    w("out tps1 receipt witnessed", "2024-11-27T01:30:00", s("ptps-001"), "logistics.witnessed",
      f"out.{TPS_1}", {"region": TPS_1}, [world.digest("out tps1 received")])  # fmt: skip
    # TPS 002: everything, but late.
    w("out tps2 received", "2024-11-27T03:00:00", s("kpps-002"), "logistics.received", f"out.{TPS_2}",
      receipt(TPS_2, ITEMS_2), [world.digest("out tps2")])  # fmt: skip
    # Voting night: TPS 001's sealed box and forms go back to the PPS.
    w("ret tps1", "2024-11-27T14:00:00", s("kpps-001"), "logistics.dispatched", f"ret.{TPS_1}",
      dispatch(TPS_1, "pps-metro", BACK_1, "2024-11-28T17:00:00Z", "SEGEL-R1", direction="return",
               parent=f"out.{TPS_1}"))  # fmt: skip
    w("ret tps1 received", "2024-11-27T15:00:00", new_pps, "logistics.received", f"ret.{TPS_1}",
      receipt(TPS_1, BACK_1), [world.digest("ret tps1")])  # fmt: skip
    world.projector.catch_up()
    yield world
    ledger.close()


def test_hand_world_is_fully_projected(hand: Hand) -> None:
    size = hand.ledger.tlog.size
    assert size == len(hand.sent) == hand.index("ret tps1 received") + 1
    assert [s.size for s in hand.projector.status()] == [size] * 6


def test_custody_of_a_short_consignment_received_on_time_by_its_signed_time(hand: Hand) -> None:
    found = hand.ask(custody_view.consignment, f"out.{TPS_1}")
    assert {k: found[k] for k in ("id", "sender", "receiver", "direction", "region", "parent", "status")} == {
        "id": f"out.{TPS_1}", "sender": "pps-metro", "receiver": "kpps-001", "direction": "outbound",
        "region": TPS_1, "parent": f"out.{VILLAGE}", "status": "received_with_discrepancy",
    }  # fmt: skip
    assert found["items"] == ITEMS_1
    assert found["received_items"] == SHORT_1
    assert found["missing"] == {"ballots_mayor": 50}
    assert (found["seals"], found["seals_intact"], found["condition"]) == (["SEGEL-T1"], True, "incomplete")
    assert found["due_by"] == DUE_TPS
    # Signed on the 25th, recorded on the 27th (after the deadline): on time by the signed claim.
    assert found["on_time"] is True
    assert found["receipt"] == hand.hop("out tps1 received", "kpps-001", t("2024-11-25T05:00:00"))
    assert found["receipt"]["recorded_at"] == t("2024-11-27T01:00:00")
    # Dispatched with the PPS's new key, after the old one was revoked.
    assert found["dispatch"] == hand.hop("out tps1", "pps-metro", t("2024-11-25T02:00:00"))
    assert found["dispatch"]["keyid"] == hand.envelope("pps key revoked").keyid
    assert found["dispatch"]["keyid"] != hand.envelope("out village received").keyid
    assert found["witnesses"] == [
        {**hand.hop("out tps1 witnessed", "ptps-001", t("2024-11-25T02:05:00")), "ref": hand.digest("out tps1")},
        {**hand.hop("out tps1 receipt witnessed", "ptps-001", t("2024-11-27T01:30:00")),
         "ref": hand.digest("out tps1 received")},
    ]  # fmt: skip
    assert found["discrepancies"] == [{
        **hand.hop("out tps1 short", "kpps-001", t("2024-11-27T01:20:00")), "kinds": ["shortage"],
        "items": {"ballots_mayor": 50}, "facts": "Surat suara kurang 50 lembar.",
        "ref": hand.digest("out tps1 received"),
    }]  # fmt: skip


def test_custody_before_the_receipt_shows_everything_missing(hand: Hand) -> None:
    before = hand.mid["tps1"]
    assert before["status"] == "dispatched"
    assert before["receipt"] is None and before["received_items"] is None and before["on_time"] is None
    assert before["missing"] == ITEMS_1
    assert len(before["witnesses"]) == 1 and before["discrepancies"] == []


def test_custody_of_a_complete_but_late_consignment_and_of_the_return(hand: Hand) -> None:
    late = hand.ask(custody_view.consignment, f"out.{TPS_2}")
    assert (late["status"], late["on_time"], late["missing"], late["received_items"]) == (
        "received", False, {}, ITEMS_2)  # fmt: skip
    assert late["receipt"] == hand.hop("out tps2 received", "kpps-002", t("2024-11-27T03:00:00"))
    # Witnessed under the mandate granted mid-way.
    assert [w["index"] for w in late["witnesses"]] == [hand.index("out tps2 witnessed")]
    back = hand.ask(custody_view.consignment, f"ret.{TPS_1}")
    assert (back["direction"], back["sender"], back["receiver"], back["status"], back["on_time"]) == (
        "return", "kpps-001", "pps-metro", "received", True)  # fmt: skip
    assert back["parent"] == f"out.{TPS_1}" and back["items"] == BACK_1
    assert back["receipt"]["keyid"] == hand.envelope("pps key revoked").keyid
    assert hand.ask(custody_view.consignment, "out.nowhere") is None


def test_consignments_filter_by_region_and_status(hand: Hand) -> None:
    ids = lambda **kw: [c["id"] for c in hand.ask(custody_view.consignments, **kw)]  # noqa: E731
    everything = [f"out.{KEC}", f"out.{VILLAGE}", f"out.{TPS_1}", f"out.{TPS_2}", f"ret.{TPS_1}"]
    assert ids() == ids(region="ID") == ids(region=CITY) == ids(region=KEC) == everything
    assert ids(region=VILLAGE) == everything[1:]
    assert ids(region=TPS_1) == [f"out.{TPS_1}", f"ret.{TPS_1}"]
    assert ids(region="18.72.02") == []
    assert ids(status="received_with_discrepancy") == [f"out.{TPS_1}"]
    assert ids(after=f"out.{TPS_2}") == [f"ret.{TPS_1}"]
    assert ids(limit=2) == everything[:2]


def test_tps_custody_is_the_tree_of_hops_out_and_back(hand: Hand) -> None:
    tree = hand.ask(custody_view.tps_custody, TPS_1)
    assert (tree["tps"], tree["name"]) == (TPS_1, "TPS 001 Metro")

    def shape(node: dict[str, Any]) -> tuple[str, str | None, int, list[Any]]:
        return (node["id"], node["parent"], node["dispatch"]["index"], [shape(c) for c in node["children"]])

    assert [shape(root) for root in tree["hops"]] == [
        (f"out.{KEC}", None, hand.index("out kec"), [
            (f"out.{VILLAGE}", f"out.{KEC}", hand.index("out village"), [
                (f"out.{TPS_1}", f"out.{VILLAGE}", hand.index("out tps1"), [
                    (f"ret.{TPS_1}", f"out.{TPS_1}", hand.index("ret tps1"), []),
                ]),
            ]),
        ]),
    ]  # fmt: skip
    # The neighbour TPS's hops are not this TPS's custody.
    other = hand.ask(custody_view.tps_custody, TPS_2)
    village = other["hops"][0]["children"][0]
    assert [c["id"] for c in village["children"]] == [f"out.{TPS_2}"]


def test_readiness_before_the_tps_receipts(hand: Hand) -> None:
    mid = hand.mid["village"]
    assert {k: mid[k] for k in ("tps", "holding_all", "by_deadline", "late", "not_received",
                                "not_dispatched", "in_discrepancy")} == {
        "tps": 2, "holding_all": 0, "by_deadline": 0, "late": 0, "not_received": 2, "not_dispatched": 0,
        "in_discrepancy": 0,
    }  # fmt: skip
    assert mid["missing_items"] == {"ballot_box_mayor": 2, "ballots_mayor": 718, "booth": 8,
                                    "result_forms_mayor": 2, "seals": 20}  # fmt: skip
    assert [(p["tps"], p["status"], p["consignment"]) for p in mid["problems"]] == [
        (TPS_1, "dispatched", f"out.{TPS_1}"), (TPS_2, "dispatched", f"out.{TPS_2}")]


@pytest.mark.parametrize("region", [VILLAGE, KEC, CITY, "18", "ID"])
def test_readiness_of_the_village_and_every_region_above_it(hand: Hand, region: str) -> None:
    found = hand.ask(custody_view.readiness, region)
    assert found["region"] == region
    assert {k: found[k] for k in ("tps", "holding_all", "by_deadline", "late", "not_received",
                                  "not_dispatched", "in_discrepancy", "missing_items")} == {
        "tps": 2,
        "holding_all": 1,  # TPS 002 (complete, late); TPS 001 is short
        "by_deadline": 0,
        "late": 1,  # TPS 002: TPS 001 signed its receipt before the deadline
        "not_received": 0, "not_dispatched": 0,
        "in_discrepancy": 1,  # TPS 001
        "missing_items": {"ballots_mayor": 50},
    }  # fmt: skip
    assert found["problems"] == [
        {"tps": TPS_1, "status": "received_with_discrepancy", "consignment": f"out.{TPS_1}", "on_time": True,
         "discrepancy": True, "missing": {"ballots_mayor": 50},
         "received_issued_at": t("2024-11-25T05:00:00"), "received_recorded_at": t("2024-11-27T01:00:00")},
        {"tps": TPS_2, "status": "received", "consignment": f"out.{TPS_2}", "on_time": False,
         "discrepancy": False, "missing": {},
         "received_issued_at": t("2024-11-27T03:00:00"), "received_recorded_at": t("2024-11-27T03:00:00")},
    ]  # fmt: skip


def test_readiness_of_one_tps_and_of_a_region_without_tps(hand: Hand) -> None:
    one = hand.ask(custody_view.readiness, TPS_2)
    assert (one["tps"], one["holding_all"], one["late"], one["in_discrepancy"]) == (1, 1, 1, 0)
    empty = hand.ask(custody_view.readiness, "18.72.02")
    assert (empty["tps"], empty["holding_all"], empty["missing_items"], empty["problems"]) == (0, 0, {}, [])
    assert hand.ask(custody_view.readiness, "31")["tps"] == 0
    drill = hand.ask(custody_view.children_readiness, KEC)
    assert [(r["region"], r["tps"]) for r in drill] == [(VILLAGE, 2)]


def test_commitments_register_with_endorsements_and_breach_report(hand: Hand) -> None:
    [found] = hand.ask(registers_view.commitments)
    assert {k: found[k] for k in ("id", "declarer", "region", "race", "kind", "title", "text",
                                  "document_sha256")} == {
        "id": "commitment-paslon-1-damai", "declarer": "paslon-1", "region": CITY, "race": "mayor",
        "kind": "peaceful_campaign", "title": DECLARATION_BODY["title"], "text": DECLARATION_BODY["text"],
        "document_sha256": "ab" * 32,
    }  # fmt: skip
    assert found["declaration"] == hand.hop("declared", "paslon-1", t("2024-09-24T02:00:00"))
    assert found["endorsements"] == [
        {**hand.hop(f"endorsed by {e}", e, t(when)), "region": CITY, "note": f"Disaksikan {e}"}
        for e, when in (("kpu-metro", "2024-09-24T05:00:00"), ("bawaslu-metro", "2024-09-24T05:30:00"))
    ]  # fmt: skip
    assert found["breach_reports"] == [{
        **hand.hop("breach", "panwascam-metro-pusat", t("2024-11-10T05:00:00")), "region": KEC,
        "occurred_at": "2024-11-09T05:00:00Z", "place": "Lapangan Samber",
        "facts": "Pembagian sembako saat kampanye.", "evidence_sha256": "cd" * 32,
    }]  # fmt: skip
    ids = lambda **kw: [c["id"] for c in hand.ask(registers_view.commitments, **kw)]  # noqa: E731
    assert ids(region=TPS_1) == ids(region="18") == ids(declarer="paslon-1") == ["commitment-paslon-1-damai"]
    assert ids(region="18.71") == ids(kind="anti_hoax") == ids(declarer="kpu-metro") == []


def test_neutrality_register_with_reports_and_the_ruling_beside_its_report(hand: Hand) -> None:
    [found] = hand.ask(registers_view.pledges, institution="asn")
    assert (found["id"], found["pledger"], found["region"], found["valid_until"]) == (
        "pledge-asn-metro", "asn-metro", CITY, "2025-03-01T00:00:00Z")  # fmt: skip
    assert found["undertakings"] == PLEDGE_BODY["undertakings"]
    assert found["pledge"] == hand.hop("pledged", "asn-metro", t("2024-09-20T02:00:00"))
    finding, report = found["reports"]
    assert finding == {
        **hand.hop("finding", "panwascam-metro-pusat", t("2024-10-15T03:00:00")), "region": KEC,
        "kind": "finding", "occurred_at": "2024-10-13T03:00:00Z", "place": "Kantor kelurahan",
        "facts": "Lurah mengunggah dukungan.",
        "ruling": {**hand.hop("ruling", "bkn", t("2024-11-05T03:00:00")), "region": KEC, "ruling": "upheld",
                   "sanction": "Teguran tertulis", "reasoning": "Terbukti."},
    }  # fmt: skip
    assert (report["actor"], report["kind"], report["index"], report["ruling"]) == (
        "perludem", "report", hand.index("report"), None)  # fmt: skip
    assert hand.ask(registers_view.pledges, institution="tni") == []
    assert [p["id"] for p in hand.ask(registers_view.pledges, region=VILLAGE)] == ["pledge-asn-metro"]


def test_actor_as_it_stood_before_and_after_its_key_rotation(hand: Hand) -> None:
    added, revoked = hand.index("pps key added"), hand.index("pps key revoked")
    old, new = hand.envelope("out village received").keyid, hand.envelope("pps key revoked").keyid
    registered = hand.index("register pps-metro")
    assert hand.ask(actors_view.actor, "pps-metro", at_index=registered - 1) is None

    def keys(at_index: int | None) -> list[tuple[str, int, int | None, str]]:
        found = hand.ask(actors_view.actor, "pps-metro", at_index=at_index)
        assert found["as_of_index"] == at_index and found["registered_index"] == registered
        return [(k["keyid"], k["added_index"], k["revoked_index"], k["state"]) for k in found["keys"]]

    assert keys(registered) == keys(added - 1) == [(old, registered, None, "in_force")]
    assert keys(added) == keys(revoked - 1) == [(old, registered, None, "in_force"),
                                                (new, added, None, "in_force")]  # fmt: skip
    assert keys(revoked) == keys(None) == [(old, registered, revoked, "revoked"), (new, added, None, "in_force")]
    now = hand.ask(actors_view.actor, "pps-metro")
    assert (now["name"], now["kind"], now["registered_by"]) == ("PPS-METRO", "organisation", "registrar-kpu-ri")


def test_actor_as_it_stood_before_and_after_a_mandate_grant(hand: Hand) -> None:
    granted = hand.index("ptps granted")
    registered = hand.index("register ptps-001")

    def mandates(at_index: int | None) -> list[tuple[str, str, str, int, str]]:
        found = hand.ask(actors_view.actor, "ptps-001", at_index=at_index)
        return [(m["id"], m["role"], m["jurisdiction"], m["granted_index"], m["state"]) for m in found["mandates"]]

    first = ("m1", "ptps", TPS_1, registered, "in_force")
    assert mandates(granted - 1) == [first]
    assert mandates(granted) == mandates(None) == [first, ("m2", "ptps", TPS_2, granted, "in_force")]
    assert [a["id"] for a in hand.ask(actors_view.actors, role="ptps", jurisdiction=TPS_2)] == ["ptps-001"]
    assert [a["id"] for a in hand.ask(actors_view.actors, jurisdiction=VILLAGE)] == [
        "kpps-001", "kpps-002", "pps-metro", "ptps-001"]


def test_trail_of_a_consignment_has_index_leaf_hash_and_statement_digest(hand: Hand) -> None:
    names = ["out tps1", "out tps1 witnessed", "out tps1 received", "out tps1 short", "out tps1 receipt witnessed"]
    trail = hand.ask(actors_view.trail, f"out.{TPS_1}")
    assert [(e["index"], e["type"], e["actor"]) for e in trail] == [
        (hand.index("out tps1"), "logistics.dispatched", "pps-metro"),
        (hand.index("out tps1 witnessed"), "logistics.witnessed", "ptps-001"),
        (hand.index("out tps1 received"), "logistics.received", "kpps-001"),
        (hand.index("out tps1 short"), "logistics.discrepancy_reported", "kpps-001"),
        (hand.index("out tps1 receipt witnessed"), "logistics.witnessed", "ptps-001"),
    ]  # fmt: skip
    for entry, name in zip(trail, names, strict=True):
        envelope, receipt = hand.sent[name]
        assert entry["leaf_hash"] == hand.ledger.tlog.leaf_hash(entry["index"]).hex() == receipt.leaf_hash.hex()
        assert entry["statement_digest"] == envelope.digest == receipt.statement_digest
        assert (entry["keyid"], entry["region"], entry["recorded_at"]) == (
            envelope.keyid, TPS_1, receipt.recorded_at)  # fmt: skip
        assert hand.ask(actors_view.index_of_digest, envelope.digest) == entry["index"]
    assert [e["index"] for e in hand.ask(actors_view.trail, f"out.{TPS_1}", after=trail[1]["index"], limit=2)] == [
        trail[2]["index"], trail[3]["index"]]  # fmt: skip
    assert hand.ask(actors_view.trail, "out.nowhere") == []


def test_trail_of_an_actor_lists_its_registry_entries(hand: Hand) -> None:
    trail = hand.ask(actors_view.trail, "pps-metro")
    assert [(e["index"], e["type"], e["actor"], e["region"]) for e in trail] == [
        (hand.index("register pps-metro"), "actor.registered", "registrar-kpu-ri", None),
        (hand.index("pps key added"), "actor.key_added", "pps-metro", None),
        (hand.index("pps key revoked"), "actor.key_revoked", "pps-metro", None),
    ]  # fmt: skip
    for entry in trail:
        assert entry["leaf_hash"] == hand.ledger.tlog.leaf_hash(entry["index"]).hex()


def test_hand_world_replayed_from_zero_elsewhere_gives_the_same_digests(
    hand: Hand, open_ledger: Callable[..., Ledger]
) -> None:
    """The fixture followed the log in three catch-ups; another machine fed the same
    envelopes at the same recorded times, projecting once, agrees on every digest."""
    clock = MonotoneClock()
    other = open_ledger("memory:", clock, genesis=hand.population.genesis)
    for envelope, original in sorted(hand.sent.values(), key=lambda pair: pair[1].index):
        clock.now = datetime.fromisoformat(original.recorded_at.replace("Z", "+00:00"))
        assert other.submit(envelope).leaf_hash == original.leaf_hash
    projector = Projector(other)
    projector.catch_up(batch=4)
    assert digests(projector.status()) == digests(hand.projector.status())


def every_entry(projection: Projection) -> Projection:
    """``projection`` given every entry, whatever statement types it says it reads."""
    projection.reads = None  # type: ignore[misc]
    return projection


def test_a_projection_given_every_entry_agrees_with_what_it_reads(
    hand: Hand, open_ledger: Callable[..., Ledger]
) -> None:
    """``Projection.reads`` leaves out only entries a projection does nothing with: given
    every entry, each projection ends with the same digest, on the hand world (key
    rotation, mandate grant, registers) and on the small scenario."""
    sent = sorted(hand.sent.values(), key=lambda pair: pair[1].index)
    worlds = [[(envelope, datetime.fromisoformat(original.recorded_at.replace("Z", "+00:00")))
               for envelope, original in sent],
              [(item.envelope, item.at) for item in shuffled(1)]]  # fmt: skip
    types = set()
    for world, genesis in zip(worlds, [hand.population.genesis, small_scenario().genesis], strict=True):
        found = []
        for projections in (all_projections(), [every_entry(p) for p in all_projections()]):
            clock = MonotoneClock()
            ledger = open_ledger("memory:", clock, genesis=genesis)
            for envelope, when in world:
                clock.advance_to(when)
                ledger.submit(envelope)
            projector = Projector(ledger, projections)
            projector.catch_up(batch=5)
            found.append(digests(projector.status()))
            types |= {e.type for e in read_entries(ledger, 0, ledger.tlog.size)}
        assert found[0] == found[1]
    assert [p.name for p in all_projections() if p.reads is None] == ["trail"]
    assert all(types - p.reads for p in all_projections() if p.reads is not None)  # each passes over some
    assert types >= {t for p in all_projections() if p.reads for t in p.reads} - {"actor.mandate_revoked"}


def test_an_entry_builds_its_statement_only_for_a_projection_that_reads_its_type(hand: Hand) -> None:
    entries = read_entries(hand.ledger, 0, hand.ledger.tlog.size)
    with hand.projector.sql() as sql:
        TrailProjection().apply_batch(Plan(sql), entries)  # its rows from Entry.value
        assert [e for e in entries if e._statement is not None] == []
        custody = CustodyProjection()
        custody.apply_batch(Plan(sql), entries)
    built = {e.type for e in entries if e._statement is not None}
    assert built == custody.reads & {e.type for e in entries}
    assert "logistics.received" in built and "actor.registered" not in built


# ---------------------------------------------------------------- readiness, order of reports


def test_readiness_keeps_a_discrepancy_reported_on_the_dispatch_before_the_receipt(
    open_ledger: Callable[..., Ledger]
) -> None:
    """The PTPS reports on the dispatch that the material is late; then the KPPS
    receives it complete. Custody shows the report either way, and readiness must
    count the TPS as in discrepancy whether the report is recorded before or after
    the receipt. BUG (projections/custody.py, ReadinessProjection.apply): the
    receipt sets ``discrepancy = int(not complete)``, wiping a report recorded
    before it, so the answer depends on the order of two independent statements."""
    answers = {}
    for report_first in (True, False):
        population = Population("discrepancy-order")
        clock = MonotoneClock(at("2024-09-01T01:00:00"))
        ledger = open_ledger("memory:", clock, genesis=population.genesis)
        s = population.signer

        def submit(when: str, envelope: Envelope) -> Envelope:
            clock.now = at(when)
            ledger.submit(envelope)
            return envelope

        submit("2024-09-01T01:00:00", population.genesis_envelope(clock.now))
        for actor, role, jurisdiction in [("pps-metro", "pps", VILLAGE), ("kpps-001", "kpps", TPS_1),
                                          ("ptps-001", "ptps", TPS_1)]:  # fmt: skip
            submit("2024-09-01T02:00:00", population.register(actor, actor, role, jurisdiction, clock.now))
        sent = submit("2024-11-25T02:00:00", s("pps-metro").sign(
            "logistics.dispatched", f"out.{TPS_1}", dispatch(TPS_1, "kpps-001", ITEMS_1, DUE_TPS, "SEGEL-T1"),
            issued_at=at("2024-11-25T02:00:00")))  # fmt: skip
        report = s("ptps-001").sign(
            "logistics.discrepancy_reported", f"out.{TPS_1}",
            {"region": TPS_1, "kinds": ["late"], "facts": "Logistik belum tiba pada H-1."},
            refs=[sent.digest], issued_at=at("2024-11-26T18:00:00"))  # fmt: skip
        received = s("kpps-001").sign("logistics.received", f"out.{TPS_1}", receipt(TPS_1, ITEMS_1),
                                      refs=[sent.digest], issued_at=at("2024-11-26T20:00:00"))  # fmt: skip
        for envelope in ((report, received) if report_first else (received, report)):
            submit("2024-11-26T21:00:00", envelope)
        projector = Projector(ledger)
        projector.catch_up()
        found = query(projector, custody_view.consignment, f"out.{TPS_1}")
        assert [d["kinds"] for d in found["discrepancies"]] == [["late"]]
        readiness = query(projector, custody_view.readiness, VILLAGE)
        answers["report first" if report_first else "receipt first"] = (
            readiness["late"], readiness["in_discrepancy"])  # fmt: skip
    assert answers == {"report first": (1, 1), "receipt first": (1, 1)}


# ---------------------------------------------------------------- (e) the batched paths
#
# catch_up reads a batch of entries with one notification page (projections/entries.py)
# and the projections write a batch's rows once (Projection.apply_batch); the slow,
# obviously correct references are the repository read of each entry with the strict
# envelope and statement decode, and a catch-up one entry per batch.

BATCH_BACKENDS = ["sqlite"] + (
    [pytest.param("postgres", marks=pytest.mark.postgres)] if os.environ.get("SAKSI_TEST_POSTGRES_URL") else []
)


@pytest.fixture(params=BATCH_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: SQLite, and PostgreSQL when SAKSI_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "x.sqlite")
        return
    with fresh_postgres_database(os.environ["SAKSI_TEST_POSTGRES_URL"]) as url:
        yield url


def reference_entries(ledger: Ledger, start: int, end: int) -> list[Entry]:
    """Each entry's record read through the repository, its envelope parsed strictly
    and its statement decoded as ``submit`` decodes it."""
    leaves = ledger.tlog.store.read_nodes([(0, i) for i in range(start, end)])
    found = []
    for item in iter_entries(ledger, start, min(end, ledger.tlog.size)):
        envelope = parse_envelope(item["envelope"])
        found.append(Entry(item["index"], item["recorded_at"], decode_statement(envelope), envelope.keyid,
                           leaves[(0, item["index"])]))  # fmt: skip
    return found


def entry_fields(entry: Entry) -> tuple[Any, ...]:
    """Everything of an entry a projection can see (models compare field by field)."""
    statement, body = entry.statement, entry.statement.body
    return (entry.index, entry.recorded_at, entry.keyid, entry.leaf_hash, statement.payload, statement.digest,
            statement.model, type(body), body, body.model_dump(), body.model_dump(exclude_none=True),
            body.model_fields_set, list(vars(body)), statement.region, statement.refs)  # fmt: skip


def test_entries_read_by_the_page_equal_the_entry_by_entry_decode(
    url: str, open_ledger: Callable[..., Ledger]
) -> None:
    items = shuffled(6)
    clock = MonotoneClock()
    ledger = open_ledger(url, clock)
    play(ledger, clock, items)
    size = ledger.tlog.size
    assert size == len(items)
    for start, end in [(0, size), (0, 1), (5, 17), (size - 3, size + 10), (size, size + 5)]:
        bulk, reference = read_entries(ledger, start, end), reference_entries(ledger, start, end)
        assert [entry_fields(e) for e in bulk] == [entry_fields(e) for e in reference]
        assert [e.index for e in bulk] == list(range(start, min(end, size)))


def test_catching_up_entry_by_entry_and_rebuilding_in_one_batch_give_the_same_digests(
    url: str, open_ledger: Callable[..., Ledger]
) -> None:
    """Batch sizes 1 (every row read from and written to the database at once), 13
    and the rebuild's one batch of the whole log agree, and agree with another machine."""
    items = shuffled(7)
    clock = MonotoneClock()
    ledger = open_ledger(url, clock)
    projector = Projector(ledger)
    play(ledger, clock, items[:100], projector=projector, every=1)
    projector.catch_up(batch=1)
    play(ledger, clock, items[100:])
    projector.catch_up(batch=1)
    one_by_one = digests(projector.status())
    assert all(size == len(items) for size, _ in one_by_one.values())
    assert digests(projector.rebuild()) == one_by_one
    with projector.sql(commit=True) as sql:  # back to zero, then batches of 13
        sql.run("UPDATE saksi_projections SET position = 0")
        for projection in projector.projections:
            projection.clear(sql)
    projector.catch_up(batch=13)
    assert digests(projector.status()) == one_by_one
    assert reference_digests(open_ledger, items) == one_by_one


def test_hand_world_projected_entry_by_entry_and_in_one_batch_agree(
    hand: Hand, url: str, open_ledger: Callable[..., Ledger]
) -> None:
    """The hand world's key rotation and mandate grant (read by the page as by the
    reference decode): a key added and revoked, and a mandate granted, inside one batch."""
    clock = MonotoneClock()
    other = open_ledger(url, clock, genesis=hand.population.genesis)
    for envelope, original in sorted(hand.sent.values(), key=lambda pair: pair[1].index):
        clock.now = datetime.fromisoformat(original.recorded_at.replace("Z", "+00:00"))
        assert other.submit(envelope).leaf_hash == original.leaf_hash
    size = other.tlog.size
    bulk, reference = read_entries(other, 0, size), reference_entries(other, 0, size)
    assert [entry_fields(e) for e in bulk] == [entry_fields(e) for e in reference]
    assert {e.statement.type for e in bulk} >= {"actor.key_added", "actor.key_revoked", "actor.mandate_granted"}
    projector = Projector(other)
    projector.catch_up(batch=1)
    expected = digests(hand.projector.status())
    assert digests(projector.status()) == expected
    assert digests(projector.rebuild()) == expected


# The fast JSON paths of the views (dumps) and of the digest (_row_line) are
# canonical_bytes wherever it answers, and refuse what it refuses.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def canonical_or_refused(value: Any) -> str:
    try:
        return canonical_bytes(value).decode("utf-8")
    except JSONRefused:
        return "refused"


@given(json_values)
def test_view_json_is_canonical_json(value: Any) -> None:
    try:
        found = dumps(value)
    except JSONRefused:
        found = "refused"
    assert found == canonical_or_refused(value)


@given(st.lists(st.none() | st.integers(-(2**60), 2**60) | st.text(max_size=8), min_size=1, max_size=6),
       st.sampled_from(["v_x", "v_\u00e9"]))  # fmt: skip
def test_digest_lines_are_canonical_json(values: list[Any], table: str) -> None:
    names = [f"c{i}" for i in range(len(values))]
    plain = table.isascii()
    try:
        found = _row_line(table, names, values, plain_names=plain).decode("utf-8")
    except JSONRefused:
        found = "refused"
    assert found == canonical_or_refused([table, dict(zip(names, values, strict=True))])


# ---------------------------------------------------------------- the scenario generator


def test_a_scenario_object_schedules_the_same_statements_on_every_play() -> None:
    """Scenario.schedule's docstring: with ``interleave``, "another valid order of
    the same statements". Playing one scenario twice (once by time, once shuffled)
    must therefore yield the same statements. BUG (ledger/scenario.py):
    RegencyScenario.build() appends to ``self.out`` and advances its RNG on every
    call, so the second schedule() holds the first play's statements plus a new,
    different set (788 then 1648 for Kota Metro)."""
    scenario = kota_metro()
    first = sorted(item.envelope.digest for item in scenario.schedule())
    again = sorted(item.envelope.digest for item in scenario.schedule(interleave=random.Random(1)))
    assert len(again) == len(first)
    assert again == first

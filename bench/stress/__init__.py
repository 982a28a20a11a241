"""Long reliability runs, on demand: ``python -m bench.stress [crash|fuzz|tamper|suite|all]``.

- crash:  kill -9 a real two-worker ``saksi serve`` at random moments during sustained
          ingest, ``KILLS`` times per backend; after each restart check that every
          acknowledged statement is in the log where its receipt says, that nothing is
          half-applied (every unanswered submission, sent again, is either already
          recorded whole or recorded now), that ``saksi verify`` is clean, and that every
          checkpoint ever signed is consistent with the next (a witness cosigns each).
- fuzz:   schemathesis against a real ``saksi serve`` over the Kota Metro demo, from the
          server's own OpenAPI document, with at least 1,000 cases.
- tamper: the tamper matrix (tests/test_tamper_matrix.py and tests/test_tamper.py) on
          SQLite and, when SAKSI_TEST_POSTGRES_URL is set, PostgreSQL.
- suite:  the attack matrix, the races (``RACE_ROUNDS`` rounds of each race), the limits
          and the short fuzz run, as in the test suite.

Each part rewrites its own section of bench/RELIABILITY.md with its figures and the
command that reproduces them; the other sections stay as they were.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench" / "RELIABILITY.md"
POSTGRES = os.environ.get("SAKSI_TEST_POSTGRES_URL")
KILLS = 20  # kill -9 per backend
FUZZ_EXAMPLES = 45  # per operation and generation mode: > 1,000 cases in all
RACE_ROUNDS = 20
PYTHON = sys.executable


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- the report


PARTS = ("crash", "fuzz", "tamper", "suite")
HEADER = """# Reliability and security figures

What the ledger promises under faults and attack, each with the figure measured
and the command that reproduces it. Written by `python -m bench.stress`; each part
rewrites only its own section. Fast versions of every part run in the test suite
(`tests/test_tamper_matrix.py`, `tests/test_attacks.py`, `tests/test_races.py`,
`tests/test_fuzz.py`, `tests/test_limits.py`); the long runs live in `bench/stress`.
Run them with PostgreSQL too by setting `SAKSI_TEST_POSTGRES_URL`
(e.g. `postgresql://postgres@127.0.0.1:5432/test`).

A promise that does not hold is listed as such, with the failing check: the tests
that show it stay in the suite, failing, until the code is fixed.
"""


def write_section(part: str, text: str) -> None:
    """Replace ``part``'s section of the report (sections keep the order of PARTS)."""
    current = REPORT.read_text("utf-8") if REPORT.exists() else HEADER
    sections = {p: m.group(1) for p in PARTS
                if (m := re.search(rf"<!-- part:{p} -->\n(.*?)<!-- /part:{p} -->\n", current, re.S))}  # fmt: skip
    sections[part] = text.rstrip("\n") + "\n"
    body = HEADER + "".join(f"\n<!-- part:{p} -->\n{sections[p]}<!-- /part:{p} -->\n" for p in PARTS if p in sections)
    REPORT.write_text(body, "utf-8")


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


# ---------------------------------------------------------------- running pytest


@dataclass
class TestResult:
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str = ""
    seconds: float = 0.0


def run_pytest(paths: list[str], *, env: dict[str, str] | None = None, label: str) -> tuple[list[TestResult], float]:
    """Run pytest on ``paths``; the result of every test (from its JUnit XML)."""
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch) / "junit.xml"
        command = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *paths]
        say(f"[{label}] {' '.join(command[1:])}")
        started = time.monotonic()
        finished = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, check=False,
                                  capture_output=True, text=True)  # fmt: skip
        seconds = time.monotonic() - started
        if not junit.exists():  # pytest itself failed (collection, internal error, killed)
            tail = (finished.stdout + finished.stderr).strip().splitlines()[-3:]
            say(f"[{label}] pytest exited {finished.returncode} without a report: {tail}")
            return [TestResult(" ".join(paths), "error", f"pytest exited {finished.returncode}: {' '.join(tail)}")], seconds
        results = []
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                found = case.find(tag)
                if found is not None:
                    outcome = {"failure": "failed"}.get(tag, tag)
                    message = (found.get("message") or found.text or "").strip().splitlines()[0][:300] if (
                        found.get("message") or found.text) else ""  # fmt: skip
                    break
            results.append(TestResult(name, outcome, message, float(case.get("time", 0))))
    return results, seconds


def outcome_table(results: list[TestResult]) -> str:
    lines = ["| test | outcome |", "|---|---|"]
    for result in results:
        mark = "✅ passed" if result.outcome == "passed" else f"❌ **{result.outcome}**: {md(result.message)}"
        lines.append(f"| `{result.name}` | {mark} |")
    return "\n".join(lines)


def md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def counts(results: list[TestResult]) -> str:
    tally = Counter(r.outcome for r in results)
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items()))


# ---------------------------------------------------------------- tamper


def tamper() -> None:
    env = {"SAKSI_TEST_POSTGRES_URL": POSTGRES} if POSTGRES else {}
    results, seconds = run_pytest(["tests/test_tamper_matrix.py", "tests/test_tamper.py"], env=env, label="tamper")
    matrix = [r for r in results if "test_tamper_matrix" in r.name]
    kinds: dict[str, dict[str, str]] = {}
    for result in matrix:
        found = re.match(r".*::test_(.+?)\[(sqlite|postgres)(?:-(.+))?\]$", result.name)
        if not found:
            continue
        kind = found.group(1).replace("_", " ") + (f" ({found.group(3)})" if found.group(3) else "")
        kinds.setdefault(kind, {})[found.group(2)] = "✅" if result.outcome == "passed" else "❌"
    backends = ["sqlite"] + (["postgres"] if POSTGRES else [])
    caught = sum(1 for r in matrix if r.outcome == "passed")
    lines = [
        "## Tamper matrix",
        "",
        f"**{len(kinds) - 1} kinds of tampering × {len(backends)} backends ({', '.join(backends)}): "
        f"{caught} of {len(matrix)} checks hold**; each caught by `saksi verify` naming its index "
        "(rollback and truncation also by the ledger at start and by a witness). "
        f"The original SQLite matrix (tests/test_tamper.py): {counts([r for r in results if 'test_tamper.py' in r.name or r.name.startswith('test_tamper::')])}.",
        "",
        "Reproduce: `SAKSI_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.stress tamper` "
        "(or `python -m pytest tests/test_tamper_matrix.py`)",
        f"({seconds:.0f} s on {machine()}).",
        "",
        "| kind | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
        *(f"| {kind} | " + " | ".join(cells.get(b, "—") for b in backends) + " |" for kind, cells in kinds.items()),
    ]
    failures = [r for r in results if r.outcome != "passed"]
    if failures:
        lines += ["", "Failing:", "", outcome_table(failures)]
    write_section("tamper", "\n".join(lines))
    say(f"[tamper] {counts(results)} in {seconds:.0f} s")


# ---------------------------------------------------------------- suite (attacks, races, limits, short fuzz)


FINDINGS = {
    "test_two_processes_signing_checkpoints_at_once": "two processes sign checkpoints at once and both write the "
    "same `last-checkpoint.tmp` (ledger/log.py `IntegrityLog._sign`); `IntegrityLog.receipt` (GET "
    "/v1/log/receipts/{index} for an index not yet under a checkpoint) calls `publish()` outside the writer lock: "
    "one `os.replace` fails with FileNotFoundError → 500, also for a submit whose statement was already recorded",
    "test_projections_follow_while_another_process_records": "on SQLite, `Projector.catch_up` (projections/"
    "runner.py) fails with `database is locked` while another process records: its transaction reads, then "
    "writes (a deferred transaction cannot wait for the write lock), and nothing retries. Its background "
    "follower thread (`Projector.follow`) dies for good; a read that catches up (`Runtime.read`) is a 500",
    "test_writers_and_checkpoint_readers": "a 5xx while submitting or reading (on SQLite with two workers: GET "
    "/v1/consignments while the other worker records → 500 `database is locked`, as in test_projections_follow_while_another_process_records)",
    "test_no_reader_saw_a_5xx_and_no_worker_failed": "a worker logged a traceback: on SQLite the projections "
    "follower thread died on `database is locked` (as in test_projections_follow_while_another_process_records), or a reader saw a 5xx",
    "test_after_the_races": "a statement acknowledged during the races is missing, doubled or misplaced",
    "test_an_envelope_over_the_envelope_limit_is_refused_inside_a_batch_too": "batch items are parsed as dicts and "
    "never checked against the 64 KiB envelope limit (ledger/envelope.py `parse_envelope` checks size only for "
    "bytes/str): a 100 KB envelope refused alone is recorded through /v1/statements/batch",
    "test_the_largest_valid_statements_fit_in_one_envelope": "statement bounds are in characters (64 seals × 200, "
    "texts of 10,000), so a valid statement can exceed the 64 KiB envelope limit: alone it is always 413",
    "test_a_cosignature_body_is_bounded_too": "POST /v1/log/cosignatures reads and parses a body of any size "
    "(4 MiB: 422, not 413)",
    "test_the_openapi_document_has_no_dangling_refs": "the request bodies of POST /v1/statements and /batch embed "
    "pydantic's `$defs` with `$ref: #/$defs/Signature`, which does not resolve in the OpenAPI document "
    "(schemathesis then generates no body at all)",
    "GET /v1/export": "`subject` goes unchecked into the Content-Disposition header: a non-Latin-1 character is a "
    "500 that also leaks the spooled bundle file, CR/LF drops the connection, a quote breaks the header",
    "GET /v1/events/stream": "its 422 is documented as application/json (FastAPI's default HTTPValidationError) but "
    "served as application/problem+json",
}


def finding(name: str) -> str:
    return next((text for key, text in FINDINGS.items() if key in name), "")


def suite() -> None:
    env = {"SAKSI_RACE_ROUNDS": str(RACE_ROUNDS)} | ({"SAKSI_TEST_POSTGRES_URL": POSTGRES} if POSTGRES else {})
    sections = []
    for title, path in (("Attack matrix (HTTP API)", "tests/test_attacks.py"),
                        (f"Races ({RACE_ROUNDS} rounds of each race, two workers)", "tests/test_races.py"),
                        ("Limits", "tests/test_limits.py"), ("Fuzzing, short run", "tests/test_fuzz.py")):  # fmt: skip
        results, seconds = run_pytest([path], env=env, label="suite")
        say(f"[suite] {path}: {counts(results)} in {seconds:.0f} s")
        command = (f"SAKSI_RACE_ROUNDS={RACE_ROUNDS} " if "races" in path else "") + f"python -m pytest {path}"
        failing = [r for r in results if r.outcome != "passed"]
        postgres = " with `SAKSI_TEST_POSTGRES_URL` set for the PostgreSQL legs" if POSTGRES and "races" in path else ""
        text = [f"### {title}", "", f"**{counts(results)}** ({seconds:.0f} s). Reproduce: `{command}`{postgres}.", ""]
        if "attacks" in path:
            attacks = [r for r in results if "test_attack_is_refused" in r.name]
            text.append(f"{sum(r.outcome == 'passed' for r in attacks)} of {len(attacks)} attacks refused with their "
                        "problem type and nothing recorded (log size, stored events, checkpoint and cosignatures "
                        "unchanged); the same envelopes inside a batch, replays, and witness cosignatures by "
                        "unregistered keys too.")  # fmt: skip
            text.append("")
        if "races" in path:
            from tests.test_races import CONTENDERS

            races = [r for r in results if re.search(r"::test_(two_receipts|the_same_envelope|one_statement_id|"
                                                     r"two_dispatches|a_receipt_racing|after_the_races)", r.name)]
            backends = 2 if POSTGRES else 1
            text.append(f"The races proper — {CONTENDERS} clients released at once on one consignment, "
                        f"{RACE_ROUNDS} rounds of each of 5 races on {backends} backend(s), "
                        f"{CONTENDERS * RACE_ROUNDS * 5 * backends} racing submissions: exactly one winner each "
                        f"time, the others a 409 naming why (or, for the very same envelope, a 200 with the "
                        f"winner's receipt), nothing lost or doubled, `saksi verify` clean afterwards — "
                        f"{sum(r.outcome == 'passed' for r in races)} of {len(races)} tests hold.")  # fmt: skip
            text.append("")
        if "limits" in path:
            text.append("Bounds: one envelope 64 KiB (413 past it, with or without Content-Length); a batch 1,000 "
                        "envelopes (413 batch-too-large) and 16 MiB; a statement 48,000 bytes of canonical JSON (422 "
                        "malformed-statement), so every valid one fits in an envelope, and its fields bounded (422 "
                        "malformed-body); nesting 32 levels; all as README \"Limits\" documents. Beside 50 "
                        "connections that trickle headers or bodies a byte at a time, a normal client's 11 "
                        "submissions each get their receipt within 3 s.")  # fmt: skip
            text.append("")
        if failing:
            text += ["| failing test | why |", "|---|---|"]
            text += [f"| `{r.name}` | {md(finding(r.name) or r.message)} |" for r in failing]
        sections.append("\n".join(text))
    write_section("suite", "## Attacks, races, limits (the suite's checks)\n\n" + "\n\n".join(sections))


# ---------------------------------------------------------------- fuzz


def fuzz(*, examples: int = FUZZ_EXAMPLES, seed: int = 2024) -> None:
    from api.app import create_app
    from api.cli import build_demo
    from api.settings import Settings
    from tests.test_fuzz import (
        OPERATIONS,
        dangling_refs,
        fuzz_operation,
        load_schema,
        openapi_document,
    )
    from tests.test_races import start_server

    with tempfile.TemporaryDirectory(prefix="saksi-fuzz-") as scratch:
        home = Path(scratch) / "home"
        say("[fuzz] building the Kota Metro demo")
        build_demo(home, fresh=True)
        server = start_server(home, workers=1)
        try:
            schema = load_schema(create_app(Settings(home=home)), base_url=server.url)
            started = time.monotonic()
            reports = []
            for label in OPERATIONS:
                report = fuzz_operation(schema, label, examples=examples, derandomize=False, seed=seed,
                                        base_url=server.url)  # fmt: skip
                reports.append(report)
                say(f"[fuzz] {label}: {report.cases} cases, {dict(report.statuses)}, {len(report.failures)} failures")
            seconds = time.monotonic() - started
        finally:
            server.stop()
        tracebacks = server_tracebacks(server.log)
    cases = sum(r.cases for r in reports)
    statuses = sum((r.statuses for r in reports), Counter())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    failing = [r for r in reports if r.failures]
    lines = [
        "## Fuzzing (schemathesis, from our OpenAPI document)",
        "",
        f"**{cases} cases over {len(reports)} operations against a real `saksi serve`: {server_errors} responses "
        f"were 5xx; operations with a response that does not match the document, or none: {len(failing)}.** "
        f"Statuses: {', '.join(f'{s}×{n}' for s, n in sorted(statuses.items()))}. "
        f"Checks: not_a_server_error, status_code, content_type, response_headers and response_schema "
        f"conformance; positive and negative generation; seed {seed}.",
        "",
        f"Reproduce: `python -m bench.stress fuzz` ({seconds:.0f} s of fuzzing on {machine()}); "
        "the short in-suite run: `python -m pytest tests/test_fuzz.py`.",
    ]
    refs = dangling_refs(openapi_document())
    if refs:
        lines += ["", "The served document has references that do not resolve, repaired before fuzzing so those "
                  "operations are fuzzed too: " + "; ".join(f"{op}: `{', '.join(r)}`" for op, r in refs.items()) + "."]
    if failing:
        lines += ["", "| operation | cases | what was found |", "|---|---|---|"]
        for report in failing:
            found = "; ".join(md(title) for title in report.failures)
            lines.append(f"| `{report.label}` | {report.cases} | {found} |")
    if tracebacks:
        kinds = Counter(t.split(":", 1)[0] for t in tracebacks)
        lines += ["", "Server tracebacks: " + "; ".join(f"`{md(k)}` ×{n}" for k, n in kinds.most_common(5))]
    if failing:
        examples_text = []
        for report in failing:
            for title, example in list(report.failures.items())[:2]:
                curl = re.search(r"curl [^\n]+", example)
                examples_text.append(f"- {report.label} — {md(title)}: `{curl.group(0) if curl else md(example[:200])}`")
        lines += ["", "Examples:", "", *examples_text]
    write_section("fuzz", "\n".join(lines))
    say(f"[fuzz] {cases} cases, {server_errors} 5xx, {len(failing)} failing operations")


def server_tracebacks(log: Path) -> list[str]:
    found, inside = [], False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith(" "):
            found.append(line[:200])
            inside = False
    return found


# ---------------------------------------------------------------- crash


@dataclass
class Acknowledged:
    index: int
    envelope: Any
    receipt: str  # the tlog-proof handed out


@dataclass
class CrashBook:
    """What clients were told, and what they sent without an answer."""

    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)  # digest → receipt
    awaiting_receipt: list[Any] = field(default_factory=list)  # acknowledged dispatches not yet received
    uncertain: list[Any] = field(default_factory=list)  # sent, no answer
    server_errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, envelope: Any, result: dict[str, Any], status: int) -> None:
        with self.lock:
            if status in (200, 201):
                earlier = self.acknowledged.get(envelope.digest)
                if earlier is not None and earlier.index != result["index"]:
                    raise AssertionError(f"two receipts for {envelope.digest}: {earlier.index}, {result['index']}")
                self.acknowledged[envelope.digest] = Acknowledged(result["index"], envelope, result["receipt"])
                if json.loads(envelope.payload)["type"] == "logistics.dispatched" and status == 201:
                    self.awaiting_receipt.append(envelope)
            elif status >= 500:
                self.server_errors[f"{status} {str(result.get('detail', ''))[:60]}"] += 1
                self.uncertain.append(envelope)  # a 5xx says nothing about whether it was recorded
            else:
                self.refusals[str(result.get("type", status)).rsplit("/", 1)[-1]] += 1


def ingest(base: str, book: CrashBook, stop: threading.Event, rng: random.Random) -> None:
    """Submit fresh dispatches (alone or in batches of 5–20) and receipts for the
    acknowledged ones, as fast as the server answers, until ``stop``."""
    from tests.test_races import consignment_id, dispatch, receipt

    with httpx.Client(base_url=base, timeout=30) as http:
        while not stop.is_set():
            with book.lock:
                pending = book.awaiting_receipt.pop(rng.randrange(len(book.awaiting_receipt))) \
                    if book.awaiting_receipt and rng.random() < 0.45 else None  # fmt: skip
            if pending is not None:
                sending = [receipt(pending)]
            else:
                sending = [dispatch(consignment_id()) for _ in range(1 if rng.random() < 0.5 else rng.randint(5, 20))]
            try:
                if len(sending) == 1:
                    response = http.post("/v1/statements", content=sending[0].canonical())
                    results = [(response.json(), response.status_code)]
                else:
                    response = http.post("/v1/statements/batch",
                                         content=b"[" + b",".join(e.canonical() for e in sending) + b"]")  # fmt: skip
                    if response.status_code == 200:
                        results = [(i["receipt"] or i["problem"], i["status"]) for i in response.json()]
                    else:
                        results = [(response.json(), response.status_code)] * len(sending)
            except (httpx.HTTPError, ValueError):
                with book.lock:
                    book.uncertain.extend(sending)  # a receipt's dispatch stays acknowledged
                if stop.wait(0.05):
                    return
                continue
            for envelope, (result, status) in zip(sending, results, strict=True):
                book.answered(envelope, result, status)


@dataclass
class CrashFigures:
    backend: str
    kills: int = 0
    acknowledged: int = 0
    uncertain: int = 0
    uncertain_recorded: int = 0  # sent without an answer, found recorded whole
    uncertain_not_recorded: int = 0  # sent without an answer, not recorded: accepted when sent again
    half_applied: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    verify_failures: list[str] = field(default_factory=list)
    checkpoint_failures: list[str] = field(default_factory=list)
    checkpoints_checked: int = 0
    cosignatures: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    verify_seconds: list[float] = field(default_factory=list)
    size: int = 0
    server_errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    tracebacks: list[str] = field(default_factory=list)
    aggregate_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.half_applied or self.lost or self.verify_failures or self.checkpoint_failures
                    or self.aggregate_mismatches)  # fmt: skip


def crash(backend: str, *, kills: int = KILLS, seed: int = 7) -> CrashFigures:
    from contextlib import ExitStack

    from ledger import notes
    from ledger.envelope import decode_b64, statement_digest
    from ledger.scenario import kota_metro
    from ledger.witness import Witness
    from tests.conftest import fresh_postgres_database
    from tests.test_races import small_home, start_server

    rng = random.Random(seed)
    figures = CrashFigures(backend)
    book = CrashBook()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"saksi-crash-{backend}-")))
        url = stack.enter_context(fresh_postgres_database(POSTGRES)) if backend == "postgres" else None  # type: ignore[arg-type]
        home = small_home(scratch / "home", database_url=url, origin=f"saksi.test/crash-{backend}")
        log = scratch / "server.log"
        witness = Witness("witness-perludem", kota_metro().signer("witness-perludem").key, home.log_vkey(),
                          scratch / "witness.state.json")  # fmt: skip
        seen_notes: list[str] = []
        server = start_server(home.path, workers=2, log=log)
        for round_ in range(1, kills + 1):
            stop = threading.Event()
            clients = [threading.Thread(target=ingest, args=(server.url, book, stop, random.Random(rng.random())))
                       for _ in range(4)]  # fmt: skip
            for client in clients:
                client.start()
            time.sleep(rng.uniform(0.5, 4.0))
            server.kill()  # kill -9 the whole process group, mid-ingest
            stop.set()
            for client in clients:
                client.join()
            figures.kills += 1
            started = time.monotonic()
            server = start_server(home.path, workers=2, log=log)
            figures.recovery_seconds.append(time.monotonic() - started)
            with httpx.Client(base_url=server.url, timeout=60) as http:
                _check_round(http, book, figures, home.path, statement_digest, decode_b64)
                note = http.get("/v1/log/checkpoint").text
                try:
                    _check_checkpoint(http, note, seen_notes, witness, figures, notes)
                except Exception as error:  # noqa: BLE001 - recorded as a failure of the promise
                    figures.checkpoint_failures.append(f"round {round_}: {error!r}"[:300])
            say(f"[crash/{backend}] kill {round_}/{kills}: {len(book.acknowledged)} acknowledged, "
                f"{figures.uncertain} unanswered so far, log size {figures.size}, "
                f"restart {figures.recovery_seconds[-1]:.1f} s")  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=60) as http:
            _check_all_receipts(http, book, figures, notes)
        server.stop()
        _check_aggregates(home, book, figures)
        figures.tracebacks = server_tracebacks(log)
    figures.acknowledged = len(book.acknowledged)
    figures.server_errors = book.server_errors
    figures.refusals = book.refusals
    return figures


def _entries(http: httpx.Client, size: int, statement_digest: Callable[..., str],
             decode_b64: Callable[..., bytes]) -> list[str]:  # fmt: skip
    digests: list[str] = []
    while len(digests) < size:
        page = {"start": len(digests), "end": min(size, len(digests) + 1000)}  # the API's page limit
        response = http.get("/v1/log/entries", params=page)
        if response.status_code != 200:
            raise AssertionError(f"GET /v1/log/entries {page}: {response.status_code} {response.text[:200]}")
        lines = response.content.splitlines()
        if not lines:
            break
        digests += [statement_digest(decode_b64(json.loads(line)["envelope"]["payload"])) for line in lines]
    return digests


def _check_round(http: httpx.Client, book: CrashBook, figures: CrashFigures, home: Path,
                 statement_digest: Callable[..., str], decode_b64: Callable[..., bytes]) -> None:  # fmt: skip
    """After a restart: acknowledged statements are where their receipts say; every
    unanswered submission is recorded whole or not at all; verify is clean."""
    size = int(http.get("/v1/log/checkpoint").text.split("\n")[1])
    digests = _entries(http, size, statement_digest, decode_b64)
    for digest, ack in book.acknowledged.items():
        if ack.index >= len(digests) or digests[ack.index] != digest:
            figures.lost.append(f"{digest} acknowledged at {ack.index}")
    uncertain, book.uncertain = book.uncertain, []
    uncertain.sort(key=lambda e: json.loads(e.payload)["type"] != "logistics.dispatched")  # dispatches first
    position = {digest: index for index, digest in enumerate(digests)}
    for envelope in uncertain:
        figures.uncertain += 1
        response = http.post("/v1/statements", content=envelope.canonical())
        result = response.json()
        if response.status_code == 200:  # it had been recorded, whole
            figures.uncertain_recorded += 1
            if position.get(envelope.digest) != result["index"]:
                figures.half_applied.append(f"{envelope.digest}: duplicate of index {result['index']} not in the log")
        elif response.status_code == 201:
            figures.uncertain_not_recorded += 1
            if envelope.digest in position:
                figures.half_applied.append(f"{envelope.digest}: in the log but accepted again")
        else:
            figures.half_applied.append(f"{envelope.digest}: sent again after the crash: {response.status_code} {result}")
            continue
        book.answered(envelope, result, response.status_code)
    started = time.monotonic()
    verified = subprocess.run([str(Path(PYTHON).parent / "saksi"), "verify", "--home", str(home)],
                              capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                   if k != "SAKSI_DATABASE_URL"})  # fmt: skip
    figures.verify_seconds.append(time.monotonic() - started)
    if verified.returncode != 0:
        figures.verify_failures.append((verified.stdout + verified.stderr).strip()[:300])
    figures.size = int(http.get("/v1/log/checkpoint").text.split("\n")[1])


def _check_checkpoint(http: httpx.Client, note: str, seen: list[str], witness: Any, figures: CrashFigures,
                      notes: Any) -> None:  # fmt: skip
    """The new checkpoint is signed and consistent with the last one seen; the witness,
    which keeps its own state, cosigns it and the ledger accepts the cosignature."""
    log_key = http.get("/v1/log/key").text.strip()
    new = notes.verify_checkpoint(note, log_key=log_key).checkpoint
    proof: list[bytes] = []
    if seen:
        old = notes.parse_note(seen[-1]).checkpoint
        if old.size > new.size:
            raise AssertionError(f"the checkpoint went back from {old.size} to {new.size}")
        if 0 < old.size < new.size:
            found = http.get("/v1/log/proofs/consistency", params={"old": old.size, "new": new.size}).json()
            if found["old"].split("\n")[:3] != seen[-1].split("\n")[:3]:
                raise AssertionError(f"the log now signs another checkpoint of size {old.size}")
            notes.verify_consistency_proof(found, log_key=log_key)
            proof = [base64.b64decode(h) for h in found["proof"]]
    seen.append(note)
    figures.checkpoints_checked += 1
    line = witness.cosign(note, proof)
    response = http.post("/v1/log/cosignatures", json={"cosignature": line, "size": new.size})
    if response.status_code != 200:
        raise AssertionError(f"the ledger refused the witness's cosignature: {response.text[:200]}")
    figures.cosignatures += 1


def _check_all_receipts(http: httpx.Client, book: CrashBook, figures: CrashFigures, notes: Any) -> None:
    """Every receipt handed out verifies with the log key alone, and the checkpoint in it
    is consistent with today's tree."""
    log_key = http.get("/v1/log/key").text.strip()
    size = int(http.get("/v1/log/checkpoint").text.split("\n")[1])
    checkpoints: set[int] = set()
    for ack in book.acknowledged.values():
        try:
            receipt = notes.verify_receipt(ack.receipt, log_key=log_key)
            if receipt.index != ack.index:
                raise AssertionError(f"receipt says {receipt.index}, the answer said {ack.index}")
            checkpoints.add(notes.parse_note(receipt.checkpoint_note).checkpoint.size)
        except Exception as error:  # noqa: BLE001
            figures.checkpoint_failures.append(f"receipt {ack.index}: {error!r}"[:300])
    for old in sorted(checkpoints):
        if 0 < old < size:
            found = http.get("/v1/log/proofs/consistency", params={"old": old, "new": size}).json()
            try:
                notes.verify_consistency_proof(found, log_key=log_key)
            except Exception as error:  # noqa: BLE001
                figures.checkpoint_failures.append(f"checkpoint {old}: {error!r}"[:300])
        figures.checkpoints_checked += 1


def _check_aggregates(home: Any, book: CrashBook, figures: CrashFigures) -> None:
    """With the server stopped: each consignment's aggregate agrees with the log (its
    receipt is the one acknowledged), and the event store holds no statement beyond the log."""
    from ledger.audit import audit_ledger
    from ledger.home import Home
    from tests.conftest import stored_record_count

    loaded = Home.load(home.path)
    ledger = loaded.open()
    try:
        receipts = {}
        for digest, ack in book.acknowledged.items():
            statement = json.loads(ack.envelope.payload)
            if statement["type"] == "logistics.received":
                receipts[statement["subject"]] = digest
        for digest, ack in book.acknowledged.items():
            statement = json.loads(ack.envelope.payload)
            if statement["type"] != "logistics.dispatched":
                continue
            consignment = ledger.consignment(statement["subject"])
            if consignment.dispatch_digest != digest or consignment.receipt_digest != receipts.get(statement["subject"]):
                figures.aggregate_mismatches.append(statement["subject"])
        if stored_record_count(ledger) != ledger.tlog.size:
            figures.aggregate_mismatches.append(f"{stored_record_count(ledger)} records for {ledger.tlog.size} entries")
        audit_ledger(ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file, workers=0)
    except Exception as error:  # noqa: BLE001
        figures.verify_failures.append(f"final: {error!r}"[:300])
    finally:
        ledger.close()


def crash_all(*, kills: int = KILLS) -> None:
    backends = ["sqlite"] + (["postgres"] if POSTGRES else [])
    results = []
    for backend in backends:
        started = time.monotonic()
        figures = crash(backend, kills=kills)
        results.append((figures, time.monotonic() - started))
        say(f"[crash/{backend}] {'OK' if figures.ok else 'FAILED'}: {figures}")
    lines = ["## Crash: kill -9 during sustained ingest", ""]
    for figures, seconds in results:
        verdict = "all checks hold" if figures.ok else "**a promise failed**"
        lines += [
            f"**{figures.backend}: {figures.kills} kill -9 of a two-worker `saksi serve` under ingest by 4 clients "
            f"— {verdict}.** {figures.acknowledged} statements acknowledged and all found at their receipt's index "
            f"after every restart ({len(figures.lost)} lost); {figures.uncertain} submissions left unanswered by a "
            f"kill, sent again: {figures.uncertain_recorded} were already recorded whole, "
            f"{figures.uncertain_not_recorded} not at all, {len(figures.half_applied)} half-applied; "
            f"`saksi verify` clean after {len(figures.verify_seconds) - len(figures.verify_failures)} of "
            f"{len(figures.verify_seconds)} restarts (max {max(figures.verify_seconds, default=0):.1f} s); "
            f"{figures.checkpoints_checked} checkpoints checked consistent ({len(figures.checkpoint_failures)} "
            f"failures), {figures.cosignatures} witness cosignatures accepted; restart to first answer max "
            f"{max(figures.recovery_seconds, default=0):.1f} s; final log size {figures.size}; aggregates "
            f"agree with the log ({len(figures.aggregate_mismatches)} mismatches). {seconds:.0f} s.",
            "",
        ]
        problems = [("lost", figures.lost), ("half-applied", figures.half_applied),
                    ("verify", figures.verify_failures), ("checkpoints", figures.checkpoint_failures),
                    ("aggregates", figures.aggregate_mismatches)]  # fmt: skip
        for what, found in problems:
            if found:
                lines += [f"- {what}: " + "; ".join(f"`{md(x)}`" for x in found[:5]), ""]
        if figures.server_errors:
            lines += [f"5xx answers during ingest (their outcome treated as unknown and checked as above): "
                      f"{sum(figures.server_errors.values())}: "
                      + "; ".join(f"`{md(k)}` ×{n}" for k, n in figures.server_errors.most_common(3)), ""]  # fmt: skip
        if figures.tracebacks:
            lines += ["Server tracebacks (last line; not a failure of the crash checks above): "
                      + "; ".join(f"`{md(t)}`" for t in sorted(set(figures.tracebacks))[:4])
                      + (" — the SQLite projections follower, see the races section"
                         if any("database is locked" in t for t in figures.tracebacks) else ""), ""]  # fmt: skip
        if figures.refusals:
            lines += [f"Refusals of valid statements: {dict(figures.refusals)}", ""]
    lines += [f"Reproduce: `python -m bench.stress crash` (with `SAKSI_TEST_POSTGRES_URL` set for PostgreSQL), "
              f"{machine()}."]  # fmt: skip
    write_section("crash", "\n".join(lines))


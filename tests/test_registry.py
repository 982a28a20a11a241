"""The registry and its policy (SPEC §1.1–1.2): who may sign what, where, when.
Every refusal is checked for its code (and invariant) and for recording nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.envelope import (
    Envelope,
    decode_b64,
    decode_statement,
    key_id,
    parse_envelope,
    raw_public_key,
)
from ledger.scenario import Signer, mandate
from ledger.statements import format_time
from tests.conftest import (
    CITY,
    KEC,
    OTHER_KEC,
    OTHER_VILLAGE,
    START,
    VILLAGE,
    Chain,
    World,
    WorldFactory,
    assert_refused,
    dispatch_body,
)


def pledge(world: World, signer: Signer, institution: str, region: str, subject: str) -> Envelope:
    body = {
        "region": region,
        "institution": institution,
        "undertakings": ["no_taking_sides"],
        "text": "Ikrar netralitas.",
        "valid_until": "2025-03-01T00:00:00Z",
    }
    return world.sign(signer, "pledge.made", subject, body)


def keyid_of(signer: Signer) -> str:
    return key_id(raw_public_key(signer.key))


def registry(
    world: World, signer: Signer, type: str, subject: str, body: dict[str, Any]
) -> Envelope:
    return world.sign(signer, type, subject, body)


# ---------------------------------------------------------------- signer and key


def test_unregistered_actor_is_unknown_actor(world: World) -> None:
    ghost = world.signer("tni-hantu")
    assert_refused(world, pledge(world, ghost, "tni", CITY, "p-1"), "unknown-actor")


def test_unregistered_key_is_unknown_key(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    impostor = Signer("tni-metro", Ed25519PrivateKey.generate())
    assert_refused(world, pledge(world, impostor, "tni", CITY, "p-1"), "unknown-key")


def test_signing_with_another_actors_key_is_key_not_of_actor(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    polri = world.register("polri-metro", "polri", CITY)
    claims_tni = Signer("tni-metro", polri.key)  # polri's registered key, claiming to be tni
    assert_refused(world, pledge(world, claims_tni, "tni", CITY, "p-1"), "key-not-of-actor")


def test_signature_over_other_bytes_is_bad_signature(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    genuine = pledge(world, tni, "tni", CITY, "p-1")
    other = pledge(world, tni, "tni", CITY, "p-2")
    forged = Envelope(payload=genuine.payload, keyid=genuine.keyid, sig=other.sig)
    assert_refused(world, forged, "bad-signature")
    world.submit(genuine)  # the genuine one is fine


def test_registrar_revoked_key_is_key_revoked(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    world.submit(pledge(world, tni, "tni", CITY, "p-1"))
    world.submit(
        registry(
            world,
            world.registrar,
            "actor.key_revoked",
            "tni-metro",
            {"keyid": keyid_of(tni), "reason": "kunci bocor"},
        )
    )
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-2"), "key-revoked")


def test_self_revoked_key_is_key_revoked_and_the_added_key_signs(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    new = Signer("tni-metro", Ed25519PrivateKey.generate())
    world.submit(registry(world, tni, "actor.key_added", "tni-metro", {"key": new.public_key}))
    world.submit(registry(world, tni, "actor.key_revoked", "tni-metro", {"keyid": keyid_of(tni)}))
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-1"), "key-revoked")
    world.submit(pledge(world, new, "tni", CITY, "p-1"))
    assert world.ledger.record(_last_statement_id(world)).keyid == keyid_of(new)


def _last_statement_id(world: World) -> str:
    envelope = world.ledger.tlog.entry(world.ledger.tlog.size - 1)["envelope"]
    return decode_statement(parse_envelope(envelope)).id


def test_revocation_is_not_retroactive(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    earlier = pledge(world, tni, "tni", CITY, "p-1")
    first = world.submit(earlier)
    world.submit(
        registry(world, world.registrar, "actor.key_revoked", "tni-metro", {"keyid": keyid_of(tni)})
    )
    again = world.submit(earlier)  # the same envelope: its first receipt, not a refusal
    assert (again.index, again.duplicate) == (first.index, True)
    assert world.ledger.tlog.entry(first.index)["envelope"] == earlier.to_json()


# ---------------------------------------------------------------- mandates


def test_observer_dispatching_is_no_mandate(world: World, chain: Chain) -> None:
    observer = world.register("perludem", "observer", "ID")
    envelope = world.sign(
        observer, "logistics.dispatched", "out.x", dispatch_body(KEC, chain.ppk.actor)
    )
    assert_refused(world, envelope, "no-mandate")


def test_party_pledging_neutrality_is_no_mandate(world: World) -> None:
    party = world.register("partai-x", "party", "ID")
    assert_refused(world, pledge(world, party, "asn", CITY, "p-1"), "no-mandate")


def test_ppk_dispatching_to_a_village_of_another_kecamatan_is_outside_jurisdiction(
    world: World,
) -> None:
    ppk = world.register("ppk-metro-pusat", "ppk", KEC)
    other_pps = world.register("pps-metro-timur", "pps", OTHER_VILLAGE)
    envelope = world.sign(
        ppk, "logistics.dispatched", "out.v", dispatch_body(OTHER_VILLAGE, other_pps.actor)
    )
    assert_refused(world, envelope, "outside-jurisdiction")


def test_kabupaten_pledge_for_another_regency_is_outside_jurisdiction(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    assert_refused(world, pledge(world, tni, "tni", "18.71", "p-1"), "outside-jurisdiction")


def test_pledge_for_the_whole_country_needs_a_mandate_for_id(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    assert_refused(world, pledge(world, tni, "tni", "ID", "p-1"), "outside-jurisdiction")
    mabes = world.register("tni-mabes", "tni", "ID")
    world.submit(pledge(world, mabes, "tni", "ID", "p-1"))


def test_expired_mandate_is_no_mandate(world: World) -> None:
    tni = world.register_with(
        "tni-metro", [mandate("tni", CITY, valid_until="2024-08-01T00:00:00Z")]
    )
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-1"), "no-mandate")


def test_mandate_expires_at_valid_until_exactly(world: World) -> None:
    until = START + timedelta(days=1)
    tni = world.register_with("tni-metro", [mandate("tni", CITY, valid_until=format_time(until))])
    world.clock.now = until - timedelta(microseconds=1)
    world.submit(pledge(world, tni, "tni", CITY, "p-1"))
    world.clock.now = until  # valid_until is exclusive
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-2"), "no-mandate")


def test_mandate_not_yet_valid_is_no_mandate(world: World) -> None:
    tni = world.register_with(
        "tni-metro", [mandate("tni", CITY, valid_from="2024-10-01T00:00:00Z")]
    )
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-1"), "no-mandate")
    world.clock.now = START.replace(month=10)
    world.submit(pledge(world, tni, "tni", CITY, "p-1"))


def test_revoked_mandate_is_no_mandate(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    world.submit(pledge(world, tni, "tni", CITY, "p-1"))
    world.submit(
        registry(
            world,
            world.registrar,
            "actor.mandate_revoked",
            "tni-metro",
            {"mandate_id": "m1", "reason": "mutasi"},
        )
    )
    assert_refused(world, pledge(world, tni, "tni", CITY, "p-2"), "no-mandate")


def test_granted_mandate_authorises_what_the_first_did_not(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    assert_refused(world, pledge(world, tni, "tni", "18.71", "p-1"), "outside-jurisdiction")
    world.submit(
        registry(
            world,
            world.registrar,
            "actor.mandate_granted",
            "tni-metro",
            {"mandate": mandate("tni", "18.71", mandate_id="m2")},
        )
    )
    world.submit(pledge(world, tni, "tni", "18.71", "p-1"))


# ---------------------------------------------------------------- registrars


def test_non_registrar_registering_an_actor_is_no_mandate(world: World) -> None:
    kpu = world.register("kpu-metro", "kpu", CITY)
    envelope = kpu.sign(
        "actor.registered",
        "ppk-x",
        {
            "name": "PPK X",
            "kind": "organisation",
            "keys": [world.signer("ppk-x").public_key],
            "mandates": [mandate("ppk", KEC)],
        },
        issued_at=world.clock.now,
    )
    assert_refused(world, envelope, "no-mandate")


def test_provincial_registrar_registering_in_another_province_is_outside_jurisdiction(
    world: World,
) -> None:
    lampung = world.register("registrar-lampung", "registrar", "18")
    outside = lampung.sign(
        "actor.registered",
        "kpu-jaksel",
        {
            "name": "KPU Jakarta Selatan",
            "kind": "organisation",
            "keys": [world.signer("kpu-jaksel").public_key],
            "mandates": [mandate("kpu", "31.74")],
        },
        issued_at=world.clock.now,
    )
    assert_refused(world, outside, "outside-jurisdiction")
    inside = lampung.sign(
        "actor.registered",
        "kpu-metro",
        {
            "name": "KPU Metro",
            "kind": "organisation",
            "keys": [world.signer("kpu-metro").public_key],
            "mandates": [mandate("kpu", CITY)],
        },
        issued_at=world.clock.now,
    )
    world.submit(inside)


def test_provincial_registrar_granting_a_national_mandate_is_outside_jurisdiction(
    world: World,
) -> None:
    lampung = world.register("registrar-lampung", "registrar", "18")
    world.register("tni-metro", "tni", CITY)
    envelope = registry(
        world,
        lampung,
        "actor.mandate_granted",
        "tni-metro",
        {"mandate": mandate("tni", "ID", mandate_id="m2")},
    )
    assert_refused(world, envelope, "outside-jurisdiction")


def test_actor_cannot_grant_itself_a_mandate(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    envelope = registry(
        world,
        tni,
        "actor.mandate_granted",
        "tni-metro",
        {"mandate": mandate("tni", "ID", mandate_id="m2")},
    )
    assert_refused(world, envelope, "no-mandate")


def test_actor_cannot_revoke_another_actors_key(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    polri = world.register("polri-metro", "polri", CITY)
    envelope = registry(world, tni, "actor.key_revoked", "polri-metro", {"keyid": keyid_of(polri)})
    assert_refused(world, envelope, "no-mandate")


# ---------------------------------------------------------------- genesis


@pytest.fixture
def empty(make_world: WorldFactory) -> World:
    return make_world("memory:", genesis=False)


def test_first_statement_other_than_genesis_is_genesis_violation(empty: World) -> None:
    envelope = empty.population.register("kpu-metro", "KPU", "kpu", CITY, empty.clock.now)
    assert_refused(empty, envelope, "genesis-violation")
    assert empty.ledger.tlog.size == 0
    empty.submit(empty.population.genesis_envelope(empty.clock.now))
    empty.submit(envelope)
    assert empty.ledger.tlog.size == 2


def test_genesis_registration_signed_by_another_key_is_genesis_violation(empty: World) -> None:
    registrar = empty.registrar
    usurper = Signer(registrar.actor, Ed25519PrivateKey.generate())
    envelope = usurper.sign(
        "actor.registered",
        registrar.actor,
        {
            "name": "KPU RI",
            "kind": "organisation",
            "keys": [usurper.public_key],
            "mandates": [mandate("registrar", "ID")],
        },
        issued_at=empty.clock.now,
    )
    assert_refused(empty, envelope, "genesis-violation")


@pytest.mark.parametrize(
    "mandates",
    [[mandate("registrar", "18")], [mandate("kpu", "ID")], []],
    ids=["registrar-for-a-province", "kpu-for-id", "no-mandate"],
)
def test_genesis_without_a_registrar_mandate_for_id_is_genesis_violation(
    empty: World, mandates: list[dict[str, Any]]
) -> None:
    registrar = empty.registrar
    envelope = registrar.sign(
        "actor.registered",
        registrar.actor,
        {
            "name": "KPU RI",
            "kind": "organisation",
            "keys": [registrar.public_key],
            "mandates": mandates,
        },
        issued_at=empty.clock.now,
    )
    assert_refused(empty, envelope, "genesis-violation")


def test_genesis_with_an_extra_key_is_genesis_violation(empty: World) -> None:
    registrar = empty.registrar
    envelope = registrar.sign(
        "actor.registered",
        registrar.actor,
        {
            "name": "KPU RI",
            "kind": "organisation",
            "keys": [registrar.public_key, Signer("x", Ed25519PrivateKey.generate()).public_key],
            "mandates": [mandate("registrar", "ID")],
        },
        issued_at=empty.clock.now,
    )
    assert_refused(empty, envelope, "genesis-violation")


def test_genesis_with_a_bad_signature_is_bad_signature(empty: World) -> None:
    genuine = empty.population.genesis_envelope(empty.clock.now)
    forged = Envelope(payload=genuine.payload, keyid=genuine.keyid, sig=bytes(64))
    assert_refused(empty, forged, "bad-signature")


# ---------------------------------------------------------------- registry invariants


def test_registering_an_actor_twice_breaks_actor_registered_once(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    again = world.registration(
        "tni-metro",
        [mandate("tni", CITY)],
        keys=[Signer("x", Ed25519PrivateKey.generate()).public_key],
    )
    assert_refused(world, again, "invariant-broken", invariant="actor-registered-once")


def test_registering_another_actors_key_breaks_key_belongs_to_one_actor(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    envelope = world.registration("polri-metro", [mandate("polri", CITY)], keys=[tni.public_key])
    assert_refused(world, envelope, "invariant-broken", invariant="key-belongs-to-one-actor")


def test_adding_another_actors_key_breaks_key_belongs_to_one_actor(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    polri = world.register("polri-metro", "polri", CITY)
    envelope = registry(world, polri, "actor.key_added", "polri-metro", {"key": tni.public_key})
    assert_refused(world, envelope, "invariant-broken", invariant="key-belongs-to-one-actor")


def test_a_revoked_key_still_belongs_to_its_actor(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    world.submit(
        registry(world, world.registrar, "actor.key_revoked", "tni-metro", {"keyid": keyid_of(tni)})
    )
    envelope = world.registration("polri-metro", [mandate("polri", CITY)], keys=[tni.public_key])
    assert_refused(world, envelope, "invariant-broken", invariant="key-belongs-to-one-actor")


def test_two_ppk_for_one_kecamatan_at_once_breaks_authority_must_not_overlap(world: World) -> None:
    world.register("ppk-a", "ppk", KEC)
    envelope = world.registration("ppk-b", [mandate("ppk", KEC, valid_from="2024-06-01T00:00:00Z")])
    assert_refused(world, envelope, "invariant-broken", invariant="authority-must-not-overlap")


def test_overlap_in_the_future_breaks_authority_must_not_overlap(world: World) -> None:
    world.register_with(
        "ppk-a",
        [
            mandate(
                "ppk", KEC, valid_from="2025-01-01T00:00:00Z", valid_until="2025-06-01T00:00:00Z"
            )
        ],
    )
    envelope = world.registration(
        "ppk-b", [mandate("ppk", KEC, valid_until="2025-01-02T00:00:00Z")]
    )
    assert_refused(world, envelope, "invariant-broken", invariant="authority-must-not-overlap")


def test_successive_ppk_for_one_kecamatan_do_not_overlap(world: World) -> None:
    world.register_with("ppk-a", [mandate("ppk", KEC, valid_until="2024-06-01T00:00:00Z")])
    world.register_with(
        "ppk-b",
        [
            mandate(
                "ppk", KEC, valid_from="2024-06-01T00:00:00Z", valid_until="2024-12-31T00:00:00Z"
            )
        ],
    )
    world.register_with("ppk-c", [mandate("ppk", KEC, valid_from="2024-12-31T00:00:00Z")])
    assert world.ledger.actor("ppk-c").mandates["m1"]["valid_from"] == "2024-12-31T00:00:00Z"


def test_ppk_of_neighbouring_kecamatan_do_not_overlap(world: World) -> None:
    world.register("ppk-a", "ppk", KEC)
    world.register("ppk-b", "ppk", OTHER_KEC)
    world.register("panwascam-a", "panwascam", KEC)  # another office in the same kecamatan


def test_observers_may_share_a_jurisdiction(world: World) -> None:
    world.register("perludem", "observer", "ID")
    world.register("jppr", "observer", "ID")
    world.register("asn-a", "asn", CITY)
    world.register("asn-b", "asn", CITY)


def test_granting_a_held_office_breaks_authority_must_not_overlap(world: World) -> None:
    world.register("pps-a", "pps", VILLAGE)
    world.register("pps-b", "pps", "18.72.01.1002")
    envelope = registry(
        world,
        world.registrar,
        "actor.mandate_granted",
        "pps-b",
        {"mandate": mandate("pps", VILLAGE, mandate_id="m2")},
    )
    assert_refused(world, envelope, "invariant-broken", invariant="authority-must-not-overlap")


def test_a_revoked_office_holder_frees_the_office(world: World) -> None:
    world.register("ppk-a", "ppk", KEC)
    world.submit(
        registry(world, world.registrar, "actor.mandate_revoked", "ppk-a", {"mandate_id": "m1"})
    )
    world.register_with("ppk-b", [mandate("ppk", KEC, valid_from=format_time(world.clock.now))])


def test_granting_a_mandate_id_twice_breaks_mandate_id_unique(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    envelope = registry(
        world,
        world.registrar,
        "actor.mandate_granted",
        "tni-metro",
        {"mandate": mandate("tni", "18.71", mandate_id="m1")},
    )
    assert_refused(world, envelope, "invariant-broken", invariant="mandate-id-unique")


def test_changing_an_unregistered_actor_breaks_actor_exists(world: World) -> None:
    envelope = registry(
        world,
        world.registrar,
        "actor.key_added",
        "tni-hantu",
        {"key": world.signer("tni-hantu").public_key},
    )
    assert_refused(world, envelope, "invariant-broken", invariant="actor-exists")


def test_revoking_an_unknown_mandate_breaks_mandate_exists(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    envelope = registry(
        world, world.registrar, "actor.mandate_revoked", "tni-metro", {"mandate_id": "m9"}
    )
    assert_refused(world, envelope, "invariant-broken", invariant="mandate-exists")


def test_revoking_a_mandate_twice_breaks_mandate_revoked_once(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    world.submit(
        registry(world, world.registrar, "actor.mandate_revoked", "tni-metro", {"mandate_id": "m1"})
    )
    envelope = registry(
        world, world.registrar, "actor.mandate_revoked", "tni-metro", {"mandate_id": "m1"}
    )
    assert_refused(world, envelope, "invariant-broken", invariant="mandate-revoked-once")


def test_revoking_a_key_the_actor_does_not_hold_breaks_key_exists(world: World) -> None:
    world.register("tni-metro", "tni", CITY)
    envelope = registry(
        world, world.registrar, "actor.key_revoked", "tni-metro", {"keyid": "ab" * 32}
    )
    assert_refused(world, envelope, "invariant-broken", invariant="key-exists")


def test_revoking_a_key_twice_breaks_key_revoked_once(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    revoke = {"keyid": keyid_of(tni)}
    world.submit(registry(world, world.registrar, "actor.key_revoked", "tni-metro", revoke))
    envelope = registry(
        world, world.registrar, "actor.key_revoked", "tni-metro", {**revoke, "reason": "lagi"}
    )
    assert_refused(world, envelope, "invariant-broken", invariant="key-revoked-once")


def test_registry_state_records_who_and_when(world: World) -> None:
    tni = world.register("tni-metro", "tni", CITY)
    actor = world.ledger.actor("tni-metro")
    assert actor.kind == "organisation" and actor.name == "TNI-METRO"
    assert actor.key_in_force(keyid_of(tni))
    assert decode_b64(actor.keys[keyid_of(tni)]["key"]) == raw_public_key(tni.key)
    assert actor.mandates["m1"]["granted_at"] == format_time(world.clock.now)
    assert [m["id"] for m in actor.mandates_in_force(format_time(world.clock.now))] == ["m1"]

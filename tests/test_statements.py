"""Statements and bodies (SPEC §1, §1.1): closed, strict, in the catalogue. Each
case alters one field of a statement the ledger would otherwise accept, and
checks the refusal's code and that nothing was recorded."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ledger.canonical import canonical_bytes
from ledger.envelope import b64, statement_digest
from ledger.errors import MalformedBody, MalformedStatement
from ledger.scenario import mandate
from ledger.statements import Statement
from tests.conftest import (
    CITY,
    KEC,
    TPS,
    VILLAGE,
    Chain,
    World,
    assert_refused,
    dispatch_body,
    raw_envelope,
    statement_dict,
)

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    """Set (or with value ``...`` delete) the field at dotted ``path``."""

    def change(statement: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = statement
        for name in parents:
            target = target[name]
        if value is ...:
            del target[last]
        else:
            target[last] = value

    return change


@pytest.fixture
def declaration(world: World) -> tuple[dict[str, Any], Any]:
    """An acceptable commitment.declared by a party for Kota Metro's mayoral race."""
    party = world.register("paslon-metro-1", "candidate_pair", CITY)
    statement = statement_dict(
        party,
        "commitment.declared",
        "commitment-paslon-1",
        {
            "region": CITY,
            "race": "mayor",
            "kind": "peaceful_campaign",
            "title": "Kampanye damai",
            "text": "Kami berkampanye damai.",
            "document_sha256": "ab" * 32,
        },
    )
    return statement, party


def test_the_unaltered_declaration_is_accepted(world: World, declaration: Any) -> None:
    statement, party = declaration
    receipt = world.submit(raw_envelope(statement, party.key))
    assert receipt.statement_digest == statement_digest(canonical_bytes(statement))


# ---------------------------------------------------------------- malformed-statement

STATEMENT_CHANGES: dict[str, Change] = {
    "unknown-field": _set("extra", 1),
    "v-2": _set("v", 2),
    "v-0": _set("v", 0),
    "v-string": _set("v", "1"),
    "v-missing": _set("v", ...),
    "unknown-type": _set("type", "logistics.teleported"),
    "unknown-registry-type": _set("type", "actor.deleted"),
    "type-missing": _set("type", ...),
    "id-uppercase-uuid": _set("id", "0190C5D6-0000-4000-8000-00000000000A"),
    "id-uuid-without-hyphens": _set("id", "0190c5d6000040008000000000000001"),
    "id-free-text": _set("id", "statement-1"),
    "id-ulid-with-u": _set("id", "01ARZ3NDEKTSV4RRFFQ69G5FAU"),
    "id-ulid-overflow": _set("id", "81ARZ3NDEKTSV4RRFFQ69G5FAV"),
    "id-missing": _set("id", ...),
    "issued_at-offset": _set("issued_at", "2024-09-01T08:00:00+07:00"),
    "issued_at-space": _set("issued_at", "2024-09-01 01:00:00Z"),
    "issued_at-lowercase-z": _set("issued_at", "2024-09-01T01:00:00z"),
    "issued_at-nanoseconds": _set("issued_at", "2024-09-01T01:00:00.1234567Z"),
    "issued_at-30-february": _set("issued_at", "2024-02-30T01:00:00Z"),
    "issued_at-hour-24": _set("issued_at", "2024-09-01T24:00:00Z"),
    "issued_at-date-only": _set("issued_at", "2024-09-01"),
    "issued_at-number": _set("issued_at", 1725152400),
    "refs-empty-list": _set("refs", []),
    "refs-not-a-digest": _set("refs", ["ab" * 32]),
    "refs-uppercase-hex": _set("refs", ["sha256:" + "AB" * 32]),
    "refs-repeated": _set("refs", ["sha256:" + "ab" * 32] * 2),
    "refs-a-string": _set("refs", "sha256:" + "ab" * 32),
    "actor-uppercase": _set("actor", "Paslon-Metro-1"),
    "subject-empty": _set("subject", ""),
    "subject-with-space": _set("subject", "commitment paslon"),
    "body-not-an-object": _set("body", ["region", CITY]),
    "body-missing": _set("body", ...),
}


@pytest.mark.parametrize("change", STATEMENT_CHANGES.values(), ids=STATEMENT_CHANGES.keys())
def test_malformed_statement(world: World, declaration: Any, change: Change) -> None:
    statement, party = declaration
    altered = copy.deepcopy(statement)
    change(altered)
    refusal = assert_refused(world, raw_envelope(altered, party.key), "malformed-statement")
    assert isinstance(refusal, MalformedStatement)


def test_v_true_is_not_the_integer_1(world: World, declaration: Any) -> None:
    # SPEC §1: "v is the integer 1"; statements.py: "strict (no coercion: true is not 1)".
    statement, party = declaration
    assert canonical_bytes({**statement, "v": True}) != canonical_bytes(statement)
    assert_refused(world, raw_envelope({**statement, "v": True}, party.key), "malformed-statement")


def test_refs_null_is_neither_absent_nor_a_list(world: World, declaration: Any) -> None:
    # SPEC §1: refs is an "array of string, optional"; "refs is absent or non-empty".
    statement, party = declaration
    assert_refused(
        world, raw_envelope({**statement, "refs": None}, party.key), "malformed-statement"
    )


def test_statement_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedStatement):
        Statement.parse(["v", 1], payload=b"[]", digest=statement_digest(b"[]"))


def test_actor_statement_subject_must_be_an_actor_id(world: World) -> None:
    statement = statement_dict(
        world.registrar, "actor.key_added", "Registrar-KPU-RI", {"key": world.registrar.public_key}
    )
    assert_refused(world, raw_envelope(statement, world.registrar.key), "malformed-statement")


# ---------------------------------------------------------------- malformed-body


DECLARATION_BODY_CHANGES: dict[str, Change] = {
    "unknown-field": _set("body.extra", "x"),
    "region-bad-shape": _set("body.region", "18-72"),
    "region-not-in-kemendagri-list": _set("body.region", "18.99"),
    "region-lowercase-id": _set("body.region", "id"),
    "region-number": _set("body.region", 1872),
    "race-unknown": _set("body.race", "president"),
    "race-regent-in-a-city": _set("body.race", "regent"),
    "kind-unknown": _set("body.kind", "vote_buying"),
    "title-empty": _set("body.title", ""),
    "text-missing": _set("body.text", ...),
    "document-sha256-uppercase": _set("body.document_sha256", "AB" * 32),
    "document-sha256-short": _set("body.document_sha256", "ab" * 31),
}


@pytest.mark.parametrize(
    "change", DECLARATION_BODY_CHANGES.values(), ids=DECLARATION_BODY_CHANGES.keys()
)
def test_malformed_declaration_body(world: World, declaration: Any, change: Change) -> None:
    statement, party = declaration
    altered = copy.deepcopy(statement)
    change(altered)
    refusal = assert_refused(world, raw_envelope(altered, party.key), "malformed-body")
    assert isinstance(refusal, MalformedBody)


def test_race_in_the_whole_country_is_malformed(world: World) -> None:
    party = world.register("partai-x", "party", "ID")
    statement = statement_dict(
        party,
        "commitment.declared",
        "c-1",
        {
            "region": "ID",
            "race": "governor",
            "kind": "anti_hoax",
            "title": "T",
            "text": "T",
            "document_sha256": "ab" * 32,
        },
    )
    assert_refused(world, raw_envelope(statement, party.key), "malformed-body")


def test_body_of_another_type_is_malformed(world: World, declaration: Any) -> None:
    statement, party = declaration
    altered = {
        **statement,
        "type": "commitment.endorsed",
    }  # a declaration's body is not closed to it
    assert_refused(world, raw_envelope(altered, party.key), "malformed-body")


@pytest.fixture
def dispatch(world: World, chain: Chain) -> tuple[dict[str, Any], Any]:
    """An acceptable outbound dispatch KPU Kota Metro → PPK 18.72.01."""
    statement = statement_dict(
        chain.kpu, "logistics.dispatched", f"out.{KEC}", dispatch_body(KEC, chain.ppk.actor)
    )
    return statement, chain.kpu


def test_the_unaltered_dispatch_is_accepted(world: World, dispatch: Any) -> None:
    statement, kpu = dispatch
    world.submit(raw_envelope(statement, kpu.key))
    assert world.ledger.consignment(f"out.{KEC}").status == "dispatched"


DISPATCH_BODY_CHANGES: dict[str, Change] = {
    "unknown-field": _set("body.priority", "high"),
    "region-bad-shape": _set("body.region", "18.72.1"),
    "region-not-in-kemendagri-list": _set("body.region", "18.99"),
    "village-not-in-kemendagri-list": _set("body.region", "18.72.01.9999"),
    "tps-000": _set("body.region", VILLAGE + ".000"),
    "tps-two-digits": _set("body.region", VILLAGE + ".01"),
    "count-negative": _set("body.items.booth", -1),
    "count-bool": _set("body.items.booth", True),
    "count-string": _set("body.items.booth", "4"),
    "count-null": _set("body.items.booth", None),
    "item-unknown": _set("body.items.laptop", 1),
    "items-empty": _set("body.items", {}),
    "direction-unknown": _set("body.direction", "sideways"),
    "receiver-uppercase": _set("body.receiver", "PPK-Metro-Pusat"),
    "seals-repeated": _set("body.seals", ["S-1", "S-1"]),
    "due-by-not-a-time": _set("body.due_by", "H-1"),
    "region-missing": _set("body.region", ...),
}


@pytest.mark.parametrize("change", DISPATCH_BODY_CHANGES.values(), ids=DISPATCH_BODY_CHANGES.keys())
def test_malformed_dispatch_body(world: World, dispatch: Any, change: Change) -> None:
    statement, kpu = dispatch
    altered = copy.deepcopy(statement)
    change(altered)
    assert_refused(world, raw_envelope(altered, kpu.key), "malformed-body")


def test_tps_001_is_a_region_but_000_is_not(world: World, chain: Chain) -> None:
    good = statement_dict(
        chain.pps, "logistics.dispatched", "out.tps", dispatch_body(TPS, chain.kpps.actor)
    )
    world.submit(raw_envelope(good, chain.pps.key))
    bad = statement_dict(
        chain.pps,
        "logistics.dispatched",
        "out.tps-000",
        dispatch_body(VILLAGE + ".000", chain.kpps.actor),
    )
    assert_refused(world, raw_envelope(bad, chain.pps.key), "malformed-body", message="001")


def _registration(world: World, **body: Any) -> dict[str, Any]:
    new = world.signer("ppk-baru")
    base = {
        "name": "PPK Baru",
        "kind": "organisation",
        "keys": [new.public_key],
        "mandates": [mandate("ppk", "18.72.03")],
    }
    base.update(body)
    return statement_dict(world.registrar, "actor.registered", "ppk-baru", base)


def test_the_unaltered_registration_is_accepted(world: World) -> None:
    world.submit(raw_envelope(_registration(world), world.registrar.key))
    assert world.ledger.actor("ppk-baru").mandates["m1"]["jurisdiction"] == "18.72.03"


REGISTRATION_CHANGES: dict[str, dict[str, Any]] = {
    "no-keys": {"keys": []},
    "key-31-bytes": {"keys": [b64(bytes(31))]},
    "key-not-base64": {"keys": ["not base64!"]},
    "keys-repeated": {"keys": [b64(bytes(32)), b64(bytes(32))]},
    "kind-unknown": {"kind": "robot"},
    "name-empty": {"name": ""},
    "mandate-role-unknown": {"mandates": [mandate("governor", "18.72")]},
    "mandate-ppk-for-a-city": {"mandates": [mandate("ppk", "18.72")]},
    "mandate-kpps-for-a-village": {"mandates": [mandate("kpps", VILLAGE)]},
    "mandate-witness-for-a-province": {"mandates": [mandate("witness", "18")]},
    "mandate-ends-before-it-starts": {
        "mandates": [mandate("ppk", "18.72.03", valid_until="2023-01-01T00:00:00Z")]
    },
    "mandate-ids-repeated": {"mandates": [mandate("asn", "18.72"), mandate("tni", "18.72")]},
    "mandate-unknown-field": {"mandates": [{**mandate("ppk", "18.72.03"), "notes": "x"}]},
    "mandate-jurisdiction-unknown": {"mandates": [mandate("ppk", "18.72.99")]},
    "nik-field": {"nik": "1871010101010001"},
}


@pytest.mark.parametrize("body", REGISTRATION_CHANGES.values(), ids=REGISTRATION_CHANGES.keys())
def test_malformed_registration_body(world: World, body: dict[str, Any]) -> None:
    envelope = raw_envelope(_registration(world, **body), world.registrar.key)
    assert_refused(world, envelope, "malformed-body")


RECEIPT_ITEMS = {"count-negative": -5, "count-bool": False, "count-string": "410"}


@pytest.mark.parametrize("count", RECEIPT_ITEMS.values(), ids=RECEIPT_ITEMS.keys())
def test_malformed_receipt_count(world: World, chain: Chain, count: Any) -> None:
    dispatch = world.sign(
        chain.kpu, "logistics.dispatched", "out.k", dispatch_body(KEC, chain.ppk.actor)
    )
    world.submit(dispatch)
    body = {
        "region": KEC,
        "items": {"ballots_mayor": count},
        "seals_intact": True,
        "condition": "good",
    }
    statement = statement_dict(
        chain.ppk, "logistics.received", "out.k", body, refs=[dispatch.digest]
    )
    assert_refused(world, raw_envelope(statement, chain.ppk.key), "malformed-body")


def test_seals_intact_as_integer_is_malformed(world: World, chain: Chain) -> None:
    dispatch = world.sign(
        chain.kpu, "logistics.dispatched", "out.k", dispatch_body(KEC, chain.ppk.actor)
    )
    world.submit(dispatch)
    body = {"region": KEC, "items": {"booth": 4}, "seals_intact": 1, "condition": "good"}
    statement = statement_dict(
        chain.ppk, "logistics.received", "out.k", body, refs=[dispatch.digest]
    )
    assert_refused(world, raw_envelope(statement, chain.ppk.key), "malformed-body")

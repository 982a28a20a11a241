"""Audit bundles (SPEC §8): export from a ledger, verify offline from the keys alone.

A bundle is a directory or a ``.zip`` holding exactly ``entries.jsonl``,
``checkpoint``, ``keys.json`` and ``README.txt``, plus ``proofs.jsonl`` when
selective and optionally ``consistency.json``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger import merkle, notes, regions
from ledger.application import Ledger
from ledger.audit import Replay, SignatureChecker, iter_entries
from ledger.canonical import JSONRefused, canonical_bytes, strict_loads
from ledger.envelope import b64, decode_b64, decode_statement, parse_envelope
from ledger.errors import AuditFailure, SaksiError, VerificationError
from ledger.log import leaf_bytes
from ledger.registry import GenesisRegistrar
from ledger.statements import _TIME, is_registry
from ledger.witness import witness_vkey

REQUIRED = {"entries.jsonl", "checkpoint", "keys.json", "README.txt"}
OPTIONAL = {"proofs.jsonl", "consistency.json"}

README = """Saksi audit bundle ({kind})
================================

This bundle proves what the Saksi ledger "{origin}" recorded, without trusting
its server. It holds:

  entries.jsonl   log entries, one canonical JSON line each, in index order
  checkpoint      the log's signed checkpoint (size {size}) and its cosignatures
  keys.json       a convenience copy of the keys: do NOT trust it; compare it with
                  the keys the log's operators published out of band
{proofs}
To verify (offline):

  saksi verify-bundle THIS.zip --log-key 'LOG_VKEY' \\
      --genesis-key ACTOR=BASE64_KEY [--witness-key VKEY ... --min-cosignatures K]

A verifier checks: each envelope's canonical form and Ed25519 signature; the
actor registry replayed from the actor.* entries, so each signature is checked
against the key and mandate valid at its index; {root_check}; the checkpoint's
signature by the log key; and the cosignatures required.
"""


def _line(value: Any) -> bytes:
    return canonical_bytes(value) + b"\n"


def witness_vkeys(ledger: Ledger) -> list[str]:
    """Cosignature keys of every actor that has cosigned a checkpoint of this log."""
    vkeys = []
    for witness, _, _ in ledger.tlog.store.last_cosignatures():
        actor = ledger.actor(witness)
        vkeys += [witness_vkey(witness, decode_b64(k["key"])) for k in actor.keys.values()]
    return vkeys


def keys_json(ledger: Ledger, log_vkey: str) -> dict[str, Any]:
    return {
        "log": log_vkey,
        "witnesses": witness_vkeys(ledger),
        "genesis": [{"actor": g.actor, "key": g.key} for g in ledger.genesis],
    }


def _matches(subject: str, statement: Any) -> bool:
    region = statement.region
    return (
        statement.subject == subject
        or statement.actor == subject
        or (region is not None and region != regions.COUNTRY and regions.contains(subject, region))
    )


def export_bundle(ledger: Ledger, out: BinaryIO, *, log_vkey: str, subject: str | None = None) -> int:
    """Write a bundle as a zip to ``out``: full when ``subject`` is None, else
    selective (entries about ``subject`` — a consignment, a TPS or region code, an
    actor — their answers, and every actor.* entry). Returns the entry count.
    The checkpoint is the latest signed one, with its cosignatures."""
    note = ledger.tlog.latest_note()
    size = notes.parse_note(note).checkpoint.size
    chosen: list[int] = []
    if subject is not None:
        subjects: set[str] = set()
        for entry in iter_entries(ledger, 0, size):
            statement = decode_statement(parse_envelope(entry["envelope"]))
            if is_registry(statement.type) or _matches(subject, statement) or statement.subject in subjects:
                chosen.append(entry["index"])
                if not is_registry(statement.type) and _matches(subject, statement):
                    subjects.add(statement.subject)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("entries.jsonl", "w") as handle:
            if subject is None:
                count = 0
                for entry in iter_entries(ledger, 0, size):
                    handle.write(_line(entry))
                    count += 1
            else:
                count = len(chosen)
                for index in chosen:
                    handle.write(_line(ledger.tlog.entry(index)))
        if subject is not None:
            with archive.open("proofs.jsonl", "w") as handle:
                for index in chosen:
                    proof = [b64(h) for h in ledger.tlog.inclusion_proof(index, size)]
                    handle.write(_line({"index": index, "proof": proof}))
        archive.writestr("checkpoint", note)
        archive.writestr("keys.json", canonical_bytes(keys_json(ledger, log_vkey)))
        archive.writestr("README.txt", README.format(
            kind="full" if subject is None else f"selective: {subject}", origin=ledger.tlog.origin,
            size=size,
            proofs="" if subject is None else "  proofs.jsonl    line k: the inclusion proof of line k of entries.jsonl\n",
            root_check="the root recomputed from all entries" if subject is None
            else "each entry's inclusion proof against the checkpoint",
        ))  # fmt: skip
    return count


@dataclass(frozen=True)
class BundleReport:
    kind: str  # "full" or "selective"
    size: int
    entries: int
    cosignatures: int


def _read_files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} | {
            p.name + "/": b"" for p in path.iterdir() if not p.is_file()
        }
    try:
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as error:
        raise VerificationError(f"{path}: not a bundle directory or zip ({error})") from None


def _jsonl(data: bytes, name: str) -> Iterator[tuple[int, Any]]:
    if data and not data.endswith(b"\n"):
        raise VerificationError(f"{name}: the last line is not LF-terminated")
    for number, raw in enumerate(data.split(b"\n")[:-1] if data else []):
        try:
            value = strict_loads(raw)
        except JSONRefused as error:
            raise VerificationError(f"{name} line {number + 1}: {error}") from None
        if canonical_bytes(value) != raw:
            raise VerificationError(f"{name} line {number + 1}: not in canonical (JCS) form")
        yield number, value


def verify_bundle(
    path: Path,
    *,
    log_key: str,
    genesis: Sequence[GenesisRegistrar],
    witness_keys: Sequence[str] = (),
    min_cosignatures: int = 0,
    workers: int = 0,
) -> BundleReport:
    """Verify a bundle offline from the keys alone (SPEC §8). Raises
    VerificationError (AuditFailure naming the index when an entry is bad)."""
    files = _read_files(path)
    names = set(files)
    if not REQUIRED <= names or names - REQUIRED - OPTIONAL:
        raise VerificationError(
            f"a bundle holds exactly {', '.join(sorted(REQUIRED))} (+ proofs.jsonl, "
            f"consistency.json); found {', '.join(sorted(names))}"
        )
    _check_keys(files["keys.json"], log_key, genesis)
    try:
        signed = notes.verify_checkpoint(
            files["checkpoint"].decode("utf-8"), log_key=log_key,
            witness_keys=witness_keys, min_cosignatures=min_cosignatures,
        )  # fmt: skip
    except UnicodeDecodeError:
        raise VerificationError("checkpoint is not UTF-8") from None
    checkpoint = signed.checkpoint
    selective = "proofs.jsonl" in files
    proofs = list(_jsonl(files["proofs.jsonl"], "proofs.jsonl")) if selective else []
    checker = SignatureChecker(workers)
    replay = Replay(tuple(genesis), checker, dense=not selective)
    frontier = merkle.CompactRange()
    last_at = ""
    count = 0
    try:
        for number, entry in _jsonl(files["entries.jsonl"], "entries.jsonl"):
            if not isinstance(entry, dict) or set(entry) != {"index", "recorded_at", "envelope"}:
                raise VerificationError(f"entries.jsonl line {number + 1}: an entry has exactly index, recorded_at, envelope")
            index, recorded_at = entry["index"], entry["recorded_at"]
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < checkpoint.size:
                raise AuditFailure(None, f"entries.jsonl line {number + 1}: index outside the checkpoint")
            if not isinstance(recorded_at, str) or not _TIME.match(recorded_at) or len(recorded_at) != 27 or recorded_at < last_at:
                raise AuditFailure(index, "recorded_at is malformed or decreases along the index")
            last_at = recorded_at
            replay.entry(index, recorded_at, entry["envelope"])
            leaf = merkle.leaf_hash(leaf_bytes(index, recorded_at, entry["envelope"]))
            if selective:
                _check_proof(proofs, number, index, leaf, checkpoint)
            else:
                frontier.append(leaf)
            count += 1
        if selective and len(proofs) != count:
            raise VerificationError("proofs.jsonl and entries.jsonl have different lengths")
        replay.finish()
    except AuditFailure as failure:
        raise replay.check_first_failure(failure) from None
    finally:
        checker.close()
        replay.close()
    if not selective:
        if frontier.size != checkpoint.size:
            raise AuditFailure(frontier.size, f"a full bundle holds entries [0, {checkpoint.size}); it holds {frontier.size}")
        if frontier.root() != checkpoint.root:
            raise AuditFailure(None, "the root recomputed from the entries differs from the checkpoint's")
    if "consistency.json" in files:
        consistency = strict_loads(files["consistency.json"])
        notes.verify_consistency_proof(consistency, log_key=log_key)
        if notes.parse_note(consistency["new"]).checkpoint != checkpoint:
            raise VerificationError("consistency.json does not end at this bundle's checkpoint")
    return BundleReport("selective" if selective else "full", checkpoint.size, count, len(signed.cosignatures))


def _check_proof(proofs: list[tuple[int, Any]], number: int, index: int, leaf: bytes,
                 checkpoint: notes.Checkpoint) -> None:  # fmt: skip
    if number >= len(proofs):
        raise AuditFailure(index, "no inclusion proof for this entry")
    line = proofs[number][1]
    if not isinstance(line, dict) or set(line) != {"index", "proof"} or line["index"] != index:
        raise AuditFailure(index, f"proofs.jsonl line {number + 1} does not prove entry {index}")
    try:
        hashes = [decode_b64(h) for h in line["proof"]]
        merkle.verify_inclusion(leaf, index, checkpoint.size, hashes, checkpoint.root)
    except (ValueError, TypeError, SaksiError) as error:
        raise AuditFailure(index, f"inclusion proof: {error}") from None


def _check_keys(data: bytes, log_key: str, genesis: Sequence[GenesisRegistrar]) -> None:
    try:
        keys = strict_loads(data)
    except JSONRefused as error:
        raise VerificationError(f"keys.json: {error}") from None
    if not isinstance(keys, dict) or set(keys) != {"log", "witnesses", "genesis"}:
        raise VerificationError("keys.json has exactly log, witnesses and genesis")
    if keys["log"] != log_key:
        raise VerificationError("keys.json names another log key than the one given")
    given = sorted((g.actor, g.key) for g in genesis)
    try:
        found = sorted((g["actor"], g["key"]) for g in keys["genesis"] if set(g) == {"actor", "key"})
    except (TypeError, KeyError):
        found = []
    if found != given or len(found) != len(keys["genesis"]):
        raise VerificationError("keys.json names other genesis registrars than the ones given")


def bundle_bytes(ledger: Ledger, *, log_vkey: str, subject: str | None = None) -> bytes:
    buffer = io.BytesIO()
    export_bundle(ledger, buffer, log_vkey=log_vkey, subject=subject)
    return buffer.getvalue()

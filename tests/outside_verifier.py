#!/usr/bin/env python3
"""Independent verifier for Saksi exports, written from ../shared/SPEC.md only
(plus RFC 6962/9162, RFC 8785, DSSE v1, C2SP signed-note, tlog-checkpoint,
tlog-cosignature, tlog-proof).  Dependencies: stdlib + cryptography + rfc8785.

An outside auditor's tool, kept as its author left it: written by a helper session that
read the specification and the README and used the `saksi` command, never the code under
ledger/, api/ or projections/, and imports none of it. tests/test_outside_verifier.py
runs it on the demo's exports; where it and Saksi disagree, SPEC.md decides.

Usage (exit 0 = verified, 1 = rejected; findings are printed):
  verify.py vectors [VECTORS_DIR]                     # self-test vs shared/vectors
  verify.py checkpoint FILE --log-key VKEY [--witness-key VKEY ...] [--min-cosignatures N]
  verify.py receipt FILE.tlog-proof --log-key VKEY [--witness-key VKEY ...] [--min-cosignatures N]
  verify.py consistency FILE.json --log-key VKEY [--witness-key ...]
  verify.py bundle DIR|ZIP --log-key VKEY --genesis-key ACTOR=B64 [...] \
            [--witness-key VKEY ...] [--min-cosignatures N]
  verify.py envelope FILE.json [--key B64]            # one DSSE envelope
VKEY is the note-format key  name+hexkeyid+base64(type||key).
"""
import argparse
import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import sys
import zipfile

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Reject(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Reject(msg)


WARN = []


def warn(msg):
    WARN.append(msg)


# ---------------------------------------------------------------- encodings
def b64d(s, what, length=None):
    """Canonical standard base64 with padding (RFC 4648 §4), zero padding bits."""
    need(isinstance(s, str), f"{what}: not a string")
    need(re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s) is not None and len(s) % 4 == 0,
         f"{what}: not standard padded base64: {s[:40]!r}")
    try:
        raw = base64.b64decode(s, validate=True)
    except binascii.Error as e:
        raise Reject(f"{what}: bad base64 ({e})")
    need(base64.b64encode(raw).decode() == s, f"{what}: non-canonical base64 (padding bits)")
    if length is not None:
        need(len(raw) == length, f"{what}: {len(raw)} bytes, expected {length}")
    return raw


def sha256(b):
    return hashlib.sha256(b).digest()


def ed_verify(key32, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(key32).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z")


def parse_time(s, what, exact6=False):
    need(isinstance(s, str), f"{what}: time not a string")
    m = TIME_RE.fullmatch(s)
    need(m is not None, f"{what}: not RFC 3339 UTC with Z and <=6 fractional digits: {s!r}")
    if exact6:
        need(m.group(7) is not None and len(m.group(7)) == 6, f"{what}: needs exactly six fractional digits: {s!r}")
    frac = (m.group(7) or "").ljust(6, "0")
    try:
        return dt.datetime(*(int(m.group(i)) for i in range(1, 7)), int(frac), tzinfo=dt.timezone.utc)
    except ValueError as e:
        raise Reject(f"{what}: invalid time {s!r} ({e})")


# ---------------------------------------------------------------- strict JSON
MAXINT = 2**53 - 1


def _no_float(s):
    raise Reject(f"float in JSON: {s}")


def _no_const(s):
    raise Reject(f"non-JSON constant {s}")


def _pairs(pairs):
    d = {}
    for k, v in pairs:
        need(k not in d, f"duplicate key {k!r}")
        d[k] = v
    return d


def _check_ints(o):
    if isinstance(o, bool) or o is None or isinstance(o, str):
        return
    if isinstance(o, int):
        need(-MAXINT <= o <= MAXINT, f"integer out of range: {o}")
    elif isinstance(o, list):
        for x in o:
            _check_ints(x)
    elif isinstance(o, dict):
        for x in o.values():
            _check_ints(x)


def strict_json(b, what):
    try:
        s = b.decode("utf-8") if isinstance(b, (bytes, bytearray)) else b
        o = json.loads(s, object_pairs_hook=_pairs, parse_float=_no_float, parse_constant=_no_const)
    except Reject as e:
        raise Reject(f"{what}: {e}")
    except (ValueError, UnicodeDecodeError) as e:
        raise Reject(f"{what}: bad JSON ({e})")
    _check_ints(o)
    return o


def jcs(o):
    return rfc8785.dumps(o)


def closed(obj, required, optional=(), what="object"):
    need(isinstance(obj, dict), f"{what}: not an object")
    keys = set(obj)
    missing = set(required) - keys
    extra = keys - set(required) - set(optional)
    need(not missing, f"{what}: missing fields {sorted(missing)}")
    need(not extra, f"{what}: unknown fields {sorted(extra)}")


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


# ---------------------------------------------------------------- Merkle (RFC 6962 / 9162)
def leaf_hash(b):
    return sha256(b"\x00" + b)


def node_hash(l, r):
    return sha256(b"\x01" + l + r)


def mth(hashes):
    n = len(hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def root_iter(hashes):
    """Iterative MTH (stack-based), same result as mth(), for big logs."""
    if not hashes:
        return sha256(b"")
    stack = []  # (size, hash)
    for h in hashes:
        stack.append((1, h))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            (s2, r), (s1, l) = stack.pop(), stack.pop()
            stack.append((s1 + s2, node_hash(l, r)))
    h = stack.pop()[1]
    while stack:
        h = node_hash(stack.pop()[1], h)
    return h


def verify_inclusion(index, size, lh, proof, root):
    """RFC 9162 §2.1.3.2"""
    need(is_int(index) and is_int(size) and 0 <= index < size, f"inclusion: index {index} not in tree of size {size}")
    need(len(lh) == 32 and len(root) == 32, "inclusion: leaf hash / root not 32 bytes")
    fn, sn, r = index, size - 1, lh
    for p in proof:
        need(len(p) == 32, "inclusion: proof hash not 32 bytes")
        need(sn != 0, "inclusion: proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    need(sn == 0, "inclusion: proof too short")
    need(r == root, "inclusion: computed root does not match")


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 §2.1.4.2; size1 == 0 refused (SPEC §7)."""
    need(is_int(size1) and is_int(size2), "consistency: sizes not integers")
    need(0 < size1, "consistency: proof from size 0 is meaningless")
    need(size1 <= size2, "consistency: size1 > size2")
    for p in proof:
        need(len(p) == 32, "consistency: proof hash not 32 bytes")
    if size1 == size2:
        need(not proof, "consistency: equal sizes need an empty proof")
        need(root1 == root2, "consistency: equal sizes but roots differ")
        return
    need(proof, "consistency: empty proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        need(sn != 0, "consistency: proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    need(sn == 0, "consistency: proof too short")
    need(fr == root1, "consistency: old root mismatch")
    need(sr == root2, "consistency: new root mismatch")


# ---------------------------------------------------------------- signed notes
DASH = "\u2014"


class VKey:
    def __init__(self, s, want_type):
        need(isinstance(s, str), "vkey not a string")
        parts = s.strip().split("+", 2)
        need(len(parts) == 3, f"vkey: expected name+hex+base64: {s!r}")
        self.name, hexid, b = parts
        need(self.name and not re.search(r"[\s+]", self.name), f"vkey: bad name {self.name!r}")
        need(re.fullmatch(r"[0-9a-f]{8}", hexid) is not None, f"vkey: key id must be 8 lowercase hex: {hexid!r}")
        raw = b64d(b, "vkey key")
        need(len(raw) == 33, f"vkey: key material {len(raw)} bytes, expected 33")
        need(raw[0] == want_type, f"vkey {self.name}: type byte 0x{raw[0]:02x}, expected 0x{want_type:02x}")
        self.type = raw[0]
        self.key = raw[1:]
        self.keyid = sha256(self.name.encode() + b"\n" + raw)[:4]
        need(self.keyid.hex() == hexid, f"vkey {self.name}: key id {hexid} != computed {self.keyid.hex()}")
        self.text = s.strip()


def keyid_for(name, typ, key):
    return sha256(name.encode() + b"\n" + bytes([typ]) + key)[:4]


class Note:
    def __init__(self, text, what="checkpoint"):
        need(isinstance(text, str), f"{what}: not text")
        need(text.endswith("\n"), f"{what}: does not end with a newline")
        need("\r" not in text, f"{what}: contains CR")
        i = text.find("\n\n")
        need(i >= 0, f"{what}: no blank line between body and signatures")
        self.body = text[: i + 1]
        sigtext = text[i + 2:]
        lines = self.body.split("\n")[:-1]
        need(len(lines) == 3, f"{what}: body has {len(lines)} lines, SPEC §5 says exactly 3 (no extension lines)")
        self.origin, size_s, root_s = lines
        need(self.origin != "", f"{what}: empty origin")
        need(re.fullmatch(r"0|[1-9][0-9]*", size_s) is not None, f"{what}: bad tree size {size_s!r}")
        self.size = int(size_s)
        self.root = b64d(root_s, f"{what} root hash", 32)
        self.sigs = []
        need(sigtext != "", f"{what}: no signature lines")
        for ln in sigtext.split("\n")[:-1]:
            m = re.fullmatch(DASH + r" (\S+) (\S+)", ln)
            need(m is not None, f"{what}: malformed signature line {ln!r}")
            blob = b64d(m.group(2), f"{what} signature of {m.group(1)}")
            need(len(blob) >= 5, f"{what}: signature too short")
            self.sigs.append((m.group(1), blob[:4], blob[4:]))
        self.text = text

    def verify_log(self, vk):
        need(self.origin == vk.name, f"checkpoint origin {self.origin!r} != log key name {vk.name!r}")
        mine = [s for s in self.sigs if s[0] == vk.name and s[1] == vk.keyid]
        need(mine, "checkpoint: no signature line by the log key (name/key id)")
        ok = any(len(sig) == 64 and ed_verify(vk.key, sig, self.body.encode()) for _, _, sig in mine)
        need(ok, "checkpoint: log signature does not verify")

    def cosignatures(self, witnesses):
        """witnesses: list of (name, key32). Returns {name: time} for valid cosignatures;
        rejects a line that claims a given witness's name+key id but does not verify."""
        good = {}
        for name, key in witnesses:
            kid = keyid_for(name, 0x04, key)
            for n, k, sig in self.sigs:
                if n != name or k != kid:
                    continue
                need(len(sig) == 72, f"cosignature {name}: {len(sig)+4} bytes, expected 76")
                t = int.from_bytes(sig[:8], "big")
                need(t <= 2**63 - 1, f"cosignature {name}: timestamp too large")
                msg = f"cosignature/v1\ntime {t}\n".encode() + self.body.encode()
                need(ed_verify(key, sig[8:], msg), f"cosignature {name}: signature does not verify")
                good[name] = t
        return good


def check_checkpoint_text(text, log_vk, wit_vks, min_cos, what="checkpoint"):
    note = Note(text, what)
    note.verify_log(log_vk)
    cos = note.cosignatures([(w.name, w.key) for w in wit_vks])
    need(len(cos) >= min_cos, f"{what}: {len(cos)} valid cosignatures from given witnesses, {min_cos} required")
    # lines from unknown keys are ignored (signed-note), but report them
    known = {(log_vk.name, log_vk.keyid)} | {(w.name, w.keyid) for w in wit_vks}
    for n, k, _ in note.sigs:
        if (n, k) not in known:
            warn(f"{what}: signature line by unknown key {n}+{k.hex()} (ignored)")
    return note, cos


# ---------------------------------------------------------------- statements and envelopes
PAYLOAD_TYPE = "application/vnd.saksi.statement+json"
ROLES = {"registrar", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps", "dkpp", "bkn",
         "party", "candidate_pair", "candidate_witness", "tni", "polri", "asn", "observer", "auditor", "witness"}
ALLOWED = {
    "commitment.declared": {"party", "candidate_pair"},
    "commitment.endorsed": {"party", "candidate_pair", "kpu", "bawaslu", "tni", "polri", "asn", "observer"},
    "commitment.breach_reported": {"bawaslu", "panwascam", "pkd", "ptps"},
    "pledge.made": {"asn", "tni", "polri", "kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps", "dkpp"},
    "pledge.violation_reported": {"bawaslu", "panwascam", "pkd", "ptps", "observer"},
    "pledge.violation_ruled": {"dkpp", "bkn"},
    "logistics.dispatched": {"kpu", "ppk", "pps", "kpps"},
    "logistics.received": {"kpu", "ppk", "pps", "kpps"},
    "logistics.witnessed": {"bawaslu", "panwascam", "pkd", "ptps", "candidate_witness", "observer"},
    "logistics.discrepancy_reported": {"kpu", "ppk", "pps", "kpps", "bawaslu", "panwascam", "pkd", "ptps"},
}
ACTOR_TYPES = {"actor.registered", "actor.key_added", "actor.key_revoked", "actor.mandate_granted", "actor.mandate_revoked"}
TYPES = set(ALLOWED) | ACTOR_TYPES
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
REGION_RE = re.compile(r"ID|\d{2}(\.\d{2}(\.\d{2}(\.\d{4}(\.\d{3})?)?)?)?")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def contains(j, r):
    return j == "ID" or j == r or r.startswith(j + ".")


def check_mandate(m, what):
    closed(m, ["id", "role", "jurisdiction", "valid_from"], ["valid_until"], what)
    need(isinstance(m["id"], str) and m["id"], f"{what}: bad id")
    need(m["role"] in ROLES, f"{what}: unknown role {m['role']!r}")
    need(isinstance(m["jurisdiction"], str) and REGION_RE.fullmatch(m["jurisdiction"]), f"{what}: bad jurisdiction {m['jurisdiction']!r}")
    vf = parse_time(m["valid_from"], f"{what}.valid_from")
    vu = parse_time(m["valid_until"], f"{what}.valid_until") if "valid_until" in m else None
    if vu is not None:
        need(vf < vu, f"{what}: valid_until not after valid_from")
    return vf, vu


def check_key_b64(k, what):
    raw = b64d(k, what, 32)
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise Reject(f"{what}: not an Ed25519 key")
    return raw


def check_statement(st, what):
    closed(st, ["v", "type", "id", "actor", "issued_at", "subject", "body"], ["refs"], what)
    need(is_int(st["v"]) and st["v"] == 1, f"{what}: v must be integer 1")
    need(st["type"] in TYPES, f"{what}: type {st['type']!r} not in catalogue")
    need(isinstance(st["id"], str) and (UUID_RE.fullmatch(st["id"]) or ULID_RE.fullmatch(st["id"])),
         f"{what}: id {st['id']!r} is neither lowercase UUID nor ULID")
    for f in ("actor", "subject"):
        need(isinstance(st[f], str) and st[f], f"{what}: {f} not a non-empty string")
    parse_time(st["issued_at"], f"{what}.issued_at")
    need(isinstance(st["body"], dict), f"{what}: body not an object")
    if "refs" in st:
        need(isinstance(st["refs"], list) and st["refs"], f"{what}: refs present but empty / not a list")
        for r in st["refs"]:
            need(isinstance(r, str) and DIGEST_RE.fullmatch(r), f"{what}: bad ref {r!r}")
    b = st["body"]
    t = st["type"]
    if t in ALLOWED:
        need(isinstance(b.get("region"), str) and REGION_RE.fullmatch(b["region"]), f"{what}: body.region missing/bad")
    if t == "actor.registered":
        closed(b, ["name", "kind", "keys", "mandates"], [], f"{what}.body")
        need(isinstance(b["name"], str), f"{what}: name")
        need(b["kind"] in ("organisation", "person"), f"{what}: kind {b['kind']!r}")
        need(isinstance(b["keys"], list) and len(b["keys"]) >= 1, f"{what}: keys must be a non-empty list")
        for k in b["keys"]:
            check_key_b64(k, f"{what}.key")
        need(isinstance(b["mandates"], list), f"{what}: mandates")
        ids = set()
        for m in b["mandates"]:
            check_mandate(m, f"{what}.mandate")
            need(m["id"] not in ids, f"{what}: duplicate mandate id {m['id']}")
            ids.add(m["id"])
    elif t == "actor.key_added":
        closed(b, ["key"], [], f"{what}.body")
        check_key_b64(b["key"], f"{what}.key")
    elif t == "actor.key_revoked":
        closed(b, ["keyid"], ["reason"], f"{what}.body")
        need(isinstance(b["keyid"], str) and re.fullmatch(r"[0-9a-f]{64}", b["keyid"]), f"{what}: keyid")
        need(isinstance(b.get("reason", ""), str), f"{what}: reason")
    elif t == "actor.mandate_granted":
        closed(b, ["mandate"], [], f"{what}.body")
        check_mandate(b["mandate"], f"{what}.mandate")
    elif t == "actor.mandate_revoked":
        closed(b, ["mandate_id"], ["reason"], f"{what}.body")
        need(isinstance(b["mandate_id"], str), f"{what}: mandate_id")
        need(isinstance(b.get("reason", ""), str), f"{what}: reason")
    elif t == "logistics.dispatched":
        need(isinstance(b.get("receiver"), str), f"{what}: dispatch names no receiver")
    elif t == "logistics.received":
        need(isinstance(st.get("refs"), list) and len(st["refs"]) == 1, f"{what}: received needs exactly one ref")


def pae(t, body):
    tb = t.encode()
    return b"DSSEv1 %d %s %d %s" % (len(tb), tb, len(body), body)


def check_envelope(env, what="envelope"):
    """Returns (statement, payload bytes, keyid hex, sig bytes). Signature checked by caller with the key."""
    closed(env, ["payloadType", "payload", "signatures"], [], what)
    need(env["payloadType"] == PAYLOAD_TYPE, f"{what}: payloadType {env['payloadType']!r}")
    payload = b64d(env["payload"], f"{what}.payload")
    need(isinstance(env["signatures"], list) and len(env["signatures"]) == 1, f"{what}: exactly one signature required")
    s = env["signatures"][0]
    closed(s, ["keyid", "sig"], [], f"{what}.signatures[0]")
    need(isinstance(s["keyid"], str) and re.fullmatch(r"[0-9a-f]{64}", s["keyid"]), f"{what}: keyid not 64 lowercase hex")
    sig = b64d(s["sig"], f"{what}.sig", 64)
    st = strict_json(payload, f"{what}.payload")
    need(jcs(st) == payload, f"{what}: payload is not in RFC 8785 canonical form")
    check_statement(st, f"{what}.statement")
    return st, payload, s["keyid"], sig


def envelope_sig_ok(env_parts, key32):
    st, payload, keyid, sig = env_parts
    need(hashlib.sha256(key32).hexdigest() == keyid, "envelope keyid != SHA-256 of key")
    need(ed_verify(key32, sig, pae(PAYLOAD_TYPE, payload)), "envelope: Ed25519 signature over PAE does not verify")


def digest_of(payload):
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def check_entry_line(line_bytes, what):
    e = strict_json(line_bytes, what)
    closed(e, ["index", "recorded_at", "envelope"], [], what)
    need(is_int(e["index"]) and e["index"] >= 0, f"{what}: bad index")
    rec = parse_time(e["recorded_at"], f"{what}.recorded_at", exact6=True)
    parts = check_envelope(e["envelope"], f"{what}.envelope")
    need(jcs(e) == line_bytes, f"{what}: entry line is not its JCS canonical form")
    return e, rec, parts


# ---------------------------------------------------------------- registry replay
class Registry:
    def __init__(self, genesis):
        self.genesis = genesis  # actor -> key32
        self.actors = {}  # id -> {"keys": {keyidhex: key32}, "revoked_keys": set, "mandates": {mid: [m, revoked]}}
        self.keyowner = {}

    def mandates_in_force(self, actor, t):
        a = self.actors.get(actor)
        if not a:
            return []
        out = []
        for m, revoked in a["mandates"].values():
            if revoked:
                continue
            vf = parse_time(m["valid_from"], "mandate")
            vu = parse_time(m["valid_until"], "mandate") if "valid_until" in m else None
            if vf <= t and (vu is None or t < vu):
                out.append(m)
        return out

    def registrar_for(self, actor, t, jurisdictions):
        return any(m["role"] == "registrar" and all(contains(m["jurisdiction"], j) for j in jurisdictions)
                   for m in self.mandates_in_force(actor, t))

    def apply(self, idx, st, keyid, t, ngen, what):
        """Authorise entry idx (signed with keyid at recorded time t) against the registry
        as of index < idx, then apply it if it is a registry statement."""
        actor, typ, b, subj = st["actor"], st["type"], st["body"], st["subject"]
        if idx < ngen:
            need(typ == "actor.registered", f"{what}: genesis entry {idx} is not actor.registered")
            need(actor == subj and subj in self.genesis, f"{what}: genesis entry {idx} is not a self-registration of a given genesis registrar")
            g = self.genesis[subj]
            need(hashlib.sha256(g).hexdigest() == keyid, f"{what}: genesis entry not signed by the published genesis key")
            need(base64.b64encode(g).decode() in b["keys"], f"{what}: genesis registration does not register the published key")
            need(any(m["role"] == "registrar" and m["jurisdiction"] == "ID" for m in b["mandates"]),
                 f"{what}: genesis registrar lacks a registrar mandate for ID")
        else:
            need(actor in self.actors, f"{what}: signer {actor!r} not registered")
            a = self.actors[actor]
            need(keyid in a["keys"], f"{what}: key {keyid[:12]}… is not a key in force of {actor}")
        # authorisation
        if typ in ALLOWED:
            ms = self.mandates_in_force(actor, t)
            ok = [m for m in ms if m["role"] in ALLOWED[typ] and contains(m["jurisdiction"], b["region"])]
            need(ok, f"{what}: {actor} holds no mandate in force for {typ} in {b['region']} at {st and t.isoformat()}")
        elif idx >= ngen:
            if typ == "actor.registered":
                need(subj not in self.actors, f"{what}: actor {subj} registered twice")
                js = [m["jurisdiction"] for m in b["mandates"]]
                need(self.registrar_for(actor, t, js), f"{what}: {actor} is not a registrar over {js}")
            else:
                need(subj in self.actors, f"{what}: subject {subj} not registered")
                sa = self.actors[subj]
                if typ in ("actor.key_added", "actor.key_revoked"):
                    js = [m["jurisdiction"] for m, rv in sa["mandates"].values() if not rv]
                    self_ok = actor == subj
                    need(self_ok or self.registrar_for(actor, t, js), f"{what}: {actor} may not change keys of {subj}")
                elif typ == "actor.mandate_granted":
                    need(self.registrar_for(actor, t, [b["mandate"]["jurisdiction"]]), f"{what}: {actor} not a registrar over {b['mandate']['jurisdiction']}")
                elif typ == "actor.mandate_revoked":
                    need(b["mandate_id"] in sa["mandates"], f"{what}: unknown mandate {b['mandate_id']} of {subj}")
                    m = sa["mandates"][b["mandate_id"]][0]
                    need(self.registrar_for(actor, t, [m["jurisdiction"]]), f"{what}: {actor} not a registrar over {m['jurisdiction']}")
        # apply
        if typ == "actor.registered":
            need(subj not in self.actors, f"{what}: actor {subj} registered twice")
            a = {"keys": {}, "revoked_keys": set(), "mandates": {}}
            for k in b["keys"]:
                raw = base64.b64decode(k)
                kid = hashlib.sha256(raw).hexdigest()
                need(kid not in self.keyowner, f"{what}: key already belongs to {self.keyowner.get(kid)}")
                a["keys"][kid] = raw
                self.keyowner[kid] = subj
            for m in b["mandates"]:
                a["mandates"][m["id"]] = [m, False]
            self.actors[subj] = a
        elif typ == "actor.key_added":
            raw = base64.b64decode(b["key"])
            kid = hashlib.sha256(raw).hexdigest()
            need(kid not in self.keyowner, f"{what}: key already belongs to {self.keyowner.get(kid)}")
            self.actors[subj]["keys"][kid] = raw
            self.keyowner[kid] = subj
        elif typ == "actor.key_revoked":
            sa = self.actors[subj]
            need(b["keyid"] in sa["keys"], f"{what}: revokes a key {subj} does not hold in force")
            del sa["keys"][b["keyid"]]
            sa["revoked_keys"].add(b["keyid"])
        elif typ == "actor.mandate_granted":
            sa = self.actors[subj]
            need(b["mandate"]["id"] not in sa["mandates"], f"{what}: mandate id {b['mandate']['id']} reused")
            sa["mandates"][b["mandate"]["id"]] = [b["mandate"], False]
        elif typ == "actor.mandate_revoked":
            sa = self.actors[subj]
            need(not sa["mandates"][b["mandate_id"]][1], f"{what}: mandate already revoked")
            sa["mandates"][b["mandate_id"]][1] = True


# ---------------------------------------------------------------- commands
def load_keys(args):
    log = VKey(args.log_key, 0x01)
    wits = [VKey(w, 0x04) for w in (args.witness_key or [])]
    return log, wits


def cmd_checkpoint(args):
    log, wits = load_keys(args)
    text = open(args.path, encoding="utf-8", newline="").read()
    note, cos = check_checkpoint_text(text, log, wits, args.min_cosignatures)
    return f"checkpoint size {note.size} root {note.root.hex()}; cosigned by {cos}"


def parse_receipt(text):
    need(text.endswith("\n"), "receipt: no final newline")
    head, sep, cp = text.partition("\n\n")
    need(sep, "receipt: no blank line before the checkpoint")
    lines = head.split("\n")
    need(lines[0] == "c2sp.org/tlog-proof@v1", "receipt: bad first line")
    need(len(lines) >= 3 and lines[1].startswith("extra "), "receipt: missing extra line (SPEC §7 requires it)")
    extra = b64d(lines[1][6:], "receipt extra")
    m = re.fullmatch(r"index (0|[1-9][0-9]*)", lines[2])
    need(m is not None, f"receipt: bad index line {lines[2]!r}")
    proof = [b64d(l, "receipt proof hash", 32) for l in lines[3:]]
    return extra, int(m.group(1)), proof, cp


def cmd_receipt(args):
    log, wits = load_keys(args)
    out = []
    for p in args.paths:
        text = open(p, encoding="utf-8", newline="").read()
        extra, idx, proof, cp = parse_receipt(text)
        note, cos = check_checkpoint_text(cp, log, wits, args.min_cosignatures, "receipt checkpoint")
        verify_inclusion(idx, note.size, leaf_hash(extra), proof, note.root)
        # The extra is untrusted beyond the leaf hash; but it is the leaf, so check its shape.
        try:
            e, rec, parts = check_entry_line(extra, f"receipt {os.path.basename(p)} entry")
            need(e["index"] == idx, f"receipt: entry index {e['index']} != index line {idx}")
            dig = digest_of(parts[1])
        except Reject as ex:
            warn(f"{p}: leaf bytes are not a well-formed entry: {ex}")
            dig = "?"
        out.append(f"{os.path.basename(p)}: index {idx} in size {note.size}, {dig}, cosigners {sorted(cos)}")
    return "\n".join(out)


def check_consistency_obj(o, log, wits, mincos, what):
    closed(o, ["old", "new", "proof"], [], what)
    need(isinstance(o["proof"], list), f"{what}: proof not a list")
    old, _ = check_checkpoint_text(o["old"], log, wits, 0, f"{what} old")
    new, cos = check_checkpoint_text(o["new"], log, wits, mincos, f"{what} new")
    proof = [b64d(h, f"{what} proof hash", 32) for h in o["proof"]]
    verify_consistency(old.size, new.size, old.root, new.root, proof)
    return old, new


def cmd_consistency(args):
    log, wits = load_keys(args)
    o = strict_json(open(args.path, "rb").read(), "consistency")
    old, new = check_consistency_obj(o, log, wits, args.min_cosignatures, "consistency")
    return f"consistent: {old.size} -> {new.size}"


def cmd_envelope(args):
    env = strict_json(open(args.path, "rb").read(), "envelope")
    parts = check_envelope(env)
    if args.key:
        envelope_sig_ok(parts, b64d(args.key, "key", 32))
    return f"envelope ok: {parts[0]['type']} by {parts[0]['actor']}, {digest_of(parts[1])}"


def read_bundle(path):
    files = {}
    if os.path.isdir(path):
        for n in os.listdir(path):
            fp = os.path.join(path, n)
            need(os.path.isfile(fp), f"bundle: {n} is not a regular file")
            files[n] = open(fp, "rb").read()
    else:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                need("/" not in info.filename and "\\" not in info.filename and not info.is_dir(),
                     f"bundle zip: {info.filename!r} not at the root")
                need(info.filename not in files, f"bundle zip: duplicate {info.filename}")
                files[info.filename] = z.read(info)
    return files


def jsonl_lines(data, what):
    need(data.endswith(b"\n") or data == b"", f"{what}: last line not LF-terminated")
    lines = data.split(b"\n")[:-1]
    for i, l in enumerate(lines):
        need(l != b"", f"{what}: blank line {i}")
        need(b"\r" not in l, f"{what}: CR in line {i}")
    return lines


def cmd_bundle(args):
    log, wits = load_keys(args)
    genesis = {}
    for g in args.genesis_key:
        a, _, k = g.partition("=")
        need(a and k, f"--genesis-key {g!r}: want ACTOR=BASE64")
        genesis[a] = b64d(k, f"genesis key {a}", 32)
    files = read_bundle(args.path)
    names = set(files)
    selective = "proofs.jsonl" in names
    base = {"entries.jsonl", "checkpoint", "keys.json", "README.txt"}
    need(base <= names, f"bundle: missing {sorted(base - names)}")
    extra = names - base - {"proofs.jsonl", "consistency.json"}
    need(not extra, f"bundle: unexpected files {sorted(extra)}")
    files["README.txt"].decode("utf-8")

    # keys.json: never trusted, but must name the same log key and genesis set
    kj = strict_json(files["keys.json"], "keys.json")
    closed(kj, ["log", "witnesses", "genesis"], [], "keys.json")
    need(isinstance(kj["log"], str), "keys.json: log not a string")
    need(VKey(kj["log"], 0x01).text == log.text, "keys.json names another log key")
    need(isinstance(kj["genesis"], list) and isinstance(kj["witnesses"], list), "keys.json: lists")
    kg = {}
    for g in kj["genesis"]:
        closed(g, ["actor", "key"], [], "keys.json genesis item")
        kg[g["actor"]] = b64d(g["key"], "keys.json genesis key", 32)
    need(len(kg) == len(kj["genesis"]) and kg == genesis, "keys.json names other genesis registrars than given")
    bundle_wits = [VKey(w, 0x04) for w in kj["witnesses"]]

    cp_text = files["checkpoint"].decode("utf-8")
    note, cos = check_checkpoint_text(cp_text, log, wits, args.min_cosignatures, "bundle checkpoint")
    n = note.size

    lines = jsonl_lines(files["entries.jsonl"], "entries.jsonl")
    entries = []
    for k, l in enumerate(lines):
        entries.append(check_entry_line(l, f"entries.jsonl line {k}") + (l,))
    idxs = [e[0]["index"] for e in entries]
    need(all(a < b for a, b in zip(idxs, idxs[1:])), "entries.jsonl: not in strictly increasing index order")
    need(all(i < n for i in idxs), "entries.jsonl: an index beyond the checkpoint size")
    recs = [e[1] for e in entries]
    need(all(a <= b for a, b in zip(recs, recs[1:])), "entries.jsonl: recorded_at decreases along the index")

    if selective:
        plines = jsonl_lines(files["proofs.jsonl"], "proofs.jsonl")
        need(len(plines) == len(lines), f"proofs.jsonl has {len(plines)} lines, entries.jsonl {len(lines)}")
        for k, (pl, e) in enumerate(zip(plines, entries)):
            p = strict_json(pl, f"proofs.jsonl line {k}")
            closed(p, ["index", "proof"], [], f"proofs.jsonl line {k}")
            if jcs(p) != pl:
                warn(f"proofs.jsonl line {k} is not JCS canonical")
            need(p["index"] == e[0]["index"], f"proofs.jsonl line {k}: index {p['index']} != entry index {e[0]['index']}")
            need(isinstance(p["proof"], list), f"proofs.jsonl line {k}: proof")
            hs = [b64d(h, f"proofs.jsonl line {k} hash", 32) for h in p["proof"]]
            verify_inclusion(p["index"], n, leaf_hash(e[3]), hs, note.root)
    else:
        need(idxs == list(range(n)), f"full bundle: entries are not exactly [0, {n}) (have {len(idxs)})")
        need(root_iter([leaf_hash(e[3]) for e in entries]) == note.root, "full bundle: recomputed root != checkpoint root")

    # registry replay and per-entry authorisation
    reg = Registry(genesis)
    ngen = len(genesis)
    if selective:
        need(idxs[:ngen] == list(range(ngen)), "selective bundle lacks the genesis entries")
    by_digest = {}
    ids = set()
    for e, rec, parts, raw in entries:
        st, payload, keyid, sig = parts
        idx = e["index"]
        what = f"entry {idx}"
        need(st["id"] not in ids, f"{what}: statement id {st['id']} reused")
        ids.add(st["id"])
        if idx < ngen:
            key = genesis.get(st["actor"])
        else:
            key = reg.actors.get(st["actor"], {}).get("keys", {}).get(keyid)
        reg.apply(idx, st, keyid, rec, ngen, what)  # authorises against registry of lower indexes
        need(key is not None, f"{what}: no key in force with id {keyid[:12]}")
        envelope_sig_ok(parts, key)
        for r in st.get("refs", []):
            if r in by_digest:
                need(by_digest[r][0] < idx, f"{what}: ref to a later entry")
            elif not selective:
                raise Reject(f"{what}: ref {r[:20]}… names no earlier statement")
            else:
                warn(f"{what}: ref {r[:20]}… not in this selective bundle (unchecked)")
        if st["type"] == "logistics.received":
            d = by_digest.get(st["refs"][0])
            if d:
                dst = d[1]
                need(dst["type"] == "logistics.dispatched", f"{what}: ref is not a dispatch")
                need(dst["subject"] == st["subject"], f"{what}: subject differs from its dispatch")
                need(dst["body"]["region"] == st["body"]["region"], f"{what}: region differs from its dispatch")
                need(dst["body"]["receiver"] == st["actor"], f"{what}: signer is not the dispatch's receiver")
        by_digest[digest_of(payload)] = (idx, st)
    if selective:
        warn("selective bundle: registry completeness rests on the ledger's word (SPEC §8)")

    # cosignatures against the replayed registry (SPEC §6): witness name = actor id
    reg_cos = {}
    for name, kid, sig in note.sigs:
        if name == log.name:
            continue
        a = reg.actors.get(name)
        if a is None:
            warn(f"cosigner {name}: not a registered actor in this bundle")
            continue
        hits = [k for k in a["keys"].values() if keyid_for(name, 0x04, k) == kid]
        if not hits:
            warn(f"cosigner {name}: key id {kid.hex()} is none of its registry keys")
            continue
        good = note.cosignatures([(name, hits[0])])
        t = dt.datetime.fromtimestamp(good[name], dt.timezone.utc)
        if any(m["role"] == "witness" and m["jurisdiction"] == "ID" for m in reg.mandates_in_force(name, t)):
            reg_cos[name] = good[name]
        else:
            warn(f"cosigner {name}: no witness mandate for ID in force at {t.isoformat()}")
    for bw in bundle_wits:
        if bw.name not in reg_cos:
            warn(f"keys.json witness {bw.name}: no registry-valid cosignature on the checkpoint")

    if "consistency.json" in files:
        o = strict_json(files["consistency.json"], "consistency.json")
        old, new = check_consistency_obj(o, log, wits, 0, "consistency.json")
        need(new.body == note.body, "consistency.json: 'new' is not this bundle's checkpoint")
    kind = "selective" if selective else "full"
    return (f"{kind} bundle OK: {len(entries)} entries, checkpoint size {n}, root {note.root.hex()}, "
            f"cosigned (given keys) by {sorted(cos)}, registry-valid witnesses {sorted(reg_cos)}"
            + (", consistency.json OK" if "consistency.json" in files else ""))


# ---------------------------------------------------------------- vectors self-test
def cmd_vectors(args):
    d = args.dir
    fails = 0
    count = 0
    # JCS
    for f in sorted(os.listdir(os.path.join(d, "jcs", "input"))):
        inp = json.load(open(os.path.join(d, "jcs", "input", f), encoding="utf-8"))
        want = open(os.path.join(d, "jcs", "output", f), "rb").read()
        hexw = bytes.fromhex(open(os.path.join(d, "jcs", "outhex", f[:-5] + ".txt")).read().replace(" ", "").replace("\n", ""))
        count += 1
        if jcs(inp) != want or want != hexw:
            fails += 1
            print("JCS FAIL", f)
    v = json.load(open(os.path.join(d, "rfc6962_vectors.json")))
    H = bytes.fromhex
    for hv in v["hasher_vectors"]:
        count += 1
        got = {"leaf": lambda: leaf_hash(H(hv.get("data", ""))), "node": lambda: node_hash(H(hv.get("left", "")), H(hv.get("right", ""))),
               "empty": lambda: sha256(b"")}[hv["kind"]]()
        if got.hex() != hv["hash"]:
            fails += 1
            print("HASH FAIL", hv)
    leaves = [H(l["data"]) for l in v["leaves"]]
    for r in v["roots"]:
        count += 1
        hs = [leaf_hash(x) for x in leaves[: r["tree_size"]]]
        if mth(hs).hex() != r["root"] or root_iter(hs).hex() != r["root"]:
            fails += 1
            print("ROOT FAIL", r["tree_size"])

    def run(kind, c, want_err, desc):
        nonlocal fails, count
        count += 1
        try:
            if kind == "inc":
                verify_inclusion(c[0], c[1], c[2], c[3], c[4])
            else:
                verify_consistency(*c)
            err = False
        except Reject:
            err = True
        if err != want_err:
            fails += 1
            print(f"{kind} FAIL ({desc}) want_err={want_err}")

    for p in v["inclusion_proofs"]:
        run("inc", (p["leaf_index"], p["tree_size"], H(p["leaf_hash"]), [H(x) for x in p["proof"]], H(p["root"])), False, "table")
    for p in v["consistency_proofs"]:
        run("con", (p["size1"], p["size2"], H(p["root1"]), H(p["root2"]), [H(x) for x in p["proof"]]), False, "table")
    for p in v["probes"]["inclusion"]:
        run("inc", (p["leaf_index"], p["tree_size"], H(p["leaf_hash"]), [H(x) for x in p["proof"]], H(p["root"])), p["want_error"], p["file"])
    for p in v["probes"]["consistency"]:
        run("con", (p["size1"], p["size2"], H(p["root1"]), H(p["root2"]), [H(x) for x in p["proof"]]), p["want_error"], p["file"])
    B = base64.b64decode
    for root, _, fs in os.walk(os.path.join(d, "merkle-proof-cases")):
        for f in fs:
            c = json.load(open(os.path.join(root, f)))
            if "leafIdx" in c:
                run("inc", (c["leafIdx"], c["treeSize"], B(c["leafHash"] or ""), [B(x) for x in c["proof"] or []], B(c["root"] or "")), c["wantErr"], f)
            else:
                run("con", (c["size1"], c["size2"], B(c["root1"] or ""), B(c["root2"] or ""), [B(x) for x in c["proof"] or []]), c["wantErr"], f)
    need(fails == 0, f"{fails} of {count} vector checks failed")
    return f"all {count} vector checks pass"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def keyopts(p):
        p.add_argument("--log-key", required=True)
        p.add_argument("--witness-key", action="append")
        p.add_argument("--min-cosignatures", type=int, default=0)

    p = sub.add_parser("vectors"); p.add_argument("dir", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "vectors")); p.set_defaults(f=cmd_vectors)
    p = sub.add_parser("checkpoint"); p.add_argument("path"); keyopts(p); p.set_defaults(f=cmd_checkpoint)
    p = sub.add_parser("receipt"); p.add_argument("paths", nargs="+"); keyopts(p); p.set_defaults(f=cmd_receipt)
    p = sub.add_parser("consistency"); p.add_argument("path"); keyopts(p); p.set_defaults(f=cmd_consistency)
    p = sub.add_parser("bundle"); p.add_argument("path"); keyopts(p); p.add_argument("--genesis-key", action="append", required=True); p.set_defaults(f=cmd_bundle)
    p = sub.add_parser("envelope"); p.add_argument("path"); p.add_argument("--key"); p.set_defaults(f=cmd_envelope)
    a = ap.parse_args(argv)
    try:
        msg = a.f(a)
    except Reject as e:
        for w in WARN:
            print("note:", w)
        print("REJECT:", e)
        return 1
    for w in WARN:
        print("note:", w)
    print("OK:", msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

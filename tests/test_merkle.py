"""Tests for ledger.merkle: vectors, golden cases, a slow reference, read counts, properties."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    peak_ids,
    range_ids,
    root_at,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
RFC6962 = json.loads((VECTORS / "rfc6962_vectors.json").read_text())
CASES = VECTORS / "merkle-proof-cases"
CASE_FILES = sorted(CASES.glob("**/*.json"))

# --- A slow, obviously correct reference: RFC 6962 §2.1 transcribed -------------------------
# Generic over the node combiner so it can also run on symbolic trees (nested tuples).

Combine = Callable[[Any, Any], Any]


def sha_combine(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def tuple_combine(left: Any, right: Any) -> Any:
    return (left, right)


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[Any], h: Combine = sha_combine) -> Any:
    """MTH(D[n]) where D holds leaf hashes."""
    if len(d) == 0:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return h(ref_mth(d[:k], h), ref_mth(d[k:], h))


def ref_path(m: int, d: Sequence[Any], h: Combine = sha_combine) -> list[Any]:
    """PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return ref_path(m, d[:k], h) + [ref_mth(d[k:], h)]
    return ref_path(m - k, d[k:], h) + [ref_mth(d[:k], h)]


def ref_shape(m: int, n: int) -> list[bool]:
    """Which side each PATH(m, D[n]) element is on (True: right), leaf first."""
    if n == 1:
        return []
    k = split(n)
    return ref_shape(m, k) + [True] if m < k else ref_shape(m - k, n - k) + [False]


def ref_proof(m: int, d: Sequence[Any], h: Combine = sha_combine) -> list[Any]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""

    def subproof(m: int, d: Sequence[Any], b: bool) -> list[Any]:
        if m == len(d):
            return [] if b else [ref_mth(d, h)]
        k = split(len(d))
        if m <= k:
            return subproof(m, d[:k], b) + [ref_mth(d[k:], h)]
        return subproof(m - k, d[k:], False) + [ref_mth(d[:k], h)]

    return subproof(m, d, True)


def rfc_verify_consistency(h: Combine, m: int, n: int, root1: Any, root2: Any,
                           proof: Sequence[Any]) -> bool:
    """RFC 9162 §2.1.4.2 transcribed, for 0 < m <= n; generic so it runs symbolically."""
    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and root1 == root2
    if not proof:
        return False
    path = list(proof)
    if m & (m - 1) == 0:
        path.insert(0, root1)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = h(c, fr), h(c, sr)
            while not (fn & 1 or fn == 0):
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = h(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root1 and sr == root2


# --- Stores and readers -----------------------------------------------------------------------


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def build(hashes: Sequence[bytes]) -> tuple[dict[NodeId, bytes], CompactRange]:
    store: dict[NodeId, bytes] = {}
    cr = CompactRange()
    for h in hashes:
        for node_id, value in cr.append(h):
            assert node_id not in store
            store[node_id] = value
    return store, cr


class Reader:
    """A dict-backed NodeReader that records its calls and refuses non-perfect nodes."""

    def __init__(self, store: Mapping[NodeId, bytes] | None = None, size: int | None = None):
        self.store = store
        self.size = size
        self.calls: list[list[NodeId]] = []

    def __call__(self, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        ids = list(ids)
        self.calls.append(ids)
        assert len(set(ids)) == len(ids), "duplicate ids in one read"
        for level, index in ids:
            assert level >= 0 and index >= 0
            if self.size is not None:
                assert (index + 1) << level <= self.size, f"({level}, {index}) is not stored"
        if self.store is None:  # fabricate hashes deterministically
            return {i: sha256(repr(i).encode()).digest() for i in ids}
        return {i: self.store[i] for i in ids}


N_SMALL = 64
D_SMALL = leaves(N_SMALL)


@functools.cache
def small_store() -> dict[NodeId, bytes]:
    return build(D_SMALL)[0]


N_BIG = 1000
D_BIG = leaves(N_BIG)


@functools.cache
def big_store() -> dict[NodeId, bytes]:
    return build(D_BIG)[0]


def flip(b: bytes, bit: int) -> bytes:
    i = bit // 8 % len(b)
    return b[:i] + bytes([b[i] ^ (1 << bit % 8)]) + b[i + 1:]


# --- rfc6962_vectors.json -------------------------------------------------------------------

H = bytes.fromhex


def test_hasher_vectors() -> None:
    assert EMPTY_ROOT == H(RFC6962["empty_root"]["value"])
    for v in RFC6962["hasher_vectors"]:
        if v["kind"] == "leaf":
            assert leaf_hash(H(v["data"])) == H(v["hash"]), v
        elif v["kind"] == "node":
            assert node_hash(H(v["left"]), H(v["right"])) == H(v["hash"]), v
        else:
            assert v["kind"] == "empty" and EMPTY_ROOT == H(v["hash"])


def vector_store() -> tuple[dict[NodeId, bytes], list[bytes]]:
    hashes = [leaf_hash(H(v["data"])) for v in RFC6962["leaves"]]
    assert hashes == [H(v["leaf_hash"]) for v in RFC6962["leaves"]]
    return build(hashes)[0], hashes


def test_vector_roots_and_nodes() -> None:
    store, hashes = vector_store()
    want = {(level, index): H(x) for level, row in enumerate(RFC6962["node_hashes"])
            for index, x in enumerate(row)}
    assert store == want
    for v in RFC6962["roots"]:
        size, root = v["tree_size"], H(v["root"])
        assert root_at(size, Reader(store)) == root == ref_mth(hashes[:size])
        cr = CompactRange()
        cr.extend(hashes[:size])
        assert cr.root() == root


def test_vector_inclusion_proofs() -> None:
    store, _ = vector_store()
    for v in RFC6962["inclusion_proofs"]:
        proof = [H(x) for x in v["proof"]]
        assert inclusion_proof(v["leaf_index"], v["tree_size"], Reader(store)) == proof
        verify_inclusion(H(v["leaf_hash"]), v["leaf_index"], v["tree_size"], proof, H(v["root"]))


def test_vector_consistency_proofs() -> None:
    store, _ = vector_store()
    for v in RFC6962["consistency_proofs"]:
        proof = [H(x) for x in v["proof"]]
        assert consistency_proof(v["size1"], v["size2"], Reader(store)) == proof
        verify_consistency(v["size1"], v["size2"], H(v["root1"]), H(v["root2"]), proof)


@pytest.mark.parametrize("probe", RFC6962["probes"]["inclusion"], ids=lambda p: p["file"])
def test_vector_inclusion_probes(probe: dict[str, Any]) -> None:
    args = (H(probe["leaf_hash"]), probe["leaf_index"], probe["tree_size"],
            [H(x) for x in probe["proof"]], H(probe["root"]))
    if probe["want_error"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", RFC6962["probes"]["consistency"], ids=lambda p: p["file"])
def test_vector_consistency_probes(probe: dict[str, Any]) -> None:
    args = (probe["size1"], probe["size2"], H(probe["root1"]), H(probe["root2"]),
            [H(x) for x in probe["proof"]])
    assert rfc_verify_consistency(sha_combine, *args) is not probe["want_error"]
    if probe["want_error"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- merkle-proof-cases (transparency-dev golden files) -----------------------------------------


def test_golden_cases_found() -> None:
    assert len(CASE_FILES) == 196


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: str(p.relative_to(CASES)))
def test_golden_case(path: Path) -> None:
    case = json.loads(path.read_text())

    def b64(s: str | None) -> bytes:
        return base64.b64decode(s or "")

    proof = [b64(x) for x in case["proof"] or []]
    if path.relative_to(CASES).parts[0] == "inclusion":
        def check() -> None:
            verify_inclusion(b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof,
                             b64(case["root"]))
    else:
        def check() -> None:
            verify_consistency(case["size1"], case["size2"], b64(case["root1"]),
                               b64(case["root2"]), proof)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


# --- Against the reference, every size up to 64 -----------------------------------------------


def test_range_ids_are_maximal_aligned_decomposition() -> None:
    def brute(begin: int, end: int) -> list[NodeId]:
        out = []
        while begin < end:
            level = 0
            while begin % (2 << level) == 0 and begin + (2 << level) <= end:
                level += 1
            out.append((level, begin >> level))
            begin += 1 << level
        return out

    for end in range(80):
        for begin in range(end + 1):
            assert range_ids(begin, end) == brute(begin, end), (begin, end)
        assert peak_ids(end) == brute(0, end)
    with pytest.raises(ValueError):
        range_ids(3, 2)


def test_stored_nodes_are_perfect_subtrees() -> None:
    store = small_store()
    assert len(store) == 2 * N_SMALL - 1
    for (level, index), value in store.items():
        assert value == ref_mth(D_SMALL[index << level:(index + 1) << level])


@pytest.mark.parametrize("n", range(1, N_SMALL + 1))
def test_against_reference(n: int) -> None:
    store, d = small_store(), D_SMALL[:n]
    root = ref_mth(d)
    reader = Reader(store, size=n)
    assert root_at(n, reader) == root
    for index in range(n):
        proof = inclusion_proof(index, n, reader)
        assert proof == ref_path(index, d), index
        verify_inclusion(d[index], index, n, proof, root)
    for m in range(1, n + 1):
        proof = consistency_proof(m, n, reader)
        assert proof == ref_proof(m, d), m
        verify_consistency(m, n, ref_mth(d[:m]), root, proof)
    assert all(len(ids) > 0 for ids in reader.calls)
    # one call per root/proof, except none for proofs that need no node
    assert len(reader.calls) == 1 + (n - (n == 1)) + (n - 1)


def test_preconditions() -> None:
    reader = Reader(small_store())
    assert root_at(0, reader) == EMPTY_ROOT
    for index, size in [(0, 0), (3, 3), (-1, 4)]:
        with pytest.raises(ProofError):
            inclusion_proof(index, size, reader)
    for m, n in [(0, 0), (0, 5), (6, 5), (-1, 3)]:
        with pytest.raises(ProofError):
            consistency_proof(m, n, reader)
    assert consistency_proof(7, 7, reader) == []
    assert reader.calls == []


# --- One batched read of O(log n) nodes ------------------------------------------------------

MAX = 1 << 20


def check_reads(n: int, index: int, m: int) -> None:
    bound = 2 * (n - 1).bit_length() + 2
    for build_one in (lambda r: root_at(n, r), lambda r: inclusion_proof(index, n, r),
                      lambda r: consistency_proof(m, n, r), lambda r: CompactRange.load(n, r)):
        reader = Reader(size=n)
        build_one(reader)
        assert len(reader.calls) <= 1
        assert all(0 < len(ids) <= bound for ids in reader.calls), (n, index, m)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 1000, MAX - 1, MAX, MAX - 12345, (MAX >> 1) + 1])
def test_reads_are_one_batch_of_log_n(n: int) -> None:
    for index in {0, 1 % n, n // 2, n - 2 if n > 1 else 0, n - 1}:
        for m in {1, index + 1, n // 2 or 1, n - 1 or 1, n}:
            check_reads(n, index, m)


@settings(deadline=None)
@given(st.integers(1, MAX).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(1, n))))
def test_reads_are_one_batch_of_log_n_property(args: tuple[int, int, int]) -> None:
    check_reads(*args)


# --- Properties: tampering is refused ---------------------------------------------------------

sizes = st.integers(1, N_BIG)
index_and_size = sizes.flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n)))
old_and_new = st.integers(2, N_BIG).flatmap(
    lambda n: st.tuples(st.integers(1, n - 1), st.just(n)))


def inclusion_case(index: int, n: int) -> tuple[bytes, list[bytes], bytes]:
    reader = Reader(big_store(), size=n)
    return D_BIG[index], inclusion_proof(index, n, reader), root_at(n, reader)


def consistency_case(m: int, n: int) -> tuple[bytes, bytes, list[bytes]]:
    reader = Reader(big_store(), size=n)
    return root_at(m, reader), root_at(n, reader), consistency_proof(m, n, reader)


@settings(deadline=None)
@given(index_and_size, st.data())
def test_inclusion_bit_flip_refused(args: tuple[int, int], data: st.DataObject) -> None:
    index, n = args
    leaf, proof, root = inclusion_case(index, n)
    verify_inclusion(leaf, index, n, proof, root)
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.integers(-2, len(proof) - 1))
    with pytest.raises(ProofError):
        if target == -2:
            verify_inclusion(flip(leaf, bit), index, n, proof, root)
        elif target == -1:
            verify_inclusion(leaf, index, n, proof, flip(root, bit))
        else:
            proof[target] = flip(proof[target], bit)
            verify_inclusion(leaf, index, n, proof, root)


@settings(deadline=None)
@given(index_and_size, st.integers(-3, N_BIG + 3))
def test_inclusion_wrong_index_refused(args: tuple[int, int], wrong: int) -> None:
    index, n = args
    leaf, proof, root = inclusion_case(index, n)
    if wrong != index:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, wrong, n, proof, root)


@settings(deadline=None)
@given(index_and_size, st.integers(-1, N_BIG + 3))
def test_inclusion_wrong_size_refused_unless_same_path(args: tuple[int, int], wrong: int) -> None:
    """A wrong size is refused unless the leaf's path has the very same shape at that size:
    the proof binds the hashes on the path, not the size (e.g. leaf 0 of 3 and of 4)."""
    index, n = args
    leaf, proof, root = inclusion_case(index, n)
    if wrong == n:
        return
    if 0 <= index < wrong and ref_shape(index, wrong) == ref_shape(index, n):
        verify_inclusion(leaf, index, wrong, proof, root)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, wrong, proof, root)


def test_inclusion_proof_does_not_bind_size_alone() -> None:
    leaf, proof, root = inclusion_case(0, 3)
    verify_inclusion(leaf, 0, 4, proof, root)  # same shape: HASH(HASH(l0, p0), p1)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 5, proof, root)


@settings(deadline=None)
@given(old_and_new, st.data())
def test_consistency_bit_flip_refused(args: tuple[int, int], data: st.DataObject) -> None:
    m, n = args
    root1, root2, proof = consistency_case(m, n)
    verify_consistency(m, n, root1, root2, proof)
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.integers(-2, len(proof) - 1))
    with pytest.raises(ProofError):
        if target == -2:
            verify_consistency(m, n, flip(root1, bit), root2, proof)
        elif target == -1:
            verify_consistency(m, n, root1, flip(root2, bit), proof)
        else:
            proof[target] = flip(proof[target], bit)
            verify_consistency(m, n, root1, root2, proof)


small_old_and_new = st.integers(2, 64).flatmap(
    lambda n: st.tuples(st.integers(1, n - 1), st.just(n)))


@settings(deadline=None)
@given(small_old_and_new, st.integers(-1, 70), st.integers(0, 70))
def test_consistency_wrong_sizes_refused_unless_same_shape(
        args: tuple[int, int], m2: int, n2: int) -> None:
    """Wrong sizes are refused unless, symbolically (hashes as nested tuples), the RFC
    algorithm at those sizes rebuilds exactly the same two roots from the same proof.
    Sizes are bound by the signed checkpoint, not by the hashes: (1, 2) with proof [h1]
    also verifies as (2, 3), taking old_root h0 for the root of two leaves."""
    m, n = args
    if (m2, n2) == (m, n):
        return
    root1, root2, proof = consistency_case(m, n)
    sym = list(range(n))
    sym_ok = rfc_verify_consistency(
        tuple_combine, m2, n2, ref_mth(sym[:m], tuple_combine), ref_mth(sym, tuple_combine),
        ref_proof(m, sym, tuple_combine))
    if sym_ok:
        verify_consistency(m2, n2, root1, root2, proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(m2, n2, root1, root2, proof)


def test_consistency_proof_does_not_bind_sizes_alone() -> None:
    root1, root2, proof = consistency_case(1, 2)
    verify_consistency(2, 3, root1, root2, proof)
    with pytest.raises(ProofError):
        verify_consistency(1, 3, root1, root2, proof)


# --- CompactRange ---------------------------------------------------------------------------


def test_compact_range_load_round_trips() -> None:
    store = small_store()
    full = CompactRange()
    for size in range(N_SMALL + 1):
        reader = Reader(store, size=size)
        loaded = CompactRange.load(size, reader)
        assert len(reader.calls) == (size > 0)
        assert loaded.size == full.size == size and loaded.peaks == full.peaks
        assert loaded.root() == ref_mth(D_SMALL[:size])
        if size < N_SMALL:
            # appending to a loaded range yields the very nodes already stored
            assert all(store[i] == v for i, v in loaded.append(D_SMALL[size]))
            full.append(D_SMALL[size])
            assert loaded.peaks == full.peaks


def test_compact_range_validates() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError):
        CompactRange(-1)
    with pytest.raises(ValueError):
        CompactRange().append(b"short")
    assert CompactRange().root() == EMPTY_ROOT


def test_streaming_root_matches_reference() -> None:
    cr = CompactRange()
    cr.extend(iter(D_BIG))
    assert cr.size == N_BIG and cr.root() == ref_mth(D_BIG)
    assert root_at(N_BIG, Reader(big_store())) == cr.root()

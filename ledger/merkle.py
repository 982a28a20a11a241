"""RFC 6962 / RFC 9162 §2.1 SHA-256 Merkle tree over durably stored perfect nodes.

The caller stores nodes in a table keyed ``(level, index)``. Node ``(level, index)`` is
the hash of the *perfect* subtree covering leaves ``[index * 2**level, (index+1) * 2**level)``;
only perfect nodes are ever stored, and `CompactRange.append` says which ones to store.

A tree of any size is cut into aligned perfect subtrees (its "peaks", `peak_ids`). Every
hash that a root or proof needs is either one stored node or the root of a ragged right
border, which is folded from the perfect nodes of `range_ids`. So roots and proofs cost
O(log n) node reads, fetched through ONE call to the caller's batched `NodeReader`.

Building (`root_at`, `inclusion_proof`, `consistency_proof`) and checking
(`verify_inclusion`, `verify_consistency`) share nothing but the hash functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from hashlib import sha256

from .errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT: bytes = sha256(b"").digest()  # SPEC: RFC 9162 §2.1.1, MTH({}) = HASH()

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""
NodeReader = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]
"""The caller's batched store read: must return a hash for every id asked for."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data), the hash of a one-leaf tree."""  # SPEC: RFC 9162 §2.1.1
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""  # SPEC: RFC 9162 §2.1.1
    return sha256(b"\x01" + left + right).digest()


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive perfect subtrees given left to right with decreasing sizes."""
    # SPEC: RFC 9162 §2.1.1: the left split is always the largest power of two, so the
    # tree over such a sequence is the right-leaning chain HASH(h0, HASH(h1, ... hk)).
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = sha256(b"\x01" + left + h).digest()
    return h


def range_ids(begin: int, end: int) -> list[NodeId]:
    """The maximal aligned perfect subtrees covering ``[begin, end)``, left to right.

    Same as transparency-dev ``compact.RangeNodes``: levels first rise along the left
    border, then fall along the right border. Returns ``[]`` when ``begin == end``.
    Requires ``0 <= begin <= end``, else raises ValueError.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    if begin == 0:
        left, right = 0, end
    else:
        # Paths to leaves begin-1 and end part below bit d; only nodes under it are in range:
        # the left part is the zero bits of begin-1, the right part the one bits of end.
        last = begin - 1
        mask = (1 << ((last ^ end).bit_length() - 1)) - 1
        left, right = ~last & mask, end & mask
    ids: list[NodeId] = []
    pos = begin
    while left:
        level = (left & -left).bit_length() - 1
        ids.append((level, pos >> level))
        pos += 1 << level
        left &= left - 1
    while right:
        level = right.bit_length() - 1
        ids.append((level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return ids


def peak_ids(size: int) -> list[NodeId]:
    """The perfect-subtree decomposition of ``[0, size)``, left to right (largest first)."""
    return range_ids(0, size)


def root_at(size: int, read: NodeReader) -> bytes:
    """MTH(D[0:size]) from stored nodes: one `read` of the ``popcount(size)`` peaks.

    Returns EMPTY_ROOT without reading when ``size == 0``. Requires ``size >= 0`` (else
    ValueError) and every peak stored (a missing one raises what `read` raises, or KeyError).
    """
    if size == 0:
        return EMPTY_ROOT
    ids = peak_ids(size)
    got = read(ids)
    return _fold([got[i] for i in ids])


@lru_cache(maxsize=1024)
def _border_ids(begin: int, end: int) -> tuple[NodeId, ...]:
    """``range_ids`` of a ragged right border: a batch's receipts share the few there are."""
    return tuple(range_ids(begin, end))


def _path_plan(level: int, index: int, size: int) -> list[Sequence[NodeId]]:
    """Siblings on the path from perfect node (level, index) up to the root of size `size`.

    Each sibling is given as the perfect nodes to fold into it: one id for a complete
    sibling, several for the ragged right border. Empty siblings (past `size`) are skipped:
    the node is then its own parent, as in RFC 9162 §2.1.1 where the right split is short.
    """
    plan: list[Sequence[NodeId]] = []
    while index or (1 << level) < size:  # until (level, index) covers all of [0, size)
        start = (index ^ 1) << level
        if start + (1 << level) <= size:
            plan.append([(level, index ^ 1)])  # a complete sibling: range_ids of it, without the walk
        elif start < size:
            plan.append(_border_ids(start, size))
        level += 1
        index >>= 1
    return plan


def _materialise(plan: list[Sequence[NodeId]], read: NodeReader) -> list[bytes]:
    """Read every node of `plan` in one call and fold each sibling's nodes into its hash."""
    ids = [i for sibling in plan for i in sibling]
    if not ids:
        return []
    got = read(ids)
    return [_fold([got[i] for i in sibling]) for sibling in plan]


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """PATH(index, D[size]), the leaf's sibling first (RFC 9162 §2.1.3.1).

    Requires ``0 <= index < size``, else raises ProofError. Needs the leaves' perfect nodes
    of `size` stored; reads them in at most one call (none when ``size == 1``).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}",
                         index=index, size=size)
    return _materialise(_path_plan(0, index, size), read)


def inclusion_proofs(indices: Sequence[int], size: int, read: NodeReader) -> list[list[bytes]]:
    """``inclusion_proof`` of each of ``indices`` in the tree of ``size``, in order, the
    nodes of all of them read in at most one call.

    Requires ``0 <= index < size`` for each, else raises ProofError.
    """
    plans = []
    for index in indices:
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is outside a tree of size {size}",
                             index=index, size=size)
        plans.append(_path_plan(0, index, size))
    ids = list(dict.fromkeys(i for plan in plans for sibling in plan for i in sibling))
    got = read(ids) if ids else {}
    return [[_fold([got[i] for i in sibling]) for sibling in plan] for plan in plans]


def consistency_proof(old_size: int, new_size: int, read: NodeReader) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

    Requires ``0 < old_size <= new_size``, else raises ProofError. Returns ``[]`` when
    ``old_size == new_size``; otherwise reads the nodes in exactly one call.
    """
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}",
                         old_size=old_size, new_size=new_size)
    if old_size == new_size:
        return []
    # SPEC: RFC 9162 §2.1.4.1, SUBPROOF unrolled: the largest perfect subtree ending at
    # old_size is shared by both trees; the proof is that node (unless it is the whole old
    # tree, which the verifier knows as old_root), then its inclusion path in the new tree.
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    plan = _path_plan(level, index, new_size)
    if index:
        plan.insert(0, [(level, index)])
    return _materialise(plan, read)


class CompactRange:
    """The frontier of a tree of `size` leaves: the hashes of the perfect subtrees of the
    binary decomposition of size (`peak_ids`), left to right. O(log n) memory.

    A log appends through it and stores what `append` returns; an auditor folds millions of
    leaf hashes through `extend` and compares `root()`.
    """

    __slots__ = ("size", "peaks")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        """Requires ``size >= 0`` and ``len(peaks) == popcount(size)``, else ValueError."""
        if size < 0 or len(peaks) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {max(size, 0).bit_count()} peaks, "
                             f"got {len(peaks)}")
        self.size: int = size
        self.peaks: list[bytes] = list(peaks)

    @classmethod
    def load(cls, size: int, read: NodeReader) -> CompactRange:
        """The frontier of the stored tree of `size` leaves, read in at most one call."""
        ids = peak_ids(size)
        if not ids:
            return cls()
        got = read(ids)
        return cls(size, [got[i] for i in ids])

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add leaf number `size`; return the nodes to store (amortised two).

        These are the leaf ``(0, size)`` then every perfect node it completes, lowest first.
        Requires a 32-byte hash, else ValueError.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        index = self.size
        h = leaf_hash
        level = 0
        new: list[tuple[NodeId, bytes]] = [((0, index), h)]
        while index & 1:  # a right child: merge with the left sibling, the last peak
            h = sha256(b"\x01" + self.peaks.pop() + h).digest()
            level += 1
            index >>= 1
            new.append(((level, index), h))
        self.peaks.append(h)
        self.size += 1
        return new

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes without reporting nodes: the auditor's streaming root."""
        peaks = self.peaks
        size = self.size
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash {size} must be {HASH_SIZE} bytes, got {len(h)}")
            n = size
            while n & 1:
                h = sha256(b"\x01" + peaks.pop() + h).digest()
                n >>= 1
            peaks.append(h)
            size += 1
        self.size = size

    def root(self) -> bytes:
        """MTH(D[0:size]); EMPTY_ROOT when ``size == 0``."""
        return _fold(self.peaks) if self.peaks else EMPTY_ROOT


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"proof[{i}] is {len(p)} bytes, not {HASH_SIZE}",
                             index=i, expected=HASH_SIZE, found=len(p))


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Check that `proof` shows `leaf_hash` at `index` in the tree of `size` with `root`.

    Raises ProofError (with what was expected and found) on any failure, including an
    index outside ``[0, size)`` or a hash that is not 32 bytes.
    """
    # SPEC: RFC 9162 §2.1.3.2 step 1: leaf_index must be below tree_size.
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}",
                         index=index, size=size)
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
    _check_hashes(proof)
    fn, sn = index, size - 1  # step 2
    r = leaf_hash  # step 3
    for p in proof:  # step 4
        if sn == 0:  # step 4a
            raise ProofError("inclusion proof is too long", index=index, size=size,
                             expected=_inclusion_length(index, size), found=len(proof))
        if fn & 1 or fn == sn:  # step 4b
            r = sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:  # step 4b.ii: shift until LSB(fn) is set or fn is 0
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p).digest()
        fn >>= 1  # step 4c
        sn >>= 1
    # step 5: sn must be 0 and r must equal the root.
    if sn != 0:
        raise ProofError("inclusion proof is too short", index=index, size=size,
                         expected=_inclusion_length(index, size), found=len(proof))
    if r != root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} leads to root "
                         f"{r.hex()}, expected {root.hex()}",
                         index=index, size=size, expected=root.hex(), found=r.hex())


def _inclusion_length(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()  # levels below the ragged border
    return inner + (index >> inner).bit_count()


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of `old_size` with `old_root` is a prefix of the one of `new_size`.

    Requires ``0 < old_size <= new_size``: a proof from size 0 is meaningless and refused.
    When the sizes are equal the proof must be empty and the roots equal. Raises ProofError
    (with what was expected and found) on any failure.
    """
    # Policy (as transparency-dev/merkle): a proof from size 0 is meaningless and refused.
    # Checking it first also keeps step 4 from looping forever on fn = -1.
    if old_size <= 0:
        raise ProofError("a consistency proof from size 0 is meaningless and refused",
                         old_size=old_size, new_size=new_size)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}",
                         old_size=old_size, new_size=new_size)
    if old_size == new_size:  # §2.1.4.2 assumes first < second; equal trees must be equal
        if proof:
            raise ProofError("equal sizes need an empty consistency proof",
                             expected=0, found=len(proof))
        if old_root != new_root:
            raise ProofError(f"equal sizes {old_size} but different roots",
                             expected=old_root.hex(), found=new_root.hex())
        return
    _check_hashes(proof)
    # SPEC: RFC 9162 §2.1.4.2 step 1: an empty proof fails.
    if not proof:
        raise ProofError(f"empty consistency proof from {old_size} to {new_size}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: old_size is a power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # step 6a
            raise ProofError(f"consistency proof from {old_size} to {new_size} is too long",
                             found=len(proof))
        if fn & 1 or fn == sn:  # step 6b
            fr = sha256(b"\x01" + c + fr).digest()
            sr = sha256(b"\x01" + c + sr).digest()
            while fn and not fn & 1:  # step 6b.iii: shift until LSB(fn) is set or fn is 0
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c).digest()
        fn >>= 1  # step 6c
        sn >>= 1
    # step 7: fr must equal old_root, sr new_root, and sn be 0.
    if sn != 0:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is too short",
                         found=len(proof))
    if fr != old_root:
        raise ProofError(f"consistency proof leads to old root {fr.hex()}",
                         expected=old_root.hex(), found=fr.hex())
    if sr != new_root:
        raise ProofError(f"consistency proof leads to new root {sr.hex()}",
                         expected=new_root.hex(), found=sr.hex())

"""The Merkle tree of the audit log: RFC 6962 §2.1 hashing and proofs, verified with RFC 9162 §2.1.3.2 / §2.1.4.2.

The tree is never held whole. A *node* `(level, index)` is the hash of the complete subtree over the leaves
`index * 2**level .. (index + 1) * 2**level - 1` (level 0: the leaf hashes). The log stores every node as soon as
its subtree is complete, and keeps the *frontier* of the current size: the complete subtrees that make up the tree,
largest first (one per set bit of the size). So:

- appending a leaf reads nothing but the frontier and writes the leaf's node plus the parents it completes;
- every hash a proof needs is the hash of a range `[start, end)` that splits into at most log2(n) stored nodes
  (`subtree_nodes`), so a proof costs O(log n) reads, never a recomputation of the tree.

Proof generation is split in two so that the same code serves the database and the tests: `inclusion_ranges` /
`consistency_ranges` say which ranges a proof hashes (RFC 6962 §2.1.1 PATH and §2.1.2 PROOF/SUBPROOF), `nodes_for`
lists the stored nodes they need, and `proof_hashes` folds the nodes it was given into the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exchange.protocol.audit_errors import InvalidProof

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256() (RFC 6962 §2.1)

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # [start, end) of leaf indices


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1), as RFC 6962 §2.1 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


# ---- complete subtrees ---------------------------------------------------------------------------------------------


def subtree_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees that make up the leaves [start, end), left to right (largest first when start = 0).

    Every range a proof hashes starts at a multiple of a power of two larger than its length, so this is the binary
    decomposition of its length, and MTH of the range is the right fold of these nodes (`fold`).
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1  # the largest subtree that fits ...
        if start:
            level = min(level, (start & -start).bit_length() - 1)  # ... and is aligned at start
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive complete subtrees, largest first: H(h0, H(h1, ... H(h_{k-2}, h_{k-1})))."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


class Frontier:
    """The compact range [0, size): one hash per complete subtree of the tree of `size` leaves, largest first.

    `append` returns every node the new leaf completes (its own at level 0 included), which the log stores.
    """

    def __init__(self, *, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count() or any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("a frontier holds one 32-byte hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def decode(cls, size: int, blob: bytes) -> Frontier:
        return cls(size=size, hashes=[blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def encode(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[Node, bytes]]:
        index, level, carry = self.size, 0, leaf_hash
        created: list[tuple[Node, bytes]] = [((0, index), carry)]
        while index & 1:  # a right child: its left sibling is the frontier's smallest subtree; merge upwards
            carry = node_hash(self.hashes.pop(), carry)
            index >>= 1
            level += 1
            created.append(((level, index), carry))
        self.hashes.append(carry)
        self.size += 1
        return created

    def push(self, leaf_hash: bytes) -> None:
        """`append` without reporting the nodes: the verifier's hot loop."""
        index, carry = self.size, leaf_hash
        while index & 1:
            carry = node_hash(self.hashes.pop(), carry)
            index >>= 1
        self.hashes.append(carry)
        self.size += 1

    def root(self) -> bytes:
        return fold(self.hashes)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.push(h)
    return frontier.root()


# ---- proofs: which ranges, which nodes ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InclusionProof:
    """RFC 6962 §2.1.1 audit path of leaf `index` in the tree of `size` leaves, bottom up."""

    index: int
    size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True)
class ConsistencyProof:
    """RFC 6962 §2.1.2 proof that the tree of `old` leaves is a prefix of the tree of `new` leaves."""

    old: int
    new: int
    hashes: tuple[bytes, ...]


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose MTH make up PATH(index, D[0:size]) (RFC 6962 §2.1.1), bottom up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])  or  PATH(m - k, D[k:n]) : MTH(D[0:k])
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose MTH make up PROOF(old, D[0:new]) = SUBPROOF(old, D[0:new], true) (RFC 6962 §2.1.2)."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == 0 or old == new:
        return []  # every tree extends the empty tree; a tree is consistent with itself
    ranges: list[Range] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:  # SUBPROOF(m, D[m], b) = [] if b (the verifier knows this root) else [MTH(D[m])]
            if not complete:
                ranges.append((start, end))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    return ranges[::-1]


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    return {node for start, end in ranges for node in subtree_nodes(start, end)}


def proof_hashes(ranges: Sequence[Range], nodes: Mapping[Node, bytes]) -> tuple[bytes, ...]:
    """Fold the stored nodes into the proof; `nodes` must hold every node of `nodes_for(ranges)`."""
    return tuple(fold([nodes[node] for node in subtree_nodes(start, end)]) for start, end in ranges)


# ---- verification: RFC 9162 -------------------------------------------------------------------------------------


def _check_hashes(hashes: Iterable[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise InvalidProof("every hash of a proof is 32 bytes")


def verify_inclusion(proof: InclusionProof, *, leaf_hash: bytes, root: bytes) -> InclusionProof:
    """RFC 9162 §2.1.3.2: return the proof if it leads from `leaf_hash` at `proof.index` to `root`; raise otherwise."""
    _check_hashes([leaf_hash, root, *proof.hashes])
    # 1. leaf_index must be smaller than tree_size.
    if not 0 <= proof.index < proof.size:
        raise InvalidProof(f"leaf {proof.index} is not in a tree of {proof.size}")
    # 2. fn = leaf_index, sn = tree_size - 1.
    fn, sn = proof.index, proof.size - 1
    # 3. r = hash.
    r = leaf_hash
    # 4. For each p in inclusion_path:
    for p in proof.hashes:
        # a. sn = 0 with elements left: the path is too long.
        if sn == 0:
            raise InvalidProof("the inclusion path is longer than the tree is high")
        # b. fn is a right child, or the last node of its level (it has no right sibling):
        if fn & 1 or fn == sn:
            #    i. r = HASH(0x01 || p || r)
            r = node_hash(p, r)
            #    ii. climb past the levels where fn is a left child without a sibling.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            #    otherwise i. r = HASH(0x01 || r || p)
            r = node_hash(r, p)
        # c. up one level.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 and r the root.
    if sn != 0:
        raise InvalidProof("the inclusion path is shorter than the tree is high")
    if r != root:
        raise InvalidProof("the inclusion path does not lead to the root")
    return proof


def verify_consistency(proof: ConsistencyProof, *, old_root: bytes, new_root: bytes) -> ConsistencyProof:
    """RFC 9162 §2.1.4.2: return the proof if the tree (old, old_root) is a prefix of (new, new_root); raise otherwise.

    The RFC's algorithm covers 0 < old < new; the trivial cases are decided first, as RFC 6962 §2.1.2 defines them:
    a tree is consistent with itself (empty proof, equal roots), and every tree extends the empty one (empty proof).
    """
    _check_hashes([old_root, new_root, *proof.hashes])
    first, second, path = proof.old, proof.new, list(proof.hashes)
    if not 0 <= first <= second:
        raise InvalidProof(f"a tree of {second} cannot extend a tree of {first}")
    if first == second:
        if path or old_root != new_root:
            raise InvalidProof("equal sizes need equal roots and an empty proof")
        return proof
    if first == 0:
        if path:
            raise InvalidProof("the empty tree needs an empty proof")
        return proof
    # 1. An empty consistency_path fails.
    if not path:
        raise InvalidProof("the consistency path is empty")
    # 2. If first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. While LSB(fn) is set, right-shift fn and sn.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of the path.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        # a. sn = 0 with elements left: the path is too long.
        if sn == 0:
            raise InvalidProof("the consistency path is longer than the tree is high")
        # b. fn is a right child, or the last node of its level:
        if fn & 1 or fn == sn:
            #    i. fr = HASH(0x01 || c || fr);  ii. sr = HASH(0x01 || c || sr)
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            #    iii. climb past the levels where fn is a left child without a sibling.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            #    otherwise i. sr = HASH(0x01 || sr || c)
            sr = node_hash(sr, c)
        # c. up one level.
        fn >>= 1
        sn >>= 1
    # 7. fr must be first_hash, sr second_hash, and sn 0.
    if sn != 0:
        raise InvalidProof("the consistency path is shorter than the tree is high")
    if fr != old_root:
        raise InvalidProof("the consistency path does not lead to the old root")
    if sr != new_root:
        raise InvalidProof("the consistency path does not lead to the new root")
    return proof

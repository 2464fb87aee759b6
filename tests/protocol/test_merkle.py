"""The Merkle code against the published RFC 6962 vectors and against a brute-force recomputation.

Vectors: the eight leaves, the root after each, and the inclusion and consistency proofs published by Certificate
Transparency (google/certificate-transparency `cpp/merkletree/merkle_tree_test.cc`) and carried on by
transparency-dev/merkle (`proof/verify_test.go`; `{leaf, size}` there counts leaves from 1).

The brute force below is written independently of `exchange.protocol.merkle`: it follows RFC 6962 §2.1's recursive
definitions of MTH, PATH and PROOF over the whole list of leaves, sharing only the two hash functions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.protocol import merkle
from exchange.protocol.audit_errors import InvalidProof
from exchange.protocol.merkle import (
    ConsistencyProof,
    Frontier,
    InclusionProof,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

# (leaf index from 0, tree size, proof)
INCLUSION = [
    (0, 8, ("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, ("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",)),
    (1, 5, ("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (0, 1, ()),
]
CONSISTENCY = [
    (1, 1, ()),
    (1, 8, ("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, ("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, ("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, ("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]


# ---- brute force: RFC 6962 §2.1 read literally ----------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def bf_mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + bf_mth(leaves[:k]) + bf_mth(leaves[k:])).digest()


def bf_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return bf_path(m, leaves[:k]) + [bf_mth(leaves[k:])]
    return bf_path(m - k, leaves[k:]) + [bf_mth(leaves[:k])]


def bf_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [bf_mth(leaves)]
    k = _k(n)
    if m <= k:
        return bf_subproof(m, leaves[:k], complete) + [bf_mth(leaves[k:])]
    return bf_subproof(m - k, leaves[k:], False) + [bf_mth(leaves[:k])]


def bf_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    return bf_subproof(m, leaves, True) if 0 < m < len(leaves) else []


# ---- the code under test, fed from an in-memory node store ----------------------------------------------------------


def build(leaves: Sequence[bytes]) -> tuple[Frontier, dict[merkle.Node, bytes], list[bytes]]:
    """Append the leaves one by one, keeping every node the frontier reports (what the database stores), and the
    root after each append."""
    frontier = Frontier()
    nodes: dict[merkle.Node, bytes] = {}
    roots = []
    for leaf in leaves:
        for node, value in frontier.append(merkle.leaf_hash(leaf)):
            assert node not in nodes, "a node is written once"
            nodes[node] = value
        roots.append(frontier.root())
    return frontier, nodes, roots


def inclusion(nodes: dict[merkle.Node, bytes], index: int, size: int) -> InclusionProof:
    ranges = merkle.inclusion_ranges(index, size)
    needed = merkle.nodes_for(ranges)
    assert len(needed) <= 2 * max(size.bit_length(), 1), "O(log n) reads"
    return InclusionProof(index=index, size=size, hashes=merkle.proof_hashes(ranges, {n: nodes[n] for n in needed}))


def consistency(nodes: dict[merkle.Node, bytes], old: int, new: int) -> ConsistencyProof:
    ranges = merkle.consistency_ranges(old, new)
    needed = merkle.nodes_for(ranges)
    assert len(needed) <= 2 * max(new.bit_length(), 1), "O(log n) reads"
    return ConsistencyProof(old=old, new=new, hashes=merkle.proof_hashes(ranges, {n: nodes[n] for n in needed}))


# ---- published vectors ----------------------------------------------------------------------------------------------


def test_empty_tree_root() -> None:
    assert Frontier().root() == EMPTY_ROOT == merkle.EMPTY_ROOT


def test_roots_of_the_published_vectors() -> None:
    _, _, roots = build(LEAVES)
    assert roots == ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_of_the_published_vectors(index: int, size: int, expected: tuple[str, ...]) -> None:
    _, nodes, _ = build(LEAVES[:size])
    proof = inclusion(nodes, index, size)
    assert proof.hashes == tuple(bytes.fromhex(h) for h in expected)
    assert verify_inclusion(proof, leaf_hash=merkle.leaf_hash(LEAVES[index]), root=ROOTS[size - 1]) is proof


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_consistency_proofs_of_the_published_vectors(old: int, new: int, expected: tuple[str, ...]) -> None:
    _, nodes, _ = build(LEAVES[:new])
    proof = consistency(nodes, old, new)
    assert proof.hashes == tuple(bytes.fromhex(h) for h in expected)
    assert verify_consistency(proof, old_root=ROOTS[old - 1], new_root=ROOTS[new - 1]) is proof


# ---- the published negative probes (transparency-dev corruptInclusionProof / corruptConsistencyProof) ---------------

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _rejects(check: Callable[[], object]) -> None:
    with pytest.raises(InvalidProof):
        check()


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION[:4])
def test_corrupted_inclusion_proofs_are_rejected(index: int, size: int, expected: tuple[str, ...]) -> None:
    path = tuple(bytes.fromhex(h) for h in expected)
    root, leaf = ROOTS[size - 1], merkle.leaf_hash(LEAVES[index])

    def probe(i: int = index, n: int = size, hashes: tuple[bytes, ...] = path, r: bytes = root,
              lh: bytes = leaf) -> None:
        _rejects(lambda: verify_inclusion(InclusionProof(index=i, size=n, hashes=hashes), leaf_hash=lh, root=r))

    probe(i=index - 1)
    probe(i=index + 1)
    probe(i=index ^ 2)
    probe(n=size * 2)
    probe(n=size // 2)
    probe(lh=b"WrongLeaf")
    probe(r=EMPTY_ROOT)
    probe(r=SOME_HASH)
    probe(hashes=(*path, b""))
    probe(hashes=(*path, root))
    probe(hashes=(b"", *path))
    probe(hashes=(root, *path))
    for i in range(len(path)):
        flipped = bytearray(path[i])
        flipped[0] ^= 8
        probe(hashes=path[:i] + (bytes(flipped),) + path[i + 1 :])
    probe(hashes=path[:-1])
    if len(path) > 1:
        probe(hashes=(path[0], SOME_HASH, *path[1:]))


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_are_rejected(old: int, new: int, expected: tuple[str, ...]) -> None:
    path = tuple(bytes.fromhex(h) for h in expected)
    root1, root2 = ROOTS[old - 1], ROOTS[new - 1]

    def probe(m: int = old, n: int = new, r1: bytes = root1, r2: bytes = root2,
              hashes: tuple[bytes, ...] = path) -> None:
        _rejects(lambda: verify_consistency(ConsistencyProof(old=m, new=n, hashes=hashes), old_root=r1, new_root=r2))

    probe(m=old - 1)
    probe(m=old + 1)
    probe(m=old ^ 2)
    probe(n=new * 2)
    probe(n=new // 2)
    probe(r1=b"WrongRoot")
    probe(r2=b"WrongRoot")
    probe(r1=root2, r2=root1)
    probe(hashes=())
    probe(hashes=(*path, b""))
    probe(hashes=(*path, root1))
    probe(hashes=(*path, root2))
    probe(hashes=(b"", *path))
    probe(hashes=(root1, *path))
    probe(hashes=(root2, *path))
    probe(hashes=(path[0], *path))
    probe(hashes=path[:-1])
    for i in range(len(path)):
        flipped = bytearray(path[i])
        flipped[0] ^= 16
        probe(hashes=path[:i] + (bytes(flipped),) + path[i + 1 :])


def test_trivial_consistency_cases() -> None:
    """The cases RFC 9162's algorithm leaves out (transparency-dev TestVerifyConsistency)."""
    r1, r2 = ROOTS[0], ROOTS[1]
    assert verify_consistency(ConsistencyProof(old=0, new=0, hashes=()), old_root=r1, new_root=r1)
    assert verify_consistency(ConsistencyProof(old=0, new=1, hashes=()), old_root=r1, new_root=r2)
    assert verify_consistency(ConsistencyProof(old=1, new=1, hashes=()), old_root=r2, new_root=r2)
    for old, new, a, b, hashes in [
        (0, 0, r1, r2, ()), (1, 1, r1, r2, ()), (1, 0, r1, r2, ()), (2, 1, r1, r2, ()), (1, 2, r1, r2, ()),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, (EMPTY_ROOT,)), (0, 1, EMPTY_ROOT, EMPTY_ROOT, (EMPTY_ROOT,)),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, (EMPTY_ROOT,)),
    ]:
        with pytest.raises(InvalidProof):
            verify_consistency(ConsistencyProof(old=old, new=new, hashes=hashes), old_root=a, new_root=b)


def test_single_leaf_and_bad_sizes_for_inclusion() -> None:
    h = merkle.leaf_hash(b"data")
    assert verify_inclusion(InclusionProof(index=0, size=1, hashes=()), leaf_hash=h, root=h)
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1)]:
        with pytest.raises(InvalidProof):
            verify_inclusion(InclusionProof(index=index, size=size, hashes=()), leaf_hash=h, root=h)
    _rejects(lambda: verify_inclusion(InclusionProof(index=0, size=1, hashes=()), leaf_hash=h, root=b""))


# ---- brute force: every size up to 64, random larger ones ----------------------------------------------------------


def _leaves(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]


def _check_everything(leaves: list[bytes], indices: Sequence[int], pairs: Sequence[tuple[int, int]]) -> None:
    frontier, nodes, roots = build(leaves)
    n = len(leaves)
    for size in range(1, n + 1):
        assert roots[size - 1] == bf_mth(leaves[:size])
    for size, index in indices:
        proof = inclusion(nodes, index, size)
        assert list(proof.hashes) == bf_path(index, leaves[:size])
        verify_inclusion(proof, leaf_hash=merkle.leaf_hash(leaves[index]), root=roots[size - 1])
    for old, new in pairs:
        proof = consistency(nodes, old, new)
        assert list(proof.hashes) == bf_proof(old, leaves[:new])
        old_root = roots[old - 1] if old else merkle.EMPTY_ROOT
        verify_consistency(proof, old_root=old_root, new_root=roots[new - 1])
    # The frontier survives being stored and read back; the verifier's push agrees with append; only complete
    # subtrees were stored.
    assert Frontier.decode(n, frontier.encode()).root() == roots[-1]
    assert merkle.root_of(merkle.leaf_hash(leaf) for leaf in leaves) == roots[-1]
    assert all(((i + 1) << level) <= n for level, i in nodes)


def test_every_proof_of_every_tree_up_to_64_leaves() -> None:
    leaves = _leaves(64)
    indices = [(size, index) for size in range(1, 65) for index in range(size)]
    pairs = [(old, new) for new in range(1, 65) for old in range(0, new + 1)]
    _check_everything(leaves, indices, pairs)


@pytest.mark.parametrize("seed", range(4))
def test_random_larger_trees(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(65, 1500)
    indices = [(size, rng.randrange(size)) for size in (rng.randrange(1, n + 1) for _ in range(200))]
    pairs = [(rng.randrange(0, new + 1), new) for new in (rng.randrange(1, n + 1) for _ in range(200))]
    _check_everything(_leaves(n, seed), indices + [(n, 0), (n, n - 1)], pairs + [(1, n), (n - 1, n), (n, n)])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_proofs_round_trip_and_any_change_breaks_them(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n, seed=n)
    _, nodes, roots = build(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion(nodes, index, n)
    verify_inclusion(proof, leaf_hash=merkle.leaf_hash(leaves[index]), root=roots[-1])
    _rejects(lambda: verify_inclusion(proof, leaf_hash=merkle.leaf_hash(leaves[index] + b"x"), root=roots[-1]))
    old = data.draw(st.integers(min_value=1, max_value=n))
    cproof = consistency(nodes, old, n)
    verify_consistency(cproof, old_root=roots[old - 1], new_root=roots[-1])
    if old < n:
        _rejects(lambda: verify_consistency(cproof, old_root=roots[old - 1], new_root=merkle.leaf_hash(b"x")))
    if cproof.hashes:
        bent = (bytes(32),) + cproof.hashes[1:]
        _rejects(lambda: verify_consistency(ConsistencyProof(old=old, new=n, hashes=bent),
                                            old_root=roots[old - 1], new_root=roots[-1]))


def test_subtree_nodes_split_a_range_into_aligned_complete_subtrees() -> None:
    assert merkle.subtree_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.subtree_nodes(4, 7) == [(1, 2), (0, 6)]
    assert merkle.subtree_nodes(8, 16) == [(3, 1)]
    with pytest.raises(ValueError, match="empty"):
        merkle.subtree_nodes(3, 3)

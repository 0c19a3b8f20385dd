"""RFC 9162 Merkle trees: roots, audit paths and their verification.

The expected values come from an independent reference that follows RFC 9162
section 2.1.1 (MTH) and 2.1.3.1 (PATH) literally, recursing on the largest power of two
smaller than n, and from the published Certificate Transparency test vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.merkle import (
    EMPTY_ROOT,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_hashes,
    verify_inclusion,
)

# --------------------------------------------------------------------------------------
# Reference implementation (RFC 9162 section 2.1, literally)
# --------------------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    assert n > 1
    k = 1
    while k << 1 < n:
        k <<= 1
    assert k < n <= 2 * k
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    n = len(d)
    assert 0 <= m < n
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_shape(m: int, n: int) -> list[bool]:
    """Leaf-to-root sides of the siblings on PATH(m, D[n]): True when the sibling is left."""
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_shape(m, k), False]
    return [*ref_shape(m - k, n - k), True]


def distinct_leaves(n: int) -> list[bytes]:
    return [b"leaf-%d" % i for i in range(n)]


# Leaves of the Certificate Transparency test suite and the MTH of each prefix.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --------------------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------------------


def test_hash_primitives_follow_the_rfc() -> None:
    assert _sha256(b"") == EMPTY_ROOT
    assert leaf_hash(b"abc") == _sha256(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == _sha256(b"\x01" + b"L" * 32 + b"R" * 32)


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT == ref_mth([])
    assert root_from_hashes([]) == EMPTY_ROOT


@pytest.mark.parametrize("leaf", [b"", b"\x00", b"tx", bytes(range(256))])
def test_root_of_one_leaf_is_its_leaf_hash(leaf: bytes) -> None:
    assert merkle_root([leaf]) == leaf_hash(leaf) == _sha256(b"\x00" + leaf)


@pytest.mark.parametrize("size", range(1, len(CT_LEAVES) + 1))
def test_known_answer_vectors(size: int) -> None:
    leaves = CT_LEAVES[:size]
    expected = bytes.fromhex(CT_ROOTS[size - 1])
    assert ref_mth(leaves) == expected
    assert merkle_root(leaves) == expected


def test_roots_match_the_reference_for_sizes_up_to_70() -> None:
    for n in range(71):
        leaves = [bytes([i % 256]) * (i % 5) for i in range(n)]
        assert merkle_root(leaves) == ref_mth(leaves), n


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(st.binary(max_size=16), max_size=200))
def test_roots_match_the_reference(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == ref_mth(leaves)
    assert root_from_hashes([leaf_hash(x) for x in leaves]) == merkle_root(leaves)


def test_small_trees_have_the_rfc_shape() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle_root([b"a", b"b"]) == node_hash(a, b)
    # Three leaves split 2 + 1: the third leaf is promoted, not paired with itself.
    assert merkle_root([b"a", b"b", b"c"]) == node_hash(node_hash(a, b), c)
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])


def test_leaves_and_nodes_are_domain_separated() -> None:
    """A 2-leaf root is not the root of the single leaf 'left hash || right hash'."""
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert merkle_root([b"a", b"b"]) != merkle_root([a + b])
    assert merkle_root([b"a", b"b"]) != leaf_hash(a + b)


@settings(max_examples=40, deadline=None)
@given(leaves=st.lists(st.binary(max_size=8), min_size=1, max_size=40), data=st.data())
def test_any_change_to_the_leaves_changes_the_root(
    leaves: list[bytes], data: st.DataObject
) -> None:
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    changed = [*leaves[:i], leaves[i] + b"!", *leaves[i + 1 :]]
    assert merkle_root(changed) != root
    assert merkle_root(leaves[:-1]) != root
    assert merkle_root([*leaves, b""]) != root
    if leaves[::-1] != leaves:
        assert merkle_root(leaves[::-1]) != root


# --------------------------------------------------------------------------------------
# Inclusion proofs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 41))
def test_every_inclusion_proof_verifies(size: int) -> None:
    leaves = distinct_leaves(size)
    root = merkle_root(leaves)
    for index in range(size):
        path = inclusion_path(leaves, index)
        assert path == ref_path(index, leaves)
        assert len(path) == len(ref_shape(index, size))
        assert verify_inclusion(leaves[index], index, size, path, root)


@settings(max_examples=80, deadline=None)
@given(size=st.integers(1, 200), data=st.data())
def test_inclusion_proofs_verify_for_large_trees(size: int, data: st.DataObject) -> None:
    leaves = data.draw(st.lists(st.binary(max_size=6), min_size=size, max_size=size))
    index = data.draw(st.integers(0, size - 1))
    root = merkle_root(leaves)
    path = inclusion_path(leaves, index)
    assert path == ref_path(index, leaves)
    assert verify_inclusion(leaves[index], index, size, path, root)


def test_known_answer_inclusion_paths() -> None:
    """Paths on the CT leaves are the PATH() of the reference, element by element."""
    for size in range(1, len(CT_LEAVES) + 1):
        leaves = CT_LEAVES[:size]
        root = bytes.fromhex(CT_ROOTS[size - 1])
        for index in range(size):
            path = inclusion_path(leaves, index)
            assert path == ref_path(index, leaves)
            assert verify_inclusion(leaves[index], index, size, path, root)


def test_out_of_range_leaves_have_no_path() -> None:
    leaves = distinct_leaves(5)
    for index in (-1, 5, 6):
        with pytest.raises(IndexError, match="out of range"):
            inclusion_path(leaves, index)
    with pytest.raises(IndexError):
        inclusion_path([], 0)


def _proofs(max_size: int) -> list[tuple[list[bytes], int, list[bytes], bytes]]:
    out = []
    for size in range(1, max_size + 1):
        leaves = distinct_leaves(size)
        root = merkle_root(leaves)
        out.extend((leaves, i, inclusion_path(leaves, i), root) for i in range(size))
    return out


PROOFS = _proofs(17)


def test_a_flipped_bit_anywhere_breaks_the_proof() -> None:
    for leaves, index, path, root in PROOFS:
        size, leaf = len(leaves), leaves[index]
        for j, node in enumerate(path):
            for bit in range(0, 256, 7):
                bad = [*path[:j], flip(node, bit), *path[j + 1 :]]
                assert not verify_inclusion(leaf, index, size, bad, root)
        for bit in range(0, 256, 5):
            assert not verify_inclusion(leaf, index, size, path, flip(root, bit))
        for bit in range(len(leaf) * 8):
            assert not verify_inclusion(flip(leaf, bit), index, size, path, root)


def test_a_wrong_index_breaks_the_proof() -> None:
    for leaves, index, path, root in PROOFS:
        size = len(leaves)
        for other in range(-2, size + 2):
            if other != index:
                assert not verify_inclusion(leaves[index], other, size, path, root)


def test_a_wrong_size_breaks_the_proof_unless_the_path_shape_is_the_same() -> None:
    """RFC 9162 verification binds the size only through the path's shape.

    The root commits to the tree, so a proof checked against the right root but a wrong
    size still verifies exactly when that size gives the leaf the same sibling
    sequence (e.g. leaf 0 in trees of 5..8 leaves). Every other wrong size fails.
    """
    caught = 0
    for leaves, index, path, root in PROOFS:
        size = len(leaves)
        for other in range(0, 2 * size + 3):
            if other == size:
                continue
            same_shape = index < other and ref_shape(index, other) == ref_shape(index, size)
            assert verify_inclusion(leaves[index], index, other, path, root) == same_shape
            caught += not same_shape
    assert caught > 1000


def test_a_wrong_size_always_fails_for_the_last_leaf_of_an_odd_tree() -> None:
    for size in range(3, 41, 2):
        leaves = distinct_leaves(size)
        root, index = merkle_root(leaves), size - 1
        path = inclusion_path(leaves, index)
        for other in (size - 1, size + 1, size + 2, 2 * size):
            assert not verify_inclusion(leaves[index], index, other, path, root)


def test_a_truncated_or_extended_path_breaks_the_proof() -> None:
    for leaves, index, path, root in PROOFS:
        size, leaf = len(leaves), leaves[index]
        for cut in range(len(path)):
            assert not verify_inclusion(leaf, index, size, path[:cut], root)
        for extra in (root, path[-1] if path else leaf_hash(leaf), bytes(32)):
            assert not verify_inclusion(leaf, index, size, [*path, extra], root)
            assert not verify_inclusion(leaf, index, size, [extra, *path], root)
        if len(path) > 1:
            assert not verify_inclusion(leaf, index, size, path[::-1], root)


def test_a_proof_for_one_tree_does_not_verify_against_another() -> None:
    leaves = distinct_leaves(11)
    other = [*leaves[:-1], b"other"]
    for index in range(10):
        path = inclusion_path(leaves, index)
        assert not verify_inclusion(leaves[index], index, 11, path, merkle_root(other))


def test_a_leaf_hash_is_not_accepted_as_an_interior_node() -> None:
    """Second preimage: claiming an interior node as a leaf of a smaller tree fails."""
    leaves = distinct_leaves(4)
    root = merkle_root(leaves)
    left = node_hash(leaf_hash(leaves[0]), leaf_hash(leaves[1]))
    right = node_hash(leaf_hash(leaves[2]), leaf_hash(leaves[3]))
    assert node_hash(left, right) == root
    # The two children of the root, presented as raw leaves of a 2-leaf tree.
    assert not verify_inclusion(left, 0, 2, [right], root)
    assert merkle_root([left, right]) != root


def test_degenerate_sizes_never_verify() -> None:
    leaf = b"x"
    root = merkle_root([leaf])
    assert verify_inclusion(leaf, 0, 1, [], root)
    assert not verify_inclusion(leaf, 0, 0, [], root)
    assert not verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf, -1, 1, [], root)
    assert not verify_inclusion(leaf, 1, 1, [], root)
    assert not verify_inclusion(leaf, 0, 1, [root], root)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(2, 200), data=st.data())
def test_mutated_proofs_fail(size: int, data: st.DataObject) -> None:
    leaves = distinct_leaves(size)
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, size - 1))
    path = inclusion_path(leaves, index)
    leaf = leaves[index]
    j = data.draw(st.integers(0, len(path) - 1))
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(
        leaf, index, size, [*path[:j], flip(path[j], bit), *path[j + 1 :]], root
    )
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    assert not verify_inclusion(leaf, other, size, path, root)
    assert not verify_inclusion(leaves[other], index, size, path, root)
    assert not verify_inclusion(leaf, index, size, path[:-1], root)
    assert not verify_inclusion(leaf, index, size, [*path, path[-1]], root)

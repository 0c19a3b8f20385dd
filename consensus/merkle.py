"""Merkle trees as in RFC 9162 (Certificate Transparency 2.0), SHA-256.

Leaf hash = SHA-256(0x00 || leaf); interior node = SHA-256(0x01 || left || right);
the split point is the largest power of two smaller than the number of leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Bottom-up pairing gives the same tree as the RFC's recursive split: an odd node
    # is promoted unchanged, which is where the largest-power-of-two split puts it.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    return root_from_hashes([leaf_hash(leaf) for leaf in leaves])


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf ``index`` (RFC 9162 section 2.1.3.1), leaf to root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range for a tree of {len(leaves)}")
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _path(hashes, index)


def _path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    n = len(hashes)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return [*_path(hashes[:k], index), root_from_hashes(hashes[k:])]
    return [*_path(hashes[k:], index - k), root_from_hashes(hashes[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2 verification of an audit path."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root

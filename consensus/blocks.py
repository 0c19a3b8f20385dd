"""Batches, blocks and commit certificates.

Consensus agrees on a *batch* per height; its digest covers the header fields except
the parent hash. The parent hash is derived when the block commits: a proposal at
height h+1 therefore never depends on an uncommitted proposal at h, so the primary can
pipeline proposals and a view change that replaces h leaves h+1 well-formed.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import encode_value, pack
from consensus.crypto import DIGEST_SIZE, SIGNATURE_SIZE, hash_bytes
from consensus.membership import Membership
from consensus.merkle import merkle_root

GENESIS_PARENT = bytes(DIGEST_SIZE)


@dataclass(frozen=True)
class Batch:
    """What the primary proposes for one height: a timestamp and opaque requests."""

    height: int
    timestamp_ms: int
    txs: tuple[bytes, ...]

    def digest(self, chain_id: str) -> bytes:
        return batch_digest(
            chain_id, self.height, self.timestamp_ms, len(self.txs), merkle_root(self.txs)
        )

    @property
    def size_bytes(self) -> int:
        return sum(len(tx) for tx in self.txs)


def batch_digest(
    chain_id: str, height: int, timestamp_ms: int, tx_count: int, tx_root: bytes
) -> bytes:
    return hash_bytes("batch", pack([chain_id, height, timestamp_ms, tx_count, tx_root]))


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    timestamp_ms: int
    tx_count: int
    tx_root: bytes
    parent_hash: bytes

    def batch_digest(self) -> bytes:
        return batch_digest(
            self.chain_id, self.height, self.timestamp_ms, self.tx_count, self.tx_root
        )

    def hash(self) -> bytes:
        return hash_bytes("block", encode_value(self))


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]

    @staticmethod
    def from_batch(chain_id: str, batch: Batch, parent_hash: bytes) -> Block:
        header = BlockHeader(
            chain_id=chain_id,
            height=batch.height,
            timestamp_ms=batch.timestamp_ms,
            tx_count=len(batch.txs),
            tx_root=merkle_root(batch.txs),
            parent_hash=parent_hash,
        )
        return Block(header, batch.txs)

    def to_batch(self) -> Batch:
        return Batch(self.header.height, self.header.timestamp_ms, self.txs)

    def hash(self) -> bytes:
        return self.header.hash()


@dataclass(frozen=True)
class CommitSignature:
    member: int
    signature: bytes


@dataclass(frozen=True)
class Certificate:
    """q COMMIT signatures from distinct members on (view, height, digest)."""

    view: int
    height: int
    digest: bytes
    signatures: tuple[CommitSignature, ...]


class CertificateError(ValueError):
    """A block and certificate that do not prove finality; the message says why."""


def commit_body(view: int, height: int, digest: bytes) -> bytes:
    """The signed body of a COMMIT vote (shared by messages and certificates)."""
    return pack([view, height, digest])


COMMIT_KIND = "commit"


def check_certificate(membership: Membership, cert: Certificate) -> None:
    """Raise ``CertificateError`` unless ``cert`` holds a quorum of valid COMMITs."""
    if len(cert.digest) != DIGEST_SIZE:
        raise CertificateError(f"digest must be {DIGEST_SIZE} bytes")
    seen: set[int] = set()
    body = commit_body(cert.view, cert.height, cert.digest)
    for sig in cert.signatures:
        if sig.member in seen:
            raise CertificateError(f"member {sig.member} signed twice")
        if not membership.is_member(sig.member):
            raise CertificateError(f"signer {sig.member} is not a member")
        if len(sig.signature) != SIGNATURE_SIZE:
            raise CertificateError(f"signature of member {sig.member} has the wrong length")
        if not membership.verify(sig.member, COMMIT_KIND, body, sig.signature):
            raise CertificateError(f"signature of member {sig.member} does not verify")
        seen.add(sig.member)
    if len(seen) < membership.quorum:
        raise CertificateError(
            f"{len(seen)} commit signatures, a quorum of {membership.quorum} is needed"
        )


def check_block_certificate(membership: Membership, block: Block, cert: Certificate) -> None:
    """Verify a (block, certificate) pair against the member list alone."""
    header = block.header
    if header.chain_id != membership.chain_id:
        raise CertificateError(
            f"block is for chain {header.chain_id!r}, not {membership.chain_id!r}"
        )
    if cert.height != header.height:
        raise CertificateError(f"certificate is for height {cert.height}, block is {header.height}")
    if header.tx_count != len(block.txs):
        raise CertificateError("header transaction count does not match the body")
    if merkle_root(block.txs) != header.tx_root:
        raise CertificateError("Merkle root does not match the transactions")
    if header.batch_digest() != cert.digest:
        raise CertificateError("certificate digest does not match the block")
    check_certificate(membership, cert)

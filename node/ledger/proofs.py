"""Inclusion proofs: one file that shows, offline and with nothing but the genesis file,
that a transaction is final on the ledger.

A proof holds the transaction, its index, its RFC 9162 audit path, the block header and
the commit certificate the issuing node stored. ``ProofVerifier`` recomputes the header's
Merkle root from the transaction and path, taking the tree size from the header's
``tx_count`` (an audit path alone also verifies for a wrong size when the tree's layout
matches, e.g. leaf 0 in trees of 5 to 8 leaves, so the size must come from what the
certificate covers), checks that the certificate's quorum signed that header's batch,
and checks the transaction's own signature by its member. That makes the transaction
final at that place in the ledger; whether the application counted it (a replayed nonce
is ordered and stored, but indexed under nothing) is for a node's ledger to say.

What the signatures do not cover: the header's parent hash. Consensus certifies the
batch digest, and the parent link is derived at commit (see ``consensus.blocks``), so
the block hash a proof shows is only as good as the node that issued it. The file's
checksum catches corruption there as everywhere else, but it is not a signature.

File layout (all integers big-endian)::

    0   12  magic: 89 "CTPROOF" 0d 0a 1a 0a (a binary file that text-mode copying breaks
            visibly, as PNG's signature does)
    12   1  format version, 1
    13   4  body length n
    17   n  body: the canonical msgpack of ``InclusionProof``
    17+n 32 checksum: domain-separated BLAKE2b-256 of bytes 0 .. 17+n

Decoding accepts exactly one spelling per proof: the body must re-encode to the same
bytes, and nothing may follow the checksum, so no byte of a valid file can change
without the file being rejected.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.blocks import COMMIT_KIND, GENESIS_PARENT, BlockHeader, Certificate, commit_body
from consensus.codec import DecodeError, decode_value, encode_value
from consensus.crypto import DIGEST_SIZE, SIGNATURE_SIZE, hash_bytes, verify_signature
from consensus.membership import MAX_MEMBERS
from consensus.merkle import inclusion_path, verify_inclusion
from node.ledger.store import LedgerStore, StoreCorruptError
from node.ledger.transactions import MAX_TX_BYTES, decode_tx, signed_message, tx_id
from node.setup.genesis import Genesis

MAGIC = b"\x89CTPROOF\r\n\x1a\n"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">B I")
HEADER_SIZE = len(MAGIC) + _HEAD.size
CHECKSUM_SIZE = DIGEST_SIZE
# A block holds at most 2**32 transactions, so no audit path is longer than 32 hashes.
MAX_PATH = 32
# The largest proof: the largest transaction, the longest path, a signature from every
# member, and room for the msgpack framing around them.
MAX_BODY_BYTES = MAX_TX_BYTES + MAX_PATH * (DIGEST_SIZE + 2) + MAX_MEMBERS * 80 + 1024
MAX_FILE_BYTES = HEADER_SIZE + MAX_BODY_BYTES + CHECKSUM_SIZE
FILE_SUFFIX = ".ctp"


class ProofError(ValueError):
    """A proof file that does not prove what it claims; the message says exactly why."""


@dataclass(frozen=True)
class InclusionProof:
    genesis_hash: bytes
    header: BlockHeader
    index: int
    tx: bytes
    path: tuple[bytes, ...]
    certificate: Certificate

    @property
    def tx_id(self) -> bytes:
        return tx_id(self.tx)


@dataclass(frozen=True)
class ProofSummary:
    """What a verified proof establishes, for people (``summary_lines``) and tools."""

    chain_id: str
    genesis_hash: bytes
    tx_id: bytes
    kind: str
    member: str
    member_index: int
    nonce: int
    tx_time_ms: int
    height: int
    index: int
    tx_count: int
    block_time_ms: int
    batch_digest: bytes
    block_hash: bytes
    view: int
    signers: tuple[str, ...]
    quorum: int
    members: int


def proof_file_name(wanted: bytes) -> str:
    """The default file name of a transaction's proof."""
    return f"proof-{wanted.hex()[:16]}{FILE_SUFFIX}"


# ------------------------------------------------------------------ building


def build_proof(store: LedgerStore, wanted: bytes) -> InclusionProof | None:
    """The proof of a committed transaction, or None when the store does not hold it."""
    location = store.tx_location(wanted)
    if location is None:
        return None
    height, index = location
    block = store.block(height)
    cert = store.certificate(height)
    if block is None or cert is None:
        raise StoreCorruptError(f"transaction index points at block {height}, which is missing")
    if not index < len(block.txs) or tx_id(block.txs[index]) != wanted:
        raise StoreCorruptError(f"transaction index points at the wrong place in block {height}")
    return InclusionProof(
        genesis_hash=store.genesis_hash,
        header=block.header,
        index=index,
        tx=block.txs[index],
        path=tuple(inclusion_path(block.txs, index)),
        certificate=cert,
    )


# ------------------------------------------------------------------ the file format


def _checksum(data: bytes) -> bytes:
    return hash_bytes("proof-file", data)


def encode_proof(proof: InclusionProof) -> bytes:
    body = encode_value(proof)
    head = MAGIC + _HEAD.pack(FORMAT_VERSION, len(body)) + body
    return head + _checksum(head)


def decode_proof(data: bytes) -> InclusionProof:
    """Strict inverse of ``encode_proof``; ``ProofError`` for anything else."""
    data = bytes(data)
    size = len(data)
    if size < len(MAGIC):
        if MAGIC.startswith(data):
            raise ProofError(f"truncated: {size} bytes, the header alone takes {HEADER_SIZE}")
        raise ProofError("not a crosstrace proof file (bad magic)")
    if not data.startswith(MAGIC):
        raise ProofError("not a crosstrace proof file (bad magic)")
    if size < HEADER_SIZE:
        raise ProofError(f"truncated: {size} bytes, the header alone takes {HEADER_SIZE}")
    version, length = _HEAD.unpack_from(data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ProofError(
            f"proof format version {version} is not supported (this crosstrace reads "
            f"version {FORMAT_VERSION})"
        )
    if length > MAX_BODY_BYTES:
        raise ProofError(
            f"the header announces a body of {length} bytes, more than any proof ({MAX_BODY_BYTES})"
        )
    expected = HEADER_SIZE + length + CHECKSUM_SIZE
    if size < expected:
        raise ProofError(f"truncated: {size} bytes, the header announces {expected}")
    if size > expected:
        raise ProofError(f"{size - expected} unexpected bytes after the end of the proof")
    end = HEADER_SIZE + length
    if _checksum(data[:end]) != data[end:]:
        raise ProofError("damaged: the checksum does not match the contents")
    try:
        proof = decode_value(InclusionProof, data[HEADER_SIZE:end], max_bytes=MAX_BODY_BYTES)
    except DecodeError as exc:
        raise ProofError(f"the proof does not decode: {exc}") from None
    _check_shape(proof)
    return proof


def _check_shape(proof: InclusionProof) -> None:
    def digest(value: bytes, where: str) -> None:
        if len(value) != DIGEST_SIZE:
            raise ProofError(f"malformed: {where} is {len(value)} bytes, not {DIGEST_SIZE}")

    digest(proof.genesis_hash, "the genesis hash")
    digest(proof.header.tx_root, "the header's Merkle root")
    digest(proof.header.parent_hash, "the header's parent hash")
    digest(proof.certificate.digest, "the certificate's digest")
    if len(proof.path) > MAX_PATH:
        raise ProofError(
            f"malformed: a Merkle path of {len(proof.path)} hashes (at most {MAX_PATH})"
        )
    for i, node in enumerate(proof.path):
        digest(node, f"Merkle path hash {i}")
    if not proof.tx:
        raise ProofError("malformed: the transaction is empty")
    if len(proof.certificate.signatures) > MAX_MEMBERS:
        raise ProofError(f"malformed: more than {MAX_MEMBERS} certificate signatures")
    for sig in proof.certificate.signatures:
        if len(sig.signature) != SIGNATURE_SIZE:
            raise ProofError(
                f"malformed: the signature of member #{sig.member} is {len(sig.signature)} "
                f"bytes, not {SIGNATURE_SIZE}"
            )


# ------------------------------------------------------------------ verifying


class ProofVerifier:
    """Checks proofs against one genesis and nothing else. The genesis hash and member
    list are computed once, which matters when many proofs are checked."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.genesis_hash = genesis.hash()
        self.membership = genesis.membership()

    def verify_file(self, data: bytes) -> ProofSummary:
        return self.verify(decode_proof(data))

    def verify(self, proof: InclusionProof) -> ProofSummary:
        """The summary of a valid proof; ``ProofError`` says what failed otherwise."""
        genesis = self.genesis
        header, cert = proof.header, proof.certificate
        if header.chain_id != genesis.chain_id:
            raise ProofError(
                f"chain id {header.chain_id!r} is not the genesis's {genesis.chain_id!r}"
            )
        if proof.genesis_hash != self.genesis_hash:
            # Local test networks all share a chain id: say which genesis the proof needs.
            raise ProofError(
                f"the proof is for the genesis with hash {proof.genesis_hash.hex()[:16]}..., "
                f"this genesis hashes to {self.genesis_hash.hex()[:16]}... (same chain id, "
                "another consortium)"
            )
        if header.height < 1:
            raise ProofError("the header is for height 0, where no block exists")
        if header.height == 1 and header.parent_hash != GENESIS_PARENT:
            raise ProofError("block 1's parent hash is not the genesis placeholder (all zeros)")
        if cert.height != header.height:
            raise ProofError(
                f"the certificate is for height {cert.height}, the header for {header.height}"
            )
        _check_inclusion(proof)
        if header.batch_digest() != cert.digest:
            raise ProofError(
                "the certificate signs another batch: its digest does not match the header"
            )
        signers = self._check_certificate(cert)
        return self._check_transaction(proof, signers)

    def _check_certificate(self, cert: Certificate) -> tuple[int, ...]:
        """``consensus.blocks.check_certificate``'s rules, with member names in the
        messages."""
        membership = self.membership
        body = commit_body(cert.view, cert.height, cert.digest)
        seen: list[int] = []
        for sig in cert.signatures:
            member = sig.member
            if not membership.is_member(member):
                raise ProofError(
                    f"certificate: signer #{member} is not a member "
                    f"(the genesis has {membership.n})"
                )
            who = f"{self.genesis.members[member].name} (#{member})"
            if member in seen:
                raise ProofError(f"certificate: member {who} signs twice")
            if not membership.verify(member, COMMIT_KIND, body, sig.signature):
                raise ProofError(f"certificate: member {who}'s signature is invalid")
            seen.append(member)
        if len(seen) < membership.quorum:
            raise ProofError(
                f"certificate: {len(seen)} valid signatures, a quorum is {membership.quorum} "
                f"of the {membership.n} members"
            )
        return tuple(seen)

    def _check_transaction(self, proof: InclusionProof, signers: tuple[int, ...]) -> ProofSummary:
        genesis = self.genesis
        try:
            tx = decode_tx(proof.tx)
        except DecodeError as exc:
            raise ProofError(f"the transaction does not decode: {exc}") from None
        if tx.chain_id != genesis.chain_id:
            raise ProofError(
                f"the transaction is for chain {tx.chain_id!r}, not {genesis.chain_id!r}"
            )
        member = genesis.member_by_name(tx.member)
        if member is None:
            raise ProofError(f"the transaction's member {tx.member!r} is not in the genesis")
        # Admission accepts a member's genesis key only (``member_table``), so a committed
        # transaction signed with any other key cannot be genuine.
        if member.public_key != tx.signer_key:
            raise ProofError(f"the transaction is not signed with member {tx.member!r}'s key")
        if not verify_signature(tx.signer_key, signed_message(tx.unsigned()), tx.signature):
            raise ProofError(f"the transaction's signature by {tx.member!r} is invalid")
        header, cert = proof.header, proof.certificate
        return ProofSummary(
            chain_id=header.chain_id,
            genesis_hash=self.genesis_hash,
            tx_id=proof.tx_id,
            kind=tx.kind,
            member=tx.member,
            member_index=genesis.members.index(member),
            nonce=tx.nonce,
            tx_time_ms=tx.time_ms,
            height=header.height,
            index=proof.index,
            tx_count=header.tx_count,
            block_time_ms=header.timestamp_ms,
            batch_digest=cert.digest,
            block_hash=header.hash(),
            view=cert.view,
            signers=tuple(genesis.members[i].name for i in signers),
            quorum=self.membership.quorum,
            members=self.membership.n,
        )


def verify_proof(proof: InclusionProof, genesis: Genesis) -> ProofSummary:
    return ProofVerifier(genesis).verify(proof)


def verify_proof_file(data: bytes, genesis: Genesis) -> ProofSummary:
    return ProofVerifier(genesis).verify_file(data)


def path_length(index: int, size: int) -> int:
    """The number of hashes in the audit path of leaf ``index`` in a tree of ``size``."""
    count = 0
    while size > 1:
        split = 1 << ((size - 1).bit_length() - 1)  # the largest power of two < size
        if index < split:
            size = split
        else:
            index, size = index - split, size - split
        count += 1
    return count


def _check_inclusion(proof: InclusionProof) -> None:
    size = proof.header.tx_count
    if not proof.index < size:
        raise ProofError(
            f"leaf index {proof.index} is outside the block's {size} transaction"
            f"{'' if size == 1 else 's'}"
        )
    needed = path_length(proof.index, size)
    if len(proof.path) != needed:
        raise ProofError(
            f"the Merkle path has {len(proof.path)} hashes; leaf {proof.index} of a block of "
            f"{size} transactions needs {needed}"
        )
    if not verify_inclusion(proof.tx, proof.index, size, proof.path, proof.header.tx_root):
        raise ProofError("the Merkle path does not lead to the header's root")


def _time(ms: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def summary_lines(s: ProofSummary) -> Sequence[str]:
    return [
        f"proof OK: transaction {s.tx_id.hex()[:16]} is final in block {s.height} "
        f"of chain {s.chain_id}",
        f"  tx id        {s.tx_id.hex()}",
        f"  transaction  {s.kind} by {s.member} (#{s.member_index}), nonce {s.nonce}, "
        f"signed at {_time(s.tx_time_ms)}",
        f"  block        height {s.height}, index {s.index} of {s.tx_count}, "
        f"time {_time(s.block_time_ms)}",
        f"  batch digest {s.batch_digest.hex()} (signed)",
        # The certificate signs the batch digest; the block hash also covers the parent
        # hash, which only the issuing node vouches for.
        f"  block hash   {s.block_hash.hex()} (parent unsigned)",
        f"  certificate  view {s.view}, signed by {', '.join(s.signers)} "
        f"({len(s.signers)} of {s.members}, quorum {s.quorum})",
        f"  genesis      {s.genesis_hash.hex()}",
    ]

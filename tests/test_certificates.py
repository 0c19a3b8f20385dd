"""Commit certificates: a block is final when q members signed COMMIT for its digest.

Builds real blocks and Ed25519 commit signatures, then checks that
``check_block_certificate`` accepts exactly the valid pairs and names the reason for
every rejection. Ends with the PBFT quorum arithmetic the certificates rely on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocks import (
    COMMIT_KIND,
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CertificateError,
    CommitSignature,
    check_block_certificate,
    check_certificate,
    commit_body,
)
from consensus.crypto import Signer, signing_bytes
from consensus.membership import MAX_MEMBERS, MIN_MEMBERS, Membership
from consensus.messages import Commit, sign

CHAIN = "test-chain"
SIGNERS = tuple(Signer(bytes([i + 1]) * 32) for i in range(7))
MEMBERSHIP = Membership(CHAIN, tuple(s.public_key for s in SIGNERS[:4]))
Q = MEMBERSHIP.quorum
VIEW = 2
BATCH = Batch(height=5, timestamp_ms=1_700_000_000_000, txs=(b"tx-a", b"tx-b", b"tx-c"))
BLOCK = Block.from_batch(CHAIN, BATCH, GENESIS_PARENT)
DIGEST = BATCH.digest(CHAIN)


def commit_sig(
    member: int,
    view: int = VIEW,
    height: int = BATCH.height,
    digest: bytes = DIGEST,
    chain_id: str = CHAIN,
    signer: Signer | None = None,
) -> CommitSignature:
    key = SIGNERS[member] if signer is None else signer
    body = commit_body(view, height, digest)
    return CommitSignature(member, key.sign(signing_bytes(chain_id, COMMIT_KIND, body)))


def certificate(
    members: list[int],
    view: int = VIEW,
    height: int = BATCH.height,
    digest: bytes = DIGEST,
    chain_id: str = CHAIN,
) -> Certificate:
    sigs = tuple(commit_sig(m, view, height, digest, chain_id) for m in members)
    return Certificate(view, height, digest, sigs)


def rejects(match: str, block: Block, cert: Certificate, m: Membership = MEMBERSHIP) -> None:
    with pytest.raises(CertificateError, match=match):
        check_block_certificate(m, block, cert)


def replace_header(block: Block, **changes: object) -> Block:
    return Block(dataclasses.replace(block.header, **changes), block.txs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Acceptance
# --------------------------------------------------------------------------------------


def test_the_block_is_built_from_the_batch() -> None:
    h = BLOCK.header
    assert (h.chain_id, h.height, h.timestamp_ms, h.tx_count) == (CHAIN, 5, BATCH.timestamp_ms, 3)
    assert h.batch_digest() == DIGEST
    assert BLOCK.to_batch() == BATCH


def test_a_quorum_of_valid_commits_is_accepted() -> None:
    assert Q == 3
    check_block_certificate(MEMBERSHIP, BLOCK, certificate([0, 1, 2]))


@pytest.mark.parametrize("members", [*itertools.permutations(range(4), 3), (3, 1, 0, 2)])
def test_any_quorum_in_any_order_is_accepted(members: tuple[int, ...]) -> None:
    check_block_certificate(MEMBERSHIP, BLOCK, certificate(list(members)))


def test_commit_messages_and_certificate_entries_share_signatures() -> None:
    """A COMMIT message's signature is a valid certificate entry as is."""
    commits = [
        sign(Commit, SIGNERS[m], CHAIN, view=VIEW, seq=BATCH.height, digest=DIGEST, sender=m)
        for m in (1, 2, 3)
    ]
    assert all(c.verify(MEMBERSHIP) for c in commits)
    sigs = tuple(CommitSignature(c.sender, c.signature) for c in commits)
    check_block_certificate(MEMBERSHIP, BLOCK, Certificate(VIEW, BATCH.height, DIGEST, sigs))


def test_the_parent_hash_is_not_certified() -> None:
    """The digest covers the batch, not the parent: the parent is derived at commit."""
    other_parent = replace_header(BLOCK, parent_hash=b"\x07" * 32)
    check_block_certificate(MEMBERSHIP, other_parent, certificate([0, 1, 2]))


def test_an_empty_block_can_be_certified() -> None:
    batch = Batch(1, 1, ())
    block = Block.from_batch(CHAIN, batch, GENESIS_PARENT)
    digest = batch.digest(CHAIN)
    sigs = tuple(commit_sig(m, height=1, digest=digest) for m in range(Q))
    check_block_certificate(MEMBERSHIP, block, Certificate(VIEW, 1, digest, sigs))


# --------------------------------------------------------------------------------------
# Rejection, one reason at a time
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", range(Q))
def test_too_few_signatures(count: int) -> None:
    rejects(
        f"{count} commit signatures, a quorum of {Q} is needed",
        BLOCK,
        certificate(list(range(count))),
    )


def test_a_duplicate_signer() -> None:
    cert = certificate([0, 1, 1])
    rejects("member 1 signed twice", BLOCK, cert)
    # Even with a quorum of distinct members besides the repeat.
    rejects("member 0 signed twice", BLOCK, certificate([0, 1, 2, 0]))


def test_a_duplicate_signer_does_not_count_twice_towards_the_quorum() -> None:
    cert = certificate([0, 1])
    padded = Certificate(
        cert.view, cert.height, cert.digest, (*cert.signatures, cert.signatures[1])
    )
    rejects("signed twice", BLOCK, padded)


@pytest.mark.parametrize("member", [4, 5, 127, 2**64 - 1])
def test_a_signer_not_in_the_membership(member: int) -> None:
    good = certificate([0, 1])
    outsider = CommitSignature(member, commit_sig(0).signature)
    cert = Certificate(VIEW, BATCH.height, DIGEST, (*good.signatures, outsider))
    rejects(f"signer {member} is not a member", BLOCK, cert)


def test_an_outsider_key_signing_as_a_member() -> None:
    """Member 2's slot signed by a key that is not member 2's."""
    forged = commit_sig(2, signer=SIGNERS[5])
    cert = Certificate(VIEW, BATCH.height, DIGEST, (commit_sig(0), commit_sig(1), forged))
    rejects("signature of member 2 does not verify", BLOCK, cert)


def test_a_signature_attributed_to_another_member() -> None:
    stolen = CommitSignature(2, commit_sig(3).signature)
    cert = Certificate(VIEW, BATCH.height, DIGEST, (commit_sig(0), commit_sig(1), stolen))
    rejects("signature of member 2 does not verify", BLOCK, cert)


@pytest.mark.parametrize("bit", [0, 7, 100, 255, 256, 511])
def test_a_bad_signature(bit: int) -> None:
    sig = bytearray(commit_sig(1).signature)
    sig[bit // 8] ^= 1 << (bit % 8)
    cert = Certificate(
        VIEW, BATCH.height, DIGEST, (commit_sig(0), CommitSignature(1, bytes(sig)), commit_sig(2))
    )
    rejects("signature of member 1 does not verify", BLOCK, cert)


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_a_signature_of_the_wrong_length(length: int) -> None:
    sig = (commit_sig(1).signature * 2)[:length]
    cert = Certificate(
        VIEW, BATCH.height, DIGEST, (commit_sig(0), CommitSignature(1, sig), commit_sig(2))
    )
    rejects("signature of member 1 has the wrong length", BLOCK, cert)


def test_an_extra_bad_signature_spoils_a_quorum() -> None:
    """check_certificate is strict: one invalid entry rejects the whole certificate."""
    bad = CommitSignature(3, bytes(64))
    cert = Certificate(VIEW, BATCH.height, DIGEST, (*certificate([0, 1, 2]).signatures, bad))
    rejects("signature of member 3 does not verify", BLOCK, cert)


def test_signatures_for_another_view() -> None:
    cert = certificate([0, 1, 2], view=VIEW + 1)
    check_block_certificate(MEMBERSHIP, BLOCK, cert)  # any single view is fine
    relabeled = Certificate(VIEW, cert.height, cert.digest, cert.signatures)
    rejects("signature of member 0 does not verify", BLOCK, relabeled)


def test_a_block_of_another_chain() -> None:
    other = Membership("other-chain", MEMBERSHIP.public_keys)
    rejects(
        "block is for chain 'test-chain', not 'other-chain'", BLOCK, certificate([0, 1, 2]), other
    )


def test_signatures_made_for_another_chain() -> None:
    """Same keys, same (view, height, digest), but signed under another chain id."""
    cert = certificate([0, 1, 2], chain_id="other-chain")
    rejects("signature of member 0 does not verify", BLOCK, cert)


def test_a_block_relabeled_to_another_chain() -> None:
    """Header chain id changed to match the verifier: the digest no longer matches."""
    other = Membership("other-chain", MEMBERSHIP.public_keys)
    relabeled = replace_header(BLOCK, chain_id="other-chain")
    rejects("certificate digest does not match the block", relabeled, certificate([0, 1, 2]), other)


@pytest.mark.parametrize("height", [0, 4, 6, 2**64 - 1])
def test_a_height_mismatch(height: int) -> None:
    cert = certificate([0, 1, 2], height=height)
    rejects(f"certificate is for height {height}, block is 5", BLOCK, cert)


def test_a_block_header_with_another_height() -> None:
    moved = replace_header(BLOCK, height=6)
    rejects("certificate is for height 5, block is 6", moved, certificate([0, 1, 2]))


@pytest.mark.parametrize(
    "txs",
    [
        (b"tx-a", b"tx-b", b"tx-X"),
        (b"tx-b", b"tx-a", b"tx-c"),
        (b"tx-a", b"tx-b", b"tx-c\x00"),
        (b"", b"", b""),
    ],
    ids=["changed", "reordered", "extended", "emptied"],
)
def test_a_tampered_transaction_list(txs: tuple[bytes, ...]) -> None:
    tampered = Block(BLOCK.header, txs)
    rejects("Merkle root does not match the transactions", tampered, certificate([0, 1, 2]))


def test_a_tampered_merkle_root() -> None:
    tampered = replace_header(BLOCK, tx_root=bytes(32))
    rejects("Merkle root does not match the transactions", tampered, certificate([0, 1, 2]))


def test_a_consistent_rewrite_of_the_block_has_another_digest() -> None:
    """Changing the transactions and recomputing the header still fails on the digest."""
    forged_batch = Batch(BATCH.height, BATCH.timestamp_ms, (b"tx-a", b"tx-b", b"evil"))
    forged = Block.from_batch(CHAIN, forged_batch, GENESIS_PARENT)
    rejects("certificate digest does not match the block", forged, certificate([0, 1, 2]))


def test_a_digest_mismatch() -> None:
    """A genuine quorum certificate, but for another batch at the same height."""
    other = Batch(BATCH.height, BATCH.timestamp_ms + 1, BATCH.txs)
    cert = certificate([0, 1, 2], digest=other.digest(CHAIN))
    check_block_certificate(MEMBERSHIP, Block.from_batch(CHAIN, other, GENESIS_PARENT), cert)
    rejects("certificate digest does not match the block", BLOCK, cert)


def test_a_tampered_timestamp() -> None:
    moved = replace_header(BLOCK, timestamp_ms=BATCH.timestamp_ms + 1)
    rejects("certificate digest does not match the block", moved, certificate([0, 1, 2]))


@pytest.mark.parametrize("tx_count", [0, 2, 4, 1000])
def test_a_header_tx_count_mismatch(tx_count: int) -> None:
    wrong = replace_header(BLOCK, tx_count=tx_count)
    rejects("header transaction count does not match the body", wrong, certificate([0, 1, 2]))


def test_a_dropped_transaction_with_a_consistent_count() -> None:
    """Dropping a tx and fixing the count leaves the Merkle root wrong."""
    dropped = Block(replace_header(BLOCK, tx_count=2).header, BLOCK.txs[:2])
    rejects("Merkle root does not match the transactions", dropped, certificate([0, 1, 2]))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_digest_of_the_wrong_size(size: int) -> None:
    cert = Certificate(VIEW, BATCH.height, bytes(size), certificate([0, 1, 2]).signatures)
    with pytest.raises(CertificateError, match="digest must be 32 bytes"):
        check_certificate(MEMBERSHIP, cert)


def test_certificate_error_is_a_value_error() -> None:
    assert issubclass(CertificateError, ValueError)


# --------------------------------------------------------------------------------------
# Randomised: accepted iff a quorum of distinct, valid members signed
# --------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(4, 7),
    data=st.data(),
)
def test_acceptance_is_exactly_a_quorum_of_valid_commits(n: int, data: st.DataObject) -> None:
    membership = Membership(CHAIN, tuple(s.public_key for s in SIGNERS[:n]))
    members = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
    cert = certificate(members)
    if len(members) >= membership.quorum:
        check_block_certificate(membership, BLOCK, cert)
    else:
        with pytest.raises(CertificateError, match="a quorum of"):
            check_block_certificate(membership, BLOCK, cert)


# --------------------------------------------------------------------------------------
# Quorum arithmetic
# --------------------------------------------------------------------------------------


def membership_of(n: int) -> Membership:
    return Membership(CHAIN, tuple(bytes([i + 1]) * 32 for i in range(n)))


@pytest.mark.parametrize("n", range(4, 32))
def test_quorum_arithmetic(n: int) -> None:
    m = membership_of(n)
    f = (n - 1) // 3
    q = math.ceil((n + f + 1) / 2)
    assert m.n == n
    assert m.f == f
    assert m.quorum == q
    assert m.weak_quorum == f + 1
    assert 3 * f + 1 <= n  # f Byzantine members are tolerable
    assert q <= n - f  # liveness: the honest members alone form a quorum
    # Safety: the two quorums that overlap least still share f+1 members, so at least
    # one honest member; check it on the actual worst-case sets, not just the formula.
    members = list(range(n))
    first, last = set(members[:q]), set(members[n - q :])
    assert len(first & last) == 2 * q - n
    assert len(first & last) >= f + 1
    # And q is the smallest size that guarantees it.
    smaller_first, smaller_last = set(members[: q - 1]), set(members[n - q + 1 :])
    assert len(smaller_first & smaller_last) < f + 1


@pytest.mark.parametrize("n", range(4, 9))
def test_every_pair_of_quorums_intersects_in_f_plus_one(n: int) -> None:
    m = membership_of(n)
    quorums = [set(c) for c in itertools.combinations(range(n), m.quorum)]
    assert min(len(a & b) for a in quorums for b in quorums) >= m.f + 1


@pytest.mark.parametrize(
    ("n", "f", "q"),
    [(4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (10, 3, 7), (13, 4, 9), (31, 10, 21)],
)
def test_quorum_table(n: int, f: int, q: int) -> None:
    m = membership_of(n)
    assert (m.f, m.quorum) == (f, q)


def test_membership_size_limits() -> None:
    assert MIN_MEMBERS == 4
    with pytest.raises(ValueError, match="PBFT needs"):
        membership_of(3)
    assert membership_of(MAX_MEMBERS).n == MAX_MEMBERS
    with pytest.raises(ValueError, match="PBFT needs"):
        Membership(CHAIN, tuple(i.to_bytes(32, "big") for i in range(MAX_MEMBERS + 1)))

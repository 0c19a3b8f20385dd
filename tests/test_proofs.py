"""Inclusion proofs (``node.ledger.proofs``): built from a real certified ledger, checked with
the genesis alone; every byte of a proof file matters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proof_helpers import BASE_MS, certify, proof_genesis, report, write_ledger

from consensus.blocks import (
    Batch,
    Block,
    CertificateError,
    CommitSignature,
    check_certificate,
)
from consensus.codec import encode_value
from consensus.merkle import inclusion_path, verify_inclusion
from node.host.assemble import open_store
from node.ledger.proofs import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    MAGIC,
    InclusionProof,
    ProofError,
    ProofVerifier,
    build_proof,
    decode_proof,
    encode_proof,
    path_length,
    proof_file_name,
    summary_lines,
)
from node.ledger.transactions import decode_tx, encode_tx, tx_id
from node.setup.genesis import load_genesis, save_genesis
from node.testing.cluster import local_genesis

SIZES = tuple(range(1, 10))  # block h holds h transactions: trees of 1 to 9 leaves
GENESIS, SIGNERS = proof_genesis()
VERIFIER = ProofVerifier(GENESIS)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Block], Path]]:
    path = tmp_path_factory.mktemp("proofs") / "ledger"
    blocks = write_ledger(path, GENESIS, SIGNERS, SIZES)
    yield blocks, path


@pytest.fixture(scope="module")
def proofs(ledger: tuple[list[Block], Path]) -> dict[tuple[int, int], InclusionProof]:
    """The proof of every transaction, by (height, index)."""
    blocks, path = ledger
    out = {}
    with open_store(path, GENESIS) as store:
        for block in blocks:
            for i, tx in enumerate(block.txs):
                proof = build_proof(store, tx_id(tx))
                assert proof is not None
                out[block.header.height, i] = proof
    return out


def rejected(data: bytes, verifier: ProofVerifier = VERIFIER) -> str:
    with pytest.raises(ProofError) as info:
        verifier.verify_file(data)
    return str(info.value)


def reencoded(proof: InclusionProof, **changes: object) -> bytes:
    """A well-formed file (checksum and all) for ``proof`` with fields replaced."""
    return encode_proof(dataclasses.replace(proof, **changes))  # type: ignore[arg-type]


def with_checksum(data: bytes) -> bytes:
    """``data`` with its checksum recomputed: what a forger would do."""
    from consensus.crypto import hash_bytes

    body = data[:-CHECKSUM_SIZE]
    return body + hash_bytes("proof-file", body)


# ------------------------------------------------------------------ round trips


def test_every_leaf_of_trees_of_1_to_9_proves_and_verifies(
    ledger: tuple[list[Block], Path], proofs: dict[tuple[int, int], InclusionProof]
) -> None:
    blocks, _ = ledger
    assert len(proofs) == sum(SIZES)
    for (height, index), proof in proofs.items():
        block = blocks[height - 1]
        data = encode_proof(proof)
        assert data.startswith(MAGIC)
        assert decode_proof(data) == proof
        assert encode_proof(decode_proof(data)) == data
        assert len(proof.path) == path_length(index, height)
        summary = VERIFIER.verify_file(data)
        tx = decode_tx(block.txs[index])
        assert summary.tx_id == tx_id(block.txs[index])
        assert (summary.height, summary.index, summary.tx_count) == (height, index, height)
        assert (summary.kind, summary.member, summary.nonce) == ("report", tx.member, tx.nonce)
        assert GENESIS.members[summary.member_index].name == tx.member
        assert summary.block_hash == block.hash()
        assert summary.batch_digest == block.header.batch_digest()
        assert summary.block_time_ms == BASE_MS + height * 1000
        assert summary.signers == tuple(m.name for m in GENESIS.members[:3])
        assert summary.genesis_hash == GENESIS.hash() and summary.chain_id == "local"


def test_the_summary_names_the_transaction_block_and_signers(
    proofs: dict[tuple[int, int], InclusionProof],
) -> None:
    proof = proofs[5, 3]
    lines = summary_lines(VERIFIER.verify(proof))
    text = "\n".join(lines)
    assert lines[0].startswith("proof OK: transaction ")
    assert proof.tx_id.hex() in text
    assert "report by " in text and "height 5, index 3 of 5" in text
    assert proof.header.hash().hex() in text
    assert "signed by police-0, bank-1, telecom-2 (3 of 4, quorum 3)" in text


def test_an_unknown_transaction_has_no_proof(ledger: tuple[list[Block], Path]) -> None:
    _, path = ledger
    with open_store(path, GENESIS) as store:
        assert build_proof(store, bytes(32)) is None
        assert build_proof(store, b"short") is None


def test_default_file_name() -> None:
    assert proof_file_name(bytes(range(32))) == "proof-0001020304050607.ctp"


# ------------------------------------------------------------------ the tree size


def test_path_length_matches_rfc_9162_paths() -> None:
    for size in range(1, 70):
        leaves = [bytes([i]) for i in range(size)]
        for index in range(size):
            assert path_length(index, size) == len(inclusion_path(leaves, index))


def test_the_tree_size_comes_from_the_certified_header(
    proofs: dict[tuple[int, int], InclusionProof],
) -> None:
    # The known pitfall: leaf 0's audit path in a tree of 8 also verifies as leaf 0 of
    # trees of 5, 6 and 7 with the same root.
    proof = proofs[8, 0]
    for size in (5, 6, 7):
        assert verify_inclusion(proof.tx, 0, size, proof.path, proof.header.tx_root)
    # A proof has no tree size of its own: claiming another one means changing the
    # header, which the certificate then no longer covers, whatever the path does.
    for (height, index), original in proofs.items():
        for size in SIZES:
            if size == height:
                continue
            header = dataclasses.replace(original.header, tx_count=size)
            message = rejected(reencoded(original, header=header))
            if index >= size:
                assert "outside the block's" in message
            elif len(original.path) != path_length(index, size):
                assert "the Merkle path has" in message
            elif verify_inclusion(original.tx, index, size, original.path, original.header.tx_root):
                assert "signs another batch" in message
            else:
                assert "does not lead to the header's root" in message


def test_an_index_or_path_from_another_leaf_is_rejected(
    proofs: dict[tuple[int, int], InclusionProof],
) -> None:
    for (height, index), proof in proofs.items():
        for other in range(height):
            if other == index:
                continue
            message = rejected(reencoded(proof, index=other))
            assert "Merkle path" in message
            sibling = proofs[height, other]
            if sibling.path != proof.path:
                assert "Merkle path" in rejected(reencoded(proof, path=sibling.path))
            assert "Merkle path" in rejected(reencoded(proof, tx=sibling.tx))


# ------------------------------------------------------------------ every byte matters


def test_every_bit_flip_at_every_position_is_rejected(
    proofs: dict[tuple[int, int], InclusionProof],
) -> None:
    for key in ((1, 0), (9, 8), (6, 2)):
        data = encode_proof(proofs[key])
        for position in range(len(data)):
            for bit in range(8):
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                rejected(bytes(flipped))


def test_flips_with_a_recomputed_checksum_are_rejected_except_in_the_parent_hash(
    proofs: dict[tuple[int, int], InclusionProof],
) -> None:
    """Without the checksum, the canonical encoding and the signatures still catch every
    change, except in the parent hash, which the commit certificate does not cover
    (consensus certifies the batch digest; the parent link is derived at commit)."""
    proof = proofs[7, 4]
    data = encode_proof(proof)
    parent_at = data.index(proof.header.parent_hash)
    parent = range(parent_at, parent_at + len(proof.header.parent_hash))
    passed = []
    for position in range(len(MAGIC), len(data) - CHECKSUM_SIZE):
        for mask in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[position] ^= mask
            try:
                VERIFIER.verify_file(with_checksum(bytes(flipped)))
            except ProofError:
                continue
            passed.append(position)
    assert set(passed) == set(parent)
    # ...where the checksum catches them, and the block hash would show the change.
    flipped = bytearray(data)
    flipped[parent_at] ^= 1
    assert "checksum" in rejected(bytes(flipped))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_byte_substitutions_are_rejected(data: st.DataObject) -> None:
    proof = _sample_proof()
    original = encode_proof(proof)
    count = data.draw(st.integers(1, 4), label="substitutions")
    changed = bytearray(original)
    for _ in range(count):
        position = data.draw(st.integers(0, len(original) - 1), label="position")
        changed[position] = data.draw(st.integers(0, 255), label="byte")
    if bytes(changed) == original:
        return
    rejected(bytes(changed))
    parent_at = original.index(proof.header.parent_hash)
    touched = {i for i in range(len(original)) if changed[i] != original[i]}
    # With the checksum recomputed (a forger's move), only changes to the checksum
    # itself vanish, and only the parent hash is left to the checksum alone.
    unchecked = set(range(parent_at, parent_at + 32))
    if touched < set(range(len(original) - CHECKSUM_SIZE)) and not touched & unchecked:
        rejected(with_checksum(bytes(changed)))


_SAMPLE: list[InclusionProof] = []


def _sample_proof() -> InclusionProof:
    """One proof built without the module fixtures (hypothesis tests cannot take
    function-scoped fixtures); a block of 6 at height 1."""
    if not _SAMPLE:
        txs = tuple(report(GENESIS, SIGNERS, i % 4, 1000 + i) for i in range(6))
        block = Block.from_batch("local", Batch(1, BASE_MS, txs), bytes(32))
        _SAMPLE.append(
            InclusionProof(
                genesis_hash=GENESIS.hash(),
                header=block.header,
                index=3,
                tx=txs[3],
                path=tuple(inclusion_path(txs, 3)),
                certificate=certify(block, SIGNERS),
            )
        )
    return _SAMPLE[0]


def test_every_truncation_is_rejected_as_truncated() -> None:
    data = encode_proof(_sample_proof())
    for length in range(len(data)):
        assert rejected(data[:length]).startswith("truncated"), length
    assert "3 unexpected bytes after the end" in rejected(data + b"\0\0\0")


# ------------------------------------------------------------------ exact reasons


def test_what_is_not_a_proof_file_says_so() -> None:
    data = encode_proof(_sample_proof())
    assert rejected(b'{"tx": "00"}') == "not a crosstrace proof file (bad magic)"
    assert rejected(b"\x89CTX") == "not a crosstrace proof file (bad magic)"
    assert rejected(data[:5]) == f"truncated: 5 bytes, the header alone takes {HEADER_SIZE}"
    newer = bytearray(data)
    newer[len(MAGIC)] = 2
    assert "proof format version 2 is not supported" in rejected(bytes(newer))
    huge = bytearray(data)
    huge[len(MAGIC) + 1 : HEADER_SIZE] = b"\xff\xff\xff\xff"
    assert "more than any proof" in rejected(bytes(huge))
    damaged = bytearray(data)
    damaged[HEADER_SIZE + 40] ^= 4
    assert rejected(bytes(damaged)) == "damaged: the checksum does not match the contents"


def _file_with_body(body: bytes) -> bytes:
    head = MAGIC + bytes([1]) + len(body).to_bytes(4, "big") + body
    return with_checksum(head + bytes(CHECKSUM_SIZE))


def test_a_non_canonical_encoding_is_rejected_even_with_a_valid_checksum() -> None:
    proof = _sample_proof()
    body = encode_value(proof)
    assert body[0] == 0x96  # a fixarray of the six fields
    assert VERIFIER.verify_file(_file_with_body(body)).index == 3
    # The same array, spelled with a 16-bit length: same meaning, other bytes.
    wide = b"\xdc\x00\x06" + body[1:]
    assert "not the canonical encoding" in rejected(_file_with_body(wide))
    assert "does not decode" in rejected(_file_with_body(b"\x95" + body[1:]))


def test_wrong_genesis_is_rejected_with_the_reason() -> None:
    data = encode_proof(_sample_proof())
    other_chain, _ = local_genesis(4, chain_id="other")
    assert rejected(data, ProofVerifier(other_chain)) == (
        "chain id 'local' is not the genesis's 'other'"
    )
    # Same chain id, other members: every local test network is called "local".
    other_net, _ = local_genesis(4, chain_id="local", base_port=30000)
    assert other_net.hash() != GENESIS.hash()
    message = rejected(data, ProofVerifier(other_net))
    assert message.startswith(f"the proof is for the genesis with hash {GENESIS.hash().hex()[:16]}")
    assert "same chain id, another consortium" in message


def _with_signatures(proof: InclusionProof, *sigs: CommitSignature) -> InclusionProof:
    return dataclasses.replace(
        proof, certificate=dataclasses.replace(proof.certificate, signatures=sigs)
    )


def test_certificate_faults_name_the_member() -> None:
    proof = _sample_proof()
    s0, s1, s2 = proof.certificate.signatures
    bad = CommitSignature(1, bytes([s1.signature[0] ^ 1]) + s1.signature[1:])
    cases = [
        ((s0, bad, s2), "certificate: member bank-1 (#1)'s signature is invalid"),
        ((s0, s1), "certificate: 2 valid signatures, a quorum is 3 of the 4 members"),
        ((s0, s1, s1), "certificate: member bank-1 (#1) signs twice"),
        ((s0, s1, CommitSignature(9, s2.signature)), "certificate: signer #9 is not a member"),
        (
            (s0, s1, CommitSignature(3, s2.signature)),
            "member bank-3 (#3)'s signature is invalid",
        ),
    ]
    for sigs, expected in cases:
        forged = _with_signatures(proof, *sigs)
        assert expected in rejected(encode_proof(forged))
        # The consensus rules agree that these certificates prove nothing.
        with pytest.raises(CertificateError):
            check_certificate(GENESIS.membership(), forged.certificate)
    assert VERIFIER.verify(_with_signatures(proof, s2, s0, s1)).signers == (
        "telecom-2",
        "police-0",
        "bank-1",
    )


def test_header_and_certificate_must_match() -> None:
    proof = _sample_proof()
    cert = proof.certificate
    assert "the certificate is for height 2, the header for 1" in rejected(
        reencoded(proof, certificate=dataclasses.replace(cert, height=2))
    )
    assert "signs another batch" in rejected(
        reencoded(proof, header=dataclasses.replace(proof.header, timestamp_ms=BASE_MS + 1))
    )
    assert "block 1's parent hash is not the genesis placeholder" in rejected(
        reencoded(proof, header=dataclasses.replace(proof.header, parent_hash=b"\1" * 32))
    )
    assert "height 0" in rejected(
        reencoded(proof, header=dataclasses.replace(proof.header, height=0))
    )
    assert "malformed: the header's Merkle root is 31 bytes" in rejected(
        reencoded(proof, header=dataclasses.replace(proof.header, tx_root=bytes(31)))
    )
    assert "malformed: Merkle path hash 1 is 33 bytes" in rejected(
        reencoded(proof, path=(proof.path[0], bytes(33), *proof.path[2:]))
    )


def _certified_proof_of(tx: bytes) -> InclusionProof:
    """A proof of ``tx`` as the only transaction of a properly certified block 1."""
    block = Block.from_batch("local", Batch(1, BASE_MS, (tx,)), bytes(32))
    return InclusionProof(GENESIS.hash(), block.header, 0, tx, (), certify(block, SIGNERS))


def test_the_transaction_itself_must_be_signed_by_its_member() -> None:
    genuine = report(GENESIS, SIGNERS, 1, 77)
    assert VERIFIER.verify(_certified_proof_of(genuine)).member == "bank-1"
    tx = decode_tx(genuine)
    forged_sig = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    cases = [
        (b"not a transaction", "the transaction does not decode"),
        (dataclasses.replace(tx, signature=forged_sig), "signature by 'bank-1' is invalid"),
        (dataclasses.replace(tx, member="nobody"), "member 'nobody' is not in the genesis"),
        (dataclasses.replace(tx, member="police-0"), "not signed with member 'police-0''s key"),
        (dataclasses.replace(tx, chain_id="other"), "is for chain 'other', not 'local'"),
    ]
    for bad, expected in cases:
        raw = bad if isinstance(bad, bytes) else encode_tx(bad)
        assert expected in rejected(encode_proof(_certified_proof_of(raw)))


def test_a_genesis_file_is_all_the_verifier_needs(
    tmp_path: Path, proofs: dict[tuple[int, int], InclusionProof]
) -> None:
    path = tmp_path / "genesis.json"
    save_genesis(path, GENESIS)
    verifier = ProofVerifier(load_genesis(path))
    assert verifier.verify_file(encode_proof(proofs[3, 1])).height == 3

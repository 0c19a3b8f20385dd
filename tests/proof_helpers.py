"""A small certified ledger of real, signed transactions, with block sizes chosen by the
test: what the proof tests build their proofs from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from consensus.blocks import (
    COMMIT_KIND,
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CommitSignature,
    commit_body,
)
from consensus.crypto import Signer, hash_bytes, signing_bytes
from node.host.assemble import open_store
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Report
from node.ledger.store import BlockIndex, TxIndex
from node.ledger.transactions import encode_tx, make_tx, tx_id
from node.setup.genesis import Genesis
from node.testing.cluster import local_genesis

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def proof_genesis(chain_id: str = "local") -> tuple[Genesis, list[Signer]]:
    return local_genesis(4, chain_id=chain_id)


def report(genesis: Genesis, signers: Sequence[Signer], member: int, nonce: int) -> bytes:
    subject = EntityRef("phone", hash_bytes("phone", nonce.to_bytes(8, "big")))
    body = Report(
        subject=subject,
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=BASE_MS + nonce - 1000,
        details_commitment=None,
    )
    name = genesis.members[member].name
    tx = make_tx(signers[member], genesis.chain_id, name, "report", body, nonce, BASE_MS + nonce)
    return encode_tx(tx)


def certify(
    block: Block, signers: Sequence[Signer], members: Sequence[int] = (0, 1, 2), view: int = 0
) -> Certificate:
    header = block.header
    digest = header.batch_digest()
    message = signing_bytes(header.chain_id, COMMIT_KIND, commit_body(view, header.height, digest))
    sigs = tuple(CommitSignature(m, signers[m].sign(message)) for m in members)
    return Certificate(view, header.height, digest, sigs)


def write_ledger(
    path: Path, genesis: Genesis, signers: Sequence[Signer], sizes: Sequence[int]
) -> list[Block]:
    """Blocks of ``sizes[i]`` reports each (from members in turn), certified by members
    0 to 2, written into a new store at ``path``; returns the blocks."""
    blocks: list[Block] = []
    items: list[tuple[Block, Certificate, BlockIndex]] = []
    parent = GENESIS_PARENT
    nonce = 0
    for height, size in enumerate(sizes, start=1):
        txs = []
        for _ in range(size):
            nonce += 1
            txs.append(report(genesis, signers, nonce % len(signers), nonce))
        batch = Batch(height, BASE_MS + height * 1000, tuple(txs))
        block = Block.from_batch(genesis.chain_id, batch, parent)
        parent = block.hash()
        index = BlockIndex(tuple(TxIndex(tx_id(tx)) for tx in block.txs))
        items.append((block, certify(block, signers), index))
        blocks.append(block)
    with open_store(path, genesis) as store:
        store.append_blocks(items)
    return blocks

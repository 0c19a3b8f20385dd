"""Inclusion proof benchmark: proofs generated and verified per second.

Writes a certified ledger of real signed report transactions (``--blocks`` blocks of 1
to ``--max-txs`` transactions, then ``--full-blocks`` blocks of ``--full-size``), then,
on one core, for ``--proofs`` (``--full-proofs``) transactions picked at random from
the small (full) blocks:

- generation: ``build_proof`` (index look-up, block and certificate read and decoded,
  audit path) and ``encode_proof``, as ``GET /txs/{id}/proof`` does;
- verification: ``ProofVerifier.verify_file`` (strict decode, Merkle path, certificate
  of 3 Ed25519 signatures, the transaction's own signature), as ``verify-proof`` does.

    python benchmarks/proof_bench.py
    python benchmarks/proof_bench.py --blocks 2000 --proofs 1000    # quicker
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
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
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Report
from node.ledger.proofs import ProofVerifier, build_proof, encode_proof
from node.ledger.store import BlockIndex, LedgerStore, TxIndex
from node.ledger.transactions import encode_tx, make_tx, tx_id
from node.setup.genesis import Genesis
from node.testing.cluster import local_genesis

BASE_MS = 1_767_225_600_000
WRITE_GROUP = 500


class LedgerWriter:
    """Appends certified blocks of signed reports; remembers every tx id by part."""

    def __init__(self, store: LedgerStore, genesis: Genesis, signers: Sequence[Signer]) -> None:
        self.store = store
        self.genesis = genesis
        self.signers = signers
        self.subjects = [
            EntityRef("phone", hash_bytes("bench-phone", i.to_bytes(4, "big"))) for i in range(5000)
        ]
        self.nonce = 0
        self.height, self.parent = store.tip()

    def _tx(self, rng: random.Random) -> bytes:
        self.nonce += 1
        member = self.nonce % len(self.signers)
        time_ms = BASE_MS + self.nonce
        body = Report(rng.choice(self.subjects), "fraud_call", (), None, time_ms - 1000, None)
        name = self.genesis.members[member].name
        chain = self.genesis.chain_id
        tx = make_tx(self.signers[member], chain, name, "report", body, self.nonce, time_ms)
        return encode_tx(tx)

    def _certify(self, block: Block) -> Certificate:
        header = block.header
        digest = header.batch_digest()
        body = commit_body(0, header.height, digest)
        message = signing_bytes(header.chain_id, COMMIT_KIND, body)
        sigs = tuple(CommitSignature(m, self.signers[m].sign(message)) for m in (0, 1, 2))
        return Certificate(0, header.height, digest, sigs)

    def write(self, sizes: Sequence[int], rng: random.Random) -> list[bytes]:
        ids: list[bytes] = []
        group: list[tuple[Block, Certificate, BlockIndex]] = []
        for size in sizes:
            self.height += 1
            txs = tuple(self._tx(rng) for _ in range(size))
            batch = Batch(self.height, BASE_MS + self.height * 1000, txs)
            block = Block.from_batch(self.genesis.chain_id, batch, self.parent)
            self.parent = block.hash()
            entries = tuple(TxIndex(tx_id(tx)) for tx in txs)
            ids.extend(entry.tx_id for entry in entries)
            group.append((block, self._certify(block), BlockIndex(entries)))
            if len(group) >= WRITE_GROUP:
                self.store.append_blocks(group)
                group = []
        self.store.append_blocks(group)
        return ids


def rate(label: str, count: int, action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"  {label:<34} {count / seconds:>9,.0f} /s   ({seconds * 1e6 / count:,.0f} us each)")
    return count / seconds


def measure(
    title: str, store: LedgerStore, verifier: ProofVerifier, ids: Sequence[bytes], n: int
) -> None:
    rng = random.Random(7)
    picked = [rng.choice(ids) for _ in range(n)]
    files: list[bytes] = []

    def generate() -> None:
        for wanted in picked:
            proof = build_proof(store, wanted)
            assert proof is not None
            files.append(encode_proof(proof))

    def verify() -> None:
        for data in files:
            verifier.verify_file(data)

    print(title)
    rate("generated (build + encode)", n, generate)
    rate("verified (decode + verify)", n, verify)
    sizes = [len(f) for f in files]
    print(f"  proof file size: mean {statistics.mean(sizes):,.0f} B, max {max(sizes):,} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--max-txs", type=int, default=10, help="per small block (1 to this)")
    parser.add_argument("--full-blocks", type=int, default=10)
    parser.add_argument("--full-size", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=5000, help="from the small blocks")
    parser.add_argument("--full-proofs", type=int, default=2000, help="from the full blocks")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    genesis, signers = local_genesis(4, chain_id="proof-bench")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="proof-bench-") as tmp:
        # No fsync: the benchmark reads; durability of the writes is not what it measures.
        store = LedgerStore.open(
            Path(tmp) / "ledger", chain_id=genesis.chain_id, genesis_hash=genesis.hash(), sync=False
        )
        with store:
            assert store.tip() == (0, GENESIS_PARENT)
            writer = LedgerWriter(store, genesis, signers)
            started = time.perf_counter()
            small = writer.write([rng.randint(1, args.max_txs) for _ in range(args.blocks)], rng)
            full = writer.write([args.full_size] * args.full_blocks, rng)
            print(
                f"ledger: {writer.height:,} blocks, {len(small) + len(full):,} signed "
                f"transactions, written in {time.perf_counter() - started:.1f} s"
            )
            verifier = ProofVerifier(genesis)
            measure(
                f"{args.blocks:,} blocks of 1 to {args.max_txs} transactions, "
                f"{args.proofs:,} proofs:",
                store,
                verifier,
                small,
                args.proofs,
            )
            measure(
                f"{args.full_blocks:,} blocks of {args.full_size:,} transactions, "
                f"{args.full_proofs:,} proofs:",
                store,
                verifier,
                full,
                args.full_proofs,
            )


if __name__ == "__main__":
    main()

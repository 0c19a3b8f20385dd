"""Real blocks with real commit certificates for the store tests, and the crash child.

Run as a script (``python store_helpers.py DIR SEED``) it is the process that
``test_store_crash`` SIGKILLs: it appends blocks to the store in DIR forever,
printing each committed height, so the parent knows what was acknowledged.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import lmdb

from consensus.blocks import (
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CommitSignature,
    commit_body,
)
from consensus.crypto import Signer, hash_bytes, signing_bytes
from consensus.membership import Membership
from node.ledger.store import BlockIndex, LedgerStore, Link, TxIndex, tx_id

CHAIN_ID = "crosstrace-test"
GENESIS_HASH = hash_bytes("genesis", b"store tests")
SIGNERS = [Signer(bytes([i + 1]) * 32) for i in range(4)]
MEMBERSHIP = Membership(CHAIN_ID, tuple(s.public_key for s in SIGNERS))


def entity(n: int) -> bytes:
    """A 33-byte entity key like the application's: a type code, then a pseudonym."""
    return b"\x01" + hash_bytes("entity", n.to_bytes(8, "big"))


def certify(block: Block, view: int = 0, signers: Sequence[int] = (0, 1, 2)) -> Certificate:
    header = block.header
    digest = header.batch_digest()
    body = signing_bytes(header.chain_id, "commit", commit_body(view, header.height, digest))
    sigs = tuple(CommitSignature(m, SIGNERS[m].sign(body)) for m in signers)
    return Certificate(view, header.height, digest, sigs)


def make_block(
    height: int, parent: bytes, txs: Sequence[bytes], chain_id: str = CHAIN_ID
) -> tuple[Block, Certificate]:
    block = Block.from_batch(
        chain_id, Batch(height, 1_700_000_000_000 + height, tuple(txs)), parent
    )
    return block, certify(block)


def index_for(block: Block, rng: random.Random | None = None, entities: int = 50) -> BlockIndex:
    """Two entities and one link per transaction, drawn from ``entities`` keys."""
    rng = rng or random.Random(block.header.height)
    entries = []
    for i, tx in enumerate(block.txs):
        a, b = entity(rng.randrange(entities)), entity(rng.randrange(entities))
        nonce = (f"bank-{i % 3}", block.header.height * 10_000 + i)
        entries.append(TxIndex(tx_id(tx), (a, b), (Link(a, b, b"uses"),), nonce=nonce))
    return BlockIndex(tuple(entries))


def tx_bytes(height: int, i: int, size: int = 200) -> bytes:
    seed = hash_bytes("tx-body", height.to_bytes(8, "big") + i.to_bytes(4, "big"))
    return (seed * (size // len(seed) + 1))[:size]


def chain(
    count: int,
    txs_per_block: int = 5,
    start: tuple[int, bytes] = (0, GENESIS_PARENT),
    tx_size: int = 200,
) -> list[tuple[Block, Certificate, BlockIndex]]:
    out = []
    height, parent = start
    for _ in range(count):
        height += 1
        txs = [tx_bytes(height, i, tx_size) for i in range(txs_per_block)]
        block, cert = make_block(height, parent, txs)
        out.append((block, cert, index_for(block)))
        parent = block.hash()
    return out


def open_store(path: Path, **kwargs: int) -> LedgerStore:
    return LedgerStore.open(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, **kwargs)


def fill(
    store: LedgerStore, count: int, per_block: int = 5, **kwargs: int
) -> list[tuple[Block, Certificate, BlockIndex]]:
    blocks = chain(count, per_block, start=store.tip(), **kwargs)
    store.append_blocks(blocks)
    return blocks


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that can import this module."""
    prelude = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, timeout=60
    )


def tamper(path: Path, db: bytes, key: bytes, value: bytes | None, **flags: bool) -> None:
    """Overwrite (or delete, for None) one record behind the store's back."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        handle = env.open_db(db, **flags)
        with env.begin(write=True) as txn:
            if value is None:
                txn.delete(key, db=handle)
            else:
                txn.put(key, value, db=handle)
    finally:
        env.close()


def crash_child(path: str, seed: int) -> None:
    rng = random.Random(seed)
    # A small map, so the SIGKILLs also land in the middle of map growth.
    store = LedgerStore.open(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, map_size=1 << 18)
    print("ready", flush=True)
    while True:
        tip = store.tip()
        group = chain(
            rng.randint(1, 3), rng.randint(1, 60), start=tip, tx_size=rng.randint(50, 3000)
        )
        if len(group) == 1:
            store.append_block(*group[0])
        else:
            store.append_blocks(group)
        print(group[-1][0].header.height, flush=True)


if __name__ == "__main__":
    crash_child(sys.argv[1], int(sys.argv[2]))

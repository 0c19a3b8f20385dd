"""Ledger store benchmark: applying committed blocks, and tracing queries on a big ledger.

(a) Apply committed blocks of 1,000 transactions of ~200 bytes, each with two entity
    keys, one link and a nonce, with fsync on (the node's settings): one write
    transaction per block (``append_block``, the live path) and per group of blocks
    (``append_blocks``, catch-up). Certificate verification (Merkle root and commit
    signatures, ``check_block_certificate``) is measured on its own.
(b) Build a ledger of ``--txs`` transactions over ``--entities`` entities drawn from a
    Zipf distribution, then look up all transactions of entities picked uniformly at
    random: their locations (``entity_txs``) and their bytes (``txs_at``), p50/p99.
    Then apply blocks on top of the big ledger, and report bytes on disk per
    transaction.

    python benchmarks/store_bench.py                 # 1,000,000 transactions
    python benchmarks/store_bench.py --txs 200000    # quicker
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lmdb

from consensus.blocks import (
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CommitSignature,
    check_block_certificate,
    commit_body,
)
from consensus.crypto import Signer, hash_bytes, signing_bytes
from consensus.membership import Membership
from node.ledger.store import BlockIndex, LedgerStore, Link, TxIndex, tx_id

CHAIN_ID = "store-bench"
GENESIS = hash_bytes("genesis", b"store bench")
SIGNERS = [Signer(bytes([i + 1]) * 32) for i in range(4)]
MEMBERSHIP = Membership(CHAIN_ID, tuple(s.public_key for s in SIGNERS))
MEMBERS = [f"member-{i}" for i in range(8)]
RELATIONS = [b"uses", b"owns", b"calls", b"pays"]

Committed = tuple[Block, Certificate, BlockIndex]


class Workload:
    """Deterministic committed blocks: real signatures, Zipf-distributed entities."""

    def __init__(self, entities: int, zipf: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = [b"\x01" + hash_bytes("entity", n.to_bytes(8, "big")) for n in range(entities)]
        self.cum = list(itertools.accumulate(1 / (r + 1) ** zipf for r in range(entities)))
        self.nonces = dict.fromkeys(MEMBERS, 0)

    def block(self, height: int, parent: bytes, txs: int, tx_size: int) -> Committed:
        rng = self.rng
        bodies = tuple(rng.randbytes(tx_size + rng.randint(-20, 20)) for _ in range(txs))
        block = Block.from_batch(
            CHAIN_ID, Batch(height, 1_700_000_000_000 + height, bodies), parent
        )
        picks = rng.choices(self.keys, cum_weights=self.cum, k=2 * txs)
        entries = []
        for i, tx in enumerate(bodies):
            a, b = picks[2 * i], picks[2 * i + 1]
            member = MEMBERS[i % len(MEMBERS)]
            self.nonces[member] += 1
            link = Link(a, b, RELATIONS[i % len(RELATIONS)])
            entries.append(TxIndex(tx_id(tx), (a, b), (link,), (member, self.nonces[member])))
        return block, certify(block), BlockIndex(tuple(entries))

    def chain(
        self, start: tuple[int, bytes], blocks: int, txs: int, tx_size: int
    ) -> list[Committed]:
        out = []
        height, parent = start
        for _ in range(blocks):
            item = self.block(height + 1, parent, txs, tx_size)
            out.append(item)
            height, parent = height + 1, item[0].hash()
        return out


def certify(block: Block) -> Certificate:
    header = block.header
    digest = header.batch_digest()
    body = signing_bytes(CHAIN_ID, "commit", commit_body(0, header.height, digest))
    sigs = tuple(CommitSignature(m, SIGNERS[m].sign(body)) for m in range(3))
    return Certificate(0, header.height, digest, sigs)


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def timed_apply(store: LedgerStore, blocks: list[Committed], batch: int) -> float:
    """Transactions per second appending ``blocks``, ``batch`` blocks per transaction."""
    txs = sum(len(b.txs) for b, _, _ in blocks)
    start = time.perf_counter()
    for i in range(0, len(blocks), batch):
        group = blocks[i : i + batch]
        if len(group) == 1:
            store.append_block(*group[0])
        else:
            store.append_blocks(group)
    return txs / (time.perf_counter() - start)


def bench_apply(args: argparse.Namespace, work: Workload, root: Path) -> list[Committed]:
    print(f"\n(a) apply {args.apply_blocks} committed blocks x {args.block_txs} txs, fsync on")
    blocks = work.chain((0, GENESIS_PARENT), args.apply_blocks, args.block_txs, args.tx_size)
    for batch in (1, args.batch):
        path = root / f"apply-{batch}"
        with LedgerStore.open(path, chain_id=CHAIN_ID, genesis_hash=GENESIS) as store:
            rate = timed_apply(store, blocks, batch)
        shutil.rmtree(path)
        how = (
            "append_block, 1 block per write txn"
            if batch == 1
            else f"append_blocks, {batch} per txn"
        )
        print(f"  empty store, {how:40s} {rate:10,.0f} tx/s")
    start = time.perf_counter()
    for block, cert, _ in blocks:
        check_block_certificate(MEMBERSHIP, block, cert)
    per_block = (time.perf_counter() - start) / len(blocks)
    print(
        f"  certificate check (Merkle root + 3 Ed25519), separately: {per_block * 1000:.2f} ms "
        f"per block = {args.block_txs / per_block:,.0f} tx/s on one core"
    )
    return blocks


def build_ledger(args: argparse.Namespace, work: Workload, path: Path) -> LedgerStore:
    print(f"\n(b) build a ledger of {args.txs:,} txs over {args.entities:,} entities", end="")
    print(f" (Zipf, exponent {args.zipf}), {args.batch} blocks per append_blocks")
    store = LedgerStore.open(path, chain_id=CHAIN_ID, genesis_hash=GENESIS)
    blocks_needed = -(-args.txs // args.block_txs)
    start = last = time.perf_counter()
    made = 0
    while made < blocks_needed:
        group = work.chain(
            store.tip(), min(args.batch, blocks_needed - made), args.block_txs, args.tx_size
        )
        store.append_blocks(group)
        made += len(group)
        now = time.perf_counter()
        if now - last > 5 or made == blocks_needed:
            done = made * args.block_txs
            print(
                f"  {done:>11,} txs  {done / (now - start):8,.0f} tx/s overall (incl. generating)",
                flush=True,
            )
            last = now
    return store


def bench_lookups(args: argparse.Namespace, work: Workload, store: LedgerStore) -> None:
    rng = random.Random(args.seed + 1)
    keys = [work.keys[rng.randrange(len(work.keys))] for _ in range(args.lookups)]
    run: dict[str, list[float]] = {"entity_txs": [], "entity_txs + tx bytes": [], "links_of": []}
    counts = []
    for key in keys:
        t0 = time.perf_counter()
        locations = store.entity_txs(key, limit=sys.maxsize)
        t1 = time.perf_counter()
        store.txs_at(locations)
        t2 = time.perf_counter()
        store.links_of(key, limit=sys.maxsize)
        t3 = time.perf_counter()
        run["entity_txs"].append(t1 - t0)
        run["entity_txs + tx bytes"].append(t2 - t0)
        run["links_of"].append(t3 - t2)
        counts.append(len(locations))
    print(
        f"  lookups of {args.lookups} uniformly random entities (txs per entity: median "
        f"{statistics.median(counts):.0f}, p99 {percentile(counts, 99):.0f}, max {max(counts)})"
    )
    for name, samples in run.items():
        print(
            f"    {name:24s} p50 {percentile(samples, 50) * 1000:7.3f} ms   "
            f"p99 {percentile(samples, 99) * 1000:7.3f} ms   max {max(samples) * 1000:7.3f} ms"
        )
    hottest = work.keys[0]
    t0 = time.perf_counter()
    locations = store.entity_txs(hottest, limit=sys.maxsize)
    store.txs_at(locations)
    print(
        f"  the hottest entity ({len(locations):,} txs), all of them with their bytes: "
        f"{(time.perf_counter() - t0) * 1000:.1f} ms; its first 100: "
        f"{timeit(lambda: store.txs_at(store.entity_txs(hottest, limit=100))) * 1000:.3f} ms"
    )


def timeit(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report_size(store: LedgerStore) -> None:
    stats = store.stats()
    txs = stats.entries["txs"]
    print(
        f"  on disk: {stats.bytes_on_disk / 1e6:,.1f} MB for {txs:,} txs = "
        f"{stats.bytes_on_disk / txs:,.0f} bytes/tx (map {stats.map_size / 2**20:,.0f} MiB)"
    )
    parts = ", ".join(f"{name} {size / txs:.0f}" for name, size in stats.db_bytes.items() if size)
    print(f"  bytes/tx by database: {parts}")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--txs", type=int, default=1_000_000, help="ledger size for (b)")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--zipf", type=float, default=1.0, help="entity popularity exponent")
    parser.add_argument("--block-txs", type=int, default=1000)
    parser.add_argument("--tx-size", type=int, default=200)
    parser.add_argument("--apply-blocks", type=int, default=100, help="blocks applied in (a)")
    parser.add_argument("--batch", type=int, default=10, help="blocks per append_blocks call")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--cold", action="store_true", help="also time lookups after drop_caches")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    print(
        f"store bench: python {sys.version.split()[0]}, py-lmdb {lmdb.__version__} "
        f"(LMDB {'.'.join(map(str, lmdb.version()))}), {os.cpu_count()} CPUs, dir {root}"
    )
    try:
        work = Workload(args.entities, args.zipf, args.seed)
        bench_apply(args, work, root)
        store = build_ledger(args, work, root / "ledger")
        with store:
            report_size(store)
            print("  warm page cache:")
            bench_lookups(args, work, store)
            if args.cold and drop_caches():
                print("  cold page cache (after drop_caches):")
                bench_lookups(args, work, store)
            tip = store.tip()
            more = work.chain(tip, args.apply_blocks, args.block_txs, args.tx_size)
            half = len(more) // 2
            print(f"  apply {len(more)} more blocks on top of the {tip[0]:,}-block ledger:")
            single = timed_apply(store, more[:half], 1)
            print(f"    append_block, 1 block per write txn {single:22,.0f} tx/s")
            batched = timed_apply(store, more[half:], args.batch)
            print(f"    append_blocks, {args.batch} blocks per write txn {batched:18,.0f} tx/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

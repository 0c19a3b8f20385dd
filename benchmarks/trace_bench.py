"""Tracing query benchmark: ``trace`` and ``graph`` (depth 3) on a big ledger, from the
library (no HTTP), each query authorised under an active case first.

The ledger holds ``--records`` transactions: reports (``--link-share`` of them links)
over ``--records / --records-per-entity`` entities of mixed types. Reports pick their
subject from a Zipf distribution (a few numbers are reported often); a link joins an
entity to one of its own ring of ``--ring`` entities most of the time and to any entity
otherwise, so the link graph has the small dense clusters of a fraud ring plus a few
long bridges (about 2.4 links per entity at the defaults). Queries start at entities
picked uniformly at random, in scope of sixteen active cases.

Transactions are real encoded reports and links, indexed as the application indexes
them, but carry zero signatures and skip admission: the query path never verifies a
signature, and signing a million transactions would take longer than the benchmark.

    python benchmarks/trace_bench.py                      # 100,000 records
    python benchmarks/trace_bench.py --records 1000000    # the goal's size
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from consensus.blocks import Batch, Block, Certificate
from consensus.codec import encode_value
from consensus.crypto import SIGNATURE_SIZE, Signer, hash_bytes
from node.identifiers.normalize import EntityType
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import entity_key
from node.ledger.cases import CaseRegistry
from node.ledger.kinds import RELATIONS, Approve, Body, Case, Report
from node.ledger.kinds import Link as LinkBody
from node.ledger.layout import case_key
from node.ledger.store import BlockIndex, CaseRole, LedgerStore, Link, TxIndex
from node.ledger.transactions import Transaction, encode_tx, tx_id
from node.setup.genesis import Genesis, Member, assemble_draft
from node.testing.dealer import dealt_genesis
from node.tracing.queries import Grant, Tracer

CHAIN_ID = "trace-bench"
NOW = 1_750_000_000_000
DAY = 86_400_000
MEMBERS = ("police", "bank-a", "bank-b", "telco-a", "telco-b", "utility")
TYPES = [t.value for t in EntityType]
SCOPE = 64  # the largest scope admission accepts
CASES = 16


def make_genesis() -> Genesis:
    police = ("reporter", "investigator", "approver")
    members = [
        Member(
            name,
            "police" if name == "police" else "bank",
            police if name == "police" else ("reporter", "approver"),
            Signer(hash_bytes("trace-bench", name.encode())).public_key,
            f"127.0.0.1:{26600 + i}",
        )
        for i, name in enumerate(MEMBERS)
    ]
    draft = assemble_draft(CHAIN_ID, members, 3, genesis_time="2025-01-31T12:00:00Z")
    # A fixed test-only dealing, so every run's genesis (and ledger) is the same.
    return dealt_genesis(draft, seed="trace-bench")[0]


class Workload:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        count = max(args.records // args.records_per_entity, args.ring)
        self.entities = [
            EntityRef(TYPES[n % len(TYPES)], hash_bytes("bench-entity", n.to_bytes(8, "big")))
            for n in range(count)
        ]
        weights = (1 / (r + 1) ** args.zipf for r in range(count))
        self.cum = list(itertools.accumulate(weights))
        self.nonces = dict.fromkeys(MEMBERS, 0)

    def tx(self, member: str, body: Body) -> bytes:
        self.nonces[member] += 1
        tx = Transaction(
            CHAIN_ID,
            member,
            bytes(32),
            self.nonces[member],
            NOW - DAY,
            body.kind,
            encode_value(body),
            bytes(SIGNATURE_SIZE),
        )
        return encode_tx(tx)

    def records(self, n: int) -> list[tuple[bytes, TxIndex]]:
        rng, args, entities = self.rng, self.args, self.entities
        subjects = rng.choices(entities, cum_weights=self.cum, k=n)
        out = []
        for subject in subjects:
            member = MEMBERS[1 + rng.randrange(len(MEMBERS) - 1)]
            observed = NOW - rng.randrange(20 * DAY)
            if rng.random() < args.link_share:
                a = rng.randrange(len(entities))
                ring = a - a % args.ring
                b = ring + rng.randrange(args.ring) if rng.random() < 0.85 else a
                while b == a or b >= len(entities):
                    b = rng.randrange(len(entities))
                link = LinkBody(entities[a], entities[b], rng.choice(RELATIONS), observed, None)
                data = self.tx(member, link)
                ka, kb = entity_key(link.a), entity_key(link.b)
                entry = TxIndex(tx_id(data), (ka, kb), (Link(ka, kb, link.relation.encode()),))
            else:
                report = Report(subject, "fraud_call", (), None, observed, None)
                data = self.tx(member, report)
                entry = TxIndex(tx_id(data), (entity_key(subject),))
            out.append((data, entry))
        return out

    def cases(self, targets: Sequence[EntityRef]) -> list[tuple[bytes, TxIndex]]:
        out = []
        for i in range(0, len(targets), SCOPE):
            case_id = f"BENCH-{i // SCOPE}"
            case = Case(
                case_id,
                "telecom_fraud",
                bytes(32),  # a commitment to a justification no bench member reads
                tuple(targets[i : i + SCOPE]),
                NOW - 30 * DAY,
                NOW,
                NOW + DAY,
            )
            data = self.tx("police", case)
            key = case_key(case_id)
            scope_keys = tuple(entity_key(e) for e in case.scope)
            out.append((data, TxIndex(tx_id(data), scope_keys, cases=[(key, CaseRole.OPENED)])))
            for member in MEMBERS[:3]:
                vote = self.tx(member, Approve(case_id, tx_id(data)))
                out.append((vote, TxIndex(tx_id(vote), cases=[(key, CaseRole.APPROVED)])))
        return out


def append(store: LedgerStore, items: list[tuple[bytes, TxIndex]]) -> None:
    height, parent = store.tip()
    block = Block.from_batch(CHAIN_ID, Batch(height + 1, NOW, tuple(d for d, _ in items)), parent)
    # The store does not check commit signatures; an empty certificate keeps building fast.
    cert = Certificate(0, height + 1, block.header.batch_digest(), ())
    store.append_blocks([(block, cert, BlockIndex(tuple(e for _, e in items)))])


def build(args: argparse.Namespace, work: Workload, store: LedgerStore) -> list[EntityRef]:
    rng = random.Random(args.seed + 1)
    targets = list(dict.fromkeys(rng.choice(work.entities) for _ in range(CASES * SCOPE)))
    append(store, work.cases(targets))
    start = last = time.perf_counter()
    done = 0
    while done < args.records:
        n = min(args.block_txs, args.records - done)
        append(store, work.records(n))
        done += n
        now = time.perf_counter()
        if now - last > 10 or done == args.records:
            print(f"  {done:>11,} records  {done / (now - start):8,.0f} /s", flush=True)
            last = now
    return targets


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(
    name: str, targets: Sequence[EntityRef], run: Callable[[EntityRef], int], queries: int
) -> None:
    times, sizes = [], []
    for i in range(queries):
        entity = targets[i % len(targets)]
        t0 = time.perf_counter()
        sizes.append(run(entity))
        times.append(time.perf_counter() - t0)
    print(
        f"  {name:20s} p50 {percentile(times, 50) * 1000:7.2f} ms   "
        f"p99 {percentile(times, 99) * 1000:7.2f} ms   max {max(times) * 1000:7.2f} ms   "
        f"(result size median {statistics.median(sizes):.0f}, p99 {percentile(sizes, 99):.0f})"
    )


def add_ledger_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that shape the ledger and where it is built (shared with
    ``api_trace_bench.py``, which builds the same ledger)."""
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--records-per-entity", type=int, default=4)
    parser.add_argument("--link-share", type=float, default=0.3)
    parser.add_argument("--ring", type=int, default=20, help="entities per cluster")
    parser.add_argument("--zipf", type=float, default=0.8, help="report subject popularity")
    parser.add_argument("--block-txs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_ledger_arguments(parser)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=3)
    args = parser.parse_args()
    genesis = make_genesis()
    work = Workload(args)
    print(
        f"build a ledger of {args.records:,} records over {len(work.entities):,} entities "
        f"({args.link_share:.0%} links, rings of {args.ring})"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = LedgerStore.open(
            Path(tmp) / "ledger", chain_id=CHAIN_ID, genesis_hash=genesis.hash(), sync=False
        )
        with store:
            targets = build(args, work, store)
            t0 = time.perf_counter()
            registry = CaseRegistry.load(genesis, store)
            print(f"  case registry rebuilt in {(time.perf_counter() - t0) * 1000:.1f} ms")
            tracer = Tracer(store, registry)
            cases = {e: f"BENCH-{i // SCOPE}" for i, e in enumerate(targets)}

            def authorised(query: str, entity: EntityRef) -> Grant:
                grant = tracer.authorise(cases[entity], query, entity, NOW)
                assert isinstance(grant, Grant), grant
                return grant

            print(f"queries from {len(targets)} random entities, each authorised first")
            measure(
                "trace",
                targets,
                lambda e: len(tracer.trace(authorised("trace", e)).facts),
                args.queries,
            )
            measure(
                f"graph depth {args.depth}",
                targets,
                lambda e: len(tracer.graph(authorised("graph", e), args.depth).edges),
                args.queries,
            )


if __name__ == "__main__":
    main()

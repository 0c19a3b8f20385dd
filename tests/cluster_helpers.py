"""In-process consortia for tests: fast consensus parameters, a cluster of n nodes over
the in-memory (or TCP) transport, signed reports and submitting them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from consensus.codec import encode_value
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Body, Report
from node.ledger.transactions import encode_tx, make_tx
from node.setup.genesis import GenesisConsensus
from node.testing.cluster import InProcessCluster, local_genesis, local_pseudonyms

FAST = GenesisConsensus(
    checkpoint_interval=5,
    window=10,
    max_batch_txs=500,
    batch_delay_ms=5,
    view_timeout_ms=800,
    heartbeat_ms=200,
)


def cluster_ref(cluster: InProcessCluster, entity_type: str, raw: str) -> EntityRef:
    """The pseudonym the cluster's members evaluate together, computed offline with the
    key the test-only dealer split among them (``node.testing.dealer``)."""
    return local_pseudonyms(cluster.genesis).refs([(entity_type, raw)])[0]


def report_tx(cluster: InProcessCluster, member: int, i: int, now_ms: int) -> bytes:
    phone = f"+86 138 {i // 10000 % 10000:04d} {i % 10000:04d}"
    body = Report(
        subject=cluster_ref(cluster, "phone", phone),
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=now_ms - 1000,
        details_commitment=None,
    )
    tx = make_tx(
        cluster.signers[member],
        cluster.genesis.chain_id,
        cluster.member_name(member),
        "report",
        body,
        cluster.next_nonce(),
        now_ms,
    )
    return encode_tx(tx)


def make_cluster(
    tmp_path: Path,
    n: int = 4,
    transport: str = "memory",
    roles: Mapping[int, Sequence[str]] | None = None,
) -> InProcessCluster:
    genesis, signers = local_genesis(n, consensus=FAST, roles=roles)
    return InProcessCluster(tmp_path, genesis, signers, transport=transport)


def ledger_bytes(cluster: InProcessCluster, index: int) -> list[bytes]:
    """The stored block bytes. Certificates are left out on purpose: each node keeps
    the quorum of COMMITs it happened to collect, equally valid but not identical."""
    store = cluster.store(index)
    height, _ = store.tip()
    return [encode_value(block) for block, _cert in store.blocks_range(1, height)]


async def submit_all(cluster: InProcessCluster, txs: list[bytes], via: int = 0) -> list[bytes]:
    ids = []
    runtime = cluster.runtime(via)
    for start in range(0, len(txs), 500):
        for result in await runtime.submit_batch(txs[start : start + 500]):
            assert result.accepted, result
            ids.append(result.tx_id)
    return ids


async def commit_body(cluster: InProcessCluster, member: int, body: Body) -> bytes:
    """Sign ``body`` as ``member``, submit it to its node and wait (20 s at most) until it
    is committed there; its transaction id."""
    tx = make_tx(
        cluster.signers[member],
        cluster.genesis.chain_id,
        cluster.member_name(member),
        body.kind,
        body,
        cluster.next_nonce(),
        int(time.time() * 1000),
    )
    runtime = cluster.runtime(member)
    result = await runtime.submit(encode_tx(tx))
    assert result.accepted, result.message
    with trio.fail_after(20):
        await runtime.wait_committed(result.tx_id)
    return result.tx_id

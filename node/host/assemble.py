"""Assembling a node's runtime from its genesis: the consensus parameters, the ledger
store and the replica's host, as the daemon and the in-process cluster both need them."""

from __future__ import annotations

from pathlib import Path

from consensus.crypto import Signer
from consensus.params import Params
from net.transport import Transport
from node.host.mempool import Mempool
from node.host.runtime import NodeRuntime
from node.ledger.application import Application
from node.ledger.store import LedgerStore
from node.setup.genesis import Genesis


def consensus_params(genesis: Genesis) -> Params:
    g = genesis.consensus
    return Params(
        checkpoint_interval=g.checkpoint_interval,
        window=g.window,
        max_batch_txs=g.max_batch_txs,
        batch_delay_ms=g.batch_delay_ms,
        view_timeout_ms=g.view_timeout_ms,
        heartbeat_ms=g.heartbeat_ms,
        max_view_timeout_ms=max(60_000, g.view_timeout_ms),
    )


def open_store(path: Path, genesis: Genesis, map_size: int = 64 << 20) -> LedgerStore:
    return LedgerStore.open(
        path, chain_id=genesis.chain_id, genesis_hash=genesis.hash(), map_size=map_size
    )


def build_runtime(
    index: int,
    genesis: Genesis,
    signer: Signer,
    store: LedgerStore,
    transport: Transport,
    mempool: Mempool | None = None,
) -> NodeRuntime:
    return NodeRuntime(
        member=index,
        signer=signer,
        membership=genesis.membership(),
        params=consensus_params(genesis),
        ledger=store,
        transport=transport,
        application=Application(genesis, store),
        mempool=mempool if mempool is not None else Mempool(100_000, 256 << 20),
    )

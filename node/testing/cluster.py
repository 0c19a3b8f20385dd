"""A whole consortium in one process: n runtimes over an in-memory transport, each with
its own LMDB directory. For tests, demos and benchmarks; nodes can be stopped and
restarted from their directories mid-run."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from consensus.crypto import Signer, hash_bytes
from net.tcp import TcpTransport
from net.transport import MemoryHub, Transport
from node.details.service import PrivateDetailsService
from node.details.store import PrivateStore
from node.host.assemble import build_runtime, open_store
from node.host.runtime import NodeRuntime
from node.ledger.store import LedgerStore
from node.setup.genesis import Genesis, GenesisConsensus, Member, assemble_genesis
from node.setup.provision import local_member_layout


def local_seed(chain_id: str, index: int) -> bytes:
    """Deterministic keys for local consortia only; real members use ``crosstrace init``."""
    return hash_bytes("local-key", f"{chain_id}/{index}".encode())


def local_signer(chain_id: str, index: int) -> Signer:
    return Signer(local_seed(chain_id, index))


def local_genesis(
    n: int,
    chain_id: str = "local",
    consensus: GenesisConsensus | None = None,
    base_port: int = 26600,
    roles: Mapping[int, Sequence[str]] | None = None,
) -> tuple[Genesis, list[Signer]]:
    """``roles`` replaces the local layout's roles of the members it names (a member
    that approves no cases, say)."""
    signers = [local_signer(chain_id, i) for i in range(n)]
    members = []
    for i, signer in enumerate(signers):
        institution, layout_roles = local_member_layout(i)
        member_roles = tuple((roles or {}).get(i, layout_roles))
        members.append(
            Member(
                name=f"{institution}-{i}",
                institution=institution,
                roles=member_roles,
                public_key=signer.public_key,
                address=f"127.0.0.1:{base_port + i}",
            )
        )
    genesis = assemble_genesis(
        chain_id,
        members,
        case_approvals=min(3, n),
        params=consensus or GenesisConsensus(),
        genesis_time="2026-01-01T00:00:00Z",
    )
    return genesis, signers


@dataclass
class _Running:
    runtime: NodeRuntime
    store: LedgerStore
    scope: trio.CancelScope
    details: PrivateDetailsService
    private_store: PrivateStore
    done: trio.Event = field(default_factory=trio.Event)


class InProcessCluster:
    """``transport="memory"`` connects the nodes through a ``MemoryHub``; ``"tcp"`` through
    real loopback sockets with the Noise channel (keys must be ``local_seed`` keys)."""

    def __init__(
        self,
        base_dir: Path,
        genesis: Genesis,
        signers: Sequence[Signer],
        transport: str = "memory",
        private_options: dict[str, Any] | None = None,
    ) -> None:
        """``private_options`` go to each node's ``PrivateDetailsService`` (retention
        and timings; one year of retention when not given)."""
        if transport not in ("memory", "tcp"):
            raise ValueError(f"unknown transport {transport!r}")
        self.base_dir = base_dir
        self.genesis = genesis
        self.signers = list(signers)
        self.n = len(signers)
        self.transport_kind = transport
        self.private_options = {"retention_ms": 365 * 24 * 3600 * 1000} | (private_options or {})
        self.hub = MemoryHub(self.n)
        # Shared with every TcpTransport: a node dials the members above it, so nodes
        # start from the highest index down and each finds its peers' ports filled in.
        self.addresses: list[tuple[str, int]] = [("127.0.0.1", 0)] * self.n
        self.nodes: dict[int, _Running] = {}
        self._nonces = itertools.count(1)

    def data_dir(self, index: int) -> Path:
        return self.base_dir / f"node{index}"

    async def start(self, nursery: trio.Nursery, indexes: Sequence[int] | None = None) -> None:
        for i in sorted(range(self.n) if indexes is None else indexes, reverse=True):
            await self.start_node(nursery, i)

    async def start_node(self, nursery: trio.Nursery, index: int) -> NodeRuntime:
        if index in self.nodes:
            raise RuntimeError(f"node {index} is already running")
        store = open_store(self.data_dir(index), self.genesis)
        tcp: TcpTransport | None = None
        transport: Transport
        if self.transport_kind == "tcp":
            seed = local_seed(self.genesis.chain_id, index)
            tcp = TcpTransport(
                index,
                seed,
                self.genesis.membership(),
                self.addresses,
                listen=self.addresses[index],
                handshake_timeout_s=2.0,
            )
            transport = tcp
        else:
            transport = self.hub.attach(index)
        runtime = build_runtime(index, self.genesis, self.signers[index], store, transport)
        # Its own environment beside the ledger's: see ``node.details.store``.
        private_store = PrivateStore.open(
            self.data_dir(index) / "private", chain_id=self.genesis.chain_id
        )
        details = PrivateDetailsService(
            runtime, store, private_store, self.genesis, **self.private_options
        )
        scope = trio.CancelScope()
        running = _Running(runtime, store, scope, details, private_store)
        self.nodes[index] = running

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    async with trio.open_nursery() as inner:
                        if tcp is not None:
                            port = await inner.start(tcp.run)
                            self.addresses[index] = ("127.0.0.1", port)
                        await inner.start(runtime.run)
                        await inner.start(details.run)
                        task_status.started()
            finally:
                running.done.set()

        await nursery.start(run)
        return runtime

    async def stop_node(self, index: int) -> None:
        """Like a crash of the process: whatever was fsynced survives, nothing else."""
        running = self.nodes.pop(index)
        running.scope.cancel()
        await running.done.wait()
        self.hub.detach(index)
        running.private_store.close()
        running.store.close()

    async def stop(self) -> None:
        for index in list(self.nodes):
            await self.stop_node(index)

    def runtime(self, index: int) -> NodeRuntime:
        return self.nodes[index].runtime

    def store(self, index: int) -> LedgerStore:
        return self.nodes[index].store

    def details(self, index: int) -> PrivateDetailsService:
        return self.nodes[index].details

    def member_name(self, index: int) -> str:
        return self.genesis.members[index].name

    def next_nonce(self) -> int:
        return next(self._nonces)

    async def wait_height(self, height: int, indexes: Sequence[int] | None = None) -> None:
        for i in range(self.n) if indexes is None else indexes:
            await self.nodes[i].runtime.wait_height(height)

"""A whole consortium in one process: n runtimes over an in-memory transport, each with
its own LMDB directory. For tests, demos and benchmarks; nodes can be stopped and
restarted from their directories mid-run."""

from __future__ import annotations

import functools
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
from node.pseudonyms.service import PseudonymService
from node.pseudonyms.store import PseudonymStore
from node.setup.genesis import (
    DEFAULT_REPORT_QUOTA,
    Genesis,
    GenesisConsensus,
    Member,
    assemble_draft,
)
from node.setup.provision import local_member_layout
from node.setup.shares import PseudonymShare
from node.testing.dealer import KeyedPseudonyms, TrustedDealing, deal, dealt_genesis


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
    *,
    threshold: int | None = None,
    report_quota_per_day: int = DEFAULT_REPORT_QUOTA,
) -> tuple[Genesis, list[Signer]]:
    """``roles`` replaces the local layout's roles of the members it names (a member
    that approves no cases, say). The pseudonym key is dealt by the test-only trusted
    dealer from a fixed seed (``local_dealing``), so the same call always gives the same
    genesis and a test can compute the consortium's pseudonyms offline
    (``local_pseudonyms``)."""
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
    draft = assemble_draft(
        chain_id,
        members,
        case_approvals=min(3, n),
        params=consensus or GenesisConsensus(),
        genesis_time="2026-01-01T00:00:00Z",
        threshold=threshold,
        report_quota_per_day=report_quota_per_day,
    )
    genesis, _, _ = dealt_genesis(draft, seed=_dealer_seed(chain_id))
    return genesis, signers


def _dealer_seed(chain_id: str) -> str:
    return f"local-pseudonyms/{chain_id}"


@functools.lru_cache(maxsize=16)
def local_dealing(genesis: Genesis) -> TrustedDealing:
    """The dealing behind a ``local_genesis`` genesis (the whole key included); refuses
    a genesis whose pseudonym key was not dealt by ``local_genesis``."""
    dealing = deal(
        len(genesis.members), genesis.pseudonyms.threshold, seed=_dealer_seed(genesis.chain_id)
    )
    if dealing.public_shares != genesis.pseudonyms.public_shares:
        raise ValueError(
            "this genesis's pseudonym key was not dealt by local_genesis; give its shares"
        )
    return dealing


def local_shares(genesis: Genesis) -> list[PseudonymShare]:
    """Each member's share of a ``local_genesis`` key (member i at position i)."""
    return local_dealing(genesis).shares(genesis)


def local_pseudonyms(genesis: Genesis) -> KeyedPseudonyms:
    """Offline pseudonyms equal to those the nodes of a ``local_genesis`` consortium
    evaluate together: for tests that check answers or sign load ahead."""
    return local_dealing(genesis).source()


@dataclass
class _Running:
    runtime: NodeRuntime
    store: LedgerStore
    scope: trio.CancelScope
    details: PrivateDetailsService
    private_store: PrivateStore
    pseudonyms: PseudonymService
    pseudonym_store: PseudonymStore
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
        shares: Sequence[PseudonymShare] | None = None,
    ) -> None:
        """``private_options`` go to each node's ``PrivateDetailsService`` (retention
        and timings; one year of retention when not given). ``shares`` are the members'
        pseudonym key shares (member i's at position i); by default those of a
        ``local_genesis`` genesis."""
        if transport not in ("memory", "tcp"):
            raise ValueError(f"unknown transport {transport!r}")
        self.base_dir = base_dir
        self.genesis = genesis
        self.signers = list(signers)
        self.n = len(signers)
        self.shares = list(shares) if shares is not None else local_shares(genesis)
        if len(self.shares) != self.n:
            raise ValueError(f"{len(self.shares)} pseudonym shares for {self.n} members")
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
        pseudonym_store = PseudonymStore.open(
            self.data_dir(index) / "pseudonyms", chain_id=self.genesis.chain_id
        )
        pseudonyms = PseudonymService(
            runtime, store, self.genesis, pseudonym_store, self.shares[index]
        )
        scope = trio.CancelScope()
        running = _Running(
            runtime, store, scope, details, private_store, pseudonyms, pseudonym_store
        )
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
                        await inner.start(pseudonyms.run)
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
        running.pseudonym_store.close()
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

    def pseudonyms(self, index: int) -> PseudonymService:
        return self.nodes[index].pseudonyms

    def share(self, index: int) -> PseudonymShare:
        """Member ``index``'s (0-based) share of the pseudonym key, for its node."""
        return self.shares[index]

    def member_name(self, index: int) -> str:
        return self.genesis.members[index].name

    def next_nonce(self) -> int:
        return next(self._nonces)

    async def wait_height(self, height: int, indexes: Sequence[int] | None = None) -> None:
        for i in range(self.n) if indexes is None else indexes:
            await self.nodes[i].runtime.wait_height(height)

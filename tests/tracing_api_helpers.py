"""A running in-process consortium with the tracing service and API on every node, for
the case, query and audit tests of the local API (``test_api_tracing.py``,
``test_api_fuzz.py``).

Member 0 (police-0) is the investigator; every member approves and audits; a case
needs k = 3 approvals (``node.testing.cluster.local_genesis``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from api_helpers import asgi_client, full_user, users_with
from cluster_helpers import FAST, make_cluster

from consensus.blocks import Block
from node.api.app import build_app
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Body, Link, Report
from node.ledger.layout import BlockIndex
from node.ledger.transactions import encode_tx, make_tx
from node.setup.users import User
from node.testing.cluster import InProcessCluster, local_genesis, local_pseudonyms
from node.tracing.service import TracingService

# The pseudonyms every ``make_cluster`` consortium of four evaluates (its key is dealt
# by the test-only dealer from the chain id), computed offline to build expectations.
PSEUDONYMS = local_pseudonyms(local_genesis(4, consensus=FAST)[0])
DAY = 86_400_000
PHONE = "phone:+86 138 0013 8000"
ACCOUNT = "account:DE89370400440532013000"
DEVICE = "device:35-209900-176148-1"
EMAIL = "email:mule@example.com"
JUSTIFICATION = (
    "Fourteen complaints name this number; two victims, Li Na and Wang Fang, moved "
    "48,000 CNY to a 'safe account' at the caller's request."
)


def now_ms() -> int:
    return int(time.time() * 1000)


def ref(text: str) -> EntityRef:
    entity_type, _, raw = text.partition(":")
    return PSEUDONYMS.refs([(entity_type, raw)])[0]


class HookWatch:
    """The last height a runtime's hooks were called with (after the registry's)."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.changed = trio.Event()

    def __call__(self, blocks: Sequence[tuple[Block, BlockIndex]]) -> None:
        self.height = blocks[-1][0].header.height
        self.changed.set()
        self.changed = trio.Event()


@dataclass
class TracingCluster:
    cluster: InProcessCluster
    services: list[TracingService]
    clients: list[httpx.AsyncClient]
    watches: list[HookWatch]
    # Member i's user (every role) acting through ``clients[i]``, and its token.
    users: list[User]
    tokens: list[str]

    def sign(self, member: int, body: Body, time_ms: int | None = None) -> bytes:
        tx = make_tx(
            self.cluster.signers[member],
            self.cluster.genesis.chain_id,
            self.cluster.member_name(member),
            body.kind,
            body,
            self.cluster.next_nonce(),
            now_ms() if time_ms is None else time_ms,
        )
        return encode_tx(tx)

    def report(
        self, member: int, entity: str, observed_ms: int, category: str = "fraud_call"
    ) -> bytes:
        return self.sign(member, Report(ref(entity), category, (), None, observed_ms, None))

    def link(self, member: int, a: str, b: str, relation: str, observed_ms: int) -> bytes:
        return self.sign(member, Link(ref(a), ref(b), relation, observed_ms, None))

    async def commit(self, txs: Sequence[bytes], via: int = 1) -> list[bytes]:
        """Submit through a node's runtime, wait for every commit on every node."""
        runtime = self.cluster.runtime(via)
        ids = []
        for result in await runtime.submit_batch(list(txs)):
            assert result.accepted, result
            ids.append(result.tx_id)
        for tx_id in ids:
            await runtime.wait_committed(tx_id)
        await self.settle()
        return ids

    async def settle(self) -> None:
        """Until every node has stored what any node has."""
        top = max(self.cluster.store(i).tip()[0] for i in range(self.cluster.n))
        await self.cluster.wait_height(top)
        # A block is in the store a moment before the runtime's hook hands it to the
        # registry (clients waiting for a transaction are woken after both).
        for watch in self.watches:
            while watch.height < top:
                await watch.changed.wait()

    async def open_case(
        self,
        case_id: str,
        scope: Sequence[str],
        *,
        window: tuple[int, int] | None = None,
        expires_ms: int | None = None,
        purpose: str = "telecom_fraud",
        justification: str = JUSTIFICATION,
    ) -> dict[str, Any]:
        now = now_ms()
        start, end = window or (now - 30 * DAY, now + DAY)
        body = {
            "case_id": case_id,
            "purpose": purpose,
            "justification": justification,
            "scope": list(scope),
            "window": {"start_ms": start, "end_ms": end},
            "expires_ms": expires_ms or now + 7 * DAY,
        }
        response = await self.clients[0].post("/cases", json=body)
        assert response.status_code == 201, response.text
        await self.settle()
        answer: dict[str, Any] = response.json()
        return answer

    async def approve(self, case_id: str, members: Sequence[int] = (1, 2, 3)) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for member in members:
            response = await self.clients[member].post(f"/cases/{case_id}/approve", json={})
            assert response.status_code == 200, response.text
            answer = response.json()
        await self.settle()
        return answer


@asynccontextmanager
async def tracing_cluster(
    tmp_path: Path,
    *,
    transport: str = "memory",
    roles: Mapping[int, Sequence[str]] | None = None,
    **options: Any,
) -> AsyncIterator[TracingCluster]:
    """Four nodes, each with its tracing and details services and an httpx client for
    its app; ``roles`` replaces the roles of the members it names."""
    cluster = make_cluster(tmp_path, transport=transport, roles=roles)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        services, watches = [], []
        for i in range(cluster.n):
            runtime, store = cluster.runtime(i), cluster.store(i)
            services.append(
                TracingService.attach(
                    runtime, store, cluster.genesis, cluster.pseudonyms(i), **options
                )
            )
            watches.append(HookWatch(store.tip()[0]))
            runtime.on_blocks_stored.append(watches[-1])
        async with AsyncExitStack() as stack:
            clients, users, tokens = [], [], []
            for i, service in enumerate(services):
                user, token = full_user(f"officer-{i}")
                users.append(user)
                tokens.append(token)
                app = build_app(
                    cluster.runtime(i),
                    cluster.store(i),
                    cluster.genesis,
                    tracing=service,
                    details=cluster.details(i),
                    pseudonyms=cluster.pseudonyms(i),
                    users=users_with(user),
                )
                clients.append(await stack.enter_async_context(asgi_client(app, token)))
            yield TracingCluster(cluster, services, clients, watches, users, tokens)
        await cluster.stop()
        nursery.cancel_scope.cancel()

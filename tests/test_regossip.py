"""A transaction accepted by one node whose gossip never reached the primary still
commits, without a view change: the accepting node sends it to the primary again while
it is pending (``NodeRuntime._regossip_stale``, every quarter of the view timeout).
Gossip is sent once and a peer may drop it (a full queue, its admission bound); without
the second send the transaction waited for ever while blocks kept committing, or, once
backups take a request passed over for censored, until they replaced the primary."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from cluster_helpers import make_cluster, report_tx

from net.wire import Frame, TxGossip

PRIMARY = 0  # of view 0
SUBMITTER = 1


class LosingGossip:
    """Node 1's transport, losing every transaction gossip frame to the primary until
    ``healed``."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.healed = False
        self.lost = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def send_nowait(self, to: int, frame: Frame) -> None:
        if to == PRIMARY and isinstance(frame, TxGossip) and not self.healed:
            self.lost += 1
            return
        self.inner.send_nowait(to, frame)  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
async def test_a_transaction_whose_gossip_the_primary_lost_commits_without_a_view_change(
    tmp_path: Path,
) -> None:
    cluster = make_cluster(tmp_path)
    attach = cluster.hub.attach
    losing: list[LosingGossip] = []

    def attach_losing(me: int):  # type: ignore[no-untyped-def]
        transport = attach(me)
        if me != SUBMITTER:
            return transport
        losing.append(LosingGossip(transport))
        return losing[-1]

    cluster.hub.attach = attach_losing  # type: ignore[method-assign]
    now = int(time.time() * 1000)
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            result = await cluster.runtime(SUBMITTER).submit(report_tx(cluster, 1, 0, now))
            assert result.accepted
            await trio.sleep(0.5)
            [transport] = losing
            assert transport.lost >= 1
            transport.healed = True  # only the first sends were lost

            async def keep_committing() -> None:
                # Blocks keep committing meanwhile, so no member suspects the primary:
                # the lost transaction is what is missing, not progress.
                for i in range(1, 10_000):
                    await cluster.runtime(PRIMARY).submit(report_tx(cluster, 0, i, now))
                    await trio.sleep(0.2)

            nursery.start_soon(keep_committing)
            with trio.fail_after(10):
                await cluster.runtime(SUBMITTER).wait_committed(result.tx_id)
            for i in range(4):
                assert cluster.runtime(i).replica.view == 0  # type: ignore[union-attr]
            assert cluster.runtime(SUBMITTER).stats.regossiped >= 1
            await cluster.stop()
            nursery.cancel_scope.cancel()

"""Transaction gossip as the runtime handles it: what peers sent and this node has yet
to check (``GossipBacklog``), the checks under way that gossip and proposals share
(``ChecksUnderWay``), and which submissions to send the primary again
(``stale_submissions``). No I/O: the runtime owns the loops and the transport."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import trio

from net.wire import TxGossip


class GossipBacklog:
    """Peers' gossip frames waiting for this node's check, one bounded queue per peer.
    Policy when a peer's queue is full: its new frame is shed (counted), never queued:
    gossip is best effort, and the submitting member sends the primary its own
    transactions again (``stale_submissions``)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.shed = 0
        self._frames: dict[int, deque[TxGossip]] = {}
        self._bytes: dict[int, int] = {}
        self._arrived = trio.Event()

    def put(self, src: int, gossip: TxGossip) -> bool:
        size = sum(len(tx) for tx in gossip.txs)
        frames = self._frames.setdefault(src, deque())
        held = self._bytes.get(src, 0)
        if frames and held + size > self.limit_bytes:
            self.shed += 1
            return False
        frames.append(gossip)
        self._bytes[src] = held + size
        self._arrived.set()
        return True

    def __bool__(self) -> bool:
        return any(self._frames.values())

    async def wait(self) -> None:
        """Until a frame is waiting."""
        while not self:
            self._arrived = trio.Event()
            await self._arrived.wait()

    def take(self, most: int) -> list[bytes]:
        """Up to about ``most`` transactions, a frame from each peer in turn: one trip to
        the worker thread for many small frames, and no peer crowds out the others."""
        txs: list[bytes] = []
        while len(txs) < most and self:
            for src, frames in self._frames.items():
                if frames:
                    gossip = frames.popleft()
                    self._bytes[src] -= sum(len(tx) for tx in gossip.txs)
                    txs.extend(gossip.txs)
        return txs

    @property
    def unchecked(self) -> int:
        """Transactions waiting: work the node holds as much as its mempool's."""
        return sum(len(g.txs) for frames in self._frames.values() for g in frames)

    def lag(self, limit: int, peers: int) -> int:
        """The unchecked gossip that makes this node's own clients wait, each peer's
        counted up to an equal part of ``limit``: one member flooding gossip that fails
        its checks must not shut the node to everyone else."""
        part = -(-limit // max(1, peers))
        return sum(min(part, sum(len(g.txs) for g in frames)) for frames in self._frames.values())


class ChecksUnderWay:
    """The transactions whose signatures a worker thread checks right now, by id:
    gossip and a proposal often bring the same ones at about the same time, and each
    signature is then verified once, not twice."""

    def __init__(self) -> None:
        self._events: dict[bytes, trio.Event] = {}

    async def wait_for(self, ids: Iterable[bytes]) -> None:
        """Until no check of any of ``ids`` is under way."""
        for under_way in {self._events[i] for i in ids if i in self._events}:
            await under_way.wait()

    @contextmanager
    def checking(self, ids: Sequence[bytes]) -> Iterator[None]:
        done = trio.Event()
        for i in ids:
            self._events[i] = done
        try:
            yield
        finally:
            for i in ids:
                if self._events.get(i) is done:
                    del self._events[i]
            done.set()


class _Pool(Protocol):
    def get(self, tx_id: bytes) -> _Entry | None: ...


class _Entry(Protocol):
    @property
    def data(self) -> bytes: ...


def stale_submissions(
    submitted_at: dict[bytes, float], pool: _Pool, now: float, previous: float, after: float
) -> tuple[list[bytes], list[bytes]]:
    """(ids that left the pool without committing, transactions to send the primary
    again): those submitted here still pending ``after`` seconds after they were
    accepted, once per ``after`` since. ``submitted_at`` is in submission order."""
    gone: list[bytes] = []
    again: list[bytes] = []
    for tx_id, at in submitted_at.items():
        age = now - at
        if age < after:
            break
        entry = pool.get(tx_id)
        if entry is None:
            gone.append(tx_id)
        elif age // after != (previous - at) // after:
            again.append(entry.data)
    return gone, again

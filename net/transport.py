"""The transport interface the node runtime talks to, and an in-memory implementation.

A transport moves encoded frames between members. ``send_nowait`` never blocks the
runtime: each destination has a bounded queue. When a queue is full, gossip is dropped
(counted) and for consensus traffic the whole queue to that peer is discarded and
counted as a reset, exactly what a TCP transport does when it drops a stuck connection:
the protocol's retransmission and block sync recover, and the operator sees the count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import trio

from consensus.codec import DecodeError
from net.wire import Frame, decode_frame, encode_frame, is_droppable

log = logging.getLogger("crosstrace.net")

QUEUE_FRAMES = 4096


@dataclass
class TransportStats:
    sent: int = 0
    received: int = 0
    dropped_gossip: int = 0
    peer_resets: int = 0
    undeliverable: int = 0
    malformed: int = 0
    sent_by_kind: dict[str, int] = field(default_factory=dict)


class Transport(Protocol):
    me: int
    stats: TransportStats

    def send_nowait(self, to: int, frame: Frame) -> None: ...

    async def receive(self) -> tuple[int, Frame]:
        """The next authenticated (sender member, frame); raises EndOfChannel on close."""
        ...

    async def aclose(self) -> None: ...


class MemoryHub:
    """Connects in-process nodes. Frames are encoded and decoded on the way, so the
    codec's checks apply exactly as on a wire."""

    def __init__(self, n: int, queue_frames: int = QUEUE_FRAMES) -> None:
        self.n = n
        self.queue_frames = queue_frames
        self._inboxes: dict[int, trio.MemorySendChannel[tuple[int, bytes]]] = {}
        self.partitioned: set[frozenset[int]] = set()

    def attach(self, me: int) -> MemoryTransport:
        send, receive = trio.open_memory_channel[tuple[int, bytes]](self.queue_frames)
        old = self._inboxes.get(me)
        if old is not None:
            old.close()
        self._inboxes[me] = send
        return MemoryTransport(self, me, receive)

    def detach(self, me: int) -> None:
        inbox = self._inboxes.pop(me, None)
        if inbox is not None:
            inbox.close()

    def cut(self, a: int, b: int) -> None:
        self.partitioned.add(frozenset((a, b)))

    def heal(self) -> None:
        self.partitioned.clear()

    def deliver(
        self, src: int, dst: int, data: bytes, droppable: bool, stats: TransportStats
    ) -> None:
        inbox = self._inboxes.get(dst)
        if inbox is None or frozenset((src, dst)) in self.partitioned:
            stats.undeliverable += 1
            return
        try:
            inbox.send_nowait((src, data))
        except trio.WouldBlock:
            if droppable:
                stats.dropped_gossip += 1
            else:
                stats.peer_resets += 1
                log.warning("queue from member %d to member %d is full; frame discarded", src, dst)
        except trio.ClosedResourceError:
            stats.undeliverable += 1


class MemoryTransport:
    def __init__(
        self, hub: MemoryHub, me: int, inbox: trio.MemoryReceiveChannel[tuple[int, bytes]]
    ) -> None:
        self.hub = hub
        self.me = me
        self._inbox = inbox
        self.stats = TransportStats()

    def send_nowait(self, to: int, frame: Frame) -> None:
        data = encode_frame(frame)
        kind = type(frame).__name__
        self.stats.sent += 1
        self.stats.sent_by_kind[kind] = self.stats.sent_by_kind.get(kind, 0) + 1
        self.hub.deliver(self.me, to, data, is_droppable(frame), self.stats)

    async def receive(self) -> tuple[int, Frame]:
        while True:
            src, data = await self._inbox.receive()
            try:
                frame = decode_frame(data)
            except DecodeError as exc:
                self.stats.malformed += 1
                log.warning("dropping malformed frame from member %d: %s", src, exc)
                continue
            self.stats.received += 1
            return src, frame

    async def aclose(self) -> None:
        self.hub.detach(self.me)
        await self._inbox.aclose()

"""Per-peer state and counters of the TCP transport, reconnect backoff, socket options.

Split from ``net.tcp`` to keep each file readable; ``net.tcp`` re-exports the public
names (``TcpStats``, ``PeerStatistics``, ``TcpTransportStatistics``, ``backoff_delay``).
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

import trio

from net.admission import EVICT_REASONS, REJECT_REASONS
from net.tcp_session import SecureConnection
from net.transport import TransportStats

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0


@dataclass
class TcpStats(TransportStats):
    """``TransportStats`` plus what only a network transport sees. Per peer: ``peers()``."""

    dial_failures: int = 0
    handshakes_completed: int = 0
    handshake_failures: int = 0  # garbage, bad Noise, EOF during the handshake
    handshake_timeouts: int = 0
    unknown_peers: int = 0  # the remote static key is no genesis member's
    wrong_peer: int = 0  # we dialled member j and someone else answered
    wrong_direction: int = 0  # a member that must wait for our call dialled us
    rejected_connections: int = 0  # inbound sockets closed at once, all reasons
    # By reason (``net.admission``): handshake_slots, inbound, descriptors, per_address.
    rejected_by_reason: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0)
    )
    evicted_handshakes: int = 0  # handshakes ended early to make room, all reasons
    # By reason: displaced (silent), stalled, stranger.
    evicted_by_reason: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(EVICT_REASONS, 0)
    )
    replaced_connections: int = 0  # a newer connection from the same member won
    framing_errors: int = 0
    decrypt_failures: int = 0
    frames_discarded: int = 0  # emptied out of full queues by peer resets


@dataclass(frozen=True)
class PeerStatistics:
    """One peer as ``peers()`` reports it. ``since`` is the ``trio.current_time()`` of
    the last connect or disconnect (None before the first connection). Frame and byte
    counts are of encoded application frames, across all sessions."""

    member: int
    address: tuple[str, int]
    connected: bool
    direction: str | None  # "outbound" (we dialled) or "inbound", while connected
    since: float | None
    sessions: int
    frames_sent: int
    bytes_sent: int
    frames_received: int
    bytes_received: int
    queued: int
    dropped_gossip: int
    resets: int
    last_error: str | None


@dataclass(frozen=True)
class TcpTransportStatistics:
    port: int | None
    connected_peers: int
    inbound_connections: int
    unauthenticated_connections: int
    inbox_frames: int
    silent_handshakes: int = 0  # of those in the handshake, not yet sent message 1
    stranger_handshakes: int = 0  # of those in the handshake, from no member's address
    descriptors_open: int | None = None  # the listener's last estimate (None: unknown)
    descriptors_limit: int | None = None  # the soft RLIMIT_NOFILE (None: unknown)


def backoff_delay(
    failures: int, rng: random.Random, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S
) -> float:
    """Seconds to wait before the next dial after ``failures`` failed attempts in a row."""
    ceiling = min(cap, base * 2.0 ** min(failures, 32))
    return ceiling * (0.5 + 0.5 * rng.random())


class Link:
    """One established session; ``close`` ends its reader and writer tasks."""

    def __init__(self, secure: SecureConnection, direction: str) -> None:
        self.secure = secure
        self.direction = direction
        self.scope = trio.CancelScope()
        self.reason: str | None = None

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


class Peer:
    """Everything about one other member that outlives its connections: the send
    queue, the counters, and the current ``Link`` if one is up."""

    def __init__(self, member: int, address: tuple[str, int], queue_frames: int) -> None:
        self.member = member
        self.address = address
        self.queue_in, self.queue_out = trio.open_memory_channel[bytes](queue_frames)
        self.link: Link | None = None
        self.session_started = trio.Event()  # set, then replaced, as each session starts
        self.since: float | None = None
        self.sessions = 0
        self.frames_sent = self.bytes_sent = 0
        self.frames_received = self.bytes_received = 0
        self.dropped_gossip = 0
        self.resets = 0
        self.last_error: str | None = None

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(
            member=self.member,
            address=self.address,
            connected=self.link is not None,
            direction=None if self.link is None else self.link.direction,
            since=self.since,
            sessions=self.sessions,
            frames_sent=self.frames_sent,
            bytes_sent=self.bytes_sent,
            frames_received=self.frames_received,
            bytes_received=self.bytes_received,
            queued=self.queue_out.statistics().current_buffer_used,
            dropped_gossip=self.dropped_gossip,
            resets=self.resets,
            last_error=self.last_error,
        )

    def clear_queue(self) -> int:
        """Empty the send queue (a reset); returns how many frames were discarded."""
        discarded = 0
        while True:
            try:
                self.queue_out.receive_nowait()
            except trio.WouldBlock:
                return discarded
            discarded += 1


def tune_socket(stream: trio.SocketStream) -> None:
    """TCP keepalive, so a half-open connection is noticed within about 30 s."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    try:
        for level, option, value in options:
            stream.setsockopt(level, option, value)
    except OSError:
        pass  # the peer may already be gone; the handshake will notice


def remote_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "a closed connection"
    return f"{host}:{port}"

"""The member-to-member transport over TCP: trio sockets, Noise_XX, bounded queues.

Each member runs one ``TcpTransport``; ``run`` listens and dials, all in one nursery
that lives inside the caller's (``port = await nursery.start(transport.run)``).

Connections. One per pair of members, by a fixed rule: the member with the lower
index dials, the higher one accepts. Neither side ever has two candidate connections
to choose between, so there is no tie-break race. An authenticated connection from a
member that should have been dialled by us (index >= ours) is refused and counted as
``wrong_direction``: the caller is misconfigured or misbehaving, and accepting it
would create the second connection the rule exists to avoid. When a lower member
connects again while its previous connection is still open, the newer one wins and the
old one is closed: the dialler only redials after it gave up on the old connection,
which may be half-open on our side.

Reconnecting. The dialler retries with jittered exponential backoff (``backoff_delay``):
0.1 s after a session that lasted at least ``STABLE_SESSION_S``, doubling with every
failed attempt in a row up to 5 s, each delay drawn from [1/2, 1] of that with the
transport's own ``random.Random``. A shorter session counts as a failure, so a peer
that accepts and at once hangs up is not hammered.

Hostile sockets. Accepted connections are capped: at most ``max_unauthenticated`` in
the handshake and ``max_inbound`` in all; beyond either cap a new socket is closed at
once (``rejected_connections``). A handshake not finished within
``handshake_timeout_s`` is dropped (a dial's connect has a timeout of its own, the same
length). Sockets still in the handshake cannot be told apart, so a storm that fills
the handshake slots delays an honest member's reconnection by its backoff, while
established sessions carry on untouched. Every size on the wire is checked before
anything is buffered (``net.tcp_session``). Any framing, decryption or decoding error
closes that connection only, logged and counted.

Queues. ``send_nowait`` encodes the frame and puts it on the peer's bounded queue of
``queue_frames`` frames, which outlives connections, so frames sent during a short
reconnect are delivered once the peer is back. One writer task per connection empties
it. When the queue is full: gossip (``is_droppable``) is dropped and counted
(``dropped_gossip``); for a consensus frame the queue is emptied (``frames_discarded``)
and the connection reset (``peer_resets``, logged), then the frame is queued: a peer
that reads too slowly must not hold the queue hostage, and the protocol's
retransmission and block sync recover what was discarded. Frames already taken by a
writer when its connection dies are lost, as on any TCP connection.

Receiving. Every connection's reader decodes frames and puts them on one inbox of
``queue_frames`` frames that ``receive`` reads. When the inbox is full readers wait:
TCP flow control slows the senders, whose queues then apply the policy above. Waiting
readers are served in turn, so one flooding member cannot crowd the others out.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio
from nacl.signing import SigningKey

from consensus.codec import MAX_MESSAGE_BYTES, DecodeError
from consensus.membership import Membership
from net.framing import MAX_LENGTH, FramingError
from net.noise import NoiseError
from net.secure_session import x25519_public_from_ed25519
from net.tcp_peer import (
    Link,
    Peer,
    PeerStatistics,
    TcpStats,
    TcpTransportStatistics,
    backoff_delay,
    remote_address,
    tune_socket,
)
from net.tcp_session import ConnectionDropped, Counter, SecureConnection, establish
from net.transport import QUEUE_FRAMES, Transport, TransportStats
from net.wire import Frame, decode_frame, encode_frame, is_droppable

__all__ = [
    "PeerStatistics",
    "TcpStats",
    "TcpTransport",
    "TcpTransportStatistics",
    "backoff_delay",
]

log = logging.getLogger("crosstrace.net.tcp")

STABLE_SESSION_S = 1.0
WRITE_BATCH_BYTES = 256 * 1024  # queued frames gathered into one write
DECODE_IN_THREAD_BYTES = 1 << 20  # larger frames are decoded off the event loop
# accept() errors that mean "out of resources", not "listener broken" (as trio.serve_*)
ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class TcpTransport:
    """The ``Transport`` of member ``me`` over TCP. Single use: ``run`` once, then
    ``aclose`` (or cancel ``run``); a restarted member gets a new instance.

    ``addresses[i]`` is where member i listens (our own entry is not used; we listen on
    ``listen``). ``seed`` is our 32-byte Ed25519 node key seed; the Noise static key is
    derived from it, and every member's from its genesis public key.
    """

    def __init__(
        self,
        me: int,
        seed: bytes,
        membership: Membership,
        addresses: Sequence[tuple[str, int]],
        *,
        listen: tuple[str, int],
        max_frame_bytes: int = MAX_MESSAGE_BYTES,
        handshake_timeout_s: float = 5.0,
        max_inbound: int = 64,
        max_unauthenticated: int = 16,
        queue_frames: int = QUEUE_FRAMES,
        rng: random.Random | None = None,
    ) -> None:
        if not membership.is_member(me):
            raise ValueError(f"member {me} is not in the membership of {membership.n}")
        if len(addresses) != membership.n:
            raise ValueError(f"{len(addresses)} addresses for {membership.n} members")
        if len(seed) != 32 or bytes(SigningKey(seed).verify_key) != membership.public_keys[me]:
            raise ValueError(f"the seed is not member {me}'s node key")
        if not 1 <= max_frame_bytes <= MAX_LENGTH - 4:
            raise ValueError(f"max_frame_bytes must be in 1..{MAX_LENGTH - 4}")
        if handshake_timeout_s <= 0 or queue_frames < 1 or max_unauthenticated < 1:
            raise ValueError("timeouts, queue sizes and caps must be positive")
        if max_inbound <= me:
            # Members 0..me-1 all dial us; keep room for them and one handshake more.
            raise ValueError(f"member {me} accepts {me} members: max_inbound must exceed it")
        self.me = me
        self.membership = membership
        self.listen = listen
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.max_inbound = max_inbound
        self.max_unauthenticated = max_unauthenticated
        # The Transport protocol declares ``stats: TransportStats`` as a settable
        # attribute, which mypy holds invariant: the same object, typed in full, is
        # ``tcp_stats``.
        self.tcp_stats = TcpStats()
        self.stats: TransportStats = self.tcp_stats
        self.port: int | None = None
        self._seed = seed
        self._rng = rng if rng is not None else random.Random()
        # X -> -X on Ed25519 keeps the X25519 key, so two genesis keys could share one
        # Noise identity: refuse such a membership rather than confuse the two.
        self._members_by_key: dict[bytes, int] = {}
        for i, public_key in enumerate(membership.public_keys):
            other = self._members_by_key.setdefault(x25519_public_from_ed25519(public_key), i)
            if other != i:
                raise ValueError(f"members {other} and {i} map to one Noise static key")
        self._peers = {
            i: Peer(i, (addresses[i][0], addresses[i][1]), queue_frames)
            for i in range(membership.n)
            if i != me
        }
        self._inbox_in, self._inbox_out = trio.open_memory_channel[tuple[int, Frame]](queue_frames)
        self._inbound = 0
        self._unauthenticated = 0
        self._started = False
        self._closed = False
        self._run_scope: trio.CancelScope | None = None
        self._done = trio.Event()

    # ------------------------------------------------------------ the Transport API

    def send_nowait(self, to: int, frame: Frame) -> None:
        peer = self._peers.get(to)
        if peer is None or self._closed:
            self.tcp_stats.undeliverable += 1
            return
        data = encode_frame(frame)
        if len(data) > self.max_frame_bytes:
            self.tcp_stats.undeliverable += 1
            log.error("frame of %d bytes for member %d over the limit; not sent", len(data), to)
            return
        kind = type(frame).__name__
        self.tcp_stats.sent += 1
        self.tcp_stats.sent_by_kind[kind] = self.tcp_stats.sent_by_kind.get(kind, 0) + 1
        try:
            peer.queue_in.send_nowait(data)
            return
        except trio.WouldBlock:
            pass
        if is_droppable(frame):
            self.tcp_stats.dropped_gossip += 1
            peer.dropped_gossip += 1
            return
        discarded = peer.clear_queue()
        self.tcp_stats.peer_resets += 1
        self.tcp_stats.frames_discarded += discarded
        peer.resets += 1
        reason = f"send queue full: {discarded} frames discarded, connection reset"
        peer.last_error = reason
        log.warning("member %d: %s", to, reason)
        if peer.link is not None:
            peer.link.close(reason)
        peer.queue_in.send_nowait(data)

    async def receive(self) -> tuple[int, Frame]:
        return await self._inbox_out.receive()

    async def aclose(self) -> None:
        """Close every connection and the listener; ``receive`` then raises."""
        self._closed = True
        if self._run_scope is not None:
            self._run_scope.cancel()
        self._inbox_in.close()
        self._inbox_out.close()
        if self._started:
            await self._done.wait()
        else:
            await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------ observation

    def peers(self) -> dict[int, PeerStatistics]:
        """Per other member: connection state, traffic counters, queue, last error."""
        return {i: peer.statistics() for i, peer in self._peers.items()}

    def statistics(self) -> TcpTransportStatistics:
        return TcpTransportStatistics(
            port=self.port,
            connected_peers=sum(p.link is not None for p in self._peers.values()),
            inbound_connections=self._inbound,
            unauthenticated_connections=self._unauthenticated,
            inbox_frames=self._inbox_out.statistics().current_buffer_used,
        )

    async def wait_connected(self, member: int, sessions: int = 1) -> None:
        """Until a session with ``member`` is up, and at least ``sessions`` have been."""
        peer = self._peers[member]
        while peer.link is None or peer.sessions < sessions:
            await peer.session_started.wait()

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and dial until cancelled or closed; ``task_status.started(port)``."""
        if self._started or self._closed:
            raise trio.ClosedResourceError("a TcpTransport runs once")
        self._started = True
        try:
            host, port = self.listen
            listeners = await trio.open_tcp_listeners(port, host=host)
            try:
                self.port = listeners[0].socket.getsockname()[1]
                async with trio.open_nursery() as nursery:
                    self._run_scope = nursery.cancel_scope
                    if self._closed:  # aclose came while we were binding
                        nursery.cancel_scope.cancel()
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener, nursery)
                    for peer in self._peers.values():
                        if peer.member > self.me:
                            nursery.start_soon(self._dial_loop, peer)
                    log.info("member %d listening on %s:%d", self.me, host, self.port)
                    task_status.started(self.port)
            finally:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
        finally:
            self._closed = True
            self._inbox_in.close()
            self._done.set()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed (%s); pausing 100 ms", exc)
                await trio.sleep(0.1)
                continue
            if (
                self._inbound >= self.max_inbound
                or self._unauthenticated >= self.max_unauthenticated
            ):
                self.tcp_stats.rejected_connections += 1
                log.debug(
                    "connection refused: %d inbound, %d in handshake",
                    self._inbound,
                    self._unauthenticated,
                )
                await trio.aclose_forcefully(stream)
                continue
            self._inbound += 1  # counted now, before the handler task gets to run
            self._unauthenticated += 1
            nursery.start_soon(self._handle_inbound, stream)

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        handshaking = True
        try:
            tune_socket(stream)
            secure = await self._handshake(stream, None, None)
            self._unauthenticated -= 1
            handshaking = False
            if secure is None:
                return
            if secure.member >= self.me:
                self.tcp_stats.wrong_direction += 1
                reason = f"member {secure.member} dialled member {self.me}; the lower dials"
                log.warning("%s: refused", reason)
                if secure.member in self._peers:
                    self._peers[secure.member].last_error = reason
                return
            await self._serve(self._peers[secure.member], secure, "inbound")
        finally:
            if handshaking:
                self._unauthenticated -= 1
            self._inbound -= 1
            await trio.aclose_forcefully(stream)

    async def _dial_loop(self, peer: Peer) -> None:
        """Keep one connection to a higher member: dial, serve, back off, again."""
        failures = 0  # consecutive attempts that did not give a stable session
        while True:
            host, port = peer.address
            stream: trio.SocketStream | None = None
            error = "timed out"
            with trio.move_on_after(self.handshake_timeout_s):
                try:
                    stream = await trio.open_tcp_stream(host, port)
                except OSError as exc:
                    error = str(exc)
            lasted = 0.0
            if stream is None:
                self.tcp_stats.dial_failures += 1
                peer.last_error = f"connect to {host}:{port}: {error}"
            else:
                lasted = await self._handle_outbound(peer, stream)
            failures = 0 if lasted >= STABLE_SESSION_S else failures + 1
            await trio.sleep(backoff_delay(failures, self._rng))

    async def _handle_outbound(self, peer: Peer, stream: trio.SocketStream) -> float:
        """Handshake and serve one dialled connection; returns how long its session
        lasted (0 if there was none)."""
        try:
            tune_socket(stream)
            secure = await self._handshake(stream, peer.member, peer)
            if secure is None:
                return 0.0
            started = trio.current_time()
            await self._serve(peer, secure, "outbound")
            return trio.current_time() - started
        finally:
            await trio.aclose_forcefully(stream)

    async def _handshake(
        self, stream: trio.SocketStream, expected: int | None, peer: Peer | None
    ) -> SecureConnection | None:
        where = remote_address(stream) if expected is None else f"member {expected}"
        with trio.move_on_after(self.handshake_timeout_s):
            try:
                secure = await establish(
                    stream,
                    seed=self._seed,
                    chain_id=self.membership.chain_id,
                    members=self._members_by_key,
                    expected=expected,
                    max_message=self.max_frame_bytes,
                )
            except ConnectionDropped as exc:
                self._count(exc.counter)
                level = logging.WARNING if exc.counter != "handshake_failures" else logging.INFO
                log.log(level, "handshake with %s failed: %s", where, exc.reason)
                reason = exc.reason
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.tcp_stats.handshake_failures += 1
                log.info("handshake with %s failed: connection lost: %s", where, exc)
                reason = f"connection lost during the handshake: {exc}"
            else:
                self.tcp_stats.handshakes_completed += 1
                return secure
            if peer is not None:
                peer.last_error = reason
            return None
        self.tcp_stats.handshake_timeouts += 1
        log.info("handshake with %s not done in %.1f s; dropped", where, self.handshake_timeout_s)
        if peer is not None:
            peer.last_error = "handshake timed out"
        return None

    async def _serve(self, peer: Peer, secure: SecureConnection, direction: str) -> None:
        """Carry traffic for one established session until it fails or is replaced."""
        link = Link(secure, direction)
        old = peer.link
        if old is not None:
            self.tcp_stats.replaced_connections += 1
            old.close("replaced by a newer connection")
        peer.link = link
        peer.sessions += 1
        peer.since = trio.current_time()
        started, peer.session_started = peer.session_started, trio.Event()
        started.set()
        log.info("member %d: connected to member %d (%s)", self.me, peer.member, direction)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, peer, link)
                    nursery.start_soon(self._read_loop, peer, link)
        finally:
            if peer.link is link:
                peer.link = None
                peer.since = trio.current_time()
            if link.reason is not None:
                peer.last_error = link.reason
            log.info(
                "member %d: connection to member %d closed: %s",
                self.me,
                peer.member,
                link.reason or "shutting down",
            )

    async def _write_loop(self, peer: Peer, link: Link) -> None:
        try:
            while True:
                batch = [await peer.queue_out.receive()]
                size = len(batch[0])
                while size < WRITE_BATCH_BYTES:
                    try:
                        batch.append(peer.queue_out.receive_nowait())
                    except trio.WouldBlock:
                        break
                    size += len(batch[-1])
                await link.secure.send_messages(batch)
                peer.frames_sent += len(batch)
                peer.bytes_sent += size
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            link.close(f"connection lost while sending: {exc}")
        except (NoiseError, FramingError) as exc:  # not expected: our own frames
            log.error("member %d: cannot send to member %d: %s", self.me, peer.member, exc)
            link.close(f"send failed: {exc}")

    async def _read_loop(self, peer: Peer, link: Link) -> None:
        try:
            while True:
                message = await link.secure.receive_message()
                if message is None:
                    link.close("closed by the peer")
                    return
                try:
                    if len(message) > DECODE_IN_THREAD_BYTES:
                        frame = await trio.to_thread.run_sync(
                            decode_frame, message, self.max_frame_bytes
                        )
                    else:
                        frame = decode_frame(message, self.max_frame_bytes)
                except DecodeError as exc:
                    raise ConnectionDropped("malformed", f"malformed frame: {exc}") from None
                peer.frames_received += 1
                peer.bytes_received += len(message)
                await self._inbox_in.send((peer.member, frame))
                self.tcp_stats.received += 1
        except ConnectionDropped as exc:
            self._count(exc.counter)
            log.warning("member %d: dropping member %d: %s", self.me, peer.member, exc.reason)
            link.close(exc.reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            link.close(f"connection lost: {exc}")

    def _count(self, counter: Counter) -> None:
        setattr(self.tcp_stats, counter, getattr(self.tcp_stats, counter) + 1)


if TYPE_CHECKING:  # TcpTransport must satisfy the protocol the runtime is written against
    _conforms: Callable[..., Transport] = TcpTransport

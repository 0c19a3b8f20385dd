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

Hostile sockets. Members come first. A socket in the handshake cannot be told from a
member until Noise message 3 names its key, so the listener ranks what it can see:
the source address, whether the socket has sent message 1 (a member sends it at once)
and for how long (``net.admission`` has the rules and the reasoning). Accepted sockets
that have not sent message 1 wait in a line of ``max_unauthenticated``, where a new
socket takes the place of the oldest: silent sockets, however many, only ever displace
each other, and a member's follows its connection with message 1 within a round trip.
Handshakes that have started (message 1 read, message 2 sent) hold one of
``max_unauthenticated`` slots; one not finished ``handshake_grace_s`` after starting
gives its slot to the next message 1, and when none has stalled so long, that message 1
is refused. Addresses that are no member's (the members' addresses are those the genesis
and ``addresses`` give) hold at most ``max_handshakes_per_address`` handshakes each and
only ever take strangers' places, while a member's address takes a stranger's place
whenever it needs one. At ``max_inbound`` inbound sockets in all, or with fewer than
``descriptor_reserve`` file descriptors free (``net.descriptors``), a new socket is
admitted only in the place of one of those, else closed at once. So silent sockets and
strangers' addresses cannot keep a member out; what can still delay one is a storm of
sockets that stall after (part of) a well-formed message 1 from a member's own address
(on 127.0.0.1 everyone shares it) faster than ``max_unauthenticated / handshake_grace_s``
a second. Every refusal and eviction is counted by reason (``rejected_by_reason``,
``evicted_by_reason``), and while they go on one line at most every 10 s logs the
counts. A handshake not finished within ``handshake_timeout_s`` is dropped (a dial's
connect has a timeout of its own, the same length); established sessions are never
touched by any of this. Every size on the wire is checked before anything is buffered
(``net.tcp_session``). Any framing, decryption or decoding error closes that connection
only, logged and counted.

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
import socket
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio
from nacl.signing import SigningKey

from consensus.codec import MAX_MESSAGE_BYTES, DecodeError
from consensus.membership import Membership
from net.admission import Handshake, HandshakePool, RejectReason, normalise_address
from net.descriptors import DESCRIPTOR_RESERVE, DescriptorBudget
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
PRESSURE_REPORT_S = 10.0  # at most one log line this often about refusals and evictions
RESOLVE_TIMEOUT_S = 10.0


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
        max_handshakes_per_address: int = 2,
        handshake_grace_s: float = 0.05,
        descriptor_reserve: int = DESCRIPTOR_RESERVE,
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
        if (
            min(handshake_timeout_s, handshake_grace_s) <= 0
            or min(queue_frames, max_unauthenticated, max_handshakes_per_address) < 1
            or descriptor_reserve < 0
        ):
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
        self.descriptor_reserve = descriptor_reserve
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
        # Where members listen is where they most likely dial from: those addresses rank
        # first for handshake slots (host names are resolved when ``run`` starts).
        self._member_hosts = {host for host, _ in addresses}
        self._pool = HandshakePool(
            max_unauthenticated,
            per_address=max_handshakes_per_address,
            grace_s=handshake_grace_s,
            member_addresses=_ip_addresses(self._member_hosts),
        )
        self._descriptors = DescriptorBudget(descriptor_reserve)
        self._inbound = 0
        self._reported: tuple[dict[str, int], dict[str, int]] | None = None
        self._reported_at = float("-inf")
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
        limit = self._descriptors.limit
        return TcpTransportStatistics(
            port=self.port,
            connected_peers=sum(p.link is not None for p in self._peers.values()),
            inbound_connections=self._inbound,
            unauthenticated_connections=len(self._pool),
            inbox_frames=self._inbox_out.statistics().current_buffer_used,
            silent_handshakes=self._pool.waiting(),
            stranger_handshakes=self._pool.strangers(),
            descriptors_open=self._descriptors.in_use,
            descriptors_limit=None if limit is None or limit < 0 else limit,
        )

    def member_addresses(self) -> frozenset[str]:
        """The IP addresses whose connections rank as members' for handshake slots."""
        return frozenset(self._pool.member_addresses)

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
                    nursery.start_soon(self._resolve_member_hosts)
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
            handshake = self._admit(stream)
            if handshake is None:
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._handle_inbound, stream, handshake)

    def _admit(self, stream: trio.SocketStream) -> Handshake | None:
        """The admission policy (``net.admission``): the new connection's handshake, or
        None to close it at once. Counts it, and makes room by eviction if it must."""
        now = trio.current_time()
        address = _peer_ip(stream)
        handshake = Handshake(
            fd=stream.socket.fileno(),
            address=address,
            member_address=self._pool.is_member_address(address),
            accepted_at=now,
        )
        decision = self._pool.admit(
            handshake,
            now,
            inbound_full=self._inbound >= self.max_inbound,
            descriptors_short=self._descriptors.short(now, own=self._inbound + 1),
        )
        if decision.evicted is not None:
            self._evict(decision.evicted, handshake, now)
        if not decision.admitted:
            assert decision.pressure is not None
            self._refuse(handshake, decision.pressure, now)
            return None
        self._inbound += 1  # counted now, before the handler task gets to run
        return handshake

    def _start(self, handshake: Handshake) -> None:
        """Message 1 of an inbound handshake has arrived: it needs a started slot, and
        when it gets none its handshake ends here (its scope is cancelled)."""
        now = trio.current_time()
        decision = self._pool.start(handshake, now)
        if decision.evicted is not None:
            self._evict(decision.evicted, handshake, now)
        if handshake.refused:
            self._refuse(handshake, "handshake_slots", now)
            handshake.scope.cancel()

    def _refuse(self, handshake: Handshake, reason: RejectReason, now: float) -> None:
        self.tcp_stats.rejected_connections += 1
        self.tcp_stats.rejected_by_reason[reason] += 1
        log.debug(
            "connection from %s refused (%s): %d inbound, %d in the handshake",
            handshake.address,
            reason,
            self._inbound,
            len(self._pool),
        )
        self._report_pressure(now)

    def _evict(self, victim: Handshake, newcomer: Handshake, now: float) -> None:
        assert victim.evicted is not None
        self.tcp_stats.evicted_handshakes += 1
        self.tcp_stats.evicted_by_reason[victim.evicted] += 1
        self._inbound -= 1  # its handler closes the socket and does not count it again
        victim.scope.cancel()
        log.debug(
            "handshake with %s evicted (%s) for one from %s",
            victim.address,
            victim.evicted,
            newcomer.address,
        )
        self._report_pressure(now)

    def _report_pressure(self, now: float) -> None:
        """One log line at most every ``PRESSURE_REPORT_S`` while connections are refused
        or evicted: the counts since the last one."""
        if now - self._reported_at < PRESSURE_REPORT_S:
            return
        stats = self.tcp_stats
        last = self._reported or ({}, {})
        refused = {k: v - last[0].get(k, 0) for k, v in stats.rejected_by_reason.items()}
        evicted = {k: v - last[1].get(k, 0) for k, v in stats.evicted_by_reason.items()}
        self._reported = (dict(stats.rejected_by_reason), dict(stats.evicted_by_reason))
        self._reported_at = now
        log.info(
            "member %d: p2p listener under pressure: %d connections refused %s, %d handshakes "
            "evicted %s since the last report",
            self.me,
            sum(refused.values()),
            {k: v for k, v in refused.items() if v},
            sum(evicted.values()),
            {k: v for k, v in evicted.items() if v},
        )

    async def _resolve_member_hosts(self) -> None:
        """Adds the addresses of members given by host name, once; failures only logged."""
        for host in sorted(self._member_hosts):
            if normalise_address(host) is not None or not host:
                continue
            with trio.move_on_after(RESOLVE_TIMEOUT_S):
                try:
                    infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                except OSError as exc:
                    log.info("member address %s not resolved: %s", host, exc)
                    continue
                found = _ip_addresses(str(info[4][0]) for info in infos)
                self._pool.member_addresses |= found
                for handshake in self._pool:
                    handshake.member_address |= handshake.address in found

    async def _handle_inbound(self, stream: trio.SocketStream, handshake: Handshake) -> None:
        try:
            tune_socket(stream)
            secure: SecureConnection | None = None
            with handshake.scope:  # cancelled by an eviction
                secure = await self._handshake(stream, None, None, partial(self._start, handshake))
            self._pool.remove(handshake)
            if handshake.evicted is not None or handshake.refused:
                return  # (it may have finished as it was evicted)
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
            self._pool.remove(handshake)
            if handshake.evicted is None:
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
        self,
        stream: trio.SocketStream,
        expected: int | None,
        peer: Peer | None,
        started: Callable[[], None] | None = None,
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
                    started=started,
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


def _ip_addresses(hosts: Iterable[str]) -> set[str]:
    """The IP address literals among ``hosts``, normalised; wildcards left out."""
    found = set()
    for host in hosts:
        address = normalise_address(host)
        if address is not None and address not in {"0.0.0.0", "::"}:
            found.add(address)
    return found


def _peer_ip(stream: trio.SocketStream) -> str:
    try:
        host = stream.socket.getpeername()[0]
    except OSError:
        return ""  # already gone; its handshake fails at once
    return normalise_address(str(host)) or str(host)


if TYPE_CHECKING:  # TcpTransport must satisfy the protocol the runtime is written against
    _conforms: Callable[..., Transport] = TcpTransport

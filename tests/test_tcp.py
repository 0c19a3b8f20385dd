"""The TCP transport on real loopback sockets: honest members, hostile sockets, restarts
and the queue policy. Real sockets, so the real clock: every test has a ``fail_after``.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
import trio

from consensus.codec import MAX_MESSAGE_BYTES
from consensus.crypto import Signer, hash_bytes
from consensus.membership import Membership
from consensus.messages import Status, sign
from net import framing
from net.framing import MAX_NOISE_MESSAGE, Reassembler
from net.secure_session import SecureSession
from net.tcp import TcpTransport, backoff_delay
from net.tcp_session import FrameReader, prologue
from net.wire import Frame, TxGossip, decode_frame, encode_frame
from node.testing.cluster import local_genesis

CHAIN = "tcp-test"
N = 4
MEMBERSHIP = local_genesis(N, CHAIN)[0].membership()
SEEDS = [hash_bytes("local-key", f"{CHAIN}/{i}".encode()) for i in range(N)]
SIGNERS = [Signer(seed) for seed in SEEDS]
OUTSIDER_SEED = hash_bytes("local-key", b"not a member")
LOCAL = "127.0.0.1"

pytestmark = pytest.mark.timeout(60)


def status(sender: int, height: int) -> Status:
    status_: Status = sign(
        Status, SIGNERS[sender], CHAIN, view=0, view_active=True, height=height, sender=sender
    )
    return status_


def gossip(label: str) -> TxGossip:
    return TxGossip((label.encode(),))


class Cluster:
    """Transports started highest member first: each dials only higher members, whose
    ports are known by then."""

    def __init__(self, nursery: trio.Nursery, **options: Any) -> None:
        self.nursery = nursery
        self.options = options
        self.addresses: list[tuple[str, int]] = [(LOCAL, 0)] * N
        self.transports: dict[int, TcpTransport] = {}

    def build(self, member: int, port: int = 0, **options: Any) -> TcpTransport:
        return TcpTransport(
            member,
            SEEDS[member],
            MEMBERSHIP,
            self.addresses,
            listen=(LOCAL, port),
            **{**self.options, **options},
        )

    async def start(self, member: int, port: int = 0, **options: Any) -> TcpTransport:
        return await self.run(self.build(member, port, **options))

    async def run(self, transport: TcpTransport) -> TcpTransport:
        port = await self.nursery.start(transport.run)
        self.addresses[transport.me] = (LOCAL, port)
        self.transports[transport.me] = transport
        return transport

    async def start_all(self, members: Sequence[int] = range(N)) -> list[TcpTransport]:
        for member in sorted(members, reverse=True):
            await self.start(member)
        return [self.transports[m] for m in members]

    async def wait_mesh(self) -> None:
        for i, transport in self.transports.items():
            for j in self.transports:
                if j != i:
                    await transport.wait_connected(j)


@asynccontextmanager
async def cluster(**options: Any) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        yield Cluster(nursery, **options)
        nursery.cancel_scope.cancel()


async def collect(transport: TcpTransport, count: int) -> list[tuple[int, Frame]]:
    return [await transport.receive() for _ in range(count)]


async def until(condition: Callable[[], bool]) -> None:
    """Polls a counter; the transport has no event for every statistic, nor should it."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def closed_by_peer(stream: trio.SocketStream) -> None:
    """Returns once the other end has closed (EOF or reset), discarding what arrives."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


async def send_frame(stream: trio.SocketStream, payload: bytes) -> None:
    await stream.send_all(framing.encode_frame(payload, MAX_NOISE_MESSAGE))


async def raw_dial(port: int, seed: bytes) -> tuple[trio.SocketStream, SecureSession, FrameReader]:
    """A hand-driven Noise initiator: everything a member does, or a hostile one."""
    stream = await trio.open_tcp_stream(LOCAL, port)
    session = SecureSession.initiator(seed, prologue(CHAIN))
    reader = FrameReader(stream)
    await send_frame(stream, session.write_handshake())
    reply = await reader.next()
    assert reply is not None
    session.read_handshake(reply)
    await send_frame(stream, session.write_handshake())
    return stream, session, reader


async def send_encrypted(stream: trio.SocketStream, session: SecureSession, data: bytes) -> None:
    for piece in framing.chunk(data, max_message=MAX_MESSAGE_BYTES):
        await send_frame(stream, session.encrypt(piece))


async def receive_encrypted(session: SecureSession, reader: FrameReader) -> Frame:
    assembler = Reassembler(MAX_MESSAGE_BYTES)
    while True:
        ciphertext = await reader.next()
        assert ciphertext is not None
        message = assembler.feed(session.decrypt(ciphertext))
        if message is not None:
            return decode_frame(message)


def assert_in_order(received: list[tuple[int, Frame]], expected: dict[int, list[Frame]]) -> None:
    by_sender: dict[int, list[Frame]] = {}
    for sender, frame in received:
        by_sender.setdefault(sender, []).append(frame)
    assert by_sender == expected


# ------------------------------------------------------------------ honest members


async def test_every_pair_exchanges_frames_both_ways_in_order() -> None:
    with trio.fail_after(15):
        async with cluster() as c:
            transports = await c.start_all()
            per_pair = 30
            sent: dict[int, dict[int, list[Frame]]] = {j: {} for j in range(N)}
            # Sent before any connection is up: queued, then delivered in order.
            for i, transport in enumerate(transports):
                for j in range(N):
                    if j == i:
                        continue
                    frames: list[Frame] = []
                    for k in range(per_pair):
                        frames.append(status(i, k) if k % 2 else gossip(f"{i}->{j}/{k}"))
                    for frame in frames:
                        transport.send_nowait(j, frame)
                    sent[j][i] = frames
            for j, transport in enumerate(transports):
                assert_in_order(await collect(transport, per_pair * (N - 1)), sent[j])
            await c.wait_mesh()
            for i, transport in enumerate(transports):
                assert (
                    transport.tcp_stats.sent == transport.tcp_stats.received == per_pair * (N - 1)
                )
                assert transport.tcp_stats.sent_by_kind == {
                    "Status": per_pair // 2 * (N - 1),
                    "TxGossip": per_pair // 2 * (N - 1),
                }
                for j, peer in transport.peers().items():
                    assert peer.connected and peer.sessions == 1
                    assert peer.direction == ("outbound" if i < j else "inbound")
                    assert peer.frames_sent == peer.frames_received == per_pair
                    assert peer.queued == 0 and peer.last_error is None
                assert transport.statistics().connected_peers == N - 1
                assert transport.statistics().inbound_connections == i


async def test_a_frame_of_several_megabytes_arrives_intact_and_in_order() -> None:
    rng = random.Random(7)
    big = TxGossip((rng.randbytes(3_000_000), rng.randbytes(2_500_000), b"tail"))
    with trio.fail_after(15):
        async with cluster() as c:
            t0, _, _, t3 = await c.start_all()
            for src, dst in ((t0, t3), (t3, t0)):
                src.send_nowait(dst.me, status(src.me, 1))
                src.send_nowait(dst.me, big)
                src.send_nowait(dst.me, status(src.me, 2))
            for receiver, m in ((t3, 0), (t0, 3)):
                got = await collect(receiver, 3)
                assert got == [(m, status(m, 1)), (m, big), (m, status(m, 2))]
            assert t0.peers()[3].bytes_received == len(encode_frame(big)) + 2 * len(
                encode_frame(status(3, 1))
            )


async def test_sending_to_self_or_a_stranger_is_undeliverable() -> None:
    with trio.fail_after(5):
        async with cluster() as c:
            t0 = c.build(0)
            t0.send_nowait(0, gossip("me"))
            t0.send_nowait(N, gossip("nobody"))
            assert t0.tcp_stats.undeliverable == 2 and t0.tcp_stats.sent == 0


async def test_reconnect_after_a_member_restarts_on_the_same_port() -> None:
    with trio.fail_after(15):
        async with cluster() as c:
            transports = await c.start_all()
            await c.wait_mesh()
            old = transports[2]
            port = c.addresses[2][1]
            await old.aclose()
            with pytest.raises((trio.EndOfChannel, trio.ClosedResourceError)):
                await old.receive()
            # Once member 0 has seen the connection drop, what it sends waits in its queue.
            await until(lambda: not transports[0].peers()[2].connected)
            transports[0].send_nowait(2, status(0, 41))
            new = await c.start(2, port=port)
            for member in (0, 1, 3):
                await c.transports[member].wait_connected(2, sessions=2)
                await new.wait_connected(member)
            assert await new.receive() == (0, status(0, 41))
            for member in (0, 1, 3):
                c.transports[member].send_nowait(2, status(member, 42))
                new.send_nowait(member, status(2, 43))
            assert sorted(await collect(new, 3), key=lambda x: x[0]) == [
                (m, status(m, 42)) for m in (0, 1, 3)
            ]
            for member in (0, 1, 3):
                assert await c.transports[member].receive() == (2, status(2, 43))


async def test_a_newer_connection_from_the_same_member_replaces_the_old_one() -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            (t1,) = await c.start_all([1])
            port = c.addresses[1][1]
            first, _, _ = await raw_dial(port, SEEDS[0])
            second: trio.SocketStream | None = None
            try:
                await t1.wait_connected(0)
                second, session, reader = await raw_dial(port, SEEDS[0])
                await t1.wait_connected(0, sessions=2)
                await closed_by_peer(first)  # the old one is closed...
                t1.send_nowait(0, status(1, 5))  # ...and traffic takes the new one
                assert await receive_encrypted(session, reader) == status(1, 5)
                assert t1.tcp_stats.replaced_connections == 1
                await until(lambda: t1.statistics().inbound_connections == 1)
            finally:
                await trio.aclose_forcefully(first)
                if second is not None:
                    await trio.aclose_forcefully(second)


# ------------------------------------------------------------------ queue policy


async def test_queue_to_a_disconnected_peer_keeps_the_bound_and_the_policy() -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            t1 = await c.start(1)
            t0 = c.build(0, queue_frames=8)
            for k in range(8):
                t0.send_nowait(1, gossip(f"g{k}"))
            assert t0.peers()[1].queued == 8
            t0.send_nowait(1, gossip("one too many"))
            assert t0.tcp_stats.dropped_gossip == 1 and t0.tcp_stats.peer_resets == 0
            assert t0.peers()[1].queued == 8
            t0.send_nowait(1, status(0, 100))  # consensus: the queue is cleared, then it goes
            assert t0.tcp_stats.peer_resets == 1 and t0.tcp_stats.frames_discarded == 8
            assert t0.peers()[1].queued == 1 and t0.peers()[1].resets == 1
            t0.send_nowait(1, gossip("after"))
            assert t0.tcp_stats.sent == 11
            await c.run(t0)
            assert await collect(t1, 2) == [(0, status(0, 100)), (0, gossip("after"))]
            assert "queue full" in (t0.peers()[1].last_error or "")


async def test_a_peer_that_stops_reading_is_reset_when_consensus_frames_back_up() -> None:
    with trio.fail_after(15):
        async with cluster() as c, trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host=LOCAL)
            c.addresses[1] = (LOCAL, listeners[0].socket.getsockname()[1])
            handshaken = trio.Event()
            stop = trio.Event()

            async def silent_member_1() -> None:
                # Completes the handshake with member 1's key, then never reads again.
                async with listeners[0]:
                    stream = await listeners[0].accept()
                    try:
                        reader = FrameReader(stream)
                        session = SecureSession.responder(SEEDS[1], prologue(CHAIN))
                        message = await reader.next()
                        assert message is not None
                        session.read_handshake(message)
                        await send_frame(stream, session.write_handshake())
                        message = await reader.next()
                        assert message is not None
                        session.read_handshake(message)
                        handshaken.set()
                        await stop.wait()
                    finally:
                        await trio.aclose_forcefully(stream)

            nursery.start_soon(silent_member_1)
            t0 = await c.start(0, queue_frames=4)
            await handshaken.wait()
            await t0.wait_connected(1)
            filler = TxGossip((bytes(1 << 20),))
            while t0.tcp_stats.dropped_gossip == 0:  # until the socket buffers and queue are full
                t0.send_nowait(1, filler)
                await trio.sleep(0.005)
            assert t0.peers()[1].queued == 4 and t0.tcp_stats.peer_resets == 0
            for height in range(4):  # the first one finds the queue full
                t0.send_nowait(1, status(0, height))
            assert t0.tcp_stats.peer_resets == 1 and t0.tcp_stats.frames_discarded == 4
            await until(lambda: not t0.peers()[1].connected)
            assert "queue full" in (t0.peers()[1].last_error or "")
            stop.set()


# ------------------------------------------------------------------ hostile sockets


async def test_an_unknown_static_key_is_dropped_after_the_handshake() -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            (t1,) = await c.start_all([1])
            stream, _, _ = await raw_dial(c.addresses[1][1], OUTSIDER_SEED)
            try:
                await closed_by_peer(stream)
            finally:
                await trio.aclose_forcefully(stream)
            await until(lambda: t1.tcp_stats.unknown_peers == 1)
            assert t1.statistics().inbound_connections == 0
            assert t1.tcp_stats.handshakes_completed == 0


async def test_a_member_that_should_wait_for_our_call_is_refused() -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            (t1,) = await c.start_all([1])
            stream, _, _ = await raw_dial(c.addresses[1][1], SEEDS[3])
            try:
                await closed_by_peer(stream)
            finally:
                await trio.aclose_forcefully(stream)
            await until(lambda: t1.tcp_stats.wrong_direction == 1)
            assert not t1.peers()[3].connected


@pytest.mark.parametrize("impostor", [2, None], ids=["another-member", "outsider"])
async def test_the_dialler_insists_on_the_member_it_dialled(impostor: int | None) -> None:
    seed = OUTSIDER_SEED if impostor is None else SEEDS[impostor]
    with trio.fail_after(10):
        async with cluster() as c:
            listeners = await trio.open_tcp_listeners(0, host=LOCAL)
            async with listeners[0]:
                c.addresses[1] = (LOCAL, listeners[0].socket.getsockname()[1])
                t0 = await c.start(0)
                stream = await listeners[0].accept()
                try:
                    reader = FrameReader(stream)
                    session = SecureSession.responder(seed, prologue(CHAIN))
                    message = await reader.next()
                    assert message is not None
                    session.read_handshake(message)
                    await send_frame(stream, session.write_handshake())
                    # The dialler hangs up without sending message 3: its key stays hidden.
                    assert await reader.next() is None
                finally:
                    await trio.aclose_forcefully(stream)
            assert t0.tcp_stats.wrong_peer == 1
            who = "no member" if impostor is None else f"member {impostor}"
            assert who in (t0.peers()[1].last_error or "")


@pytest.mark.parametrize(
    "opening",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff\xff\xff\xff", b"\xff\xff\xff\xff" + bytes(1000)],
    ids=["http", "4gib-prefix", "4gib-prefix-and-data"],
)
async def test_garbage_before_the_handshake_is_dropped(opening: bytes) -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            t0, t1 = await c.start_all([0, 1])
            stream = await trio.open_tcp_stream(LOCAL, c.addresses[1][1])
            try:
                await stream.send_all(opening)
                await closed_by_peer(stream)
            finally:
                await trio.aclose_forcefully(stream)
            await until(lambda: t1.tcp_stats.handshake_failures == 1)
            await until(lambda: t1.statistics().unauthenticated_connections == 0)
            t0.send_nowait(1, status(0, 1))  # the node is still up
            assert await t1.receive() == (0, status(0, 1))


async def test_inbound_connections_are_capped_in_total() -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            # A long grace: the started handshakes below must not turn stalled meanwhile.
            t1 = await c.start(1, max_inbound=2, handshake_grace_s=10.0)
            port = c.addresses[1][1]
            stats = t1.tcp_stats
            streams = [await trio.open_tcp_stream(LOCAL, port) for _ in range(2)]
            try:
                # Over the cap, a new socket takes the place of the oldest silent one...
                streams.append(await trio.open_tcp_stream(LOCAL, port))
                await closed_by_peer(streams[0])
                assert stats.evicted_by_reason["displaced"] == 1
                assert t1.statistics().inbound_connections == 2
                # ...but not of one that has started its handshake: then it is refused.
                for stream in streams[1:]:
                    await send_frame(stream, stalled_message_1())
                await until(lambda: t1.statistics().unauthenticated_connections == 2)
                streams.append(await trio.open_tcp_stream(LOCAL, port))
                await closed_by_peer(streams[3])  # over the cap: closed at once
                assert stats.rejected_connections == 1
                assert stats.rejected_by_reason["inbound"] == 1
                assert t1.statistics().inbound_connections == 2
            finally:
                for stream in streams:
                    await trio.aclose_forcefully(stream)
            await until(lambda: t1.statistics().inbound_connections == 0)


async def test_a_stalled_handshake_is_dropped_after_the_timeout() -> None:
    with trio.fail_after(10):
        async with cluster(handshake_timeout_s=0.5) as c:
            (t1,) = await c.start_all([1])
            port = c.addresses[1][1]
            silent = await trio.open_tcp_stream(LOCAL, port)
            half = await trio.open_tcp_stream(LOCAL, port)
            try:
                session = SecureSession.initiator(SEEDS[0], prologue(CHAIN))
                await send_frame(half, session.write_handshake())  # then nothing more
                start = trio.current_time()
                await closed_by_peer(silent)
                await closed_by_peer(half)
                assert 0.4 < trio.current_time() - start < 2.0
            finally:
                await trio.aclose_forcefully(silent)
                await trio.aclose_forcefully(half)
            await until(lambda: t1.tcp_stats.handshake_timeouts == 2)


@pytest.mark.parametrize(
    "attack, counter",
    [
        ("not-msgpack", "malformed"),
        ("bit-flip", "decrypt_failures"),
        ("4gib-message", "framing_errors"),
        ("4gib-frame", "framing_errors"),
    ],
)
async def test_a_member_sending_garbage_loses_only_its_own_connection(
    attack: str, counter: str
) -> None:
    with trio.fail_after(10):
        async with cluster() as c:
            t1, t2 = await c.start_all([1, 2])
            # Member 0's key, driven by hand (the real member 0 is not running).
            stream, session, _ = await raw_dial(c.addresses[1][1], SEEDS[0])
            try:
                await send_encrypted(stream, session, encode_frame(status(0, 7)))
                assert await t1.receive() == (0, status(0, 7))
                if attack == "not-msgpack":
                    await send_encrypted(stream, session, b"\xc1 is never msgpack")
                elif attack == "bit-flip":
                    ciphertext = bytearray(session.encrypt(b"\x00\x00\x00\x01x"))
                    ciphertext[3] ^= 1
                    await send_frame(stream, bytes(ciphertext))
                elif attack == "4gib-message":
                    await send_frame(stream, session.encrypt(b"\xff\xff\xff\xffx"))
                else:
                    await stream.send_all(b"\xff\xff\xff\xff")
                await closed_by_peer(stream)
            finally:
                await trio.aclose_forcefully(stream)
            await until(lambda: getattr(t1.tcp_stats, counter) == 1)
            await until(lambda: not t1.peers()[0].connected)
            assert t1.peers()[0].last_error
            t1.send_nowait(2, status(1, 8))
            t2.send_nowait(1, status(2, 9))
            assert await t2.receive() == (1, status(1, 8))
            assert await t1.receive() == (2, status(2, 9))


async def test_a_connection_storm_does_not_stop_honest_members() -> None:
    with trio.fail_after(15):
        async with cluster(handshake_timeout_s=0.5) as c:
            t0, t1 = await c.start_all([0, 1])
            await c.wait_mesh()
            port = c.addresses[1][1]
            openings = [b"", b"\xff\xff\xff\xff", b"\x00\x00\x00\x20" + bytes(32), b"junk!"]
            storm: list[trio.SocketStream] = []
            try:
                for k in range(100):
                    stream = await trio.open_tcp_stream(LOCAL, port)
                    storm.append(stream)
                    if openings[k % 4]:
                        with suppress(trio.BrokenResourceError):  # refused: over the cap
                            await stream.send_all(openings[k % 4])
                # Honest traffic flows both ways while the storm is on.
                rounds = 100
                for k in range(rounds):
                    t0.send_nowait(1, status(0, k))
                    t1.send_nowait(0, gossip(f"back {k}"))
                assert await collect(t1, rounds) == [(0, status(0, k)) for k in range(rounds)]
                assert await collect(t0, rounds) == [
                    (1, gossip(f"back {k}")) for k in range(rounds)
                ]
                assert t1.statistics().unauthenticated_connections <= 16
                async with trio.open_nursery() as nursery:
                    for stream in storm:
                        nursery.start_soon(closed_by_peer, stream)
            finally:
                for stream in storm:
                    await trio.aclose_forcefully(stream)
            stats = t1.tcp_stats
            assert stats.rejected_connections + stats.evicted_handshakes > 0
            assert stats.rejected_connections == sum(stats.rejected_by_reason.values())
            assert stats.evicted_handshakes == sum(stats.evicted_by_reason.values())
            dropped = stats.handshake_failures + stats.handshake_timeouts
            assert stats.rejected_connections + stats.evicted_handshakes + dropped == 100
            await until(lambda: t1.statistics().unauthenticated_connections == 0)
            assert t1.statistics().inbound_connections == 1
            # After all that, a fresh honest connection still gets in.
            await t0.aclose()
            t0 = await c.start(0)
            await t1.wait_connected(0, sessions=2)
            t0.send_nowait(1, status(0, 1000))
            t1.send_nowait(0, status(1, 1001))
            assert await t1.receive() == (0, status(0, 1000))
            assert await t0.receive() == (1, status(1, 1001))


async def stranger(port: int, source: str = LOCAL) -> trio.SocketStream:
    return await trio.open_tcp_stream(LOCAL, port, local_address=source)


def stalled_message_1() -> bytes:
    """A well-formed Noise message 1 under a throwaway key: a stranger that will stop."""
    session = SecureSession.initiator(os.urandom(32), prologue(CHAIN))
    return framing.encode_frame(session.write_handshake(), MAX_NOISE_MESSAGE)


async def test_a_member_gets_a_handshake_slot_while_strangers_hammer_them_all() -> None:
    """Strangers from the members' own address (127.0.0.1) hold every handshake slot and
    take each one back the moment they lose it: most silent, a few stalling after a
    well-formed message 1. The handshake deadline is long, so a slot only frees up by
    the admission policy. A member that starts now is connected within its first few
    dials, and the counters say what happened to the strangers."""
    with trio.fail_after(30):
        async with cluster(max_unauthenticated=4, handshake_timeout_s=10.0) as c:
            t1 = await c.start(1)
            port = c.addresses[1][1]
            opened = 0

            async def hammer(k: int) -> None:
                nonlocal opened
                while True:
                    try:
                        stream = await stranger(port)
                    except OSError:
                        await trio.sleep(0.01)
                        continue
                    opened += 1
                    try:
                        if k % 8 == 0:
                            with suppress(trio.BrokenResourceError):
                                await stream.send_all(stalled_message_1())
                        await closed_by_peer(stream)  # then at once again
                    finally:
                        await trio.aclose_forcefully(stream)

            async with trio.open_nursery() as storm:
                for k in range(24):
                    storm.start_soon(hammer, k)
                await until(lambda: t1.statistics().unauthenticated_connections >= 4)
                await trio.sleep(0.5)
                assert t1.tcp_stats.evicted_by_reason["displaced"] > 0  # full, and churning
                started = trio.current_time()
                t0 = await c.start(0)
                await t1.wait_connected(0)
                took = trio.current_time() - started
                t0.send_nowait(1, status(0, 1))
                assert await t1.receive() == (0, status(0, 1))
                storm.cancel_scope.cancel()
            stats = t1.tcp_stats
            print(
                f"member 0 connected after {took:.2f} s and {stats.handshakes_completed} "
                f"handshakes, among {opened} stranger connections: refused "
                f"{stats.rejected_by_reason}, evicted {stats.evicted_by_reason}"
            )
            # Its first dial, or one of the next few (backoff 0.1, 0.2, 0.4 s...).
            assert took < 2.0
            assert stats.evicted_by_reason["displaced"] > 0
            assert stats.rejected_connections == sum(stats.rejected_by_reason.values())
            # Four waiting for message 1, four started at most.
            assert t1.statistics().unauthenticated_connections <= 8
            await until(lambda: t1.statistics().unauthenticated_connections == 0)
            assert t1.statistics().inbound_connections == 1


async def test_strangers_addresses_get_a_share_and_give_way_to_members_addresses() -> None:
    """The members' genesis addresses are 127.0.0.1 here; 127.0.0.5-7 are strangers'.
    The grace is long, so no started handshake turns stalled during the test."""
    with trio.fail_after(10):
        async with cluster(
            max_unauthenticated=3, max_handshakes_per_address=2, handshake_grace_s=10.0
        ) as c:
            t1 = await c.start(1)
            port = c.addresses[1][1]
            assert t1.member_addresses() == {LOCAL}
            stats = t1.tcp_stats
            streams: list[trio.SocketStream] = []

            async def started(source: str) -> trio.SocketStream:
                stream = await stranger(port, source)
                streams.append(stream)
                await stream.send_all(stalled_message_1())
                return stream

            try:
                a1 = await started("127.0.0.5")
                assert await a1.receive_some(65536)  # message 2: it started
                a2 = await started("127.0.0.5")
                assert await a2.receive_some(65536)
                a3 = await stranger(port, "127.0.0.5")
                streams.append(a3)
                await closed_by_peer(a3)  # a third from one stranger's address
                assert stats.rejected_by_reason["per_address"] == 1
                b1 = await started("127.0.0.6")
                assert await b1.receive_some(65536)
                assert t1.statistics().unauthenticated_connections == 3
                assert t1.statistics().stranger_handshakes == 3
                # Every started slot is taken, by young handshakes: a member's address
                # takes the oldest stranger's.
                member = await started(LOCAL)
                await closed_by_peer(a1)
                assert stats.evicted_by_reason["stranger"] == 1
                assert await member.receive_some(65536)
                assert t1.statistics().stranger_handshakes == 2
                # A stranger's message 1 finds no slot a stranger may take: refused.
                c1 = await started("127.0.0.7")
                await closed_by_peer(c1)
                assert stats.rejected_by_reason["handshake_slots"] == 1
                assert stats.rejected_connections == 2
                assert t1.statistics().unauthenticated_connections == 3
            finally:
                for stream in streams:
                    await trio.aclose_forcefully(stream)
            await until(lambda: t1.statistics().unauthenticated_connections == 0)


# ------------------------------------------------------------------ configuration


def test_the_frame_limit_defaults_to_the_codecs() -> None:
    transport = TcpTransport(0, SEEDS[0], MEMBERSHIP, [(LOCAL, 1)] * N, listen=(LOCAL, 0))
    assert transport.max_frame_bytes == MAX_MESSAGE_BYTES


def test_misconfiguration_is_refused() -> None:
    addresses = [(LOCAL, 1)] * N
    with pytest.raises(ValueError, match="node key"):
        TcpTransport(0, SEEDS[1], MEMBERSHIP, addresses, listen=(LOCAL, 0))
    with pytest.raises(ValueError, match="addresses"):
        TcpTransport(0, SEEDS[0], MEMBERSHIP, addresses[:3], listen=(LOCAL, 0))
    with pytest.raises(ValueError, match="max_inbound"):
        TcpTransport(3, SEEDS[3], MEMBERSHIP, addresses, listen=(LOCAL, 0), max_inbound=3)


def test_two_members_with_one_noise_key_are_refused() -> None:
    # Negating an Ed25519 point (the sign bit) keeps its X25519 u-coordinate.
    negated = bytearray(MEMBERSHIP.public_keys[1])
    negated[31] ^= 0x80
    keys = (*MEMBERSHIP.public_keys[:3], bytes(negated))
    membership = Membership(CHAIN, keys)
    with pytest.raises(ValueError, match="members 1 and 3"):
        TcpTransport(0, SEEDS[0], membership, [(LOCAL, 1)] * N, listen=(LOCAL, 0))


def test_backoff_doubles_from_a_tenth_of_a_second_to_five_with_jitter() -> None:
    rng = random.Random(1)
    for failures, ceiling in [(0, 0.1), (1, 0.2), (3, 0.8), (5, 3.2), (6, 5.0), (500, 5.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(failures, rng) <= ceiling

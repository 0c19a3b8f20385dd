"""One authenticated, encrypted member connection over a trio byte stream.

The layers on the wire, outermost first:

1. Length-prefixed frames (``net.framing``), at most 65535 bytes each: every frame
   holds exactly one Noise message, so the prefix is checked against 65535 before a
   byte of the body is kept, also before the handshake (a 4 GiB prefix from a port
   scanner costs nothing).
2. Noise_XX (``net.secure_session``) with the prologue ``b"crosstrace/v1/" + chain
   id``: three handshake messages, then transport messages.
3. Pieces (``net.framing.chunk``): an application message of up to ``max_message``
   bytes travels as pieces of at most 65519 bytes, one per Noise message; the receiver
   checks the announced size against ``max_message`` before buffering anything.

This module knows nothing about members' queues or frame types: ``establish`` runs the
handshake and says who is at the other end, ``SecureConnection`` moves whole messages.
Every failure is a ``ConnectionDropped`` naming the transport counter it feeds; the
caller closes the stream. Timeouts are the caller's cancel scopes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import trio

from net import framing
from net.framing import MAX_NOISE_MESSAGE, FrameDecoder, FramingError, Reassembler
from net.noise import NoiseError
from net.secure_session import SecureSession

PROLOGUE_PREFIX = b"crosstrace/v1/"
RECEIVE_BYTES = 256 * 1024  # one receive_some; frames are re-cut by the FrameDecoder
FLUSH_BYTES = 256 * 1024  # ciphertext gathered into one send_all

# Names of ``TcpStats`` fields; a ConnectionDropped increments the one it carries.
Counter = Literal[
    "handshake_failures",
    "unknown_peers",
    "wrong_peer",
    "framing_errors",
    "decrypt_failures",
    "malformed",
]


class ConnectionDropped(Exception):
    """The connection must be closed: ``reason`` is for the log, ``counter`` for stats."""

    def __init__(self, counter: Counter, reason: str) -> None:
        super().__init__(reason)
        self.counter: Counter = counter
        self.reason = reason


def prologue(chain_id: str) -> bytes:
    """Binds the handshake to this chain: members of another chain cannot connect."""
    return PROLOGUE_PREFIX + chain_id.encode()


class FrameReader:
    """Whole length-prefixed frames from a stream that delivers bytes in any pieces.

    Holds at most one incomplete frame (the decoder's bound) plus the complete frames
    of the last ``receive_some``, so an unauthenticated peer costs under 330 KiB.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(MAX_NOISE_MESSAGE)
        self._pending: deque[bytes] = deque()

    async def next(self) -> bytes | None:
        """The next frame, or None at a clean end of stream; raises ``FramingError``."""
        while not self._pending:
            data = await self._stream.receive_some(RECEIVE_BYTES)
            if not data:
                self._decoder.end_of_stream()
                return None
            self._pending.extend(
                self._decoder.feed(data if isinstance(data, bytes) else bytes(data))
            )
        return self._pending.popleft()


async def _send_frame(stream: trio.abc.SendStream, message: bytes) -> None:
    await stream.send_all(framing.encode_frame(message, MAX_NOISE_MESSAGE))


async def _handshake_message(reader: FrameReader) -> bytes:
    message = await reader.next()
    if message is None:
        raise ConnectionDropped("handshake_failures", "closed by the peer during the handshake")
    return message


async def establish(
    stream: trio.abc.Stream,
    *,
    seed: bytes,
    chain_id: str,
    members: Mapping[bytes, int],
    expected: int | None,
    max_message: int,
    started: Callable[[], None] | None = None,
) -> SecureConnection:
    """Run Noise_XX on ``stream``: as initiator when we dialled member ``expected``,
    as responder when ``expected`` is None. ``members`` maps each genesis member's
    X25519 static key to its index. A responder calls ``started`` once message 1 has
    arrived and is well formed, before answering it (the listener's admission policy
    may end the handshake there by cancelling).

    The initiator learns the responder's key from message 2 and refuses anyone but
    the member it dialled before revealing its own key in message 3. The responder
    learns who is calling only from message 3 and refuses keys that are no member's.
    """
    reader = FrameReader(stream)
    try:
        if expected is not None:
            session = SecureSession.initiator(seed, prologue(chain_id))
            await _send_frame(stream, session.write_handshake())
            session.read_handshake(await _handshake_message(reader))
            member = _member_of(session, members)
            if member != expected:
                who = "a key that is no member's" if member is None else f"member {member}"
                raise ConnectionDropped("wrong_peer", f"dialled member {expected}, reached {who}")
            await _send_frame(stream, session.write_handshake())
        else:
            session = SecureSession.responder(seed, prologue(chain_id))
            session.read_handshake(await _handshake_message(reader))
            if started is not None:
                started()
            await _send_frame(stream, session.write_handshake())
            session.read_handshake(await _handshake_message(reader))
            member = _member_of(session, members)
            if member is None:
                key = (session.remote_static or b"").hex()[:16]
                raise ConnectionDropped(
                    "unknown_peers", f"static key {key}... belongs to no genesis member"
                )
    except NoiseError as exc:
        raise ConnectionDropped("handshake_failures", f"handshake: {exc}") from None
    except FramingError as exc:
        raise ConnectionDropped("handshake_failures", f"before the handshake: {exc}") from None
    assert session.handshake_complete
    return SecureConnection(stream, session, member, reader, max_message)


def _member_of(session: SecureSession, members: Mapping[bytes, int]) -> int | None:
    key = session.remote_static
    return None if key is None else members.get(key)


class SecureConnection:
    """Whole application messages over an established session.

    One task may send and one other task may receive at the same time (trio forbids
    two concurrent ``send_all`` on one stream; the transport has one writer task).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: SecureSession,
        member: int,
        reader: FrameReader,
        max_message: int,
    ) -> None:
        self.stream = stream
        self.member = member
        self.max_message = max_message
        self._session = session
        self._reader = reader
        self._reassembler = Reassembler(max_message)

    async def send_messages(self, messages: Iterable[bytes]) -> int:
        """Encrypt and send ``messages`` in order; returns the bytes put on the wire.
        Ciphertext is gathered into writes of about ``FLUSH_BYTES``."""
        out = bytearray()
        sent = 0
        for message in messages:
            for piece in framing.chunk(message, max_message=self.max_message):
                out += framing.encode_frame(self._session.encrypt(piece), MAX_NOISE_MESSAGE)
                if len(out) >= FLUSH_BYTES:
                    await self.stream.send_all(out)
                    sent += len(out)
                    out = bytearray()
        if out:
            await self.stream.send_all(out)
            sent += len(out)
        return sent

    async def receive_message(self) -> bytes | None:
        """The next whole message; None when the peer closed cleanly between messages."""
        while True:
            try:
                ciphertext = await self._reader.next()
            except FramingError as exc:
                raise ConnectionDropped("framing_errors", str(exc)) from None
            if ciphertext is None:
                if self._reassembler.in_progress:
                    raise ConnectionDropped("framing_errors", "stream ended inside a message")
                return None
            try:
                piece = self._session.decrypt(ciphertext)
            except NoiseError as exc:
                raise ConnectionDropped("decrypt_failures", f"decrypt: {exc}") from None
            try:
                message = self._reassembler.feed(piece)
            except FramingError as exc:
                raise ConnectionDropped("framing_errors", str(exc)) from None
            if message is not None:
                return message

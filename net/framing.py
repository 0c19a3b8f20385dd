"""Length-prefixed frames, and large messages cut into Noise-sized pieces; sans-I/O.

Two layers, both strict, both checking every announced size before holding any bytes:

Frames. A frame is a 4-byte big-endian length ``n`` and ``n`` payload bytes, with
``1 <= n <= max_frame``. TCP delivers bytes in arbitrary pieces; ``FrameDecoder``
rebuilds the frames. On a member connection each frame carries exactly one Noise
message, so ``max_frame`` there is ``MAX_NOISE_MESSAGE`` (65535).

Pieces. Noise messages hold at most ``PIECE_SIZE`` (65519) plaintext bytes, but an
application message (a block, a batch of votes) may be megabytes. A message ``m`` of
``L`` bytes (``1 <= L <= max_message``) is sent as the byte string
``u32be(L) || m`` cut into pieces of exactly ``piece_size`` bytes, the last one
shorter or equal; each piece is one Noise transport message. The receiver reads ``L``
from the first piece and refuses it if it exceeds ``max_message`` before buffering
anything, then insists on exactly the expected size for every piece. There is one
encoding per message, so nothing about the layout is left to interpretation.

Errors are ``FramingError`` (``FrameTooLarge``, ``MessageTooLarge``). After one, the
stream is out of step and the connection must be closed; the decoder and reassembler
refuse further input rather than guess.
"""

from __future__ import annotations

PREFIX = 4
MAX_LENGTH = 2**32 - 1  # what a 4-byte prefix can express
MAX_NOISE_MESSAGE = 65535  # net.noise.MAX_MESSAGE; kept literal so framing needs no crypto
PIECE_SIZE = MAX_NOISE_MESSAGE - 16  # net.noise.MAX_PLAINTEXT: room for the AEAD tag
# Room for the largest block a member should ever send; the transport may pass the
# codec's own limit instead.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024


class FramingError(Exception):
    """The byte stream is malformed; close the connection."""


class FrameTooLarge(FramingError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame length {size} announced, the limit is {limit} bytes")
        self.size, self.limit = size, limit


class MessageTooLarge(FramingError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes announced, the limit is {limit} bytes")
        self.size, self.limit = size, limit


def _check_limit(name: str, value: int, low: int) -> None:
    if not low <= value <= MAX_LENGTH:
        raise ValueError(f"{name} must be in {low}..{MAX_LENGTH}, got {value}")


def encode_frame(payload: bytes, max_frame: int) -> bytes:
    """``payload`` with its length prefix; refuses what the peer's decoder would."""
    _check_limit("max_frame", max_frame, 1)
    if len(payload) > max_frame:
        raise FrameTooLarge(len(payload), max_frame)
    if not payload:
        raise FramingError("zero-length frames are not allowed")
    return len(payload).to_bytes(PREFIX, "big") + payload


class FrameDecoder:
    """Rebuilds frames from a byte stream cut anywhere.

    Holds at most one incomplete frame: a partial prefix (under 4 bytes) or a partial
    body (under its announced length, itself checked against ``max_frame`` as soon as
    the 4 prefix bytes are in). The body grows with the bytes that actually arrive, so
    a peer that announces a large frame and stalls costs only what it sent.
    """

    def __init__(self, max_frame: int) -> None:
        _check_limit("max_frame", max_frame, 1)
        self.max_frame = max_frame
        self._prefix = bytearray()
        self._body = bytearray()
        self._need: int | None = None  # body length once the prefix is complete
        self._failed: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame; never more than ``max_frame + 4``."""
        return len(self._prefix) + len(self._body)

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frames in ``data`` and what came before it, in order.

        Raises ``FramingError`` on a bad prefix; any frames completed earlier in the
        same ``data`` are dropped with it, as the connection is closing anyway.
        """
        if self._failed is not None:
            raise FramingError(f"stream already failed: {self._failed}")
        try:
            return self._feed(memoryview(data))
        except FramingError as exc:
            self._failed = exc
            self._prefix, self._body = bytearray(), bytearray()
            raise

    def _feed(self, view: memoryview) -> list[bytes]:
        frames: list[bytes] = []
        while view:
            if self._need is None:
                take = PREFIX - len(self._prefix)
                self._prefix += view[:take]
                view = view[take:]
                if len(self._prefix) < PREFIX:
                    break
                self._need = self._check(int.from_bytes(self._prefix, "big"))
                self._prefix = bytearray()
                continue
            take = self._need - len(self._body)
            piece, view = view[:take], view[take:]
            if not self._body and len(piece) == self._need:
                frames.append(bytes(piece))  # the whole body arrived at once: one copy
            else:
                self._body += piece
                if len(self._body) < self._need:
                    break
                frames.append(bytes(self._body))
                self._body = bytearray()  # a fresh one: do not keep the capacity
            self._need = None
        return frames

    def _check(self, length: int) -> int:
        if length > self.max_frame:
            raise FrameTooLarge(length, self.max_frame)
        if length == 0:
            raise FramingError("zero-length frame")
        return length

    def end_of_stream(self) -> None:
        """Call at EOF: raises if the stream stopped inside a frame."""
        if self._failed is not None:
            raise FramingError(f"stream already failed: {self._failed}")
        if self._need is not None or self._prefix:
            got = len(self._body) if self._need is not None else len(self._prefix)
            want = self._need if self._need is not None else PREFIX
            raise FramingError(f"stream ended inside a frame: {got} of {want} bytes")


def _check_piece_size(piece_size: int) -> None:
    # The first piece must hold the whole 4-byte message length plus a byte of data.
    if not PREFIX < piece_size <= MAX_LENGTH:
        raise ValueError(f"piece_size must be in {PREFIX + 1}..{MAX_LENGTH}, got {piece_size}")


def chunk(
    message: bytes, *, max_message: int = DEFAULT_MAX_MESSAGE, piece_size: int = PIECE_SIZE
) -> list[bytes]:
    """The pieces of ``message``, each small enough for one Noise transport message."""
    _check_limit("max_message", max_message, 1)
    _check_piece_size(piece_size)
    if not message:
        raise FramingError("empty messages are not allowed")
    if len(message) > max_message:
        raise MessageTooLarge(len(message), max_message)
    # One copy of the message plus the pieces; at 16 MiB that is fine, and slicing a
    # single buffer keeps the layout obviously canonical.
    stream = memoryview(len(message).to_bytes(PREFIX, "big") + message)
    return [bytes(stream[i : i + piece_size]) for i in range(0, len(stream), piece_size)]


class Reassembler:
    """Puts messages back together from pieces, one message at a time.

    Relies on the layer below for order and integrity (Noise rejects reordered,
    replayed or altered pieces); checks everything else: the announced size against
    ``max_message`` before keeping any byte, and that every piece has exactly the size
    the canonical layout gives it.
    """

    def __init__(
        self, max_message: int = DEFAULT_MAX_MESSAGE, piece_size: int = PIECE_SIZE
    ) -> None:
        _check_limit("max_message", max_message, 1)
        _check_piece_size(piece_size)
        self.max_message = max_message
        self.piece_size = piece_size
        self._buffer = bytearray()
        self._remaining = 0  # bytes of the current message's stream still to come
        self._failed: FramingError | None = None

    @property
    def in_progress(self) -> bool:
        """True between the first and last piece of a message (at EOF: an error)."""
        return self._remaining > 0

    def feed(self, piece: bytes) -> bytes | None:
        """The complete message once ``piece`` finishes one, else None."""
        if self._failed is not None:
            raise FramingError(f"message stream already failed: {self._failed}")
        try:
            return self._feed(piece)
        except FramingError as exc:
            self._failed = exc
            self._buffer = bytearray()
            raise

    def _feed(self, piece: bytes) -> bytes | None:
        body = memoryview(piece)
        if self._remaining == 0:  # the first piece of a message
            if len(piece) <= PREFIX:
                raise FramingError(f"first piece of {len(piece)} bytes holds no message")
            size = int.from_bytes(piece[:PREFIX], "big")
            if size > self.max_message:
                raise MessageTooLarge(size, self.max_message)
            if size == 0:
                raise FramingError("empty message announced")
            self._remaining = PREFIX + size
            body = body[PREFIX:]
        expected = min(self.piece_size, self._remaining)
        if len(piece) != expected:
            raise FramingError(f"piece of {len(piece)} bytes where {expected} were due")
        self._buffer += body
        self._remaining -= len(piece)
        if self._remaining:
            return None
        message, self._buffer = bytes(self._buffer), bytearray()
        return message


def reassemble(
    pieces: list[bytes], *, max_message: int = DEFAULT_MAX_MESSAGE, piece_size: int = PIECE_SIZE
) -> bytes:
    """The one message ``pieces`` hold, exactly; the inverse of ``chunk``."""
    assembler = Reassembler(max_message, piece_size)
    for i, piece in enumerate(pieces):
        message = assembler.feed(piece)
        if message is not None:
            if i != len(pieces) - 1:
                raise FramingError(f"{len(pieces) - 1 - i} pieces left after the message")
            return message
    raise FramingError("pieces end before the message does")

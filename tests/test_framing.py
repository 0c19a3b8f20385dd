"""Framing: frames across arbitrary TCP reads, hostile prefixes, and message pieces."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net import noise
from net.framing import (
    MAX_NOISE_MESSAGE,
    PIECE_SIZE,
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    MessageTooLarge,
    Reassembler,
    chunk,
    encode_frame,
    reassemble,
)
from net.secure_session import SecureSession

MAX = 64


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[i:j] for i, j in itertools.pairwise(bounds)]


def _peak_allocation(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        action()
    except FramingError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


payloads = st.lists(st.binary(min_size=1, max_size=MAX), max_size=20)


@settings(max_examples=200, deadline=None)
@given(payloads, st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_of_the_stream_yields_the_same_frames(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(f, MAX) for f in frames)
    decoder = FrameDecoder(MAX)
    out: list[bytes] = []
    for piece in _split(stream, cuts):
        out += decoder.feed(piece)
        assert decoder.buffered <= MAX + 4
    assert out == frames
    assert decoder.buffered == 0
    decoder.end_of_stream()


def test_byte_by_byte() -> None:
    frames = [b"a", b"bc" * 10, b"x" * MAX]
    decoder = FrameDecoder(MAX)
    out = [
        f
        for byte in b"".join(encode_frame(f, MAX) for f in frames)
        for f in decoder.feed(bytes([byte]))
    ]
    assert out == frames


def test_four_gib_prefix_is_refused_at_once_without_allocation() -> None:
    decoder = FrameDecoder(MAX_NOISE_MESSAGE)
    with pytest.raises(FrameTooLarge, match=r"4294967295.*65535") as info:
        decoder.feed(b"\xff\xff\xff\xff")
    assert (info.value.size, info.value.limit) == (2**32 - 1, MAX_NOISE_MESSAGE)
    assert decoder.buffered == 0
    peak = _peak_allocation(
        lambda: FrameDecoder(MAX_NOISE_MESSAGE).feed(b"\xff\xff\xff\xff" + b"x" * 1000)
    )
    assert peak < 16 * 1024


def test_a_large_prefix_fails_on_the_byte_that_completes_it() -> None:
    decoder = FrameDecoder(MAX)
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge, match=f"length {MAX + 1} announced"):
        decoder.feed(bytes([MAX + 1]) + b"rest")
    with pytest.raises(FramingError, match="already failed"):
        decoder.feed(b"\x00\x00\x00\x01x")  # the stream is out of step for good


def test_exactly_max_and_one_more() -> None:
    assert FrameDecoder(MAX).feed(encode_frame(b"m" * MAX, MAX)) == [b"m" * MAX]
    with pytest.raises(FrameTooLarge):
        encode_frame(b"m" * (MAX + 1), MAX)
    with pytest.raises(FrameTooLarge):
        FrameDecoder(MAX).feed((MAX + 1).to_bytes(4, "big") + b"m" * (MAX + 1))


def test_zero_length_frames_are_rejected() -> None:
    with pytest.raises(FramingError, match="zero-length"):
        encode_frame(b"", MAX)
    with pytest.raises(FramingError, match="zero-length"):
        FrameDecoder(MAX).feed(encode_frame(b"ok", MAX) + b"\x00\x00\x00\x00")


def test_a_stalled_frame_costs_only_what_arrived() -> None:
    decoder = FrameDecoder(MAX_NOISE_MESSAGE)
    assert decoder.feed(MAX_NOISE_MESSAGE.to_bytes(4, "big") + b"x" * 10) == []
    assert decoder.buffered == 10
    with pytest.raises(FramingError, match="inside a frame: 10 of 65535"):
        decoder.end_of_stream()
    partial = FrameDecoder(MAX)
    partial.feed(b"\x00\x00")
    with pytest.raises(FramingError, match="2 of 4"):
        partial.end_of_stream()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_garbage_gives_frames_or_a_framing_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(MAX)
    out: list[bytes] = []
    try:
        for piece in _split(data, cuts):
            out += decoder.feed(piece)
            assert decoder.buffered <= MAX + 4
    except FramingError:
        return
    # Accepted: the frames must be exactly what a straightforward parse finds.
    expected, offset = [], 0
    while offset + 4 <= len(data):
        n = int.from_bytes(data[offset : offset + 4], "big")
        if offset + 4 + n > len(data):
            break
        expected.append(data[offset + 4 : offset + 4 + n])
        offset += 4 + n
    assert out == expected


def test_limits_must_be_sane() -> None:
    for bad in (0, 2**32):
        with pytest.raises(ValueError):
            FrameDecoder(bad)
    with pytest.raises(ValueError):
        Reassembler(piece_size=4)


# --- pieces ---


def test_piece_size_fits_one_noise_message() -> None:
    assert MAX_NOISE_MESSAGE == noise.MAX_MESSAGE
    assert PIECE_SIZE == noise.MAX_PLAINTEXT


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(min_value=5, max_value=50))
def test_chunk_and_reassemble_round_trip(message: bytes, piece_size: int) -> None:
    pieces = chunk(message, max_message=400, piece_size=piece_size)
    assert all(len(p) == piece_size for p in pieces[:-1])
    assert 1 <= len(pieces[-1]) <= piece_size
    assert reassemble(pieces, max_message=400, piece_size=piece_size) == message


def test_one_reassembler_takes_message_after_message() -> None:
    assembler = Reassembler(max_message=1000, piece_size=7)
    messages = [b"a", b"bcdefgh" * 5, b"i" * 3, b"j" * 1000]
    out = []
    for message in messages:
        for piece in chunk(message, max_message=1000, piece_size=7):
            result = assembler.feed(piece)
            assert assembler.in_progress == (result is None)
            if result is not None:
                out.append(result)
    assert out == messages


def test_message_size_limit_is_exact() -> None:
    limit = 3 * PIECE_SIZE
    assert reassemble(chunk(b"z" * limit, max_message=limit), max_message=limit) == b"z" * limit
    with pytest.raises(MessageTooLarge):
        chunk(b"z" * (limit + 1), max_message=limit)
    oversized = chunk(b"z" * (limit + 1), max_message=limit + 1)
    with pytest.raises(MessageTooLarge, match=f"{limit + 1} bytes announced"):
        reassemble(oversized, max_message=limit)


def test_huge_announced_message_is_refused_without_allocation() -> None:
    first = b"\xff\xff\xff\xff" + b"x" * (PIECE_SIZE - 4)
    with pytest.raises(MessageTooLarge, match="4294967295"):
        Reassembler().feed(first)
    assert _peak_allocation(lambda: Reassembler().feed(first)) < 16 * 1024


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([b""], "holds no message"),
        ([b"\x00\x00\x00\x05"], "holds no message"),
        ([b"\x00\x00\x00\x00x"], "empty message"),
        ([b"\x00\x00\x00\x05ab", b"cde"], "piece of 6 bytes where 9 were due"),
        ([b"\x00\x00\x00\x02abc"], "piece of 7 bytes where 6 were due"),
        ([b"\x00\x00\x00\x0aabcde", b"fghijk"], "piece of 6 bytes where 5 were due"),
        ([b"\x00\x00\x00\x01a", b"\x00\x00\x00\x01b"], "1 pieces left after"),
        ([b"\x00\x00\x00\x0aabcde"], "pieces end before"),
    ],
)
def test_malformed_pieces(pieces: list[bytes], error: str) -> None:
    with pytest.raises(FramingError, match=error):
        reassemble(pieces, max_message=100, piece_size=9)


def test_reassembler_refuses_input_after_an_error() -> None:
    assembler = Reassembler(max_message=10)
    with pytest.raises(MessageTooLarge):
        assembler.feed(b"\x00\x00\x00\x0bxxxxxxxxxxx")
    with pytest.raises(FramingError, match="already failed"):
        assembler.feed(b"\x00\x00\x00\x01x")


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(min_value=0), max_size=30))
def test_whole_pipeline_over_noise(message: bytes, cuts: list[int]) -> None:
    """chunk -> encrypt -> frame -> any TCP split -> decode -> decrypt -> reassemble."""
    a = SecureSession.initiator(bytes(32))
    b = SecureSession.responder(bytes(range(32)))
    b.read_handshake(a.write_handshake())
    a.read_handshake(b.write_handshake())
    b.read_handshake(a.write_handshake())
    piece_size = 100  # small, so a message spans many Noise messages
    stream = b"".join(
        encode_frame(a.encrypt(p), MAX_NOISE_MESSAGE)
        for m in (message, message[::-1])
        for p in chunk(m, max_message=3000, piece_size=piece_size)
    )
    decoder = FrameDecoder(MAX_NOISE_MESSAGE)
    assembler = Reassembler(max_message=3000, piece_size=piece_size)
    received = []
    for data in _split(stream, cuts):
        for frame in decoder.feed(data):
            result = assembler.feed(b.decrypt(frame))
            if result is not None:
                received.append(result)
    assert received == [message, message[::-1]]

"""PSI without a network: the group arithmetic, the two-member protocol against a plain
set intersection, a misbehaving member caught at each step, and input sets."""

from __future__ import annotations

import os
import random
import signal
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pytest
from bad_points import IDENTITY, NON_CANONICAL, ORDER_TWO, mixed_order, off_curve
from hypothesis import given, settings
from hypothesis import strategies as st

from node.psi.crypto import (
    ChunkPool,
    Normalised,
    blind_chunk,
    domain,
    hash_blind_chunk,
    hash_to_group,
    is_valid_point,
    normalise_chunk,
    raise_point,
    random_scalar,
    reblind_chunk,
    tag,
)
from node.psi.inputs import PsiInputError, assemble, chunked, decode_text, split_lines
from node.psi.protocol import (
    MAX_CHUNK,
    Abort,
    Accept,
    Hello,
    PeerPoints,
    Plan,
    Points,
    ProtocolError,
    PsiMessage,
    PsiSession,
    Refuse,
    Role,
    Tags,
    decode_message,
    encode_message,
)
from node.refusals import TooLarge

PREFIX = domain("crosstrace-test", "phone")
CASE_TX = bytes(range(32))


BAD_POINTS = [IDENTITY, ORDER_TWO, NON_CANONICAL, off_curve(), mixed_order()]


# ------------------------------------------------------------------ the group


def test_hash_to_group_is_deterministic_and_separated_by_domain() -> None:
    p = hash_to_group(PREFIX, "+8613800138000")
    assert p == hash_to_group(PREFIX, "+8613800138000") and is_valid_point(p)
    assert p != hash_to_group(PREFIX, "+8613800138001")
    assert p != hash_to_group(domain("other-chain", "phone"), "+8613800138000")
    assert p != hash_to_group(domain("crosstrace-test", "account"), "+8613800138000")
    # Length prefixes: no (chain, type) pair reads as another.
    assert domain("ab", "c") != domain("a", "bc")


def test_blinding_commutes_and_scalars_are_fresh() -> None:
    a, b = random_scalar(), random_scalar()
    assert a != b and a != bytes(32)
    p = hash_to_group(PREFIX, "x")
    pa, pb = raise_point(a, p), raise_point(b, p)
    assert pa is not None and pb is not None
    assert raise_point(b, pa) == raise_point(a, pb)


@pytest.mark.parametrize(
    "point", BAD_POINTS, ids=["identity", "order2", "noncanon", "off", "mixed"]
)
def test_every_kind_of_bad_point_is_refused(point: bytes) -> None:
    assert not is_valid_point(point)
    assert raise_point(random_scalar(), point) is None


@given(st.binary(min_size=32, max_size=32))
@settings(max_examples=300)
def test_the_multiplication_refuses_exactly_what_is_valid_point_refuses(point: bytes) -> None:
    assert (raise_point(random_scalar(), point) is not None) == is_valid_point(point)


def test_reblinding_names_the_first_bad_point() -> None:
    good = blind_chunk(random_scalar(), [hash_to_group(PREFIX, str(i)) for i in range(5)])
    result = reblind_chunk(random_scalar(), bytes(16), [*good[:3], IDENTITY, good[4]])
    assert result.invalid == 3 and result.tags == ()
    fine = reblind_chunk(random_scalar(), bytes(16), good)
    assert fine.invalid is None and len(fine.tags) == 5


def test_tags_depend_on_the_run() -> None:
    point = hash_to_group(PREFIX, "x")
    assert len(tag(bytes(16), point)) == 16
    assert tag(bytes(16), point) != tag(bytes([1]) * 16, point)


def test_the_pool_runs_chunks_in_worker_processes() -> None:
    pool = ChunkPool(2)
    try:
        futures = [pool.submit(hash_chunk_pid, PREFIX, [str(i)]) for i in range(4)]
        results = [f.result(timeout=60) for f in futures]
    finally:
        pool.close()
    assert all(pid != os.getpid() for _, pid in results)
    assert results[0][0] == [hash_to_group(PREFIX, "0")]


def test_the_pool_recovers_from_a_worker_that_died() -> None:
    pool = ChunkPool(1)
    try:
        [_, pid] = pool.submit(hash_chunk_pid, PREFIX, ["x"]).result(timeout=60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            pool.submit(hash_chunk_pid, PREFIX, ["y"]).result(timeout=60)
        [points, _] = pool.submit(hash_chunk_pid, PREFIX, ["z"]).result(timeout=60)
    finally:
        pool.close()
    assert points == [hash_to_group(PREFIX, "z")]


def hash_chunk_pid(prefix: bytes, values: list[str]) -> tuple[list[bytes], int]:
    from node.psi.crypto import hash_chunk

    return hash_chunk(prefix, values), os.getpid()


# ------------------------------------------------------------------ two members


@dataclass
class Member:
    """One side of a run, driven synchronously (the service does the same with a pool
    and a network in between)."""

    session: PsiSession
    values: list[str]
    scalar: bytes = field(default_factory=random_scalar)

    def own_chunks(self) -> list[Points]:
        out = []
        chunk = self.session.own.chunk
        for seq in range(self.session.own.chunks):
            part = self.values[seq * chunk : (seq + 1) * chunk]
            out.append(
                self.session.own_points(seq, tuple(hash_blind_chunk(self.scalar, PREFIX, part)))
            )
        return out

    def take(self, message: PsiMessage) -> Tags | None:
        event = self.session.receive(message)
        if not isinstance(event, PeerPoints):
            return None
        result = reblind_chunk(self.scalar, self.session.run_id, event.points)
        if result.invalid is not None:
            raise ProtocolError("invalid_point", f"point {event.offset + result.invalid}")
        return self.session.peer_tags(event.seq, result.tags)

    def result(self) -> set[str]:
        return {self.values[i] for i in self.session.matches()}


def opened(x: list[str], y: list[str], chunk_i: int = 3, chunk_r: int = 4) -> tuple[Member, Member]:
    run_id = os.urandom(16)
    initiator = Member(PsiSession(Role.INITIATOR, run_id, Plan(len(x), chunk_i)), x)
    hello = initiator.session.hello("C-1", CASE_TX, "phone")
    responder = Member(PsiSession.answering(hello, run_id, len(y), chunk_r), y)
    initiator.session.accepted(responder.session.accept())
    return initiator, responder


def run_pair(initiator: Member, responder: Member) -> None:
    """Both members' points, then both members' tags, as the network would deliver."""
    to_r, to_i = initiator.own_chunks(), responder.own_chunks()
    tags_to_i = [t for m in to_r if (t := responder.take(m)) is not None]
    tags_to_r = [t for m in to_i if (t := initiator.take(m)) is not None]
    for message in tags_to_i:
        initiator.take(message)
    for message in tags_to_r:
        responder.take(message)


ELEMENTS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@given(
    common=st.sets(ELEMENTS, max_size=12),
    only_x=st.sets(ELEMENTS, max_size=15),
    only_y=st.sets(ELEMENTS, max_size=15),
    chunks=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=60, deadline=None)
def test_both_members_learn_exactly_the_intersection(
    common: set[str], only_x: set[str], only_y: set[str], chunks: tuple[int, int], seed: int
) -> None:
    x = sorted(common | only_x)
    y = sorted(common | (only_y - only_x))
    if not x or not y:
        return
    random.Random(seed).shuffle(x)
    initiator, responder = opened(x, y, *chunks)
    run_pair(initiator, responder)
    assert initiator.session.complete and responder.session.complete
    expected = set(x) & set(y)
    assert initiator.result() == expected == responder.result()
    # Each learns the other's size and nothing it did not have.
    assert initiator.session.peer == Plan(len(y), chunks[1])
    assert responder.session.peer == Plan(len(x), chunks[0])


def test_a_run_of_one_element_each() -> None:
    initiator, responder = opened(["a"], ["a"])
    run_pair(initiator, responder)
    assert initiator.result() == {"a"} == responder.result()


# ------------------------------------------------------------------ a misbehaving member


def points_of(n: int) -> tuple[bytes, ...]:
    return tuple(hash_blind_chunk(random_scalar(), PREFIX, [f"e{i}" for i in range(n)]))


def test_an_invalid_point_ends_the_run_naming_it() -> None:
    initiator, responder = opened([str(i) for i in range(6)], ["0"], chunk_i=3)
    chunks = initiator.own_chunks()
    responder.take(chunks[0])
    bad = Points(1, (chunks[1].points[0], IDENTITY, chunks[1].points[2]))
    with pytest.raises(ProtocolError) as info:
        responder.take(bad)
    assert info.value.code == "invalid_point" and "point 4" in info.value.message


def test_too_many_points_are_refused() -> None:
    initiator, responder = opened(["a", "b", "c", "d"], ["a"], chunk_i=3)
    first, second = initiator.own_chunks()
    responder.take(first)
    with pytest.raises(ProtocolError) as info:
        responder.take(Points(1, (*second.points, *points_of(1))))
    assert info.value.code == "wrong_count" and "holds 2 points, not 1" in info.value.message
    _, responder = opened(["a", "b", "c", "d"], ["a"], chunk_i=3)
    responder.take(first)
    responder.take(second)
    with pytest.raises(ProtocolError) as info:
        responder.take(Points(2, points_of(3)))
    assert info.value.code == "wrong_count" and "announced in 2 chunks" in info.value.message


def test_a_replayed_or_skipped_chunk_is_refused() -> None:
    initiator, responder = opened([str(i) for i in range(9)], ["0"], chunk_i=3)
    chunks = initiator.own_chunks()
    responder.take(chunks[0])
    with pytest.raises(ProtocolError) as info:
        responder.take(chunks[0])
    assert (info.value.code, info.value.message) == (
        "out_of_order",
        "points chunk 0 where chunk 1 was due",
    )
    _, responder = opened([str(i) for i in range(9)], ["0"], chunk_i=3)
    with pytest.raises(ProtocolError, match="points chunk 2 where chunk 0 was due"):
        responder.take(chunks[2])


def test_points_from_an_earlier_run_match_nothing() -> None:
    # What reaches a run is only ever the run's own messages (the service routes by run
    # id); even were old points injected, they were blinded under another scalar.
    x, y = ["a", "b", "c"], ["a", "b", "c"]
    old_initiator, _ = opened(x, y)
    old_points = old_initiator.own_chunks()
    initiator, responder = opened(x, y)
    initiator.own_chunks()
    for old in old_points:
        responder.take(old)
    own = responder.own_chunks()
    for message in own:
        tags = initiator.take(message)
        assert tags is not None
        responder.take(tags)
    assert responder.result() == set()


def test_tags_out_of_turn_or_of_the_wrong_length_are_refused() -> None:
    initiator, _ = opened(["a", "b", "c", "d"], ["a"], chunk_i=2)
    with pytest.raises(ProtocolError, match="tags for points chunk 0, which we did not send"):
        initiator.take(Tags(0, (bytes(16), bytes(16))))
    initiator.own_chunks()
    with pytest.raises(ProtocolError, match="tags chunk 0 holds 1 tags, not 2"):
        initiator.take(Tags(0, (bytes(16),)))
    with pytest.raises(ProtocolError, match="tags chunk 5, but we sent 4 points in 2 chunks"):
        initiator.take(Tags(5, (bytes(16),)))


def test_duplicate_points_or_tags_are_refused() -> None:
    initiator, responder = opened(["a", "b"], ["a"], chunk_i=2)
    (chunk,) = initiator.own_chunks()
    with pytest.raises(ProtocolError) as info:
        responder.take(Points(0, (chunk.points[0], chunk.points[0])))
    assert info.value.code == "duplicate"
    initiator, responder = opened(["a", "b"], ["a"], chunk_i=2)
    initiator.own_chunks()
    for message in responder.own_chunks():
        initiator.take(message)
    initiator.take(Tags(0, (bytes(16), bytes(16))))
    with pytest.raises(ProtocolError, match="returned the same tag twice"):
        initiator.session.matches()


def test_messages_out_of_place_end_the_run() -> None:
    _, responder = opened(["a"], ["a"])
    with pytest.raises(ProtocolError) as info:
        responder.take(Accept(1, 1))
    assert info.value.code == "unexpected"
    with pytest.raises(ProtocolError) as info:
        responder.take(Abort("timeout", "gave up"))
    assert (info.value.code, info.value.message) == (
        "aborted",
        "the other member ended the run: timeout: gave up",
    )
    waiting = PsiSession(Role.INITIATOR, bytes(16), Plan(1, 1))
    with pytest.raises(ProtocolError, match=r"^refused: busy: later$"):
        waiting.accepted(Refuse("busy", "later"))
    with pytest.raises(ProtocolError, match="before the run was accepted"):
        waiting.receive(Points(0, points_of(1)))


# ------------------------------------------------------------------ messages


MESSAGES: list[PsiMessage] = [
    Hello("SH-2024-0001", CASE_TX, "phone", 100_000, 4096),
    Accept(80_000, 4096),
    Refuse("not_named", "case 'X' does not name member 'bank-1'"),
    Points(3, points_of(3)),
    Tags(0, (bytes(16), bytes([1]) * 16)),
    Abort("invalid_point", "point 7 of 9"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_and_every_truncation_is_refused(message: PsiMessage) -> None:
    data = encode_message(message)
    assert decode_message(data) == message
    for end in range(len(data)):
        with pytest.raises(ProtocolError) as info:
            decode_message(data[:end])
        assert info.value.code == "malformed"


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError as exc:
        assert exc.code == "malformed"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Hello("C-1", bytes(31), "phone", 1, 1), "case_tx must be 32 bytes"),
        (lambda: Hello("C-1", CASE_TX, "passport", 1, 1), "not an entity type"),
        (lambda: Hello("C-1", CASE_TX, "phone", 0, 1), "count must be 1"),
        (lambda: Accept(1, MAX_CHUNK + 1), "chunk must be 1"),
        (lambda: Points(0, ()), "1 to"),
        (lambda: Points(0, (bytes(31),)), "every point is 32 bytes"),
        (lambda: Tags(0, (bytes(32),)), "every tag is 16 bytes"),
        (lambda: Refuse("nope", ""), "code must be one of"),
        (lambda: Abort("completed", ""), "code must be one of"),
    ],
)
def test_message_rules(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# ------------------------------------------------------------------ input sets


def read(text: str, *, dedupe: bool = False, entity_type: str = "phone") -> list[str]:
    lines = split_lines(decode_text(text.encode()), 1000)
    parts = [normalise_chunk(entity_type, part) for part in chunked(lines, 2)]
    return list(assemble(entity_type, parts, dedupe).values)


def test_lines_are_normalised_in_order_and_blank_lines_skipped() -> None:
    text = "\ufeff+86 138 0013 8000\n\n  13900139000  \r\n+8613700137000\n"
    assert read(text) == ["+8613800138000", "+8613900139000", "+8613700137000"]


def test_malformed_lines_are_reported_by_number_without_their_content() -> None:
    with pytest.raises(PsiInputError) as info:
        read("+86 138 0013 8000\nnot a number\n\n12\n")
    error = info.value
    assert error.code == "bad_lines" and error.message == "2 lines are not phone identifiers"
    assert [p.line for p in error.problems] == [2, 4]
    assert all("not a number" not in p.message and "'12'" not in p.message for p in error.problems)


def test_empty_and_duplicate_sets_are_refused() -> None:
    with pytest.raises(PsiInputError) as info:
        read("\n  \n")
    assert info.value.code == "empty"
    with pytest.raises(PsiInputError) as info:
        read("+86 138 0013 8000\n13800138000\n+8613900139000\n")
    assert info.value.code == "duplicates"
    assert [(p.line, p.message) for p in info.value.problems] == [(2, "the same phone as line 1")]
    assert read("+86 138 0013 8000\n13800138000\n", dedupe=True) == ["+8613800138000"]


def test_too_large_and_not_text_are_refused() -> None:
    with pytest.raises(TooLarge) as too_large:
        split_lines("1\n2\n3\n", 2)
    assert too_large.value.code == "too_large" and too_large.value.details == {"problems": []}
    with pytest.raises(PsiInputError) as info:
        decode_text(b"ok\n\xff\n")
    assert info.value.code == "not_text" and info.value.problems[0].line == 2


def test_normalised_chunks_keep_line_numbers() -> None:
    out = normalise_chunk("phone", [(4, "13800138000"), (9, "x")])
    assert out.values == ((4, "+8613800138000"),)
    assert [line for line, _ in out.problems] == [9]
    assert isinstance(out, Normalised)

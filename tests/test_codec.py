"""The canonical wire codec: round trips, truncation, bit flips, non-canonical input, fuzz.

Every message and durable record type is generated with realistic, really signed
contents. The properties checked are the ones the protocol relies on: decoding is the
exact inverse of encoding, every malformed or non-canonical input fails with a
``DecodeError`` (never another exception), and a corrupted signed message is either
rejected by the decoder or fails its signature / digest / certificate check.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.blocks import (
    COMMIT_KIND,
    GENESIS_PARENT,
    Batch,
    Block,
    BlockHeader,
    Certificate,
    CertificateError,
    CommitSignature,
    check_block_certificate,
    commit_body,
)
from consensus.codec import (
    MAX_MESSAGE_BYTES,
    MAX_UINT,
    DecodeError,
    decode_value,
    encode_value,
    pack,
    to_wire,
)
from consensus.crypto import Signer, signing_bytes
from consensus.durable import (
    RECORDS,
    NewViewRecord,
    PreparedRecord,
    StableRecord,
    ViewChangeRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.membership import Membership
from consensus.messages import (
    WIRE,
    BlockRequest,
    BlockResponse,
    CertifiedBatch,
    Checkpoint,
    Commit,
    NewView,
    NewViewRequest,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Proposal,
    SignedMessage,
    Status,
    ViewChange,
    decode_message,
    encode_message,
    sign,
)

CHAIN = "test-chain"
SIGNERS = tuple(Signer(bytes([i + 1]) * 32) for i in range(4))
MEMBERSHIP = Membership(CHAIN, tuple(s.public_key for s in SIGNERS))
N = MEMBERSHIP.n
Q = MEMBERSHIP.quorum

# Hypothesis budgets: every example signs real Ed25519 messages (tens for a NewView),
# so the counts are kept small; deadline=None because signing time varies by machine.
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NESTED = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(max_examples=400, deadline=None)


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------

# Small values for realism, the full uint64 range so every msgpack int width shows up.
wide_uints = st.one_of(st.integers(0, 300), st.integers(0, MAX_UINT))
views = st.integers(0, 40)
seqs = st.integers(1, 200)
timestamps = st.integers(1_600_000_000_000, 1_900_000_000_000)
digests = st.binary(min_size=32, max_size=32)
member_ids = st.integers(0, N - 1)
tx_lists = st.lists(st.binary(max_size=40), max_size=5).map(tuple)


def signed(cls: type[Any], sender: int, **fields: Any) -> Any:
    return sign(cls, SIGNERS[sender], CHAIN, sender=sender, **fields)


def commit_signature(member: int, view: int, height: int, digest: bytes) -> CommitSignature:
    body = commit_body(view, height, digest)
    return CommitSignature(member, SIGNERS[member].sign(signing_bytes(CHAIN, COMMIT_KIND, body)))


def quorum_of(pool: list[int]) -> st.SearchStrategy[list[int]]:
    minimum = min(Q, len(pool))
    return st.lists(st.sampled_from(pool), min_size=minimum, max_size=len(pool), unique=True)


@st.composite
def batches(draw: st.DrawFn, height: int | None = None) -> Batch:
    h = draw(seqs) if height is None else height
    return Batch(h, draw(timestamps), draw(tx_lists))


@st.composite
def pre_prepares(draw: st.DrawFn) -> PrePrepare:
    view = draw(wide_uints)
    return signed(PrePrepare, view % N, view=view, seq=draw(wide_uints), digest=draw(digests))


@st.composite
def prepares(draw: st.DrawFn) -> Prepare:
    return signed(
        Prepare, draw(member_ids), view=draw(wide_uints), seq=draw(wide_uints), digest=draw(digests)
    )


@st.composite
def commits(draw: st.DrawFn) -> Commit:
    return signed(
        Commit, draw(member_ids), view=draw(wide_uints), seq=draw(wide_uints), digest=draw(digests)
    )


@st.composite
def checkpoints(draw: st.DrawFn) -> Checkpoint:
    return signed(Checkpoint, draw(member_ids), seq=draw(wide_uints), block_hash=draw(digests))


@st.composite
def proposals(draw: st.DrawFn, view: int | None = None, seq: int | None = None) -> Proposal:
    view = draw(views) if view is None else view
    batch = draw(batches(height=seq))
    pp = signed(PrePrepare, view % N, view=view, seq=batch.height, digest=batch.digest(CHAIN))
    return Proposal(pp, batch)


@st.composite
def prepared_certificates(
    draw: st.DrawFn, before_view: int = 41, seq: int | None = None
) -> PreparedCertificate:
    view = draw(st.integers(0, before_view - 1))
    proposal = draw(proposals(view=view, seq=seq))
    pp = proposal.pre_prepare
    others = [m for m in range(N) if m != pp.sender]
    senders = draw(
        st.lists(st.sampled_from(others), min_size=Q - 1, max_size=len(others), unique=True)
    )
    prepared = tuple(signed(Prepare, s, view=view, seq=pp.seq, digest=pp.digest) for s in senders)
    return PreparedCertificate(pp, prepared, proposal.batch)


@st.composite
def checkpoint_proofs(draw: st.DrawFn, seq: int) -> tuple[Checkpoint, ...]:
    if seq == 0:
        return ()
    block_hash = draw(digests)
    senders = draw(quorum_of(list(range(N))))
    return tuple(signed(Checkpoint, s, seq=seq, block_hash=block_hash) for s in senders)


@st.composite
def view_changes(
    draw: st.DrawFn, new_view: int | None = None, sender: int | None = None
) -> ViewChange:
    new_view = draw(st.integers(1, 40)) if new_view is None else new_view
    stable = draw(st.integers(0, 3)) * 10
    proof = draw(checkpoint_proofs(stable))
    prepared_at = draw(st.lists(st.integers(stable + 1, stable + 20), max_size=2, unique=True))
    prepared = tuple(
        draw(prepared_certificates(before_view=new_view, seq=s)) for s in sorted(prepared_at)
    )
    sender = draw(member_ids) if sender is None else sender
    return signed(
        ViewChange,
        sender,
        new_view=new_view,
        stable_seq=stable,
        checkpoint_proof=proof,
        prepared=prepared,
    )


@st.composite
def new_views(draw: st.DrawFn) -> NewView:
    view = draw(st.integers(1, 40))
    senders = draw(quorum_of(list(range(N))))
    vcs = tuple(draw(view_changes(new_view=view, sender=s)) for s in senders)
    at = draw(st.lists(st.integers(1, 30), max_size=2, unique=True))
    props = tuple(draw(proposals(view=view, seq=s)) for s in sorted(at))
    return signed(NewView, view % N, view=view, view_changes=vcs, proposals=props)


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    return signed(
        Status,
        draw(member_ids),
        view=draw(wide_uints),
        view_active=draw(st.booleans()),
        height=draw(wide_uints),
    )


@st.composite
def new_view_requests(draw: st.DrawFn) -> NewViewRequest:
    return signed(NewViewRequest, draw(member_ids), view=draw(wide_uints))


@st.composite
def block_requests(draw: st.DrawFn) -> BlockRequest:
    low = draw(wide_uints)
    high = draw(st.integers(low, MAX_UINT))
    return signed(BlockRequest, draw(member_ids), from_height=low, to_height=high)


@st.composite
def certified_batches(draw: st.DrawFn, height: int | None = None) -> CertifiedBatch:
    batch = draw(batches(height=height))
    view = draw(views)
    digest = batch.digest(CHAIN)
    members = draw(quorum_of(list(range(N))))
    sigs = tuple(commit_signature(m, view, batch.height, digest) for m in members)
    return CertifiedBatch(batch, Certificate(view, batch.height, digest, sigs))


@st.composite
def block_responses(draw: st.DrawFn) -> BlockResponse:
    start = draw(seqs)
    count = draw(st.integers(0, 3))
    return BlockResponse(tuple(draw(certified_batches(height=start + i)) for i in range(count)))


MESSAGES: dict[type, st.SearchStrategy[Any]] = {
    PrePrepare: pre_prepares(),
    Proposal: proposals(),
    Prepare: prepares(),
    Commit: commits(),
    Checkpoint: checkpoints(),
    ViewChange: view_changes(),
    NewView: new_views(),
    Status: statuses(),
    NewViewRequest: new_view_requests(),
    BlockRequest: block_requests(),
    BlockResponse: block_responses(),
}

vote_kinds = st.one_of(st.sampled_from(["pre-prepare", "prepare", "commit"]), st.text(max_size=40))


@st.composite
def stable_records(draw: st.DrawFn) -> StableRecord:
    seq = draw(st.integers(0, 5)) * 10
    return StableRecord(seq, draw(checkpoint_proofs(seq)))


RECORD_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    VoteRecord: st.builds(VoteRecord, vote_kinds, wide_uints, wide_uints, digests),
    PreparedRecord: st.builds(PreparedRecord, prepared_certificates()),
    ViewRecord: st.builds(ViewRecord, wide_uints, st.booleans()),
    ViewChangeRecord: st.builds(ViewChangeRecord, view_changes()),
    NewViewRecord: st.builds(NewViewRecord, new_views()),
    StableRecord: stable_records(),
}

any_message = st.one_of(*MESSAGES.values())
any_record = st.one_of(*RECORD_STRATEGIES.values())
# Signed messages small enough to flip many bits of in one example.
small_message = st.one_of(
    *(MESSAGES[c] for c in (PrePrepare, Prepare, Commit, Checkpoint, Status, Proposal)),
    MESSAGES[NewViewRequest],
    MESSAGES[BlockRequest],
)


def authentic(message: Any) -> bool:
    """Whether a receiver would accept ``message`` as genuine (signatures and digests)."""
    if isinstance(message, SignedMessage):
        return message.verify(MEMBERSHIP)
    if isinstance(message, Proposal):
        pp = message.pre_prepare
        return pp.verify(MEMBERSHIP) and message.batch.digest(CHAIN) == pp.digest
    if isinstance(message, BlockResponse):
        try:
            for entry in message.entries:
                block = Block.from_batch(CHAIN, entry.batch, GENESIS_PARENT)
                check_block_certificate(MEMBERSHIP, block, entry.certificate)
        except CertificateError:
            return False
        return True
    raise AssertionError(f"no acceptance rule for {type(message).__name__}")


# --------------------------------------------------------------------------------------
# Fixed examples (for exhaustive truncation and bit-flip sweeps)
# --------------------------------------------------------------------------------------


def _fixed_batch(height: int, n_txs: int) -> Batch:
    return Batch(height, 1_700_000_000_000 + height, tuple(b"tx-%d" % i for i in range(n_txs)))


def _fixed_proposal(view: int, seq: int, n_txs: int = 2) -> Proposal:
    batch = _fixed_batch(seq, n_txs)
    pp = signed(PrePrepare, view % N, view=view, seq=seq, digest=batch.digest(CHAIN))
    return Proposal(pp, batch)


def _fixed_prepared(view: int, seq: int) -> PreparedCertificate:
    proposal = _fixed_proposal(view, seq, 1)
    pp = proposal.pre_prepare
    others = [m for m in range(N) if m != pp.sender][: Q - 1]
    preps = tuple(signed(Prepare, s, view=view, seq=seq, digest=pp.digest) for s in others)
    return PreparedCertificate(pp, preps, proposal.batch)


def _fixed_view_change(new_view: int, sender: int, prepared: bool) -> ViewChange:
    certs = (_fixed_prepared(new_view - 1, 3),) if prepared else ()
    return signed(
        ViewChange,
        sender,
        new_view=new_view,
        stable_seq=0,
        checkpoint_proof=(),
        prepared=certs,
    )


def _fixed_response() -> BlockResponse:
    batch = _fixed_batch(7, 2)
    digest = batch.digest(CHAIN)
    sigs = tuple(commit_signature(m, 1, 7, digest) for m in range(Q))
    return BlockResponse((CertifiedBatch(batch, Certificate(1, 7, digest, sigs)),))


DIGEST = bytes(range(32))
SAMPLES: dict[str, Any] = {
    "pre-prepare": signed(PrePrepare, 1, view=1, seq=5, digest=DIGEST),
    "prepare": signed(Prepare, 2, view=1, seq=5, digest=DIGEST),
    "commit": signed(Commit, 3, view=1, seq=5, digest=DIGEST),
    "checkpoint": signed(Checkpoint, 0, seq=10, block_hash=DIGEST),
    "status-active": signed(Status, 1, view=3, view_active=True, height=12),
    "status-inactive": signed(Status, 2, view=300, view_active=False, height=70_000),
    "new-view-request": signed(NewViewRequest, 3, view=2),
    "block-request": signed(BlockRequest, 0, from_height=1, to_height=64),
    "proposal": _fixed_proposal(1, 5),
    "proposal-empty": _fixed_proposal(0, 1, 0),
    "view-change": _fixed_view_change(2, 3, prepared=True),
    "new-view": signed(
        NewView,
        2,
        view=2,
        view_changes=tuple(_fixed_view_change(2, s, prepared=False) for s in range(Q)),
        proposals=(_fixed_proposal(2, 1, 1),),
    ),
    "block-response": _fixed_response(),
    "block-response-empty": BlockResponse(()),
}


def test_samples_cover_every_message_type_and_are_authentic() -> None:
    assert {type(m) for m in SAMPLES.values()} == set(WIRE.classes())
    for name, message in SAMPLES.items():
        assert authentic(message), name


def test_strategies_cover_every_registered_type() -> None:
    assert set(MESSAGES) == set(WIRE.classes())
    assert set(RECORD_STRATEGIES) == set(RECORDS.classes())


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WIRE.classes(), ids=lambda c: c.__name__)
@NESTED
@given(data=st.data())
def test_every_message_type_round_trips(cls: type, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[cls])
    assert type(message) is cls
    assert authentic(message)
    encoded = encode_message(message)
    decoded = decode_message(encoded)
    assert type(decoded) is cls
    assert decoded == message
    assert encode_message(decoded) == encoded
    assert authentic(decoded)
    # bytearray and memoryview inputs decode the same way.
    assert decode_message(bytearray(encoded)) == message
    assert decode_message(memoryview(encoded)) == message


@pytest.mark.parametrize("cls", RECORDS.classes(), ids=lambda c: c.__name__)
@NESTED
@given(data=st.data())
def test_every_record_type_round_trips(cls: type, data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[cls])
    assert type(record) is cls
    encoded = RECORDS.encode(record)
    decoded = RECORDS.decode(encoded)
    assert type(decoded) is cls
    assert decoded == record
    assert RECORDS.encode(decoded) == encoded


@FAST
@given(batch=batches(), parent=digests)
def test_untagged_values_round_trip(batch: Batch, parent: bytes) -> None:
    block = Block.from_batch(CHAIN, batch, parent)
    for cls, value in ((Batch, batch), (Block, block), (BlockHeader, block.header)):
        data = encode_value(value)
        assert decode_value(cls, data) == value
        with pytest.raises(DecodeError, match=r"canonical|malformed"):
            decode_value(cls, data + b"\xc0")


def test_encoding_is_the_documented_layout() -> None:
    """A message is a msgpack array: its tag, then its fields in declaration order."""
    m = SAMPLES["new-view-request"]
    assert encode_message(m) == b"\x94\x09\x02\x03\xc4\x40" + m.signature
    assert m.body() == pack([2, 3])


@FAST
@given(message=any_message, record=any_record)
def test_message_and_record_families_do_not_confuse(message: Any, record: Any) -> None:
    with pytest.raises(DecodeError):
        decode_message(RECORDS.encode(record))
    with pytest.raises(DecodeError):
        RECORDS.decode(encode_message(message))


# --------------------------------------------------------------------------------------
# Truncation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_prefix_of_a_sample_is_rejected(name: str) -> None:
    data = encode_message(SAMPLES[name])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_message(data[:cut])


def test_every_prefix_of_a_record_is_rejected() -> None:
    records = [
        VoteRecord("commit", 1, 2, DIGEST),
        ViewRecord(3, False),
        PreparedRecord(_fixed_prepared(1, 4)),
        ViewChangeRecord(SAMPLES["view-change"]),
        StableRecord(0, ()),
    ]
    for record in records:
        data = RECORDS.encode(record)
        for cut in range(len(data)):
            with pytest.raises(DecodeError):
                RECORDS.decode(data[:cut])


@NESTED
@given(message=any_message, data=st.data())
def test_truncated_messages_are_rejected(message: Any, data: st.DataObject) -> None:
    encoded = encode_message(message)
    cuts = data.draw(st.lists(st.integers(0, len(encoded) - 1), min_size=1, max_size=20))
    for cut in cuts:
        with pytest.raises(DecodeError):
            decode_message(encoded[:cut])


@NESTED
@given(record=any_record, data=st.data())
def test_truncated_records_are_rejected(record: Any, data: st.DataObject) -> None:
    encoded = RECORDS.encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        RECORDS.decode(encoded[:cut])


# --------------------------------------------------------------------------------------
# Bit flips
# --------------------------------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def check_corruption(original: Any, corrupted: bytes) -> str:
    """A corrupted encoding is refused by the decoder or by the authenticity check."""
    try:
        decoded = decode_message(corrupted)
    except DecodeError:
        return "decoder"
    assert decoded != original
    assert encode_message(decoded) == corrupted
    assert not authentic(decoded), f"corrupted message accepted: {decoded!r}"
    return "signature"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_single_bit_flip_of_a_sample_is_rejected(name: str) -> None:
    message = SAMPLES[name]
    data = encode_message(message)
    outcomes = [check_corruption(message, flip(data, bit)) for bit in range(len(data) * 8)]
    assert "decoder" in outcomes
    if name != "block-response-empty":
        # Flips inside signatures and digests still decode: authenticity must catch them.
        assert "signature" in outcomes


@settings(max_examples=20, deadline=None)
@given(message=small_message)
def test_every_bit_flip_of_a_small_message_is_rejected(message: Any) -> None:
    data = encode_message(message)
    for bit in range(len(data) * 8):
        check_corruption(message, flip(data, bit))


@NESTED
@given(message=any_message, data=st.data())
def test_sampled_bit_flips_of_any_message_are_rejected(message: Any, data: st.DataObject) -> None:
    encoded = encode_message(message)
    bits = data.draw(
        st.lists(st.integers(0, len(encoded) * 8 - 1), min_size=1, max_size=64, unique=True)
    )
    for bit in bits:
        check_corruption(message, flip(encoded, bit))


@NESTED
@given(message=any_message, data=st.data())
def test_random_byte_edits_are_rejected(message: Any, data: st.DataObject) -> None:
    """Replace, insert or delete a few bytes: still only DecodeError or a forgery."""
    encoded = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(encoded)))
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if op == "insert":
            encoded[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
        elif pos < len(encoded):
            if op == "replace":
                encoded[pos] = data.draw(st.integers(0, 255))
            else:
                del encoded[pos]
    corrupted = bytes(encoded)
    if corrupted != encode_message(message):
        check_corruption(message, corrupted)


# --------------------------------------------------------------------------------------
# Non-canonical and malformed input, built by hand
# --------------------------------------------------------------------------------------

NVR = SAMPLES["new-view-request"]  # view=2, sender=3
SIG = NVR.signature
P = pack  # canonical msgpack of a plain value


def arr(*items: bytes) -> bytes:
    """A msgpack fixarray of already-encoded items."""
    assert len(items) < 16
    return bytes([0x90 | len(items)]) + b"".join(items)


def nvr(
    tag: bytes = b"\x09",
    view: bytes = b"\x02",
    sender: bytes = b"\x03",
    signature: bytes | None = None,
) -> bytes:
    return arr(tag, view, sender, P(SIG) if signature is None else signature)


def test_hand_built_canonical_bytes_decode() -> None:
    assert nvr() == encode_message(NVR)
    assert decode_message(nvr()) == NVR


@pytest.mark.parametrize(
    "wide",
    [
        b"\xcc\x02",  # uint8
        b"\xcd\x00\x02",  # uint16
        b"\xce\x00\x00\x00\x02",  # uint32
        b"\xcf" + (2).to_bytes(8, "big"),  # uint64
        b"\xd0\x02",  # int8
        b"\xd1\x00\x02",  # int16
        b"\xd2\x00\x00\x00\x02",  # int32
        b"\xd3" + (2).to_bytes(8, "big"),  # int64
    ],
)
def test_int_in_a_wider_form_is_rejected(wide: bytes) -> None:
    with pytest.raises(DecodeError, match="NewViewRequest: not the canonical encoding"):
        decode_message(nvr(view=wide))


def test_wider_int_forms_are_rejected_at_every_boundary() -> None:
    for value in (0, 5, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32):
        m = signed(NewViewRequest, 0, view=value)
        assert decode_message(encode_message(m)) == m
        canonical = P(value)
        for prefix, size in ((b"\xcd", 2), (b"\xce", 4), (b"\xcf", 8)):
            if value < 256**size and len(prefix) + size > len(canonical):
                wide = prefix + value.to_bytes(size, "big")
                data = arr(b"\x09", wide, b"\x00", P(m.signature))
                with pytest.raises(DecodeError, match="not the canonical encoding"):
                    decode_message(data)


def test_a_wide_tag_is_rejected() -> None:
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode_message(nvr(tag=b"\xcd\x00\x09"))


@pytest.mark.parametrize(
    "header", [b"\xdc\x00\x04", b"\xdd\x00\x00\x00\x04"], ids=["array16", "array32"]
)
def test_short_array_in_a_wider_form_is_rejected(header: bytes) -> None:
    data = header + b"\x09\x02\x03" + P(SIG)
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode_message(data)


def test_short_nested_array_in_a_wider_form_is_rejected() -> None:
    message = SAMPLES["block-response"]
    data = encode_message(message)
    assert data[:3] == b"\x92\x0b\x91"
    with pytest.raises(DecodeError, match="BlockResponse: not the canonical encoding"):
        decode_message(b"\x92\x0b\xdc\x00\x01" + data[3:])


@pytest.mark.parametrize(
    "wide",
    [b"\xc5\x00\x40", b"\xc6\x00\x00\x00\x40"],
    ids=["bin16", "bin32"],
)
def test_short_bytes_in_a_wider_form_are_rejected(wide: bytes) -> None:
    with pytest.raises(DecodeError, match="not the canonical encoding"):
        decode_message(nvr(signature=wide + SIG))


@pytest.mark.parametrize(
    "wide",
    [b"\xd9\x06", b"\xda\x00\x06", b"\xdb\x00\x00\x00\x06"],
    ids=["str8", "str16", "str32"],
)
def test_short_string_in_a_wider_form_is_rejected(wide: bytes) -> None:
    record = VoteRecord("commit", 1, 2, DIGEST)
    canonical = RECORDS.encode(record)
    assert canonical == arr(b"\x01", P("commit"), b"\x01", b"\x02", P(DIGEST))
    data = arr(b"\x01", wide + b"commit", b"\x01", b"\x02", P(DIGEST))
    with pytest.raises(DecodeError, match="VoteRecord: not the canonical encoding"):
        RECORDS.decode(data)


def test_a_map_instead_of_the_top_level_array_is_rejected() -> None:
    data = P({"tag": 9, "view": 2, "sender": 3, "signature": SIG})
    with pytest.raises(DecodeError, match="consensus message: expected a non-empty array"):
        decode_message(data)


def test_a_map_instead_of_a_nested_array_is_rejected() -> None:
    proposal = SAMPLES["proposal"]
    batch_map = P({"height": 5, "timestamp_ms": 1, "txs": []})
    data = arr(P(2), P(to_wire(proposal.pre_prepare)), batch_map)
    with pytest.raises(DecodeError, match=r"Proposal\.batch: expected an array, got dict"):
        decode_message(data)


def test_a_map_with_integer_keys_is_rejected() -> None:
    data = arr(b"\x0b", b"\x81\x01\x02")
    with pytest.raises(DecodeError, match="map key"):
        decode_message(data)


def test_an_empty_array_is_rejected() -> None:
    with pytest.raises(DecodeError, match="expected a non-empty array"):
        decode_message(b"\x90")


@pytest.mark.parametrize("extra", [b"\x00", b"\xc0", b"\x90", P(SIG)])
def test_trailing_bytes_are_rejected(extra: bytes) -> None:
    with pytest.raises(DecodeError, match="extra data"):
        decode_message(nvr() + extra)


@pytest.mark.parametrize("tag", [0, 12, 99, 255, 2**64 - 1])
def test_unknown_tags_are_rejected(tag: int) -> None:
    with pytest.raises(DecodeError, match=f"unknown message tag {tag}"):
        decode_message(nvr(tag=P(tag)))


def test_negative_tag_is_rejected() -> None:
    with pytest.raises(DecodeError, match="unknown message tag -1"):
        decode_message(nvr(tag=b"\xff"))


@pytest.mark.parametrize(
    "tag", [b"\xc3", b"\xc2", b"\xc0", P("9"), P(b"\x09"), P(9.0), b"\x91\x09"]
)
def test_a_tag_that_is_not_an_integer_is_rejected(tag: bytes) -> None:
    with pytest.raises(DecodeError, match="tag must be an integer"):
        decode_message(nvr(tag=tag))


def test_too_few_fields_are_rejected() -> None:
    with pytest.raises(DecodeError, match="NewViewRequest has 3 fields, got 2"):
        decode_message(arr(b"\x09", b"\x02", P(SIG)))


def test_too_many_fields_are_rejected() -> None:
    with pytest.raises(DecodeError, match="NewViewRequest has 3 fields, got 4"):
        decode_message(arr(b"\x09", b"\x02", b"\x03", P(SIG), b"\x00"))


def test_a_tag_alone_is_rejected() -> None:
    with pytest.raises(DecodeError, match="BlockResponse has 1 fields, got 0"):
        decode_message(b"\x91\x0b")


def test_wrong_field_count_in_a_nested_value_is_rejected() -> None:
    data = arr(b"\x0b", arr(arr(P(to_wire(_fixed_batch(1, 0))))))
    with pytest.raises(DecodeError, match=r"BlockResponse\.entries\[0\]: CertifiedBatch has 2"):
        decode_message(data)


@pytest.mark.parametrize(
    "negative",
    [b"\xff", b"\xe0", b"\xd0\xff", b"\xd1\xff\xff", b"\xd2\x80\x00\x00\x00", P(-(2**63))],
)
def test_negative_ints_are_rejected(negative: bytes) -> None:
    with pytest.raises(DecodeError, match=r"NewViewRequest\.view: expected an unsigned integer"):
        decode_message(nvr(view=negative))


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"\xc3", "bool"),
        (b"\xc2", "bool"),
        (b"\xc0", "NoneType"),
        (P(2.0), "float"),
        (b"\xca" + struct.pack(">f", 2.0), "float"),
        (P("2"), "str"),
        (P(b"\x02"), "bytes"),
        (b"\x91\x02", "tuple"),
        (P({"a": 2}), "dict"),
    ],
)
def test_a_non_integer_where_an_int_belongs_is_rejected(value: bytes, type_name: str) -> None:
    with pytest.raises(
        DecodeError, match=rf"NewViewRequest\.view: expected an unsigned integer, got {type_name}"
    ):
        decode_message(nvr(view=value))


def test_a_str_where_bytes_belong_is_rejected() -> None:
    text = SIG.hex()[:64]
    with pytest.raises(DecodeError, match=r"NewViewRequest\.signature: expected bytes, got str"):
        decode_message(nvr(signature=P(text)))


def test_bytes_where_a_str_belongs_is_rejected() -> None:
    data = arr(b"\x01", P(b"commit"), b"\x01", b"\x02", P(DIGEST))
    with pytest.raises(DecodeError, match=r"VoteRecord\.kind: expected a string, got bytes"):
        RECORDS.decode(data)


@pytest.mark.parametrize(("value", "type_name"), [(b"\x01", "int"), (b"\xc0", "NoneType")])
def test_a_non_bool_where_a_bool_belongs_is_rejected(value: bytes, type_name: str) -> None:
    m = SAMPLES["status-active"]
    data = arr(b"\x08", P(m.view), value, P(m.height), P(m.sender), P(m.signature))
    with pytest.raises(
        DecodeError, match=rf"Status\.view_active: expected a boolean, got {type_name}"
    ):
        decode_message(data)


def test_invalid_utf8_is_rejected() -> None:
    data = arr(b"\x01", b"\xa2\xff\xfe", b"\x01", b"\x02", P(DIGEST))
    with pytest.raises(DecodeError, match="utf-8"):
        RECORDS.decode(data)


def test_errors_name_the_path_to_a_nested_field() -> None:
    nv = SAMPLES["new-view"]
    wire = to_wire(nv)
    wire[1][1][4] = True  # view_changes[1].sender
    with pytest.raises(
        DecodeError,
        match=r"NewView\.view_changes\[1\]\.sender: expected an unsigned integer, got bool",
    ):
        decode_message(P([7, *wire]))


@pytest.mark.parametrize(
    ("ext", "reason"),
    [
        (b"\xc7\x00\x05", "extension type 5 is not allowed"),  # ext8, empty payload
        (b"\xd4\x05\x00", "ext"),  # fixext1
        (b"\xd8\x05" + bytes(16), "ext"),  # fixext16
        (b"\xd6\xff\x00\x00\x00\x01", "ext"),  # timestamp 32
        (b"\xd7\xff" + bytes(8), "ext"),  # timestamp 64
        (b"\xc7\x0c\xff" + bytes(12), "ext"),  # timestamp 96
        (b"\xc7\x00\xff", "timestamp"),  # ext -1 with an empty payload
    ],
    ids=["ext8-0", "fixext1", "fixext16", "ts32", "ts64", "ts96", "ts-empty"],
)
def test_extension_types_are_rejected(ext: bytes, reason: str) -> None:
    for data in (nvr(view=ext), nvr(signature=ext), ext):
        with pytest.raises(DecodeError, match=reason):
            decode_message(data)


def test_oversized_input_is_rejected_before_parsing() -> None:
    data = encode_message(SAMPLES["view-change"])
    assert decode_message(data, max_bytes=len(data)) == SAMPLES["view-change"]
    with pytest.raises(
        DecodeError, match=f"{len(data)} bytes exceeds the limit of {len(data) - 1}"
    ):
        decode_message(data, max_bytes=len(data) - 1)
    record = RECORDS.encode(ViewRecord(1, True))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        RECORDS.decode(record, max_bytes=len(record) - 1)


def test_input_over_the_default_limit_is_rejected() -> None:
    with pytest.raises(DecodeError, match=f"exceeds the limit of {MAX_MESSAGE_BYTES}"):
        decode_message(bytes(MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    "header",
    [
        b"\xc6\xff\xff\xff\xff",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xdb\x7f\xff\xff\xff",
    ],
    ids=["bin32", "array32", "map32", "str32"],
)
def test_huge_length_prefixes_are_rejected(header: bytes) -> None:
    with pytest.raises(DecodeError, match="malformed msgpack"):
        decode_message(arr(b"\x0b", header + b"\x00"))


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_arrays_are_rejected(depth: int) -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_message(b"\x91" * depth + b"\x00")
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_message(nvr(view=b"\x91" * depth + b"\x02"))


def test_moderately_nested_arrays_are_rejected_by_type() -> None:
    with pytest.raises(DecodeError, match="tag must be an integer"):
        decode_message(b"\x91" * 500 + b"\x09")
    with pytest.raises(DecodeError, match=r"NewViewRequest\.view: expected an unsigned integer"):
        decode_message(nvr(view=b"\x91" * 500 + b"\x02"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty message"), (b"\xc1", "malformed msgpack"), (b"\x94\x09", "malformed msgpack")],
)
def test_degenerate_inputs_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_message(data)


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(DecodeError, match="expected bytes, got str"):
        decode_message("\x94\x09")  # type: ignore[arg-type]


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


# --------------------------------------------------------------------------------------
# Fuzz
# --------------------------------------------------------------------------------------


def assert_decodes_canonically_or_fails(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert type(message) in WIRE.classes()
    assert encode_message(message) == data


def assert_record_decodes_canonically_or_fails(data: bytes) -> None:
    try:
        record = RECORDS.decode(data)
    except DecodeError:
        return
    assert RECORDS.encode(record) == data


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    assert_decodes_canonically_or_fails(data)
    assert_record_decodes_canonically_or_fails(data)


@FUZZ
@given(count=st.integers(0, 15), tag=st.integers(0, 15), rest=st.binary(max_size=200))
def test_random_bytes_after_a_plausible_header_fail_cleanly(
    count: int, tag: int, rest: bytes
) -> None:
    data = bytes([0x90 | count, tag]) + rest
    assert_decodes_canonically_or_fails(data)
    assert_record_decodes_canonically_or_fails(data)


msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.binary(max_size=40),
        digests,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(tag=st.integers(0, 13), fields=st.lists(msgpack_values, max_size=7))
def test_random_msgpack_structures_fail_cleanly(tag: int, fields: list[Any]) -> None:
    data = msgpack.packb([tag, *fields], use_bin_type=True)
    assert_decodes_canonically_or_fails(data)
    assert_record_decodes_canonically_or_fails(data)


@FAST
@given(message=any_message, data=st.data())
def test_messages_with_one_field_replaced_fail_cleanly(message: Any, data: st.DataObject) -> None:
    """Structurally plausible forgeries: one top-level field swapped for a random value."""
    wire = [WIRE.tag_of(message), *to_wire(message)]
    index = data.draw(st.integers(1, len(wire) - 1))
    wire[index] = data.draw(msgpack_values)
    forged = msgpack.packb(wire, use_bin_type=True)
    try:
        decoded = decode_message(forged)
    except DecodeError:
        return
    assert encode_message(decoded) == forged
    if decoded == message:
        return
    if isinstance(decoded, BlockResponse):
        # Unsigned: dropping every entry is legitimate, forging one is not.
        assert decoded.entries == () or not authentic(decoded)
    else:
        assert not authentic(decoded)

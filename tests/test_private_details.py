"""Private details without a network: the commitment, the details encoding, the
delivery check, the frames on the wire, and the private store with its retention."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, pack
from net.wire import (
    DETAILS_ACK_STATUSES,
    MAX_DETAILS_BYTES,
    DetailsAck,
    PrivateDetails,
    decode_frame,
    encode_frame,
)
from node.details.records import (
    MAX_FIELDS,
    MAX_JUSTIFICATION_CHARS,
    MAX_VALUE_CHARS,
    Details,
    UnknownMembers,
    case_recipients,
    check_delivery,
    commitment,
    committed_commitment,
    decode_details,
    default_recipients,
    encode_details,
    justification_details,
    justification_of,
    justification_problem,
    matches,
    new_salt,
    resolve_recipients,
)
from node.details.store import PrivateRecord, PrivateStore
from node.ledger.env import StoreError
from node.ledger.kinds import Approve, Case, Link, Report
from node.ledger.transactions import encode_tx, make_tx, tx_id
from node.testing.cluster import local_genesis
from node.testing.dealer import TEST_KEY, keyed_ref

PROPERTY = settings(max_examples=200, deadline=None)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
values = st.text(max_size=40)
detail_maps = st.dictionaries(keys, values, min_size=1, max_size=8)
salts = st.binary(min_size=32, max_size=32)
NOW = 1_790_000_000_000
DAY = 24 * 3600 * 1000


# ------------------------------------------------------------------ commitment


@PROPERTY
@given(fields=detail_maps, salt=salts, other_fields=detail_maps, other_salt=salts)
def test_any_change_to_the_details_or_the_salt_breaks_the_commitment(
    fields: dict[str, str], salt: bytes, other_fields: dict[str, str], other_salt: bytes
) -> None:
    details = encode_details(Details.of(fields))
    committed = commitment(salt, details)
    assert len(committed) == 32 and matches(salt, details, committed)
    other = encode_details(Details.of(other_fields))
    if other != details:
        assert not matches(salt, other, committed)
    if other_salt != salt:
        assert not matches(other_salt, details, committed)


@PROPERTY
@given(fields=detail_maps, salt=salts, data=st.data())
def test_a_single_flipped_bit_anywhere_breaks_the_commitment(
    fields: dict[str, str], salt: bytes, data: st.DataObject
) -> None:
    details = encode_details(Details.of(fields))
    committed = commitment(salt, details)
    joined = bytearray(salt + details)
    bit = data.draw(st.integers(0, len(joined) * 8 - 1))
    joined[bit // 8] ^= 1 << (bit % 8)
    assert not matches(bytes(joined[:32]), bytes(joined[32:]), committed)


def test_the_commitment_hides_equal_details_under_fresh_salts() -> None:
    details = encode_details(Details.of({"victim": "yes"}))
    assert commitment(new_salt(), details) != commitment(new_salt(), details)
    with pytest.raises(ValueError, match="32 bytes"):
        commitment(b"short", details)
    assert not matches(b"short", details, commitment(bytes(32), details))
    assert not matches(bytes(32), details, None)


# ------------------------------------------------------------------ the details encoding


def test_details_have_one_encoding_and_bounded_sizes() -> None:
    a = Details.of({"name": "Zhang Wei", "account": "DE89370400440532013000"})
    b = Details.of([("account", "DE89370400440532013000"), ("name", "Zhang Wei")])
    assert a == b and encode_details(a) == encode_details(b)
    assert decode_details(encode_details(a)) == a
    assert a.as_dict() == {"account": "DE89370400440532013000", "name": "Zhang Wei"}
    with pytest.raises(ValueError, match="given twice"):
        Details.of([("name", "a"), ("name", "b")])
    for bad in ({"Name": "x"}, {"1st": "x"}, {"k" * 65: "x"}, {}):
        with pytest.raises(ValueError):
            Details.of(bad)
    with pytest.raises(ValueError, match="longer than"):
        Details.of({"note": "x" * (MAX_VALUE_CHARS + 1)})
    with pytest.raises(ValueError, match="fields"):
        Details.of({f"k{i}": "" for i in range(MAX_FIELDS + 1)})
    # Each value within its limit, the whole over the limit of one frame.
    big = {f"k{i}": "\u4e2d" * MAX_VALUE_CHARS for i in range(8)}
    with pytest.raises(ValueError, match="at most"):
        encode_details(Details.of(big))


def test_only_the_canonical_encoding_decodes() -> None:
    unsorted = pack([[["b", "1"], ["a", "2"]]])
    for data in (unsorted, pack([[]]), pack([[["a", 1]]]), b"\xc1", b""):
        with pytest.raises(DecodeError):
            decode_details(data)


# ------------------------------------------------------------------ the delivery check

GENESIS, SIGNERS = local_genesis(4)


def report(commit: bytes | None, member: int = 1) -> bytes:
    body = Report(
        subject=keyed_ref(TEST_KEY, "phone", "+8613800138000"),
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=NOW,
        details_commitment=commit,
    )
    name = GENESIS.members[member].name
    return encode_tx(make_tx(SIGNERS[member], GENESIS.chain_id, name, "report", body, 7, NOW))


def test_a_delivery_is_kept_only_from_the_signer_and_only_if_it_matches() -> None:
    salt, details = new_salt(), encode_details(Details.of({"victim": "Li Na"}))
    tx = report(commitment(salt, details))
    signer, other = GENESIS.members[1].name, GENESIS.members[2].name
    assert check_delivery(tx, signer, salt, details) == "stored"
    assert check_delivery(tx, other, salt, details) == "not_signer"
    tampered = encode_details(Details.of({"victim": "Li Nb"}))
    assert check_delivery(tx, signer, salt, tampered) == "mismatch"
    assert check_delivery(tx, signer, new_salt(), details) == "mismatch"
    assert check_delivery(report(None), signer, salt, details) == "no_commitment"
    # A link's evidence commitment is checked the same way.
    link = Link(
        a=keyed_ref(TEST_KEY, "phone", "+8613800138000"),
        b=keyed_ref(TEST_KEY, "account", "DE89370400440532013000"),
        relation="uses",
        observed_ms=NOW,
        evidence_commitment=commitment(salt, details),
    )
    link_tx = encode_tx(make_tx(SIGNERS[1], GENESIS.chain_id, signer, "link", link, 8, NOW))
    assert check_delivery(link_tx, signer, salt, details) == "stored"
    # A case's justification too: it is kept only from the opener, only if it matches.
    reasons = encode_details(justification_details("Li Na lost 48,000 CNY to this caller."))
    case = Case("C-1", "telecom_fraud", commitment(salt, reasons), (link.a,), 0, NOW, NOW + DAY)
    police = GENESIS.members[0].name
    case_tx = encode_tx(make_tx(SIGNERS[0], GENESIS.chain_id, police, "case", case, 9, NOW))
    assert committed_commitment(case_tx) == (police, case.justification_commitment)
    assert check_delivery(case_tx, police, salt, reasons) == "stored"
    assert check_delivery(case_tx, signer, salt, reasons) == "not_signer"
    assert check_delivery(case_tx, police, salt, details) == "mismatch"
    approve = Approve("C-1", tx_id(case_tx))
    approve_tx = encode_tx(
        make_tx(SIGNERS[1], GENESIS.chain_id, signer, "approve", approve, 10, NOW)
    )
    assert check_delivery(approve_tx, signer, salt, details) == "no_commitment"


def test_a_justification_is_bounded_free_text_for_the_approvers() -> None:
    text = "Caller 139.8765.4321 and Li Wei of 12 Xinhua Rd\nsecond paragraph"
    assert justification_of(justification_details(text).as_dict()) == text
    assert justification_problem("x" * MAX_JUSTIFICATION_CHARS) is None
    for bad, reason in [
        ("", "must not be empty"),
        (" \n ", "must not be empty"),
        ("x" * (MAX_JUSTIFICATION_CHARS + 1), f"at most {MAX_JUSTIFICATION_CHARS}"),
        ("a\rb", "control characters"),
        ("a\x1b[2Jb", "control characters"),
        ("a\u2028b", "control characters"),
        ("a\u200bb", "control characters"),
    ]:
        problem = justification_problem(bad)
        assert problem is not None and reason in problem, bad
        with pytest.raises(ValueError, match=reason):
            justification_details(bad)
    # To the members that approve cases, and the opener, whatever its roles.
    members = list(GENESIS.members)
    members[0] = dataclasses.replace(members[0], roles=("reporter", "investigator"))
    members[3] = dataclasses.replace(members[3], roles=("reporter", "auditor"))
    genesis = dataclasses.replace(GENESIS, members=tuple(members))
    names = [m.name for m in members]
    assert case_recipients(genesis, names[0]) == (names[0], names[1], names[2])
    assert case_recipients(genesis, names[3]) == (names[1], names[2], names[3])


def test_recipients_default_to_the_investigators_and_always_include_the_submitter() -> None:
    names = [m.name for m in GENESIS.members]
    investigators = [m.name for m in GENESIS.members if "investigator" in m.roles]
    assert investigators == [names[0]]
    assert default_recipients(GENESIS, names[2]) == (names[0], names[2])
    assert resolve_recipients(GENESIS, names[2], None) == (names[0], names[2])
    assert resolve_recipients(GENESIS, names[2], [names[3], " "]) == (names[2], names[3])
    assert resolve_recipients(GENESIS, names[2], []) == (names[2],)
    with pytest.raises(UnknownMembers) as caught:
        resolve_recipients(GENESIS, names[2], [names[1], "bnak-1"])
    assert "'bnak-1'" in str(caught.value) and names[1] in str(caught.value)


# ------------------------------------------------------------------ frames

frames = st.one_of(
    st.builds(
        PrivateDetails,
        tx_id=st.binary(min_size=32, max_size=32),
        salt=salts,
        details=st.binary(min_size=1, max_size=300),
    ),
    st.builds(
        DetailsAck,
        tx_id=st.binary(min_size=32, max_size=32),
        status=st.sampled_from(DETAILS_ACK_STATUSES),
    ),
)


@PROPERTY
@given(frame=frames, data=st.data())
def test_frames_round_trip_and_every_truncation_or_bit_flip_is_caught(
    frame: PrivateDetails | DetailsAck, data: st.DataObject
) -> None:
    encoded = encode_frame(frame)
    assert decode_frame(encoded) == frame
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_frame(encoded[:cut])
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1))
    flipped = bytearray(encoded)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        decoded = decode_frame(bytes(flipped))
    except DecodeError:
        return
    # What still decodes is another frame; for details, one whose commitment fails.
    assert decoded != frame and encode_frame(decoded) == bytes(flipped)


def test_malformed_frames_are_refused_by_the_decoder() -> None:
    good = PrivateDetails(bytes(32), bytes(32), b"x")
    tag = pack([101, bytes(32), bytes(32), b"x"])
    assert decode_frame(tag) == good
    bad = [
        pack([101, bytes(31), bytes(32), b"x"]),  # short tx id
        pack([101, bytes(32), bytes(33), b"x"]),  # long salt
        pack([101, bytes(32), bytes(32), b""]),  # no details
        pack([101, bytes(32), bytes(32), bytes(MAX_DETAILS_BYTES + 1)]),
        pack([101, bytes(32), bytes(32)]),  # a field missing
        pack([101, bytes(32), bytes(32), "x"]),  # text, not bytes
        pack([102, bytes(32), "received"]),  # a status that does not exist
        pack([102, bytes(32), 1]),
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            decode_frame(data)
    for args in ((bytes(31), bytes(32), b"x"), (bytes(32), bytes(32), b"")):
        with pytest.raises(ValueError):
            PrivateDetails(*args)
    with pytest.raises(ValueError):
        DetailsAck(bytes(32), "maybe")


# ------------------------------------------------------------------ the private store


def record(stored_ms: int, sender: str = "bank-1", shared: tuple[str, ...] = ()) -> PrivateRecord:
    details = encode_details(Details.of({"note": f"stored at {stored_ms}"}))
    return PrivateRecord(new_salt(), details, sender, stored_ms, shared)


def tid(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_retention_deletes_exactly_what_is_older_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "private"
    store = PrivateStore.open(path, chain_id="local")
    times = [NOW - 10 * DAY, NOW - 5 * DAY, NOW - 3 * DAY - 1, NOW - 3 * DAY, NOW - DAY, NOW]
    for i, t in enumerate(times):
        assert store.put(tid(i), record(t), outbox=(2, 3) if i % 2 else ())
    assert not store.put(tid(0), record(NOW))  # already held: not replaced
    assert store.count() == len(times)
    assert store.tx_ids() == [tid(i) for i in range(len(times))]
    assert len(store.outbox()) == 6
    cutoff = NOW - 3 * DAY
    gone = store.expire(cutoff, NOW)
    # Strictly older than the cutoff: the one stored exactly at it stays.
    assert [d.tx_id for d in gone] == [tid(0), tid(1), tid(2)]
    assert [d.undelivered for d in gone] == [(), (2, 3), ()]
    assert all(d.deleted_ms == NOW for d in gone)
    kept = [tid(3), tid(4), tid(5)]
    assert store.tx_ids() == kept
    assert sorted(store.outbox()) == [(tid(3), 2), (tid(3), 3), (tid(5), 2), (tid(5), 3)]
    assert store.get(tid(1)) is None and store.deleted(tid(1)) == (NOW, times[1])
    assert store.deleted(tid(3)) is None
    # A late delivery of deleted details is not taken back (nor its clock restarted).
    assert not store.put(tid(1), record(NOW))
    assert store.expire(cutoff, NOW) == []
    expected = {t: store.get(t) for t in kept}
    store.close()

    reopened = PrivateStore.open(path, chain_id="local")
    try:
        assert reopened.tx_ids() == kept
        assert {t: reopened.get(t) for t in kept} == expected
        assert reopened.deleted(tid(0)) == (NOW, times[0])
        assert len(reopened.outbox()) == 4
        assert reopened.acknowledge(tid(3), 2)
        assert reopened.pending_for(tid(3)) == [3]
        assert reopened.forget(tid(3))  # a refused transaction: gone without a tombstone
        assert reopened.get(tid(3)) is None and reopened.deleted(tid(3)) is None
        assert reopened.pending_for(tid(3)) == []
        assert [d.tx_id for d in reopened.expire(NOW + 1, NOW + 2)] == [tid(4), tid(5)]
        assert reopened.count() == 0 and reopened.outbox() == []
    finally:
        reopened.close()


def test_expiry_works_in_bounded_batches(tmp_path: Path) -> None:
    store = PrivateStore.open(tmp_path / "private", chain_id="local")
    try:
        for i in range(25):
            store.put(tid(i), record(NOW - DAY - i))
        assert len(store.expire(NOW, NOW, limit=10)) == 10
        assert len(store.expire(NOW, NOW, limit=10)) == 10
        assert len(store.expire(NOW, NOW, limit=10)) == 5
        assert store.count() == 0
    finally:
        store.close()


def test_a_private_store_belongs_to_one_chain(tmp_path: Path) -> None:
    PrivateStore.open(tmp_path / "private", chain_id="local").close()
    with pytest.raises(StoreError, match="belongs to chain 'local'"):
        PrivateStore.open(tmp_path / "private", chain_id="other")
    assert oct(os.stat(tmp_path / "private").st_mode & 0o777) == "0o700"

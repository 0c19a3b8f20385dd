"""Transactions: canonical envelope, signatures, and every admission rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from attribute_strategies import report_attributes
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, encode_value, pack, to_wire
from consensus.crypto import Signer, hash_bytes, signing_bytes, verify_signature
from node.identifiers.normalize import EntityType
from node.identifiers.pseudonym import EntityRef
from node.identifiers.screen import find_raw_identifier, scan_for_raw_identifier
from node.ledger.kinds import (
    CATEGORIES,
    PURPOSES,
    QUERY_KINDS,
    RELATIONS,
    SUBJECT_QUERIES,
    Access,
    Approve,
    Attribute,
    Body,
    Case,
    Close,
    Link,
    Report,
)
from node.ledger.transactions import (
    MAX_TX_BYTES,
    MemberInfo,
    RejectCode,
    Transaction,
    TxContext,
    TxRejected,
    ValidatedTx,
    decode_body,
    decode_tx,
    encode_tx,
    make_tx,
    member_table,
    sign_tx,
    tx_id,
    validate_tx,
)
from node.testing.dealer import TEST_KEY, keyed_ref

CHAIN = "crosstrace-test"
NOW = 1_750_000_000_000

SIGNERS = {
    "police": Signer(bytes([1]) * 32),
    "bank": Signer(bytes([2]) * 32),
    "telecom": Signer(bytes([3]) * 32),
    "audit": Signer(bytes([4]) * 32),
}
ROLES = {
    "police": frozenset({"investigator", "reporter"}),
    "bank": frozenset({"reporter", "approver"}),
    "telecom": frozenset({"reporter", "approver"}),
    "audit": frozenset({"auditor"}),
}
MEMBERS = {name: MemberInfo(s.public_key, ROLES[name]) for name, s in SIGNERS.items()}

PHONE = keyed_ref(TEST_KEY, "phone", "+86 138 0013 8000")
ACCOUNT = keyed_ref(TEST_KEY, "account", "6222 0212 3456 7890")
DEVICE = keyed_ref(TEST_KEY, "device", "35-209900-176148-1")


def ctx(seen: Callable[[str, int], bool] = lambda m, n: False, **kw: Any) -> TxContext:
    return TxContext(chain_id=CHAIN, members=MEMBERS, now_ms=NOW, nonce_seen=seen, **kw)


def report(**kw: Any) -> Report:
    fields: dict[str, Any] = {
        "subject": PHONE,
        "category": "fraud_call",
        "attributes": (Attribute("calls", "12"), Attribute("channel", "voice")),
        "case_id": "SH-2024-0001",
        "observed_ms": NOW - 60_000,
        "details_commitment": bytes(range(32)),
    }
    return Report(**(fields | kw))


def case(**kw: Any) -> Case:
    fields: dict[str, Any] = {
        "case_id": "SH-2024-0001",
        "purpose": "telecom_fraud",
        "justification_commitment": bytes(range(1, 33)),
        "scope": (PHONE, ACCOUNT),
        "window_start_ms": NOW - 86_400_000,
        "window_end_ms": NOW,
        "expires_ms": NOW + 30 * 86_400_000,
    }
    return Case(**(fields | kw))


BODIES: dict[str, tuple[str, Body]] = {
    "report": ("bank", report()),
    "link": ("telecom", Link(PHONE, DEVICE, "uses", NOW - 1000, None)),
    "case": ("police", case()),
    "approve": ("bank", Approve("SH-2024-0001", bytes(32))),
    "access": ("audit", Access("SH-2024-0001", "trace", PHONE, NOW)),
    "close": ("police", Close("SH-2024-0001", bytes(32))),
}


def signed(
    member: str, body: Body, nonce: int = 7, time_ms: int = NOW, chain: str = CHAIN
) -> bytes:
    return encode_tx(make_tx(SIGNERS[member], chain, member, body.kind, body, nonce, time_ms))


def rejected(data: bytes, context: TxContext | None = None) -> TxRejected:
    with pytest.raises(TxRejected) as info:
        validate_tx(data, context or ctx())
    return info.value


# --- happy path and codec ----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_each_kind_is_admitted(kind: str) -> None:
    member, body = BODIES[kind]
    data = signed(member, body)
    result = validate_tx(data, ctx())
    assert isinstance(result, ValidatedTx)
    assert result.body == body
    assert result.tx.member == member and result.tx.kind == kind
    assert result.tx_id == hash_bytes("tx", data) == tx_id(data) == result.tx.tx_id()
    assert result.encoded == data
    assert decode_body(result.tx) == body


def test_signature_covers_the_envelope_without_signature() -> None:
    tx = decode_tx(signed("bank", report()))
    unsigned = encode_value(tx.unsigned())
    assert pack(to_wire(tx)[:-1]) == unsigned
    message = signing_bytes(CHAIN, "tx/report", unsigned)
    assert verify_signature(SIGNERS["bank"].public_key, message, tx.signature)
    assert not verify_signature(
        SIGNERS["bank"].public_key, signing_bytes(CHAIN, "tx/link", unsigned), tx.signature
    )


def test_client_keys_are_accepted() -> None:
    client = Signer(bytes([9]) * 32)
    members = dict(MEMBERS)
    bank = MEMBERS["bank"]
    members["bank"] = dataclasses.replace(bank, client_keys=frozenset({client.public_key}))
    tx = make_tx(client, CHAIN, "bank", "report", report(), 1, NOW)
    context = TxContext(chain_id=CHAIN, members=members, now_ms=NOW, nonce_seen=lambda m, n: False)
    assert validate_tx(encode_tx(tx), context).tx.signer_key == client.public_key


def test_member_table_from_genesis_like_members() -> None:
    @dataclasses.dataclass(frozen=True)
    class GenesisMember:
        name: str
        institution: str
        roles: tuple[str, ...]
        public_key: bytes

    table = member_table([GenesisMember("bank", "bank", ("reporter",), b"k" * 32)])
    assert table == {"bank": MemberInfo(b"k" * 32, frozenset({"reporter"}))}


def test_make_tx_checks_kind_and_ranges() -> None:
    with pytest.raises(ValueError, match="kind 'report', not 'link'"):
        make_tx(SIGNERS["bank"], CHAIN, "bank", "link", report(), 1, NOW)
    with pytest.raises(ValueError, match="nonce must be an unsigned 64-bit integer"):
        make_tx(SIGNERS["bank"], CHAIN, "bank", "report", report(), -1, NOW)


REFS = st.builds(
    EntityRef, st.sampled_from([t.value for t in EntityType]), st.binary(min_size=32, max_size=32)
)
TEXT = st.text(st.characters(categories=("L", "Zs")), max_size=30)
DIGEST = st.binary(min_size=32, max_size=32)
UINT = st.integers(0, 2**64 - 1)
COMMIT = st.none() | st.binary(min_size=32, max_size=32)
CASE_ID = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._:/-]{0,20}[A-Za-z0-9])?", fullmatch=True)

BODY_STRATEGY: st.SearchStrategy[Body] = st.one_of(
    st.sampled_from(CATEGORIES).flatmap(
        lambda category: st.builds(
            Report,
            REFS,
            st.just(category),
            report_attributes(category),
            st.none() | CASE_ID,
            UINT,
            COMMIT,
        )
    ),
    st.builds(
        lambda ab, rel, ms, commit: Link(ab[0], ab[1], rel, ms, commit),
        st.tuples(REFS, REFS).filter(lambda ab: ab[0] != ab[1]),
        st.sampled_from(RELATIONS),
        UINT,
        COMMIT,
    ),
    st.builds(
        Case,
        CASE_ID,
        st.sampled_from(PURPOSES),
        DIGEST,
        st.lists(REFS, min_size=1, max_size=4, unique=True).map(tuple),
        st.just(0),
        UINT,
        UINT,
    ),
    st.builds(Approve, CASE_ID, st.binary(min_size=32, max_size=32)),
    st.builds(Close, CASE_ID, st.binary(min_size=32, max_size=32)),
    st.sampled_from(QUERY_KINDS).flatmap(
        lambda q: st.builds(
            Access, CASE_ID, st.just(q), REFS if q in SUBJECT_QUERIES else st.none(), UINT
        )
    ),
)


@given(body=BODY_STRATEGY, nonce=UINT, time_ms=UINT, member=st.sampled_from(sorted(SIGNERS)))
@settings(max_examples=150)
def test_codec_round_trip(body: Body, nonce: int, time_ms: int, member: str) -> None:
    tx = make_tx(SIGNERS[member], CHAIN, member, body.kind, body, nonce, time_ms)
    data = encode_tx(tx)
    back = decode_tx(data, max_bytes=len(data))
    assert back == tx and encode_tx(back) == data
    assert decode_body(back) == body


# --- corrupted bytes are always a TxRejected ---------------------------------------------


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_every_truncation_is_rejected(kind: str) -> None:
    data = signed(*BODIES[kind])
    for end in range(len(data)):
        assert rejected(data[:end]).code is RejectCode.MALFORMED


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_every_bit_flip_is_rejected(kind: str) -> None:
    data = signed(*BODIES[kind])
    codes = set()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        codes.add(rejected(bytes(flipped)).code)
    assert RejectCode.BAD_SIGNATURE in codes and RejectCode.MALFORMED in codes


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_arbitrary_bytes_are_rejected_cleanly(data: bytes) -> None:
    with pytest.raises(TxRejected):
        validate_tx(data, ctx())


# --- one test per rejection code ---------------------------------------------------------


def test_malformed() -> None:
    data = signed("bank", report())
    error = rejected(data + b"\x00")
    assert error.code == "malformed" and "malformed msgpack" in error.message
    error = rejected(pack([CHAIN, "bank"]))
    assert error.message == "Transaction: Transaction has 8 fields, got 2"
    assert str(error) == "malformed: Transaction: Transaction has 8 fields, got 2"


def test_oversize_envelope() -> None:
    error = rejected(b"\x00" * (MAX_TX_BYTES + 1))
    assert error.code == "oversize"
    assert error.message == f"transaction of {MAX_TX_BYTES + 1} bytes exceeds the limit of 16384"


def test_oversize_strings_and_scope() -> None:
    error = rejected(signed("bank", report(case_id="C" * 257)))
    assert (error.code, error.message) == (
        "oversize",
        "report.case_id has 257 characters, at most 256",
    )
    scope = tuple(EntityRef("phone", bytes([i]) * 32) for i in range(65))
    error = rejected(signed("police", case(scope=scope)))
    assert (error.code, error.message) == ("oversize", "case.scope has 65 entities, at most 64")


def test_wrong_chain() -> None:
    error = rejected(signed("bank", report(), chain="other-chain"))
    assert error.code == "wrong_chain"
    assert error.message == "transaction is for chain 'other-chain', not 'crosstrace-test'"


def test_unknown_member() -> None:
    tx = make_tx(Signer(bytes([8]) * 32), CHAIN, "mallory", "report", report(), 1, NOW)
    error = rejected(encode_tx(tx))
    assert (error.code, error.message) == ("unknown_member", "'mallory' is not a member")


def test_wrong_key() -> None:
    tx = make_tx(SIGNERS["telecom"], CHAIN, "bank", "report", report(), 1, NOW)
    error = rejected(encode_tx(tx))
    assert (error.code, error.message) == ("wrong_key", "signer key is not a key of member 'bank'")


def test_bad_signature() -> None:
    tx = decode_tx(signed("bank", report()))
    forged = dataclasses.replace(tx, nonce=tx.nonce + 1)
    error = rejected(encode_tx(forged))
    assert (error.code, error.message) == ("bad_signature", "signature by 'bank' does not verify")
    short = dataclasses.replace(tx, signature=tx.signature[:63])
    assert rejected(encode_tx(short)).code == "bad_signature"


def test_forbidden_kind() -> None:
    error = rejected(signed("bank", case()))
    assert error.code == "forbidden_kind"
    assert (
        error.message == "member 'bank' may not submit case transactions (needs role investigator)"
    )
    error = rejected(signed("telecom", Access("C-1", "psi", None, NOW)))
    assert error.message.endswith("(needs role auditor or investigator)")
    assert rejected(signed("audit", report())).code == "forbidden_kind"
    assert rejected(signed("police", Approve("C-1", bytes(32)))).code == "forbidden_kind"
    error = rejected(signed("bank", Close("C-1", bytes(32))))
    assert error.message.endswith("may not submit close transactions (needs role investigator)")


def test_an_approval_is_not_a_close() -> None:
    """Approve and Close bodies encode alike; the kind in the signed domain keeps them apart."""
    body = encode_value(Approve("C-1", bytes(32)))
    assert body == encode_value(Close("C-1", bytes(32)))
    tx = decode_tx(signed("police", Close("C-1", bytes(32))))
    as_approve = dataclasses.replace(tx, kind="approve")
    assert rejected(encode_tx(as_approve)).code == "bad_signature"


def test_unknown_kind() -> None:
    tx = sign_tx(SIGNERS["bank"], CHAIN, "bank", "vote", encode_value(report()), 1, NOW)
    error = rejected(encode_tx(tx))
    assert (error.code, error.message) == ("unknown_kind", "unknown transaction kind 'vote'")
    with pytest.raises(TxRejected, match=r"^unknown_kind: "):
        decode_body(tx)


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("report", b"", "report body: empty message"),
        ("report", encode_value(Approve("C-1", bytes(32))), "Report has 6 fields, got 3"),
        ("approve", pack(["C-1", b"short", bytes(16)]), "case_tx must be 32 bytes, got 5"),
        ("approve", pack(["C-1", bytes(32), b"short"]), "actor must be 16 bytes, got 5"),
        # A version 3 body (no actor) does not decode: ledger format 4.
        ("approve", pack(["C-1", bytes(32)]), "Approve has 3 fields, got 2"),
        ("link", pack([[b"x"], [b"y"], "owns", 1, None]), "Link.a: EntityRef has 2 fields"),
    ],
)
def test_bad_body_undecodable(kind: str, body: bytes, message: str) -> None:
    member = {"report": "bank", "approve": "bank", "link": "bank"}[kind]
    tx = sign_tx(SIGNERS[member], CHAIN, member, kind, body, 1, NOW)
    error = rejected(encode_tx(tx))
    assert error.code == "bad_body" and message in error.message


def test_bad_body_invalid_fields() -> None:
    raw = encode_value(report()).replace(b"fraud_call", b"fraud_cold")
    tx = sign_tx(SIGNERS["bank"], CHAIN, "bank", "report", raw, 1, NOW)
    error = rejected(encode_tx(tx))
    assert error.code == "bad_body"
    assert error.message.startswith("report body: Report: category must be one of fraud_call")
    cases: list[tuple[str, Body, str]] = [
        (
            "bank",
            report(observed_ms=NOW + 3_600_000),
            "report.observed_ms is after the transaction",
        ),
        ("police", case(expires_ms=NOW), "case.expires_ms is not in the future"),
        ("audit", Access("C-1", "graph", PHONE, NOW + 3_600_000), "answered_ms is after"),
    ]
    for member, body, message in cases:
        error = rejected(signed(member, body))
        assert error.code == "bad_body" and message in error.message


def test_body_invariants_hold_at_construction() -> None:
    with pytest.raises(ValueError, match="sorted"):
        report(attributes=(Attribute("channel", "sms"), Attribute("calls", "2")))
    with pytest.raises(ValueError, match="two different entities"):
        Link(PHONE, PHONE, "owns", 1, None)
    with pytest.raises(ValueError, match="a psi query takes no subject"):
        Access("C-1", "psi", PHONE, 1)
    with pytest.raises(ValueError, match="a trace query needs subject"):
        Access("C-1", "trace", None, 1)
    with pytest.raises(ValueError, match="scope lists an entity twice"):
        case(scope=(PHONE, PHONE))
    with pytest.raises(ValueError, match="window_start_ms is after window_end_ms"):
        case(window_start_ms=NOW + 1)
    with pytest.raises(ValueError, match="case_id must be"):
        Approve("bad id", bytes(32))
    with pytest.raises(ValueError, match="unknown attribute key"):
        Attribute("Bad-Key", "x")
    with pytest.raises(ValueError, match="purpose must be one of telecom_fraud, "):
        case(purpose="Telecom fraud ring")
    with pytest.raises(ValueError, match="justification_commitment must be 32 bytes, got 0"):
        case(justification_commitment=b"")


def test_clock_skew() -> None:
    error = rejected(signed("bank", report(), time_ms=NOW + 300_001))
    assert error.code == "clock_skew"
    assert error.message == (
        "transaction time is +300.0 s from now; at most 300 s either way is accepted"
    )
    assert rejected(signed("bank", report(), time_ms=NOW - 300_001)).code == "clock_skew"
    validate_tx(signed("bank", report(), time_ms=NOW - 300_000), ctx())
    tight = ctx(max_skew_ms=1000)
    assert rejected(signed("bank", report(), time_ms=NOW + 1001), tight).code == "clock_skew"


def test_replay() -> None:
    used = {("bank", 7)}
    context = ctx(seen=lambda member, nonce: (member, nonce) in used)
    error = rejected(signed("bank", report(), nonce=7), context)
    assert (error.code, error.message) == ("replay", "nonce 7 of member 'bank' was already used")
    validate_tx(signed("bank", report(), nonce=8), context)
    validate_tx(signed("telecom", report(), nonce=7), context)


@pytest.mark.parametrize(
    ("body", "path", "what"),
    [
        (report(case_id="case-13800138000"), "report.case_id", "phone"),
        (report(case_id="C-13912345678"), "report.case_id", "phone"),
        (report(case_id="ID-11010519491231002X"), "report.case_id", "ID number"),
        (Approve("IMEI-352099001761481", bytes(32)), "approve.case_id", "IMEI"),
        (case(case_id="GB29NWBK60161331926819"), "case.case_id", "IBAN"),
    ],
)
def test_raw_identifier(body: Body, path: str, what: str) -> None:
    member = "police" if isinstance(body, Case) else "bank"
    error = rejected(signed(member, body))
    assert error.code == "raw_identifier"
    assert path in error.message and what in error.message
    assert "a raw identifier never enters a transaction" in error.message
    assert "0013" not in error.message and "@" not in error.message
    assert "1234" not in error.message and "8765" not in error.message


FREE_TEXT = "Caller 139.8765.4321 and Li Wei of 12 Xinhua Rd"


def test_a_free_text_purpose_never_reaches_the_ledger() -> None:
    """A member's own tool may sign any bytes: a case whose purpose is free text is
    refused at admission, in this format and in the previous one (no commitment), and
    the refusal quotes none of it."""
    wire = to_wire(case())
    wire[1] = FREE_TEXT
    shapes = {
        "current": (pack(wire), f"case body: Case: purpose must be one of {', '.join(PURPOSES)}"),
        "format 2": (
            pack([wire[0], FREE_TEXT, *wire[3:]]),
            "case body: Case: Case has 8 fields, got 7",
        ),
    }
    for nonce, (body, message) in enumerate(shapes.values(), 1):
        tx = sign_tx(SIGNERS["police"], CHAIN, "police", "case", body, nonce, NOW)
        error = rejected(encode_tx(tx))
        assert (error.code, error.message) == ("bad_body", message)
        assert not {"Li", "Wei", "Xinhua", "8765", "139"} & set(error.message.split())
    with pytest.raises(ValueError, match="purpose must be one of"):
        case(purpose=FREE_TEXT)


POSITIVE = [
    "victim 138 0013 8000",
    "+86 138-0013-8000",
    "(010) 6234-5678",
    "13800138000".translate(
        str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))
    ),
    "card 6222021234567890",
    "gb29nwbk60161331926819",
    "contact a.b@example.com",
    "mac 00:1A:2B:3C:4D:5E",
    "id 11010519491231002X",
    "2024-05-01 13800138000",
]
NEGATIVE = [
    "amount 150,000.00",
    "12345.67 CNY",
    "2024-05-01 12:30:00",
    "seen 2024/05/01",
    "calls 12 13 14",
    "version 4.2.1.10",
    "meet @ 5pm",
    "Telecom fraud ring targeting pensioners",
    "诈骗电话\uff0c来电归属地上海",
]


@pytest.mark.parametrize("text", POSITIVE)
def test_detector_finds(text: str) -> None:
    assert find_raw_identifier(text) is not None


@pytest.mark.parametrize("text", NEGATIVE)
def test_detector_passes(text: str) -> None:
    assert find_raw_identifier(text) is None


@given(
    st.text(
        alphabet="0123456789abcdeftABXZOoIl| @:-()./_,;'[]"
        "\u2460\uff10\uff20\u0663\u200b\u00a0\u2010\u041e",
        max_size=24,
    ),
    st.booleans(),
)
@settings(max_examples=500)
def test_the_short_string_shortcut_never_changes_the_verdict(text: str, structured: bool) -> None:
    assert find_raw_identifier(text, structured) == scan_for_raw_identifier(text, structured)


def test_detector_structured_mode_allows_dashed_case_ids() -> None:
    assert find_raw_identifier("SH-2024-0001") is not None
    assert find_raw_identifier("SH-2024-0001", structured=True) is None
    assert find_raw_identifier("SH-13800138000", structured=True) is not None


def test_rejection_codes_are_covered() -> None:
    tested = {
        "malformed", "oversize", "wrong_chain", "unknown_member", "wrong_key", "bad_signature",
        "forbidden_kind", "unknown_kind", "bad_body", "clock_skew", "replay", "raw_identifier",
    }  # fmt: skip
    assert {c.value for c in RejectCode} == tested


def test_decode_tx_is_strict() -> None:
    data = signed("bank", report())
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_tx(data, max_bytes=len(data) - 1)
    assert isinstance(decode_tx(data), Transaction)

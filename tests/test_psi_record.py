"""The ``psi`` transaction kind: each member's ledger record of a PSI run, tested like
the other kinds (round trips, every truncation and bit flip, body rules, admission)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import Signer
from net.wire import PSI_RUN_ID_SIZE as WIRE_RUN_ID_SIZE
from node.identifiers.normalize import EntityType
from node.ledger.application import _case_postings
from node.ledger.kinds import KIND_ROLES, PSI_OUTCOMES, PSI_RUN_ID_SIZE, PsiRun
from node.ledger.layout import CaseRole, case_key
from node.ledger.transactions import (
    MemberInfo,
    RejectCode,
    TxContext,
    TxRejected,
    decode_body,
    decode_tx,
    encode_tx,
    make_tx,
    validate_tx,
)
from node.psi.crypto import RUN_ID_SIZE
from node.psi.protocol import FAILURES
from node.tracing.render import body_json

CHAIN = "crosstrace-test"
NOW = 1_750_000_000_000
SIGNERS = {name: Signer(bytes([i + 1]) * 32) for i, name in enumerate(("police", "bank", "clerk"))}
ROLES = {
    "police": frozenset({"investigator", "reporter"}),
    "bank": frozenset({"reporter", "approver", "auditor"}),
    "clerk": frozenset({"reporter"}),
}
MEMBERS = {name: MemberInfo(s.public_key, ROLES[name]) for name, s in SIGNERS.items()}


def record(**kw: Any) -> PsiRun:
    fields: dict[str, Any] = {
        "case_id": "SH-2024-0001",
        "case_tx": bytes(range(32)),
        "run_id": bytes(range(16)),
        "initiator": "police",
        "responder": "bank",
        "entity_type": "phone",
        "initiator_size": 100_000,
        "responder_size": 80_000,
        "result_size": 10_000,
        "outcome": "completed",
        "finished_ms": NOW - 10,
    }
    return PsiRun(**(fields | kw))


def signed(member: str, body: PsiRun, nonce: int = 7) -> bytes:
    return encode_tx(make_tx(SIGNERS[member], CHAIN, member, "psi", body, nonce, NOW))


def admit(data: bytes) -> None:
    validate_tx(data, TxContext(chain_id=CHAIN, members=MEMBERS, now_ms=NOW, nonce_seen=no))


def no(member: str, nonce: int) -> bool:
    return False


def rejected(data: bytes) -> TxRejected:
    with pytest.raises(TxRejected) as info:
        admit(data)
    return info.value


NAMES = st.sampled_from(["police", "bank", "clerk"])
SIZES = st.integers(1, 2**64 - 1)


@st.composite
def records(draw: st.DrawFn) -> PsiRun:
    initiator, responder = draw(st.lists(NAMES, min_size=2, max_size=2, unique=True))
    sizes = draw(st.tuples(SIZES, SIZES))
    outcome = draw(st.sampled_from(PSI_OUTCOMES))
    result = draw(st.integers(0, min(sizes))) if outcome == "completed" else 0
    return PsiRun(
        case_id=draw(
            st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._:/-]{0,20}[A-Za-z0-9])?", fullmatch=True)
        ),
        case_tx=draw(st.binary(min_size=32, max_size=32)),
        run_id=draw(st.binary(min_size=16, max_size=16)),
        initiator=initiator,
        responder=responder,
        entity_type=draw(st.sampled_from([t.value for t in EntityType])),
        initiator_size=sizes[0],
        responder_size=sizes[1],
        result_size=result,
        outcome=outcome,
        finished_ms=draw(st.integers(0, 2**64 - 1)),
    )


@given(body=records(), nonce=st.integers(0, 2**64 - 1), member=NAMES)
@settings(max_examples=150)
def test_codec_round_trip(body: PsiRun, nonce: int, member: str) -> None:
    tx = make_tx(SIGNERS[member], CHAIN, member, "psi", body, nonce, NOW)
    data = encode_tx(tx)
    back = decode_tx(data, max_bytes=len(data))
    assert back == tx and encode_tx(back) == data
    assert decode_body(back) == body


def test_a_participant_with_the_role_records_the_run() -> None:
    admit(signed("police", record()))
    admit(signed("bank", record(), nonce=8))
    admit(signed("bank", record(outcome="invalid_point", result_size=0)))


def test_every_truncation_is_rejected() -> None:
    data = signed("police", record())
    for end in range(len(data)):
        assert rejected(data[:end]).code is RejectCode.MALFORMED


def test_every_bit_flip_is_rejected() -> None:
    data = signed("police", record())
    codes = set()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        codes.add(rejected(bytes(flipped)).code)
    assert RejectCode.BAD_SIGNATURE in codes and RejectCode.MALFORMED in codes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"case_tx": bytes(31)}, "case_tx must be 32 bytes"),
        ({"run_id": bytes(15)}, "run_id must be 16 bytes"),
        ({"responder": "police"}, "two different members"),
        ({"entity_type": "passport"}, "entity_type must be one of"),
        ({"outcome": "done"}, "outcome must be one of"),
        ({"initiator_size": 0}, "set sizes are at least 1"),
        ({"result_size": 80_001}, "exceeds the smaller set"),
        ({"outcome": "timeout"}, "did not complete has no result"),
        ({"case_id": "bad id"}, "case_id must be"),
    ],
)
def test_body_rules_hold_at_construction(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(**change)


def test_only_the_two_members_of_the_run_record_it() -> None:
    error = rejected(signed("police", record(initiator="bank", responder="clerk")))
    assert error.code is RejectCode.BAD_BODY
    assert "took no part in this run" in error.message


def test_both_members_of_the_run_are_members() -> None:
    body = dataclasses.replace(record(), responder="nobody")
    error = rejected(signed("police", body))
    assert (error.code, error.message) == (RejectCode.BAD_BODY, "psi.responder is not a member")


def test_a_member_without_a_querying_role_cannot_record() -> None:
    assert KIND_ROLES["psi"] == KIND_ROLES["access"]
    error = rejected(signed("clerk", record(initiator="clerk")))
    assert error.code is RejectCode.FORBIDDEN_KIND


def test_the_record_is_not_from_the_future() -> None:
    error = rejected(signed("police", record(finished_ms=NOW + 3_600_000)))
    assert error.message == "psi.finished_ms is after the transaction"


def test_the_record_is_filed_under_its_case_as_an_access() -> None:
    assert _case_postings(record()) == ((case_key("SH-2024-0001"), CaseRole.ACCESS),)
    rendered = body_json(record())
    assert rendered["run_id"] == bytes(range(16)).hex()
    assert "elements" not in rendered and rendered["result_size"] == 10_000


def test_vocabularies_and_sizes_agree_across_modules() -> None:
    assert PSI_OUTCOMES[1:] == FAILURES
    assert RUN_ID_SIZE == PSI_RUN_ID_SIZE == WIRE_RUN_ID_SIZE

"""The case registry: opening, approvals, expiry, closing, rebuilding from the store."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracing_helpers import DAY, T0, LedgerBuilder, ent, make_genesis

from consensus.crypto import hash_bytes
from node.ledger.cases import CaseRegistry, CaseState, format_time_ms
from node.ledger.store import BlockIndex, CaseRole, TxIndex
from node.ledger.transactions import tx_id
from node.ledger.verify import verify_ledger

PHONE, ACCOUNT = ent(1), ent(2, "account")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerBuilder]:
    builder = LedgerBuilder(tmp_path / "ledger")
    yield builder
    builder.close()


def registry_of(ledger: LedgerBuilder) -> CaseRegistry:
    return CaseRegistry.load(ledger.genesis, ledger.store)


def test_a_case_is_pending_until_k_distinct_approvers_sign(ledger: LedgerBuilder) -> None:
    case = ledger.case("C-1", [PHONE, ACCOUNT])
    case_tx = tx_id(case)
    ledger.commit([case])
    status = registry_of(ledger).status("C-1", T0)
    assert status is not None and status.state is CaseState.PENDING
    assert status.reason == "case 'C-1' is waiting for approval: 0 of 2 approvals"
    assert status.case.opener == "police" and status.case.body.scope == (PHONE, ACCOUNT)

    # The same member twice counts once.
    ledger.commit([ledger.approve("bank-a", "C-1", case_tx)])
    ledger.commit([ledger.approve("bank-a", "C-1", case_tx)])
    status = registry_of(ledger).status("C-1", T0)
    assert status is not None and status.state is CaseState.PENDING
    assert status.reason == "case 'C-1' is waiting for approval: 1 of 2 approvals"
    assert [(a.member, a.height) for a in status.approvals] == [("bank-a", 2)]

    ledger.commit([ledger.approve("telco-b", "C-1", case_tx)])
    status = registry_of(ledger).status("C-1", T0)
    assert status is not None and status.state is CaseState.ACTIVE and status.active
    assert status.reason == ("case 'C-1' is active until 2025-07-15T15:06:40Z: 2 of 2 approvals")
    assert [a.member for a in status.approvals] == ["bank-a", "telco-b"]


def test_an_approval_must_name_the_case_transaction_and_its_id(ledger: LedgerBuilder) -> None:
    case = ledger.case("C-1", [PHONE])
    other = ledger.case("C-2", [PHONE])
    ledger.commit([case, other])
    ledger.commit(
        [
            ledger.approve("bank-a", "C-1", tx_id(other)),  # another case's transaction
            ledger.approve("telco-b", "C-1", hash_bytes("tx", b"never committed")),
            ledger.approve("police", "C-2", tx_id(case)),  # the right tx, another id
        ]
    )
    registry = registry_of(ledger)
    for case_id in ("C-1", "C-2"):
        status = registry.status(case_id, T0)
        assert status is not None and status.approvals == (), case_id
        assert status.state is CaseState.PENDING


def test_an_approval_ordered_before_its_case_counts(ledger: LedgerBuilder) -> None:
    case = ledger.case("C-1", [PHONE])
    approvals = [ledger.approve(m, "C-1", tx_id(case)) for m in ("bank-a", "telco-b")]
    ledger.commit([approvals[0]])
    ledger.commit([approvals[1], case])
    status = registry_of(ledger).status("C-1", T0)
    assert status is not None and status.state is CaseState.ACTIVE


def test_the_first_case_with_an_id_owns_it(ledger: LedgerBuilder) -> None:
    first = ledger.case("C-1", [PHONE], purpose="telecom_fraud")
    second = ledger.case("C-1", [ACCOUNT], purpose="money_laundering")
    ledger.commit([first])
    ledger.commit([second])
    ledger.commit([ledger.approve(m, "C-1", tx_id(second)) for m in ("bank-a", "telco-b")])
    registry = registry_of(ledger)
    status = registry.status("C-1", T0)
    assert status is not None and status.case.tx_id == tx_id(first)
    assert status.state is CaseState.PENDING and status.approvals == ()
    shadowed = registry.case_by_tx(tx_id(second))
    assert shadowed is not None and shadowed.body.purpose == "money_laundering"
    assert not registry.owns_id(shadowed) and registry.approvals(shadowed) == ()
    assert registry.closure(shadowed) is None
    assert [c.body.purpose for c in registry.cases()] == ["telecom_fraud"]


def test_expiry_at_the_boundary(ledger: LedgerBuilder) -> None:
    expires = T0 + 5 * DAY + 250
    ledger.open_active_case("C-1", [PHONE], expires_ms=expires)
    registry = registry_of(ledger)
    before = registry.status("C-1", expires - 1)
    assert before is not None and before.state is CaseState.ACTIVE
    at = registry.status("C-1", expires)
    assert at is not None and at.state is CaseState.EXPIRED
    assert at.reason == "case 'C-1' expired at 2025-06-20T15:06:40.250Z"


def test_closing_by_the_opener_or_another_investigator(ledger: LedgerBuilder) -> None:
    one = ledger.open_active_case("C-1", [PHONE])
    two = ledger.open_active_case("C-2", [PHONE])
    ledger.commit(
        [
            ledger.close_case("bank-a", "C-1", one),  # not an investigator: refused
            ledger.close_case("police-b", "C-1", two),  # names the other case
        ]
    )
    registry = registry_of(ledger)
    status = registry.status("C-1", T0)
    assert status is not None and status.state is CaseState.ACTIVE
    ledger.commit([ledger.close_case("police-b", "C-1", one)])
    ledger.commit([ledger.close_case("police", "C-2", two)])
    registry = registry_of(ledger)
    status = registry.status("C-1", T0)
    assert status is not None and status.state is CaseState.CLOSED
    assert status.reason == "case 'C-1' was closed by 'police-b' at height 4"
    status = registry.status("C-2", T0 + 365 * DAY)  # closed also wins over expired
    assert status is not None and status.state is CaseState.CLOSED
    assert status.closed is not None and status.closed.member == "police"


def test_no_case(ledger: LedgerBuilder) -> None:
    assert registry_of(ledger).status("C-9", T0) is None
    assert registry_of(ledger).case("C-9") is None


def test_only_investigators_open_and_only_approvers_approve(ledger: LedgerBuilder) -> None:
    """Admission refuses the others; the registry refuses them too if they reach it."""
    case = ledger.case("C-1", [PHONE], member="police-b")
    ledger.commit([case])
    forged_case = ledger.case("C-2", [PHONE], member="bank-a")
    forged_approve = ledger.approve("utility-c", "C-1", tx_id(case))
    block, index = ledger.commit([forged_case, forged_approve])
    assert all(not entry.cases for entry in index.txs)
    registry = registry_of(ledger)
    # As if the application had posted them: the registry checks roles itself.
    posted = BlockIndex(
        (
            TxIndex(tx_id(forged_case), cases=[(b"C-2", CaseRole.OPENED)]),
            TxIndex(tx_id(forged_approve), cases=[(b"C-1", CaseRole.APPROVED)]),
        )
    )
    fresh = CaseRegistry(ledger.genesis)
    fresh.apply_blocks([*ledger.committed[:1], (block, posted)])
    for reg in (registry, fresh):
        assert reg.case("C-2") is None
        status = reg.status("C-1", T0)
        assert status is not None and status.approvals == ()


def test_the_cases_index_holds_what_names_a_case(ledger: LedgerBuilder) -> None:
    case_tx = ledger.open_active_case("C-1", [PHONE])
    _, index = ledger.commit(
        [
            ledger.report("bank-a", PHONE, case_id="C-1"),
            ledger.report("bank-a", PHONE),
            ledger.access("police", "C-1", PHONE),
            ledger.close_case("police", "C-1", case_tx),
        ]
    )
    assert [list(e.cases) for e in index.txs] == [
        [(b"C-1", CaseRole.REPORT)],
        [],
        [(b"C-1", CaseRole.ACCESS)],
        [(b"C-1", CaseRole.CLOSED)],
    ]
    assert ledger.store.case_postings(b"C-1", CaseRole.APPROVED) == [(1, 1), (1, 2)]
    report = verify_ledger(ledger.store, ledger.genesis.membership())
    assert report.ok, report.fault


def test_incremental_updates_skip_known_blocks_and_refuse_gaps(ledger: LedgerBuilder) -> None:
    ledger.open_active_case("C-1", [PHONE])
    ledger.commit([ledger.report("bank-a", PHONE)])
    registry = registry_of(ledger)
    assert registry.height == 2
    registry.apply_blocks(ledger.committed)  # already in: nothing changes
    case_tx = ledger.open_active_case("C-2", [PHONE])
    gap = ledger.open_active_case("C-3", [PHONE])
    with pytest.raises(ValueError, match="block 4 does not follow block 2"):
        registry.apply_blocks(ledger.committed[3:])
    registry.apply_blocks(ledger.committed[2:])
    assert registry.height == 4
    assert [c.tx_id for c in registry.cases()][1:] == [case_tx, gap]


def test_format_time_ms() -> None:
    assert format_time_ms(0) == "1970-01-01T00:00:00Z"
    assert format_time_ms(T0 + 7) == "2025-06-15T15:06:40.007Z"
    assert format_time_ms(2**64 - 1) == f"{2**64 - 1} ms after the epoch"


# -- the registry rebuilt from the store equals the one kept up to date ---------------

MEMBERS = ("police", "police-b", "bank-a", "telco-b", "utility-c")
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("case"), st.sampled_from(["C-1", "C-2"]), st.integers(1, 40)),
        st.tuples(st.just("approve"), st.sampled_from(MEMBERS), st.integers(0, 5)),
        st.tuples(st.just("close"), st.sampled_from(MEMBERS), st.integers(0, 5)),
        st.tuples(st.just("cut"), st.just(""), st.just(0)),
    ),
    max_size=14,
)


@given(ops=OPS, k=st.integers(1, 3))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rebuilt_registry_equals_the_incremental_one(
    ops: list[tuple[str, str, int]], k: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = LedgerBuilder(Path(tmp) / "ledger", make_genesis(k))
        try:
            cases: list[tuple[str, bytes]] = []
            pending: list[bytes] = []
            for op, who, n in ops:
                if op == "case":
                    data = ledger.case(who, [ent(n)], expires_ms=T0 + n * DAY)
                    cases.append((who, tx_id(data)))
                    pending.append(data)
                elif op == "cut" or not cases:
                    if pending:
                        ledger.commit(pending)
                        pending = []
                else:
                    case_id, case_tx = cases[n % len(cases)]
                    make = ledger.approve if op == "approve" else ledger.close_case
                    pending.append(make(who, case_id, case_tx))
            if pending:
                ledger.commit(pending)
            incremental = CaseRegistry(ledger.genesis)
            incremental.apply_blocks(ledger.committed)
            rebuilt = registry_of(ledger)
            assert rebuilt.height == incremental.height == len(ledger.committed)
            assert rebuilt.cases() == incremental.cases()
            for case_id in ("C-1", "C-2"):
                for now in (T0, T0 + 20 * DAY, T0 + 50 * DAY):
                    assert rebuilt.status(case_id, now) == incremental.status(case_id, now)
            for _, case_tx in cases:
                a, b = rebuilt.case_by_tx(case_tx), incremental.case_by_tx(case_tx)
                assert a == b
                if a is not None and b is not None:
                    assert rebuilt.approvals(a) == incremental.approvals(b)
                    assert rebuilt.closure(a) == incremental.closure(b)
        finally:
            ledger.close()

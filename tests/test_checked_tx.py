"""A transaction is decoded and checked once per node, and that checked form is what the
mempool admission, the replica's judgement of proposals and the indexing of committed
blocks share; a transaction that fails the check is none of those things."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tracing_helpers import T0, LedgerBuilder, ent

import node.ledger.application as application
from consensus.blocks import Batch, Block
from consensus.crypto import Signer
from consensus.events import (
    Broadcast,
    MessageArrived,
    RejectRequest,
    RequestArrived,
    Start,
    Timer,
    TimerFired,
)
from consensus.membership import Membership
from consensus.messages import Prepare, Proposal
from consensus.params import Params
from consensus.replica import Replica
from node.ledger.kinds import Report
from node.ledger.transactions import RejectCode, TxRejected, ValidatedTx, tx_id


def flip_last_bit(data: bytes) -> bytes:
    """The last byte of an encoded transaction is its signature's: a forgery."""
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[LedgerBuilder]:
    b = LedgerBuilder(tmp_path / "ledger")
    yield b
    b.close()


def test_a_bad_signature_is_refused_at_admission_and_by_a_backup_and_indexes_nothing(
    builder: LedgerBuilder,
) -> None:
    app = builder.app
    good = builder.report("bank-a", ent(1))
    forged = flip_last_bit(builder.report("bank-a", ent(2)))

    refused, admitted = app.check_batch([forged, good], T0)
    assert isinstance(refused, TxRejected) and refused.code is RejectCode.BAD_SIGNATURE
    assert isinstance(admitted, ValidatedTx)
    # Neither the batched check nor the proposal check keeps a form of the forgery.
    assert app.check_unclocked([forged]) == [None]
    # A proposal's check stops at its first bad transaction: the batch is refused anyway.
    assert app.check_unclocked([forged, good]) == [None, None]
    first, last = app.check_unclocked([good, forged])
    assert isinstance(first, ValidatedTx) and last is None
    app.remember(app.check_unclocked([forged]))
    assert app.checked(tx_id(forged)) is None
    assert not app.check_proposed(forged)
    assert app.known_forms([forged, good]) == [None, None]

    # Even ordered into a block (by a faulty primary and enough faulty backups) it is
    # stored as ordered but indexed under nothing, and its nonce is not spent.
    _, index = builder.commit([forged])
    (entry,) = index.txs
    assert entry.nonce is None and entry.entities == () and entry.links == ()


def test_a_form_checked_once_is_shared_and_forgotten_once_committed(
    builder: LedgerBuilder,
) -> None:
    app = builder.app
    tx = builder.report("bank-a", ent(1))
    (validated,) = app.check_batch([tx], T0)
    assert isinstance(validated, ValidatedTx)
    app.accept(validated)
    assert app.checked(validated.tx_id) is validated
    assert app.known_forms([tx]) == [validated]

    # A known form is not verified again: a gossiped copy passes on the form alone (the
    # signature below is left as it was), but the clock is still checked.
    (again,) = app.check_batch([tx], T0, app.known_forms([tx]))
    assert again is validated
    (late,) = app.check_batch([tx], T0 + 3_600_000, app.known_forms([tx]))
    assert isinstance(late, TxRejected) and late.code is RejectCode.CLOCK_SKEW

    _, index = builder.commit([tx])
    assert index.txs[0].nonce == ("bank-a", validated.tx.nonce)
    assert app.checked(validated.tx_id) is None
    # Committed: its nonce is spent, which the batched look-up sees.
    (replayed,) = app.check_batch([tx], T0)
    assert isinstance(replayed, TxRejected) and replayed.code is RejectCode.REPLAY
    assert not app.check_proposed(tx)


def test_the_cache_of_checked_forms_is_bounded(
    builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(application, "_VERIFIED_CACHE", 8)
    app = builder.app
    txs = [builder.report("bank-a", ent(i)) for i in range(20)]
    for outcome in app.check_batch(txs, T0):
        assert isinstance(outcome, ValidatedTx)
        app.accept(outcome)
    app.remember(app.check_unclocked([builder.report("telco-b", ent(i)) for i in range(20)]))
    for tx in txs:
        assert app.check_proposed(tx)
    assert len(app._verified) == 8
    # The oldest went first; the newest are still there.
    assert app.checked(tx_id(txs[0])) is None


def test_indexing_a_group_counts_a_nonce_once_and_skips_committed_ones(
    builder: LedgerBuilder,
) -> None:
    app = builder.app

    def report(n: int, nonce: int) -> bytes:
        return builder.sign("bank-a", Report(ent(n), "fraud_call", (), None, T0, None), T0, nonce)

    builder.commit([report(1, nonce=7)])
    twin, later, again = report(2, nonce=7), report(3, nonce=8), report(4, nonce=8)
    height, parent = builder.store.tip()
    blocks = [
        Block.from_batch(builder.genesis.chain_id, Batch(height + 1, T0, (twin, later)), parent),
    ]
    blocks.append(
        Block.from_batch(builder.genesis.chain_id, Batch(height + 2, T0, (again,)), bytes(32))
    )
    forms = app.checked_forms(blocks)
    indexes = app.build_indexes(blocks, forms)
    # The twin's nonce is on the ledger; ``again`` reuses a nonce of the same group.
    assert [e.nonce for e in indexes[0].txs] == [None, ("bank-a", 8)]
    assert [e.nonce for e in indexes[1].txs] == [None]
    assert builder.store.nonces_used([("bank-a", 7), ("bank-a", 8), ("", 1)]) == {("bank-a", 7)}


# -- the replica's side: a request the host checked is not checked again ---------------


def _replicas(check: list[bytes]) -> tuple[Replica, Replica]:
    """A primary (member 0) without an application check and a backup (member 1) whose
    check refuses everything and records what it was asked."""
    keys = [Signer(bytes([i + 1]) * 32) for i in range(4)]
    membership = Membership("test-chain", tuple(k.public_key for k in keys))
    params = Params(checkpoint_interval=2, window=4, max_batch_txs=3)

    def refuse(payload: bytes) -> bool:
        check.append(payload)
        return False

    primary = Replica(0, keys[0], membership, params)
    backup = Replica(1, keys[1], membership, params, check_request=refuse)
    for replica in (primary, backup):
        replica.step(Start(), 0)
    return primary, backup


def _proposal_of(primary: Replica, payload: bytes) -> Proposal:
    primary.step(RequestArrived(payload), 0)
    actions = primary.step(TimerFired(Timer.BATCH), 100)
    (proposal,) = [
        a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, Proposal)
    ]
    return proposal


def _prepared(actions: list[object]) -> bool:
    return any(isinstance(a, Broadcast) and isinstance(a.message, Prepare) for a in actions)


def test_an_unchecked_request_is_judged_by_the_replica_and_a_checked_one_is_not() -> None:
    asked: list[bytes] = []
    _, backup = _replicas(asked)
    actions = backup.step(RequestArrived(b"unchecked"), 0)
    assert asked == [b"unchecked"]
    assert any(isinstance(a, RejectRequest) for a in actions)

    actions = backup.step(RequestArrived(b"checked", checked=True), 0)
    assert asked == [b"unchecked"]
    assert not any(isinstance(a, RejectRequest) for a in actions)
    assert len(backup.requests) == 1


def test_a_proposal_holding_a_request_the_backup_never_checked_is_still_judged() -> None:
    asked: list[bytes] = []
    primary, backup = _replicas(asked)
    proposal = _proposal_of(primary, b"never seen by the backup")
    actions = backup.step(MessageArrived(0, proposal), 200)
    assert asked == [b"never seen by the backup"]
    assert not _prepared(actions)

    # The same proposal content, once the host checked and handed over the request,
    # is voted for without asking the application again.
    asked.clear()
    primary, backup = _replicas(asked)
    proposal = _proposal_of(primary, b"checked by the host")
    backup.step(RequestArrived(b"checked by the host", checked=True), 150)
    actions = backup.step(MessageArrived(0, proposal), 200)
    assert asked == []
    assert _prepared(actions)

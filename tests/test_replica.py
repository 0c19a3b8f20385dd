"""Scenario tests for the PBFT replica, written the way the paper tells the protocol."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from replica_harness import CHAIN, PARAMS, Harness

from consensus.blocks import Batch, Certificate, CommitSignature, check_block_certificate
from consensus.durable import DurableState
from consensus.events import MessageArrived, RequestArrived, SetTimer, Timer
from consensus.messages import (
    BlockResponse,
    CertifiedBatch,
    Commit,
    Prepare,
    PrePrepare,
    Proposal,
    ViewChange,
    sign,
)
from consensus.params import Params
from consensus.replica import Replica


def only(kind: type) -> object:
    return lambda src, dst, m: isinstance(m, kind)


def drop(*kinds: type) -> object:
    return lambda src, dst, m: not isinstance(m, kinds)


def commit_round(h: Harness, payloads: list[bytes]) -> None:
    for p in payloads:
        h.request(p)
    primary = h.replicas[0].primary
    if Timer.BATCH in h.timers[primary]:
        h.fire(primary, Timer.BATCH)
    h.deliver()


def test_normal_case_commits_one_certified_block_per_sequence() -> None:
    h = Harness()
    commit_round(h, [b"tx-1", b"tx-2"])
    assert h.heights() == [1, 1, 1, 1]
    hashes = {h.block_hashes(i)[0] for i in range(4)}
    assert len(hashes) == 1
    block, cert = h.ledgers[2][0]
    assert block.txs == (b"tx-1", b"tx-2")
    assert len(cert.signatures) >= h.membership.quorum
    check_block_certificate(h.membership, block, cert)


def test_a_full_batch_is_proposed_without_waiting_for_the_batch_timer() -> None:
    h = Harness()
    h.request(b"a")
    h.request(b"b")
    assert not any(isinstance(m, Proposal) for _, _, m in h.outbox)
    h.request(b"c")  # max_batch_txs = 3
    assert any(isinstance(m, Proposal) for _, _, m in h.outbox)
    h.deliver()
    assert h.heights() == [1, 1, 1, 1]


def test_partial_batches_wait_while_pipeline_depth_blocks_are_open() -> None:
    """Under load the primary keeps at most ``pipeline_depth`` partial batches in
    consensus; what arrives meanwhile goes into one batch once a block executes."""
    h = Harness(params=dataclasses.replace(PARAMS, max_batch_txs=10, pipeline_depth=2))
    proposals = lambda: [m for _, _, m in h.outbox if isinstance(m, Proposal)]  # noqa: E731
    for i in range(2):
        h.request(f"early-{i}".encode(), to=[0])
        h.fire(0, Timer.BATCH)
    assert len(proposals()) == 2 * 3  # two batches, each broadcast to three peers
    for i in range(4):
        h.request(f"late-{i}".encode(), to=[0])
    h.fire(0, Timer.BATCH)
    assert len(proposals()) == 2 * 3, "a third partial batch went out with two open"
    h.deliver()
    assert h.heights() == [3, 3, 3, 3]
    third = h.ledgers[0][2][0]
    assert third.txs == tuple(f"late-{i}".encode() for i in range(4))


def test_blocks_chain_by_parent_hash_and_pipelining_keeps_order() -> None:
    h = Harness()
    for i in range(9):  # three full batches, proposed back to back before any commit
        h.request(f"tx-{i}".encode())
    h.deliver()
    assert h.heights() == [3, 3, 3, 3]
    blocks = [b for b, _ in h.ledgers[1]]
    for parent, child in itertools.pairwise(blocks):
        assert child.header.parent_hash == parent.hash()
    assert [tx for b in blocks for tx in b.txs] == [f"tx-{i}".encode() for i in range(9)]


def test_view_change_keeps_a_prepared_but_uncommitted_block() -> None:
    """PBFT 4.4: a request prepared at a quorum in view v survives into view v+1 at the
    same sequence number, even though no replica committed it in view v."""
    h = Harness()
    h.request(b"x-1")
    h.request(b"x-2")
    h.fire(0, Timer.BATCH)
    h.deliver(keep=drop(Commit))  # pre-prepare and prepares arrive; every commit is lost
    assert h.heights() == [0, 0, 0, 0]
    prepared = h.replicas[1].prepared_certificates[1]
    digest = prepared.pre_prepare.digest
    for i in (1, 2, 3):
        h.fire(i, Timer.REQUEST)  # the request waited a whole timeout
    h.deliver()
    assert all(r.view == 1 and r.view_active for r in h.replicas[1:])
    assert h.heights()[1:] == [1, 1, 1]
    block, cert = h.ledgers[1][0]
    assert cert.view == 1
    assert cert.digest == digest
    assert block.txs == (b"x-1", b"x-2")


def test_silent_primary_is_replaced_and_the_request_commits() -> None:
    h = Harness()
    h.crash(0)
    h.request(b"lonely", to=[1, 2, 3])
    for i in (1, 2, 3):
        h.fire(i, Timer.REQUEST)
    h.deliver()
    assert [r.view for r in h.replicas[1:]] == [1, 1, 1]
    # The host logs why: lack of progress, not censorship.
    view, reason = h.replicas[1].suspected
    assert view == 1 and reason.startswith("no block executed for ")
    h.fire(1, Timer.BATCH)
    h.deliver()
    assert h.heights()[1:] == [1, 1, 1]
    assert h.ledgers[2][0][0].txs == (b"lonely",)


def test_censoring_primary_is_replaced_even_while_it_commits_other_requests() -> None:
    h = Harness()
    censored = b"censored"
    h.step(1, RequestArrived(censored))
    h.step(2, RequestArrived(censored))
    h.step(3, RequestArrived(censored))
    # The primary never hears of the censored request but commits a block in every
    # round, of requests the backups received after it: it passed the request over,
    # and two view timeouts (the grace) after the first of them committed, the backups
    # replace it, however steadily it commits the others.
    commit_round(h, [b"other-1"])
    passed_over_at = h.now
    rounds = 1
    while h.replicas[1].view == 0:
        rounds += 1
        assert rounds < 20
        commit_round(h, [f"other-{rounds}".encode()])
        assert h.heights() == [rounds] * 4
        for i in (1, 2, 3):
            h.fire(i, Timer.REQUEST)  # oldest pending request is the censored one
        h.deliver()
    assert h.now == passed_over_at + PARAMS.censorship_grace_timeouts * PARAMS.view_timeout_ms
    assert all(r.view == 1 for r in h.replicas[1:])
    # The host logs why, and the metric shows how long the request had been passed over
    # when the last block before the suspicion executed.
    timer = h.replicas[1].request_timer
    view, reason = h.replicas[1].suspected
    assert view == 1 and "after a later one committed" in reason
    grace_ms = PARAMS.censorship_grace_timeouts * PARAMS.view_timeout_ms
    assert 0 < timer.longest_passed_over_ms < grace_ms
    if Timer.BATCH in h.timers[1]:
        h.fire(1, Timer.BATCH)
    h.deliver()
    assert any(censored in b.txs for b, _ in h.ledgers[2])


def test_a_primary_with_a_backlog_is_never_suspected_while_it_commits() -> None:
    """Slow is not faulty: the backups' request waits behind the primary's backlog of
    requests they never held (members forward to the primary under load) for longer
    than max_view_timeout_ms, while a block executes in every timeout. Nothing the
    backups received after it commits first, so nothing was passed over."""
    h = Harness()
    mine = b"mine"
    h.request(mine, to=[1, 2, 3])
    rounds = 0
    while h.now <= PARAMS.max_view_timeout_ms + PARAMS.view_timeout_ms:
        rounds += 1
        h.now += PARAMS.view_timeout_ms * 3 // 5
        h.request(f"bulk-{rounds}".encode(), to=[0])
        h.fire(0, Timer.BATCH)
        for i in (1, 2, 3):
            if h.timers[i].get(Timer.REQUEST, h.now + 1) <= h.now:
                h.fire(i, Timer.REQUEST)
        h.deliver()
        assert [r.view for r in h.replicas] == [0, 0, 0, 0], h.now
        assert h.heights() == [rounds] * 4
    h.request(mine, to=[0])  # the backlog drained: its turn
    h.fire(0, Timer.BATCH)
    h.deliver()
    assert all(h.ledgers[i][-1][0].txs == (mine,) for i in range(4))
    assert [r.view for r in h.replicas] == [0, 0, 0, 0]


def test_a_primary_that_commits_nothing_in_a_timeout_is_replaced_at_once() -> None:
    h = Harness()
    commit_round(h, [b"early"])
    armed_at = h.now
    h.step(1, RequestArrived(b"late"))
    h.step(2, RequestArrived(b"late"))
    h.step(3, RequestArrived(b"late"))
    for i in (1, 2, 3):
        h.fire(i, Timer.REQUEST)  # progress came before the timer was set: none since
    h.deliver()
    assert h.now == armed_at + PARAMS.view_timeout_ms
    assert all(r.view == 1 for r in h.replicas[1:])


def test_equivocating_primary_is_reported_replaced_and_nothing_conflicting_commits() -> None:
    h = Harness()
    h.request(b"left", to=[1, 2, 3])
    h.request(b"right", to=[1, 2, 3])
    primary = h.keys[0]
    batches = [Batch(1, 0, (b"left",)), Batch(1, 0, (b"right",))]
    proposals = [
        Proposal(
            sign(PrePrepare, primary, CHAIN, view=0, seq=1, digest=b.digest(CHAIN), sender=0), b
        )
        for b in batches
    ]
    h._queue(0, 1, proposals[0])
    h._queue(0, 2, proposals[1])
    h._queue(0, 3, proposals[1])
    h._queue(0, 1, proposals[1])
    h.deliver()
    assert [e.member for e in h.evidence] == [0]
    assert h.heights() == [0, 0, 0, 0]  # "right" prepared at 2 and 3 only: no quorum
    for i in (1, 2, 3):
        h.fire(i, Timer.REQUEST)
    h.deliver()
    assert [r.view for r in h.replicas[1:]] == [1, 1, 1]
    # The new primary must carry the batch that prepared at a member of its quorum.
    assert {h.ledgers[i][0][0].txs for i in (1, 2, 3)} == {(b"right",)}


def test_view_change_timer_starts_with_a_quorum_and_backs_off_exponentially() -> None:
    from consensus.messages import NewView

    h = Harness()
    h.crash(0)
    h.request(b"r", to=[1, 2, 3])
    h.fire(1, Timer.REQUEST)
    assert Timer.VIEW_CHANGE not in h.timers[1]  # alone in view 1: wait for the others
    h.fire(2, Timer.REQUEST)
    h.fire(3, Timer.REQUEST)
    delays = []
    for view in (1, 2, 3):
        h.deliver(keep=drop(NewView))  # every new primary's NEW-VIEW is lost
        waiting = [i for i in (1, 2, 3) if Timer.VIEW_CHANGE in h.timers[i]]
        assert waiting == [i for i in (1, 2, 3) if i != view % 4]  # the primary went ahead
        delays.append(h.timers[waiting[0]][Timer.VIEW_CHANGE] - h.now)
        for i in waiting:
            h.fire(i, Timer.VIEW_CHANGE)
    assert delays == [1000, 2000, 4000]
    h.deliver(keep=drop(NewView))
    assert [r.view for r in h.replicas[1:]] == [4, 4, 4]


def test_f_plus_one_view_changes_pull_a_replica_into_the_new_view() -> None:
    h = Harness()
    h.request(b"r", to=[1, 2])
    h.fire(1, Timer.REQUEST)
    h.fire(2, Timer.REQUEST)
    h.deliver(keep=only(ViewChange))
    assert h.replicas[3].view == 1  # joined without its own timeout: f+1 = 2 asked


def test_checkpoints_become_stable_and_collect_garbage() -> None:
    h = Harness()
    for i in range(4 * PARAMS.max_batch_txs):  # four blocks, checkpoint every 2
        h.request(f"t{i}".encode())
    h.deliver()
    assert h.heights() == [4, 4, 4, 4]
    for r in h.replicas:
        assert r.low_watermark == 4
        assert len(r.stable_proof) >= h.membership.quorum
        assert all(seq > 4 for (_, seq) in r.log.slots)
        assert all(k[2] > 4 for k in r.signatory.votes)
    assert all(d.stable_seq == 4 and not d.votes for d in h.durable)


def test_primary_stops_at_the_high_watermark_until_a_checkpoint_is_stable() -> None:
    from consensus.messages import Checkpoint

    h = Harness()
    for i in range(7 * PARAMS.max_batch_txs):
        h.request(f"t{i}".encode())
    h.deliver(keep=drop(Checkpoint))
    assert h.heights() == [PARAMS.window] * 4  # window of 4: the fifth batch waits
    assert h.replicas[0].requests.unproposed_count() == 3 * PARAMS.max_batch_txs
    h.fire(0, Timer.HEARTBEAT)  # the primary resends its unstable checkpoint
    for i in (1, 2, 3):
        h.fire(i, Timer.HEARTBEAT)
    h.deliver()
    assert h.heights() == [7, 7, 7, 7]


def test_a_restarted_replica_never_signs_a_conflicting_prepare() -> None:
    """Durable votes: after a crash the replica refuses a second digest for (v, n)."""
    h = Harness()
    primary = h.keys[0]
    first, second = Batch(1, 0, (b"one",)), Batch(1, 0, (b"two",))

    def proposal(b: Batch) -> Proposal:
        return Proposal(
            sign(PrePrepare, primary, CHAIN, view=0, seq=1, digest=b.digest(CHAIN), sender=0), b
        )

    h._queue(0, 1, proposal(first))
    h.deliver(keep=lambda s, d, m: d == 1)
    assert h.durable[1].votes[("prepare", 0, 1)] == first.digest(CHAIN)
    h.crash(1)
    h.restart(1)
    h.sent.clear()
    h._queue(0, 1, proposal(second))
    h.deliver(keep=lambda s, d, m: d == 1)
    prepares = [m for s, _, m in h.sent if s == 1 and isinstance(m, Prepare)]
    assert prepares == []


def test_negative_control_without_durable_votes_the_restarted_replica_equivocates() -> None:
    h = Harness()
    primary = h.keys[0]
    first, second = Batch(1, 0, (b"one",)), Batch(1, 0, (b"two",))
    for b in (first, second):
        pp = sign(PrePrepare, primary, CHAIN, view=0, seq=1, digest=b.digest(CHAIN), sender=0)
        h._queue(0, 1, Proposal(pp, b))
        h.deliver(keep=lambda s, d, m: d == 1)
        h.crash(1)
        h.restart(1, durable=DurableState())  # the "disk" lost everything
    digests = {m.digest for s, _, m in h.sent if s == 1 and isinstance(m, Prepare)}
    assert len(digests) == 2  # two different PREPAREs for (view 0, seq 1)


def test_lagging_replica_catches_up_only_through_valid_certificates() -> None:
    h = Harness()
    h.crash(3)
    for i in range(2 * PARAMS.max_batch_txs):
        h.request(f"t{i}".encode(), to=[0, 1, 2])
    h.deliver()
    assert h.heights()[:3] == [2, 2, 2]
    h.restart(3)
    good = [CertifiedBatch(b.to_batch(), c) for b, c in h.ledgers[0]]
    forged_cert = Certificate(
        good[0].certificate.view,
        1,
        good[0].certificate.digest,
        tuple(CommitSignature(s.member, bytes(64)) for s in good[0].certificate.signatures),
    )
    r3 = h.replicas[3]
    r3.sync.observe(0, 2)
    r3.sync.start(0, 1, 2)
    h.step(3, MessageArrived(0, BlockResponse((CertifiedBatch(good[0].batch, forged_cert),))))
    assert h.heights()[3] == 0
    r3.sync.observe(1, 2)
    r3.sync.start(1, 1, 2)
    h.step(3, MessageArrived(1, BlockResponse(tuple(good))))
    assert h.heights()[3] == 2
    assert h.block_hashes(3) == h.block_hashes(0)


def test_heartbeat_status_lets_a_restarted_replica_sync_without_operator_action() -> None:
    h = Harness()
    h.crash(3)
    for i in range(3 * PARAMS.max_batch_txs):
        h.request(f"t{i}".encode(), to=[0, 1, 2])
    h.deliver()
    h.restart(3)
    for i in range(4):
        h.fire(i, Timer.HEARTBEAT)
    h.deliver()
    h.fire(3, Timer.HEARTBEAT)  # still stalled: fetch from a peer that is ahead
    h.deliver()
    assert h.heights()[3] == 3
    assert h.block_hashes(3) == h.block_hashes(0)


@pytest.mark.parametrize("n", [4, 5, 6, 7, 10, 16, 31])
def test_normal_case_for_n_members(n: int) -> None:
    h = Harness(n=n)
    commit_round(h, [b"one", b"two"])
    assert h.heights() == [1] * n
    assert h.membership.quorum == (n + (n - 1) // 3 + 2) // 2


def test_requests_over_the_size_limit_are_rejected_with_a_reason() -> None:
    h = Harness(params=Params(checkpoint_interval=2, window=4, max_request_bytes=10))
    actions = h.step(0, RequestArrived(b"x" * 11))
    assert any(getattr(a, "reason", "").startswith("request of 11 bytes") for a in actions)


def test_a_replica_refuses_a_key_that_is_not_its_own() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="not member 1"):
        Replica(1, h.keys[0], h.membership)


def test_step_returns_persist_before_send_before_commit() -> None:
    h = Harness()
    h.request(b"a")
    h.request(b"b")
    h.request(b"c")
    order_ok = True
    while h.outbox:
        src, dst, m = h.outbox.pop(0)
        actions = h.step(dst, MessageArrived(src, m))
        ranks = [
            {"Persist": 0, "Send": 1, "Broadcast": 1, "CommitBlock": 2}.get(type(a).__name__, 3)
            for a in actions
        ]
        order_ok &= ranks == sorted(ranks)
    assert order_ok
    assert h.heights() == [1, 1, 1, 1]


def test_timer_actions_are_plain_data() -> None:
    h = Harness()
    actions = h.step(0, RequestArrived(b"q"))
    assert SetTimer(Timer.BATCH, PARAMS.batch_delay_ms) in actions


def test_restart_with_a_stable_checkpoint_above_the_ledger_tip_fetches_the_gap() -> None:
    """Persist comes before apply: a crash in between leaves the durable stable
    checkpoint ahead of the ledger. The replica must fetch the missing blocks."""
    h = Harness()
    for i in range(4 * PARAMS.max_batch_txs):
        h.request(f"t{i}".encode())
    h.deliver()
    assert h.replicas[3].low_watermark == 4
    h.crash(3)
    h.ledgers[3] = h.ledgers[3][:2]  # blocks 3 and 4 were never applied
    h.restart(3)
    assert h.replicas[3].low_watermark == 4 and h.replicas[3].executed == 2
    h.fire(3, Timer.HEARTBEAT)
    h.deliver()
    assert h.heights()[3] == 4
    assert h.block_hashes(3) == h.block_hashes(0)

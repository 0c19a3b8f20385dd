"""Tests for node.host.mempool: one unit test per rule, then a stateful model check."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from node.host.mempool import (
    ACCEPTED,
    TX_ID_SIZE,
    AddResult,
    Entry,
    Mempool,
    RejectReason,
)

D = RejectReason.DUPLICATE
FULL = RejectReason.FULL
QUOTA = RejectReason.MEMBER_QUOTA
BIG = RejectReason.TOO_LARGE


def tid(n: int) -> bytes:
    return n.to_bytes(TX_ID_SIZE, "big")


def ids(entries: list[Entry]) -> list[bytes]:
    return [e.tx_id for e in entries]


def fill(pool: Mempool, member: str, start: int, count: int, size: int = 1, now: int = 0) -> None:
    for n in range(start, start + count):
        assert pool.add(tid(n), member, bytes(size), now).accepted


# -- construction and basics -------------------------------------------------------------


def test_quotas_derive_from_share() -> None:
    pool = Mempool(100, 1000, max_share=0.25)
    assert (pool.quota_txs, pool.quota_bytes) == (25, 250)
    assert (pool.solo_txs, pool.solo_bytes) == (75, 750)
    assert pool.max_tx_bytes == 250
    assert pool.committed_memory == 200
    # Exact arithmetic: 0.29 * 100 is 28.999999999999996 in floating point.
    assert Mempool(100, 100, max_share=0.29).quota_txs == 29
    assert Mempool(300, 300, max_share=1 / 3).quota_txs == 100
    # A share of everything leaves nothing to reserve for a newcomer.
    whole = Mempool(10, 10, max_share=1.0)
    assert (whole.quota_txs, whole.solo_txs) == (10, 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_txs": 0, "max_bytes": 10},
        {"max_txs": 10, "max_bytes": 0},
        {"max_txs": 10, "max_bytes": 10, "max_share": 0.0},
        {"max_txs": 10, "max_bytes": 10, "max_share": 1.5},
        {"max_txs": 10, "max_bytes": 100, "max_share": 0.5, "max_tx_bytes": 51},
        {"max_txs": 10, "max_bytes": 100, "max_tx_bytes": -1},
        {"max_txs": 10, "max_bytes": 100, "committed_memory": -1},
    ],
)
def test_constructor_rejects_bad_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Mempool(**kwargs)  # type: ignore[arg-type]


def test_add_accepts_and_accounts() -> None:
    pool = Mempool(10, 100)
    result = pool.add(tid(1), "police", b"abc", 5)
    assert result == ACCEPTED and result.accepted and result.reason is None
    assert len(pool) == 1 and pool.size_bytes == 3
    assert tid(1) in pool and tid(2) not in pool
    assert pool.get(tid(1)) == Entry(tid(1), "police", b"abc", 5)
    assert pool.get(tid(2)) is None


def test_malformed_tx_id_is_a_programming_error() -> None:
    pool = Mempool(10, 100)
    with pytest.raises(ValueError):
        pool.add(b"short", "police", b"x", 0)
    assert len(pool) == 0


def test_results_and_entries_are_frozen() -> None:
    pool = Mempool(10, 100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ACCEPTED.reason = FULL  # type: ignore[misc]
    assert not AddResult(FULL).accepted
    entry = Entry(tid(1), "m", b"xy", 0)
    assert entry.size == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.member = "other"  # type: ignore[misc]
    stats = pool.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.count = 3  # type: ignore[misc]


# -- rejection codes ---------------------------------------------------------------------


def test_duplicate_of_pending_tx() -> None:
    pool = Mempool(10, 100)
    assert pool.add(tid(1), "police", b"a", 0).accepted
    assert pool.add(tid(1), "police", b"a", 1).reason is D
    # Same id from a different member is still the same transaction.
    assert pool.add(tid(1), "bank", b"b", 1).reason is D
    assert len(pool) == 1


def test_duplicate_of_in_flight_tx() -> None:
    pool = Mempool(10, 100)
    pool.add(tid(1), "police", b"a", 0)
    assert ids(pool.reap(10, 100)) == [tid(1)]
    assert pool.add(tid(1), "police", b"a", 1).reason is D


def test_late_duplicate_of_committed_tx() -> None:
    pool = Mempool(10, 100)
    pool.add(tid(1), "police", b"a", 0)
    pool.reap(10, 100)
    assert ids(pool.remove_committed([tid(1)])) == [tid(1)]
    assert pool.add(tid(1), "police", b"a", 9).reason is D
    # Committed elsewhere and never seen here: still remembered.
    assert pool.remove_committed([tid(2)]) == []
    assert pool.add(tid(2), "bank", b"b", 9).reason is D


def test_committed_memory_is_a_bounded_fifo() -> None:
    pool = Mempool(10, 100, committed_memory=2)
    pool.remove_committed([tid(1), tid(2), tid(3)])
    # tid(1) was pushed out by tid(3); only the newest two are remembered.
    assert pool.add(tid(1), "m", b"", 0).accepted
    assert pool.add(tid(2), "m", b"", 0).reason is D
    assert pool.add(tid(3), "m", b"", 0).reason is D
    # Re-committing refreshes an id, so the older one goes first.
    pool.remove_committed([tid(2), tid(4)])
    assert pool.add(tid(3), "m", b"", 0).accepted
    assert pool.add(tid(2), "m", b"", 0).reason is D


def test_zero_committed_memory_remembers_nothing() -> None:
    pool = Mempool(10, 100, committed_memory=0)
    pool.remove_committed([tid(1)])
    assert pool.add(tid(1), "m", b"", 0).accepted


def test_expired_tx_may_be_resubmitted() -> None:
    pool = Mempool(10, 100)
    pool.add(tid(1), "m", b"a", 0)
    assert ids(pool.expire(100, 10)) == [tid(1)]
    assert pool.add(tid(1), "m", b"a", 100).accepted


def test_readded_id_takes_its_new_place() -> None:
    # A tx id committed while queued leaves stale heap items behind; once forgotten and
    # submitted again, it must be reaped and expired by its new arrival, not the old one.
    pool = Mempool(10, 100, max_share=1.0, committed_memory=0)
    pool.add(tid(1), "a", b"", 0)
    pool.add(tid(2), "a", b"", 5)
    pool.remove_committed([tid(1)])
    pool.add(tid(1), "a", b"", 10)
    assert ids(pool.expire(now_ms=10, ttl_ms=4)) == [tid(2)]
    pool.add(tid(3), "a", b"", 10)
    pool.remove_committed([tid(1)])
    pool.add(tid(1), "b", b"", 20)
    assert ids(pool.reap(10, 100)) == [tid(3), tid(1)]
    assert pool.reap(10, 100) == []


def test_too_large() -> None:
    pool = Mempool(10, 100, max_share=0.5, max_tx_bytes=20)
    assert pool.add(tid(1), "m", bytes(20), 0).accepted
    assert pool.add(tid(2), "m", bytes(21), 0).reason is BIG
    # Too large is reported even into an empty pool: retrying cannot help.
    assert Mempool(10, 100).add(tid(3), "m", bytes(26), 0).reason is BIG


def test_member_quota_by_count_while_others_present() -> None:
    pool = Mempool(8, 1000, max_share=0.25)  # 2 txs each
    pool.add(tid(100), "bank", b"", 0)
    fill(pool, "police", 0, 2)
    assert pool.add(tid(2), "police", b"", 0).reason is QUOTA
    # Others are unaffected by one member's quota.
    assert pool.add(tid(101), "bank", b"", 0).accepted


def test_member_quota_by_bytes_while_others_present() -> None:
    pool = Mempool(100, 100, max_share=0.25)  # 25 bytes each
    pool.add(tid(100), "bank", b"x", 0)
    assert pool.add(tid(1), "police", bytes(20), 0).accepted
    assert pool.add(tid(2), "police", bytes(6), 0).reason is QUOTA
    assert pool.add(tid(3), "police", bytes(5), 0).accepted


def test_lone_member_borrows_all_but_one_share() -> None:
    pool = Mempool(8, 1000, max_share=0.25)  # share 2, solo cap 6
    fill(pool, "police", 0, 6)
    assert pool.add(tid(6), "police", b"", 0).reason is QUOTA
    # The newcomer finds a full share free ...
    fill(pool, "bank", 100, 2)
    assert pool.add(tid(102), "bank", b"", 0).reason is QUOTA
    # ... and the borrower cannot grow while others are present.
    assert pool.add(tid(6), "police", b"", 0).reason is QUOTA
    assert len(pool) == 8


def test_lone_member_byte_cap() -> None:
    pool = Mempool(100, 100, max_share=0.25)  # byte share 25, solo cap 75
    fill(pool, "police", 0, 3, size=25)
    assert pool.add(tid(3), "police", b"x", 0).reason is QUOTA
    assert pool.add(tid(100), "bank", bytes(25), 0).accepted


def test_borrower_over_share_waits_until_back_under_it() -> None:
    pool = Mempool(8, 1000, max_share=0.25)
    fill(pool, "police", 0, 4)
    pool.add(tid(100), "bank", b"", 0)
    assert pool.add(tid(4), "police", b"", 0).reason is QUOTA
    pool.remove_committed([tid(0), tid(1)])  # police holds 2 == its share
    assert pool.add(tid(4), "police", b"", 0).reason is QUOTA
    pool.remove_committed([tid(2)])
    assert pool.add(tid(4), "police", b"", 0).accepted
    # Once alone again it may borrow again.
    pool.remove_committed([tid(100)])
    assert pool.add(tid(5), "police", b"", 0).accepted


def test_full_when_shares_exceed_capacity() -> None:
    pool = Mempool(4, 1000, max_share=0.5)  # share 2, five members want 10
    fill(pool, "a", 0, 2)
    fill(pool, "b", 10, 2)
    result = pool.add(tid(20), "c", b"", 0)
    assert result.reason is FULL and not result.accepted


def test_full_by_bytes() -> None:
    pool = Mempool(100, 40, max_share=0.5)  # byte share 20
    pool.add(tid(0), "a", bytes(20), 0)
    pool.add(tid(1), "b", bytes(15), 0)
    assert pool.add(tid(2), "c", bytes(6), 0).reason is FULL
    assert pool.add(tid(3), "c", bytes(5), 0).accepted


def test_full_never_evicts_accepted() -> None:
    pool = Mempool(4, 1000, max_share=0.5)
    fill(pool, "a", 0, 2)
    fill(pool, "b", 10, 2)
    for n in range(20, 30):
        assert pool.add(tid(n), f"m{n}", b"", 0).reason is FULL
    assert all(t in pool for t in (tid(0), tid(1), tid(10), tid(11)))


def test_rejection_precedence() -> None:
    pool = Mempool(4, 1000, max_share=0.5, committed_memory=4)
    fill(pool, "a", 0, 2)
    fill(pool, "b", 10, 2)
    # Duplicate wins over everything; too_large over quota; quota over full.
    assert pool.add(tid(0), "a", bytes(999), 0).reason is D
    assert pool.add(tid(5), "a", bytes(501), 0).reason is BIG
    assert pool.add(tid(5), "a", b"", 0).reason is QUOTA
    assert pool.add(tid(5), "c", b"", 0).reason is FULL


# -- reap, requeue -----------------------------------------------------------------------


def test_reap_round_robin_in_arrival_order() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    fill(pool, "police", 0, 4)
    fill(pool, "bank", 10, 2)
    fill(pool, "telecom", 20, 3)
    batch = pool.reap(100, 1000)
    assert ids(batch) == [
        tid(n) for n in (0, 10, 20, 1, 11, 21, 2, 22, 3)
    ]  # one per member per round; bank runs out after round two
    # Reaping does not remove: they wait for commit.
    assert len(pool) == 9
    assert all(pool.is_in_flight(t) for t in ids(batch))


def test_reap_members_ordered_by_oldest_waiting() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    pool.add(tid(1), "late", b"", 0)
    pool.add(tid(2), "early", b"", 0)
    pool.reap(1, 100)  # takes tid(1); now "early" has the oldest queued entry
    pool.add(tid(3), "late", b"", 0)
    assert ids(pool.reap(2, 100)) == [tid(2), tid(3)]


def test_one_member_cannot_starve_others() -> None:
    pool = Mempool(1000, 100_000, max_share=1.0)
    fill(pool, "flood", 0, 500)
    fill(pool, "quiet", 1000, 5)
    batch = pool.reap(10, 100_000)
    assert [e.member for e in batch].count("quiet") == 5


def test_reap_respects_limits() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    fill(pool, "a", 0, 5, size=10)
    assert len(pool.reap(3, 1000)) == 3
    assert len(pool.reap(100, 25)) == 2
    assert pool.reap(0, 1000) == []
    assert pool.reap(10, -1) == []


def test_reap_byte_budget_keeps_member_order() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    pool.add(tid(1), "a", bytes(50), 0)
    pool.add(tid(2), "a", bytes(1), 0)
    pool.add(tid(3), "b", bytes(10), 0)
    pool.add(tid(4), "b", bytes(10), 0)
    # a's 50-byte head does not fit: a sits out rather than send tid(2) ahead of it.
    assert ids(pool.reap(10, 30)) == [tid(3), tid(4)]
    assert ids(pool.reap(10, 51)) == [tid(1), tid(2)]


def test_in_flight_not_reaped_again_until_requeued() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    fill(pool, "a", 0, 3)
    first = pool.reap(2, 1000)
    assert ids(first) == [tid(0), tid(1)]
    assert ids(pool.reap(10, 1000)) == [tid(2)]
    assert pool.reap(10, 1000) == []
    assert pool.statistics().in_flight == 3
    assert pool.requeue([tid(1), tid(0)]) == 2
    # Requeued entries regain their original place in arrival order.
    assert ids(pool.reap(10, 1000)) == [tid(0), tid(1)]


def test_requeue_ignores_ids_not_in_flight() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    fill(pool, "a", 0, 2)
    pool.reap(1, 1000)
    pool.remove_committed([tid(0)])
    # committed, queued, unknown: none of them is in flight.
    assert pool.requeue([tid(0), tid(1), tid(99)]) == 0
    assert ids(pool.reap(10, 1000)) == [tid(1)]
    assert pool.requeue([tid(1), tid(1)]) == 1
    assert ids(pool.reap(10, 1000)) == [tid(1)]


# -- commit, expiry ----------------------------------------------------------------------


def test_remove_committed_frees_capacity() -> None:
    pool = Mempool(2, 1000, max_share=1.0)
    fill(pool, "a", 0, 2, size=3)
    assert pool.add(tid(2), "a", b"", 0).reason is QUOTA  # alone: solo cap == capacity
    pool.reap(1, 1000)
    removed = pool.remove_committed([tid(0), tid(1), tid(42)])
    assert ids(removed) == [tid(0), tid(1)]
    assert len(pool) == 0 and pool.size_bytes == 0
    stats = pool.statistics()
    assert stats.in_flight == 0 and stats.per_member == {}
    assert pool.add(tid(2), "a", b"", 0).accepted


def test_expire_drops_old_queued_entries_only() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    pool.add(tid(1), "a", b"", 0)
    pool.add(tid(2), "b", b"", 10)
    pool.add(tid(3), "a", b"", 20)
    pool.add(tid(4), "b", b"", 5)
    assert ids(pool.reap(1, 1000)) == [tid(1)]
    # age > ttl expires; age == ttl does not. tid(1) is in flight and survives.
    expired = pool.expire(now_ms=110, ttl_ms=100)
    assert ids(expired) == [tid(4)]
    assert ids(pool.expire(now_ms=111, ttl_ms=100)) == [tid(2)]
    assert tid(1) in pool and tid(3) in pool
    # Once the proposal is dropped, the old entry can expire.
    pool.requeue([tid(1)])
    assert ids(pool.expire(now_ms=111, ttl_ms=100)) == [tid(1)]
    assert ids(pool.expire(now_ms=10_000, ttl_ms=0)) == [tid(3)]
    assert len(pool) == 0
    with pytest.raises(ValueError):
        pool.expire(0, -1)


def test_expire_returns_oldest_first_regardless_of_add_order() -> None:
    pool = Mempool(100, 1000, max_share=1.0)
    for n, arrival in enumerate([30, 10, 20, 10]):
        pool.add(tid(n), "a", b"", arrival)
    assert ids(pool.expire(1000, 0)) == [tid(1), tid(3), tid(2), tid(0)]


# -- statistics --------------------------------------------------------------------------


def test_statistics_snapshot() -> None:
    pool = Mempool(4, 1000, max_share=0.5)
    fill(pool, "a", 0, 2, size=5)
    pool.add(tid(10), "b", b"xyz", 0)
    pool.add(tid(0), "a", b"", 0)  # duplicate
    pool.add(tid(11), "a", b"", 0)  # member_quota
    pool.add(tid(12), "b", bytes(501), 0)  # too_large
    pool.add(tid(13), "c", b"", 0)  # accepted: fills the pool
    pool.add(tid(14), "d", b"", 0)  # full
    pool.reap(2, 1000)
    pool.remove_committed([tid(13)])
    pool.add(tid(15), "c", b"", 50)
    pool.expire(1000, 0)
    stats = pool.statistics()
    # Left: tid(0) and tid(10), both in flight; tid(1) and tid(15) expired.
    assert stats.count == len(pool) == 2
    assert stats.size_bytes == pool.size_bytes == 8
    assert stats.in_flight == 2
    assert stats.per_member == {"a": 1, "b": 1}
    assert stats.per_member_bytes == {"a": 5, "b": 3}
    assert stats.rejected == {D: 1, QUOTA: 1, BIG: 1, FULL: 1}
    assert FULL == "full" and RejectReason("member_quota") is QUOTA  # stable string codes
    assert (stats.accepted_total, stats.committed_total, stats.expired_total) == (5, 1, 2)
    # A snapshot: read-only, and unaffected by later changes.
    with pytest.raises(TypeError):
        stats.per_member["a"] = 0  # type: ignore[index]
    pool.remove_committed([tid(0)])
    assert stats.per_member == {"a": 1, "b": 1}


# -- scale -------------------------------------------------------------------------------


def test_hundred_thousand_entries_are_fast() -> None:
    n = 100_000
    members = [f"member{i}" for i in range(16)]
    pool = Mempool(n, n * 64, max_share=0.25)
    payload = bytes(64)
    started = time.perf_counter()
    for i in range(n):
        assert pool.add(tid(i), members[i % 16], payload, i).accepted
    assert len(pool) == n
    assert pool.add(tid(n), members[0], payload, n).reason is FULL
    reaped = 0
    while batch := pool.reap(2_000, 1 << 20):
        reaped += len(batch)
        if reaped % 10_000 == 0:
            pool.requeue(ids(batch)[:500])  # a view change; the rest stay in flight
        else:
            pool.remove_committed(ids(batch))
    assert 0 < len(pool) < n
    pool.requeue([tid(i) for i in range(n)])
    pool.expire(now_ms=2 * n, ttl_ms=0)
    assert len(pool) == 0
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"100k-entry workload took {elapsed:.2f}s"


def test_stale_heap_items_are_compacted() -> None:
    # Commit queued (never reaped) entries over and over: each leaves stale heap items,
    # which must not accumulate.
    pool = Mempool(100, 10_000, max_share=1.0, committed_memory=0)
    for round_ in range(100):
        base = round_ * 100
        fill(pool, "a", base, 100, now=round_)
        pool.remove_committed([tid(base + i) for i in range(100)])
        pool.reap(1, 0)  # exercise lazy cleanup too
    assert pool._queue_items <= 2 * len(pool) + 1024
    assert len(pool._expiry) <= 2 * len(pool) + 1024
    fill(pool, "a", 0, 3)
    assert ids(pool.reap(10, 100)) == [tid(0), tid(1), tid(2)]


def test_compaction_keeps_live_entries_and_order() -> None:
    pool = Mempool(5_000, 1 << 20, max_share=1.0, committed_memory=0)
    for n in range(10):
        pool.add(tid(n), "a" if n % 2 else "b", b"x", n)  # b holds evens, a odds
    assert ids(pool.reap(3, 100)) == [tid(0), tid(1), tid(2)]
    # 2,000 queued-then-committed entries: far past the rebuild threshold.
    fill(pool, "c", 1000, 2000, now=50)
    pool.remove_committed([tid(n) for n in range(1000, 3000)])
    assert pool._queue_items <= 2 * len(pool) + 1024
    assert len(pool._expiry) <= 2 * len(pool) + 1024
    assert len(pool) == 10 and pool.statistics().in_flight == 3
    assert ids(pool.reap(3, 100)) == [tid(3), tid(4), tid(5)]
    assert pool.requeue([tid(0), tid(1), tid(2), tid(4)]) == 4
    # Round-robin between b (even) and a (odd), each in arrival order.
    assert ids(pool.reap(100, 100)) == [tid(n) for n in (0, 1, 2, 7, 4, 9, 6, 8)]
    pool.requeue([tid(n) for n in range(10)])
    assert ids(pool.expire(100, 0)) == [tid(n) for n in range(10)]


# -- stateful model check ----------------------------------------------------------------

MEMBERS = ("police", "bank_a", "bank_b", "telecom", "isp")
ID_POOL = [tid(n) for n in range(24)]


@dataclass(frozen=True)
class Config:
    max_txs: int
    max_bytes: int
    max_share: float
    committed_memory: int
    # The policy's caps worked out by hand, so the model does not trust the pool's.
    share: tuple[int, int]  # (txs, bytes) while others are present
    solo: tuple[int, int]  # (txs, bytes) while alone
    max_tx_bytes: int


# Mostly small, so count limits bind as often as byte limits; sometimes past every limit.
SIZES = st.one_of(st.integers(0, 6), st.integers(0, 70))

CONFIGS = [
    # Five members want 10 slots of 8: both "full" and "member_quota" happen often.
    Config(8, 120, 0.25, committed_memory=4, share=(2, 30), solo=(6, 90), max_tx_bytes=30),
    Config(9, 90, 1 / 3, committed_memory=2, share=(3, 30), solo=(6, 60), max_tx_bytes=30),
    Config(6, 60, 0.5, committed_memory=2, share=(3, 30), solo=(3, 30), max_tx_bytes=30),
    Config(12, 400, 1.0, committed_memory=0, share=(12, 400), solo=(12, 400), max_tx_bytes=400),
]


@dataclass
class ModelTx:
    member: str
    size: int
    arrival: int
    order: int
    in_flight: bool = False


class MempoolMachine(RuleBasedStateMachine):
    """Drives a Mempool and a plain-dict model side by side.

    The model restates the documented policy the slow, obvious way; every result the
    pool gives must match it, and the invariants below must hold after every step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.order = 0
        self.pending: dict[bytes, ModelTx] = {}
        self.committed: OrderedDict[bytes, None] = OrderedDict()
        self.rejected = dict.fromkeys(RejectReason, 0)
        # Every acceptance ends in exactly one of: pending, committed, expired.
        self.accepted_total = 0
        self.committed_total = 0
        self.expired_total = 0

    @initialize(config=st.sampled_from(CONFIGS))
    def setup(self, config: Config) -> None:
        self.config = config
        self.pool = Mempool(
            config.max_txs,
            config.max_bytes,
            max_share=config.max_share,
            committed_memory=config.committed_memory,
        )
        assert (self.pool.quota_txs, self.pool.quota_bytes) == config.share
        assert (self.pool.solo_txs, self.pool.solo_bytes) == config.solo
        assert self.pool.max_tx_bytes == config.max_tx_bytes

    # -- model helpers --

    def held(self, member: str) -> tuple[int, int]:
        txs = [t for t in self.pending.values() if t.member == member]
        return len(txs), sum(t.size for t in txs)

    def others_present(self, member: str) -> bool:
        return any(t.member != member for t in self.pending.values())

    def queued(self) -> dict[str, list[bytes]]:
        """Each member's not-in-flight ids in arrival order."""
        out: dict[str, list[bytes]] = {}
        for tx_id, tx in sorted(self.pending.items(), key=lambda kv: kv[1].order):
            if not tx.in_flight:
                out.setdefault(tx.member, []).append(tx_id)
        return out

    def expected_reason(self, tx_id: bytes, member: str, size: int) -> RejectReason | None:
        if tx_id in self.pending or tx_id in self.committed:
            return D
        if size > self.config.max_tx_bytes:
            return BIG
        count, used = self.held(member)
        cap = self.config.share if self.others_present(member) else self.config.solo
        if count + 1 > cap[0] or used + size > cap[1]:
            return QUOTA
        total = sum(t.size for t in self.pending.values())
        if len(self.pending) + 1 > self.config.max_txs or total + size > self.config.max_bytes:
            return FULL
        return None

    def expected_reap(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """Round-robin by rounds, members by oldest queued entry, the obvious way."""
        queues = self.queued()
        members = sorted(queues, key=lambda m: self.pending[queues[m][0]].order)
        taken = dict.fromkeys(members, 0)
        blocked: set[str] = set()
        out: list[bytes] = []
        budget = max_bytes
        progress = True
        while progress and len(out) < max_txs:
            progress = False
            for m in members:
                if len(out) >= max_txs or m in blocked or taken[m] >= len(queues[m]):
                    continue
                tx_id = queues[m][taken[m]]
                if self.pending[tx_id].size > budget:
                    blocked.add(m)
                    continue
                out.append(tx_id)
                budget -= self.pending[tx_id].size
                taken[m] += 1
                progress = True
        return out

    # -- rules --

    @rule(txs=st.lists(st.tuples(st.sampled_from(MEMBERS), st.sampled_from(ID_POOL), SIZES)))
    def add(self, txs: list[tuple[str, bytes, int]]) -> None:
        # Several adds per step: rules are picked uniformly, and single adds would
        # rarely fill the pool before commits and expiry drain it.
        for member, tx_id, size in txs:
            self.add_one(member, tx_id, size)

    @rule(
        member=st.sampled_from(MEMBERS),
        tx_ids=st.lists(st.sampled_from(ID_POOL), min_size=1, max_size=14),
        size=st.integers(0, 12),
    )
    def flood(self, member: str, tx_ids: list[bytes], size: int) -> None:
        # One member submitting a burst: the case the share rules exist for, and too
        # unlikely to arise from members picked at random.
        for tx_id in tx_ids:
            self.add_one(member, tx_id, size)

    def add_one(self, member: str, tx_id: bytes, size: int) -> None:
        expected = self.expected_reason(tx_id, member, size)
        others = self.others_present(member)
        result = self.pool.add(tx_id, member, bytes(size), self.now)
        assert result.reason == expected
        if result.accepted:
            self.pending[tx_id] = ModelTx(member, size, self.now, self.order)
            self.order += 1
            self.accepted_total += 1
            if others:
                # Member share respected: no growth past the share while others present.
                count, used = self.held(member)
                assert count <= self.config.share[0] and used <= self.config.share[1]
        else:
            assert result.reason is not None
            self.rejected[result.reason] += 1

    @rule(dt=st.integers(0, 50))
    def tick(self, dt: int) -> None:
        self.now += dt

    @rule(
        max_txs=st.integers(0, 15),
        max_bytes=st.integers(0, 200),
        tight=st.none() | st.integers(-1, 1),
    )
    def reap(self, max_txs: int, max_bytes: int, tight: int | None) -> None:
        if tight is not None:
            # A byte budget within one byte of what the batch needs, where fit
            # checks would go wrong by one.
            unlimited = self.expected_reap(max_txs, 1 << 30)
            max_bytes = max(0, sum(self.pending[t].size for t in unlimited) + tight)
        queues = self.queued()
        expected = self.expected_reap(max_txs, max_bytes)
        batch = self.pool.reap(max_txs, max_bytes)
        got = ids(batch)
        assert got == expected
        # The properties the reference encodes, stated directly as well.
        assert len(set(got)) == len(got)
        assert len(got) <= max_txs and sum(e.size for e in batch) <= max(max_bytes, 0)
        for e in batch:
            tx = self.pending[e.tx_id]
            assert not tx.in_flight and (e.member, e.size, e.arrival_ms) == (
                tx.member,
                tx.size,
                tx.arrival,
            )
        per_member: dict[str, list[bytes]] = {}
        for e in batch:
            per_member.setdefault(e.member, []).append(e.tx_id)
        for m, taken in per_member.items():
            assert taken == queues[m][: len(taken)]  # arrival order within a member
        for tx_id in got:
            self.pending[tx_id].in_flight = True

    @rule()
    def reap_is_fair(self) -> None:
        """k members each with >= m queued: a reap of k*m returns m from each."""
        queues = self.queued()
        if not queues:
            return
        m = min(len(q) for q in queues.values())
        batch = self.pool.reap(len(queues) * m, 1 << 30)
        counts: dict[str, int] = {}
        for e in batch:
            counts[e.member] = counts.get(e.member, 0) + 1
            self.pending[e.tx_id].in_flight = True
        assert counts == dict.fromkeys(queues, m)

    @rule(chosen=st.lists(st.sampled_from(ID_POOL), max_size=6))
    def requeue(self, chosen: list[bytes]) -> None:
        expected = {t for t in chosen if t in self.pending and self.pending[t].in_flight}
        assert self.pool.requeue(chosen) == len(expected)
        for tx_id in expected:
            self.pending[tx_id].in_flight = False

    @precondition(lambda self: any(t.in_flight for t in self.pending.values()))
    @rule()
    def requeue_all_in_flight(self) -> None:
        in_flight = [t for t, tx in self.pending.items() if tx.in_flight]
        assert self.pool.requeue(in_flight) == len(in_flight)
        for tx_id in in_flight:
            self.pending[tx_id].in_flight = False

    @rule(chosen=st.lists(st.sampled_from(ID_POOL), max_size=6), in_flight_only=st.booleans())
    def commit(self, chosen: list[bytes], in_flight_only: bool) -> None:
        if in_flight_only:
            # The common case: a proposal built from reaped entries commits.
            chosen = [t for t, tx in self.pending.items() if tx.in_flight][: len(chosen) + 1]
        expected: list[bytes] = []
        for tx_id in chosen:
            if tx_id in self.pending:
                del self.pending[tx_id]
                expected.append(tx_id)
            if self.config.committed_memory:
                self.committed[tx_id] = None
                self.committed.move_to_end(tx_id)
                if len(self.committed) > self.config.committed_memory:
                    self.committed.popitem(last=False)
        assert ids(self.pool.remove_committed(chosen)) == expected
        self.committed_total += len(expected)

    @rule(
        ttl=st.integers(0, 200),
        near=st.none() | st.tuples(st.integers(0, 20), st.integers(-1, 1)),
    )
    def expire(self, ttl: int, near: tuple[int, int] | None) -> None:
        ages = sorted(self.now - tx.arrival for tx in self.pending.values())
        if near is not None and ages:
            # A TTL within one ms of some entry's age, to pin "older than" exactly.
            pick, slack = near
            ttl = max(0, ages[pick % len(ages)] + slack)
        old = [
            (tx.arrival, tx.order, tx_id)
            for tx_id, tx in self.pending.items()
            if not tx.in_flight and self.now - tx.arrival > ttl
        ]
        expected = [tx_id for _, _, tx_id in sorted(old)]
        assert ids(self.pool.expire(self.now, ttl)) == expected
        for tx_id in expected:
            del self.pending[tx_id]
        self.expired_total += len(expected)

    # -- invariants --

    @invariant()
    def within_limits(self) -> None:
        assert len(self.pool) <= self.config.max_txs
        assert self.pool.size_bytes <= self.config.max_bytes

    @invariant()
    def nothing_lost_nothing_extra(self) -> None:
        # Same size and every model id present: the pool holds exactly the accepted,
        # not yet committed or expired transactions, each once.
        assert len(self.pool) == len(self.pending)
        assert self.pool.size_bytes == sum(t.size for t in self.pending.values())
        for tx_id, tx in self.pending.items():
            assert tx_id in self.pool
            assert self.pool.is_in_flight(tx_id) == tx.in_flight
        assert self.accepted_total == len(self.pending) + self.committed_total + self.expired_total

    @invariant()
    def member_share_respected(self) -> None:
        share, solo = self.config.share, self.config.solo
        over = []
        for member in MEMBERS:
            count, used = self.held(member)
            assert count <= solo[0] and used <= solo[1]
            if count > share[0] or used > share[1]:
                over.append(member)
        # Only a member that was alone can have passed its share, so at most one has.
        assert len(over) <= 1

    @invariant()
    def statistics_agree(self) -> None:
        stats = self.pool.statistics()
        assert stats.count == len(self.pending)
        assert stats.in_flight == sum(t.in_flight for t in self.pending.values())
        expected_counts: dict[str, int] = {}
        for tx in self.pending.values():
            expected_counts[tx.member] = expected_counts.get(tx.member, 0) + 1
        assert stats.per_member == expected_counts
        assert stats.rejected == self.rejected
        assert (stats.accepted_total, stats.committed_total, stats.expired_total) == (
            self.accepted_total,
            self.committed_total,
            self.expired_total,
        )


MempoolMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestMempoolStateful = MempoolMachine.TestCase

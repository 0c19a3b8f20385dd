"""The submission admission bound (``node.host.admission``): the commit-rate estimate,
the bound and the fair-share decision, on their own; the clock is a number."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.host.admission import (
    ADMITTED,
    Admission,
    AdmissionPolicy,
    CommitRate,
    RefuseReason,
    admission_bound,
    decide,
    member_share,
    retry_after,
)

# -- the estimate -----------------------------------------------------------------------


def test_a_steady_rate_is_learned() -> None:
    rate = CommitRate(0.0, half_life_s=1.0, tick_s=0.25)
    now = 0.0
    for _ in range(200):  # 20 s of 100 transactions every 0.1 s: 1,000 tx/s
        now += 0.1
        rate.observe(100, now)
    assert rate.per_second(now) == pytest.approx(1000, rel=0.05)


def test_an_idle_node_forgets_its_rate() -> None:
    rate = CommitRate(0.0, half_life_s=1.0, tick_s=0.25)
    for step in range(1, 41):
        rate.observe(100, step * 0.1)
    assert rate.per_second(4.0) > 500
    # The last commits counted are spread over the quiet tick that follows them...
    assert rate.per_second(14.0) < 25
    assert rate.per_second(24.0) < 0.1  # ... and ten more half-lives forget them


def test_the_first_commits_set_the_estimate_then_it_moves_by_half_in_a_half_life() -> None:
    rate = CommitRate(0.0, half_life_s=2.0, tick_s=0.25)
    assert rate.per_second(1.0) == 0  # nothing committed yet
    rate.observe(1000, 1.1)
    assert rate.per_second(2.0) == pytest.approx(1000)  # 1,000 in the second
    rate.observe(6000, 2.1)
    # one tick of 2 s at 3,000 tx/s: weight 1 - 2**-1, half way from 1,000
    assert rate.per_second(4.0) == pytest.approx(2000)


def test_a_clock_that_goes_backwards_is_ignored() -> None:
    rate = CommitRate(10.0, half_life_s=1.0, tick_s=0.25)
    rate.observe(100, 5.0)
    assert rate.per_second(5.0) == 0.0
    assert rate.per_second(11.0) > 0  # the count was kept for the next real tick


@given(
    st.lists(
        st.tuples(st.floats(0.0, 2.0), st.integers(0, 5000)),
        max_size=60,
    )
)
def test_the_estimate_stays_within_the_rates_it_saw(steps: list[tuple[float, int]]) -> None:
    rate = CommitRate(0.0, half_life_s=1.0, tick_s=0.25)
    now = 0.0
    # No tick is shorter than tick_s, so no sample exceeds all there was / tick_s, and
    # the estimate is a weighted mean of samples and its start, zero.
    highest = sum(txs for _, txs in steps) / 0.25
    for gap, txs in steps:
        now += gap
        rate.observe(txs, now)
        assert 0 <= rate.per_second(now) <= highest + 1e-6


# -- the bound and the decision ----------------------------------------------------------

POLICY = AdmissionPolicy(horizon_s=1.0, floor_txs=100)


def test_the_bound_is_a_second_of_commits_between_the_floor_and_the_cap() -> None:
    assert admission_bound(0.0, POLICY, cap=10_000) == 100  # idle: the floor
    assert admission_bound(2500.4, POLICY, cap=10_000) == 2501
    assert admission_bound(1e9, POLICY, cap=10_000) == 10_000
    assert admission_bound(0.0, POLICY, cap=50) == 50  # the cap wins over the floor


def test_a_member_within_its_share_is_admitted_past_the_bound() -> None:
    decision = decide(
        held_member=20, held_total=400, count=5, bound=100, members=4, cap=1000, rate=100
    )
    assert decision is ADMITTED


def test_idle_capacity_may_be_borrowed() -> None:
    decision = decide(
        held_member=60, held_total=60, count=30, bound=100, members=4, cap=1000, rate=100
    )
    assert decision.admitted


def test_a_member_past_its_share_is_refused_at_the_bound_with_retry_after() -> None:
    decision = decide(
        held_member=90, held_total=100, count=10, bound=100, members=4, cap=1000, rate=5
    )
    assert decision.reason is RefuseReason.SHARE
    # 10 past the bound (less than 75 past the share) at 5 tx/s: 2 s
    assert decision.retry_after_s == 2


def test_a_member_holding_nothing_gets_one_request_through_whatever_its_size() -> None:
    # 1,000 is more than a share (25) and than the bound: it must still pass some time.
    decision = decide(
        held_member=0, held_total=400, count=1000, bound=100, members=4, cap=5000, rate=100
    )
    assert decision.admitted
    again = decide(
        held_member=1000, held_total=1400, count=1, bound=100, members=4, cap=5000, rate=100
    )
    assert again.reason is RefuseReason.SHARE


def test_the_mempool_cap_is_never_passed() -> None:
    decision = decide(
        held_member=0, held_total=999, count=2, bound=100, members=4, cap=1000, rate=0
    )
    assert decision.reason is RefuseReason.CAPACITY


def test_retry_after_is_whole_seconds_within_limits() -> None:
    assert retry_after(0, 1000.0) == 1
    assert retry_after(1500, 1000.0) == 2
    assert retry_after(10**9, 1.0, max_retry_after_s=30) == 30
    assert retry_after(5, 0.0, max_retry_after_s=30) == 30  # no commits: the longest


@settings(max_examples=500)
@given(
    members=st.integers(1, 8),
    cap=st.integers(1, 5000),
    rate=st.floats(0.0, 10_000.0),
    floor=st.integers(1, 3000),
    held=st.lists(st.integers(0, 3000), min_size=1, max_size=8),
    count=st.integers(1, 1000),
    who=st.integers(0, 7),
)
def test_the_decision_never_passes_the_cap_and_keeps_every_share(
    members: int, cap: int, rate: float, floor: int, held: list[int], count: int, who: int
) -> None:
    held = held[:members]
    member = who % len(held)
    policy = AdmissionPolicy(horizon_s=1.0, floor_txs=floor)
    bound = admission_bound(rate, policy, cap)
    assert 1 <= bound <= cap
    total = sum(held)
    decision = decide(
        held_member=held[member],
        held_total=total,
        count=count,
        bound=bound,
        members=members,
        cap=cap,
        rate=rate,
    )
    if decision.admitted:
        assert total + count <= cap
    else:
        assert 1 <= decision.retry_after_s <= policy.max_retry_after_s
    share = member_share(bound, members)
    if (held[member] + count <= share or held[member] == 0) and total + count <= cap:
        # Under its share (or holding nothing): never refused, however far over theirs
        # the others are.
        assert decision.admitted
    if not decision.admitted and decision.reason is RefuseReason.SHARE:
        # Only a member that would pass its share is refused for the bound.
        assert held[member] + count > share


@settings(max_examples=200)
@given(
    arrivals=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 50)), max_size=300),
)
def test_admitting_in_turn_never_holds_more_than_twice_the_bound(
    arrivals: list[tuple[int, int]],
) -> None:
    """Whatever order the members come in, nothing committing, the pool stays within
    the cap and within twice the bound, and each member gets its share."""
    admission = Admission(AdmissionPolicy(floor_txs=200), members=4, cap=1000, now_s=0.0)
    held = [0, 0, 0, 0]
    for member, count in arrivals:
        if admission.decide(held[member], sum(held), count, now_s=0.0).admitted:
            held[member] += count
        bound = admission.bound(0.0)
        assert sum(held) <= min(1000, 2 * bound)
    share = member_share(admission.bound(0.0), 4)
    for member in range(4):
        # Whoever ended with less than its share was never refused a request that fit.
        if held[member] < share:
            asked = [c for m, c in arrivals if m == member]
            assert sum(asked) == held[member] or any(held[member] + c > share for c in asked)


def test_gossip_is_bounded_per_member_with_slack_and_counted_when_dropped() -> None:
    admission = Admission(
        AdmissionPolicy(floor_txs=100, gossip_slack=2.0), members=4, cap=1000, now_s=0.0
    )
    assert not admission.decide(90, 150, 1, now_s=0.0).admitted  # a client's: refused
    assert admission.refused[RefuseReason.SHARE] == 1
    # A peer's: the pool's total is not weighed, the member's holding is (2 x 100).
    assert admission.decide(90, 900, 1, now_s=0.0, gossip=True).admitted
    assert not admission.decide(200, 300, 1, now_s=0.0, gossip=True).admitted
    assert not admission.decide(0, 1000, 1, now_s=0.0, gossip=True).admitted  # the cap
    assert admission.gossip_dropped == 2
    assert admission.refused[RefuseReason.SHARE] == 1


def test_retry_after_takes_the_rate_as_at_least_the_floor_s() -> None:
    admission = Admission(AdmissionPolicy(floor_txs=100), members=4, cap=10_000, now_s=0.0)
    # Nothing committed: 350 past the share at the floor's 100 a second.
    decision = admission.decide(400, 400, 1, now_s=0.0)
    assert decision.reason is RefuseReason.SHARE and decision.retry_after_s == 4
    for step in range(1, 101):
        admission.committed(100, step * 0.1)  # 1,000 tx/s: bound 1,000, share 250
    decision = admission.decide(2000, 3000, 1, now_s=10.0)
    assert decision.retry_after_s == 2  # 1,751 past the share at 1,000 a second


def test_a_node_behind_with_its_peers_gossip_refuses_its_own_clients() -> None:
    admission = Admission(
        AdmissionPolicy(floor_txs=1000, lag_limit_txs=256), members=4, cap=10_000, now_s=0.0
    )
    # Within its share and the bound, but 300 of the peers' transactions wait unchecked.
    decision = admission.decide(0, 300, 1, now_s=0.0, unchecked_gossip=300)
    assert decision.reason is RefuseReason.LAGGING
    assert decision.retry_after_s == 1  # 300 at the floor's 1,000 a second
    assert admission.decide(0, 256, 1, now_s=0.0, unchecked_gossip=256).admitted
    # Gossip itself is never refused for lagging: it is what the node is behind with.
    assert admission.decide(0, 300, 1, now_s=0.0, gossip=True, unchecked_gossip=300).admitted
    assert admission.refused[RefuseReason.LAGGING] == 1


def test_a_committing_node_raises_its_bound() -> None:
    admission = Admission(AdmissionPolicy(floor_txs=100), members=4, cap=100_000, now_s=0.0)
    assert admission.bound(0.0) == 100
    for step in range(1, 101):
        admission.committed(300, step * 0.1)  # 3,000 tx/s for 10 s
    assert 2700 <= admission.bound(10.0) <= 3300


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        AdmissionPolicy(horizon_s=0)
    with pytest.raises(ValueError, match="floor"):
        AdmissionPolicy(floor_txs=0)
    with pytest.raises(ValueError, match="slack"):
        AdmissionPolicy(gossip_slack=0.5)

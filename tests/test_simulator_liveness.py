"""Slow is not faulty (issue 16): a primary that commits blocks, however slowly, is
never replaced; one that leaves a client's requests out while it commits later ones is.

The slow-primary scenario is ``crosstrace simulate --byzantine 1 --fault slow``: member
0, the first primary, is honest but proposes at about half the rate clients offer, a
bulk upload from one bank enters at member 1, and members forward requests to the
primary instead of gossiping them, so the other backups hold only a trickle of their own
clients' requests. Each of those waits out the primary's whole backlog after the one
before it committed, longer than ``max_view_timeout_ms``, while blocks commit steadily.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from consensus.simulator import FaultPlan, SimResult, random_plan, run_plan
from consensus.simulator.byzantine import client_of
from consensus.simulator.plan import BULK_WEIGHT, SIM_PARAMS, Byzantine
from consensus.simulator.report import summary


def slow_primary(nodes: int, blocks: int, seed: int) -> FaultPlan:
    f = (nodes - 1) // 3
    return random_plan(nodes=nodes, blocks=blocks, seed=seed, byzantine=f, kind="slow")


def assert_a_backlog_that_commits_steadily(result: SimResult) -> None:
    """The scenario is what it claims to be: requests waited longer than any patience
    bounded by ``max_view_timeout_ms``, while no replica ever went a view timeout
    without executing a block."""
    params = result.plan.params
    report = summary(result)
    assert max(result.latencies_ms) > 2 * params.max_view_timeout_ms, report
    assert result.max_commit_gap_ms < params.view_timeout_ms, report


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("nodes", "seed"), [(4, 1), (4, 2), (7, 3)])
def test_a_slow_primary_under_a_backlog_is_never_replaced(nodes: int, seed: int) -> None:
    result = run_plan(slow_primary(nodes, blocks=120, seed=seed))
    report = summary(result)
    assert result.safe, report
    assert result.view_changes == 0, report
    assert result.first_suspicion_ms is None, report  # not even one backup suspected it
    assert result.requests_offered == 120 * SIM_PARAMS.max_batch_txs
    assert result.requests_uncommitted == 0, report
    assert_a_backlog_that_commits_steadily(result)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("nodes", [4, 7])
def test_a_primary_that_censors_one_client_while_committing_others_is_replaced(
    nodes: int,
) -> None:
    f = (nodes - 1) // 3
    plan = random_plan(nodes=nodes, blocks=40, seed=nodes, byzantine=f, kind="censor-one")
    result = run_plan(replace(plan, requests=40 * SIM_PARAMS.max_batch_txs))
    report = summary(result)
    assert result.safe, report
    assert result.view_changes >= 1, report
    # Every request of the censored client committed too, under a later primary.
    assert result.requests_uncommitted == 0, report


def test_censorship_is_caught_within_a_few_view_timeouts_not_at_max_view_timeout() -> None:
    """The rule that spares a slow primary must not give a censor more rope: a request
    left out while requests the backups received after it commit is suspected two view
    timeouts (the grace) after it was passed over."""
    plan = replace(
        random_plan(nodes=4, blocks=30, seed=9, byzantine=1, kind="censor-one"),
        requests=30 * SIM_PARAMS.max_batch_txs,
        trace_lines=0,
    )
    result = run_plan(plan)
    assert result.safe and result.view_changes >= 1, summary(result)
    censored = [
        latency
        for latency, client in zip(result.latencies_ms, result.committed_clients, strict=True)
        if client == 0
    ]
    # The first of the censored client's requests arrives within a few ms; two view
    # timeouts after a later request commits, the backups ask for a new view.
    assert censored and max(censored) < 4 * plan.params.view_timeout_ms, summary(result)


def test_the_slow_primary_scenario_is_a_named_fault_of_the_cli() -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--byzantine", "1", "--fault", "slow", "--blocks", "60"]
    )
    assert result.exit_code == 0, result.output
    assert "member 0 slow (honest" in result.output
    assert "all committed" in result.output
    assert "view changes:     0 (highest view 0)" in result.output


def test_a_slow_member_is_held_to_the_honest_invariants() -> None:
    plan = slow_primary(4, blocks=10, seed=4)
    result = run_plan(plan)
    assert 0 in result.honest_instances
    assert result.heights[0] >= plan.blocks


@st.composite
def slow_primary_plans(draw: st.DrawFn) -> FaultPlan:
    """A slow primary whose proposals carry 40-90% of what clients offer, for long
    enough that requests wait past max_view_timeout_ms, the load entering unevenly and
    gossiped to some or none of the other members."""
    nodes = draw(st.sampled_from([4, 4, 7]))
    interval = draw(st.integers(3, 6))
    share = draw(st.integers(40, 90))
    bulk = draw(st.sampled_from([1, 20, BULK_WEIGHT]))
    return FaultPlan(
        nodes=nodes,
        blocks=1,
        seed=draw(st.integers(0, 2**32 - 1)),
        request_interval_ms=interval,
        max_delay_ms=draw(st.integers(5, 40)),
        byzantine=(Byzantine(0, "slow"),),
        requests=draw(st.integers(400, 2400)),
        slow_ms_per_request=max(1, round(interval * 100 / share)),
        gossip_share=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        entry_weights=tuple(bulk if member == 1 else 1 for member in range(nodes)),
        trace_lines=0,
    )


@pytest.mark.timeout(600)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(plan=slow_primary_plans())
def test_no_view_change_while_blocks_keep_executing_within_the_timeout(
    plan: FaultPlan,
) -> None:
    result = run_plan(plan)
    report = summary(result)
    assert result.safe, report
    # The gap runs up to the first suspicion: the view change's own pause excuses nothing.
    if result.max_commit_gap_ms < plan.params.view_timeout_ms:
        assert result.first_suspicion_ms is None, report
        assert result.view_changes == 0, report
        assert result.requests_uncommitted == 0, report


def test_the_clients_of_simulated_requests_take_turns() -> None:
    assert [client_of(k.to_bytes(8, "big") + bytes(56)) for k in range(1, 7)] == [
        1,
        2,
        3,
        4,
        0,
        1,
    ]

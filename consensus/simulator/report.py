"""The human-readable summary of a simulation run (deterministic: no wall time)."""

from __future__ import annotations

from consensus.simulator.plan import FaultPlan
from consensus.simulator.runner import SimResult


def percentile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _member(plan: FaultPlan, member: int, kind: str) -> str:
    if kind == "slow":
        return f"member {member} slow (honest, {plan.slow_cost_ms()} ms per request proposed)"
    return f"member {member} {kind}"


def summary(result: SimResult) -> str:
    plan = result.plan
    n = plan.nodes
    f = (n - 1) // 3
    quorum = (n + f + 2) // 2
    lines = [f"crosstrace simulate: {n} members (f={f}, quorum={quorum}), seed {plan.seed}"]
    byz = ", ".join(_member(plan, b.member, b.kind) for b in plan.byzantine) or "none"
    lines.append(f"  byzantine:      {byz}")
    lines.append(
        f"  network:        delay {plan.min_delay_ms}-{plan.max_delay_ms} ms, "
        f"drop {plan.drop_rate:g}, duplicate {plan.duplicate_rate:g}, reorder {plan.reorder_rate:g}"
    )
    parts = "; ".join(
        f"{p.start_ms}-{p.end_ms} ms " + " | ".join(",".join(map(str, g)) for g in p.groups)
        for p in plan.partitions
    )
    lines.append(f"  partitions:     {parts or 'none'}")
    crashes = "; ".join(f"n{c.instance} at {c.at_ms} ms for {c.down_ms} ms" for c in plan.crashes)
    lines.append(f"  crashes:        {crashes or 'none'}")
    honest = [result.heights[i] for i in result.honest_instances]
    lines.append(
        f"committed blocks: {min(honest)} on every honest replica (max {max(honest)}), "
        f"{result.txs_committed} transactions"
    )
    if plan.requests:
        waiting = result.requests_uncommitted
        lines.append(
            f"requests:         {result.requests_offered} offered, "
            + (f"{waiting} never committed" if waiting else "all committed")
            + f"; longest wait for a block {result.max_commit_gap_ms} ms"
        )
    lines.append(f"view changes:     {result.view_changes} (highest view {result.max_view})")
    total = sum(result.messages.values())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.messages.items()))
    lines.append(f"messages sent:    {total} ({kinds})")
    lat = result.latencies_ms
    lines.append(
        f"commit latency:   p50 {percentile(lat, 50)} ms, p95 {percentile(lat, 95)} ms, "
        f"p99 {percentile(lat, 99)} ms (virtual time, {len(lat)} requests)"
    )
    lines.append(f"virtual time:     {result.virtual_ms} ms in {result.steps} replica steps")
    if result.evidence:
        members = sorted({e[0] for e in result.evidence})
        lines.append(f"evidence:         equivocation by member(s) {members}")
    if result.violation is None:
        lines.append(
            "invariants:       agreement, certified, no-equivocation, monotone, recovery: all held"
        )
        lines.append("result: safe")
    else:
        v = result.violation
        lines.append(f"VIOLATION of {v.invariant} at {v.time_ms} ms: {v.detail}")
        lines.append(f"replay with --seed {plan.seed}; the steps that led there:")
        lines.extend("  " + line for line in result.trace)
        lines.append("result: violated")
    return "\n".join(lines)

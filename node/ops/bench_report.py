"""The figures of ``crosstrace bench``: one phase's measurements, its table, the goals of
issue 16 checked against them, and the JSON file of everything.

The headline of every phase is what a user waits for: the latency of an accepted
transaction from when its request was due until the node answered that it committed. A
transaction accepted but not committed within the request's wait counts at that wait
(a lower bound), so a backlog cannot hide by timing out. Refused transactions have no
latency; their share is printed beside it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

Report_ = Callable[[str], None]

# Issue 16's goals (2-core machine, 4 node processes, fsync on, 60 s phases).
GOAL_MAX_SHARE = 0.40
GOAL_RATE = 1000.0
GOAL_RATE_P50_MS = 100.0
GOAL_RATE_P99_MS = 500.0
GOAL_OVERLOAD_SHARE_OF_MAX = 0.90
GOAL_OVERLOAD_P99_MS = 1000.0
GOAL_RSS_MIB = 200e6 / 2**20  # 200 MB
GOAL_CPU_US = 150.0
GOAL_DELAY_RATE = 500.0
GOAL_DELAY_MS = 25.0
GOAL_DELAY_ROUND_TRIPS = 4.0
GOAL_DURATION_S = 60.0
GOAL_NODES = 4


@dataclass
class PhaseResult:
    name: str
    offered_rate: float | None  # tx/s offered on a clock; None: as fast as it commits
    duration_s: float = 0.0  # how long load was offered
    window_s: float = 0.0  # between the two reads of node 0's counter that frame it
    elapsed_s: float = 0.0  # the offering and the wait for the answers still open
    committed: int = 0  # by node 0's counter, during the window
    bound: float = 0.0  # the Ed25519 bound of this run, tx/s
    sent: int = 0  # transactions in requests sent
    latencies_ms: list[float] = field(default_factory=list)  # accepted and committed
    waited_ms: list[float] = field(default_factory=list)  # accepted, not committed in time
    wait_s: float = 0.0  # how long each request asked the node to wait for the commit
    refused_429: int = 0  # refused because the node was past its admission bound
    refused_busy: int = 0  # refused 503 (the API's body budget)
    refused_other: Counter[str] = field(default_factory=Counter)  # by refusal code
    failed: int = 0  # sent, no usable answer (connection failed, bad body)
    failures: Counter[str] = field(default_factory=Counter)  # failed requests, by error
    held_back: int = 0  # due but not sent: no free connection, or all waiting Retry-After
    retry_after_waits: int = 0  # pauses a connection took for a Retry-After
    feed_ran_dry: bool = False
    view_changes: list[int] = field(default_factory=list)  # per node
    peak_rss_mib: list[float] = field(default_factory=list)  # per node
    rss_since_phase_start: bool = True  # False: VmHWM could not be reset, counts from start
    node_cpu_s: list[float] = field(default_factory=list)  # per node, during the window
    node_committed: list[int] = field(default_factory=list)  # per node, during the window
    # How late the driver started each request (a driver short of CPU offers less than
    # it claims), and the CPU it used: both say whether the figures are the nodes'.
    send_lag_ms: list[float] = field(default_factory=list)
    driver_cpu_s: float = 0.0

    @property
    def tx_per_s(self) -> float:
        return self.committed / self.window_s if self.window_s else 0.0

    @property
    def share_of_bound(self) -> float:
        return self.tx_per_s / self.bound if self.bound else math.nan

    @property
    def accepted(self) -> int:
        return len(self.latencies_ms) + len(self.waited_ms)

    @property
    def share_429(self) -> float:
        return self.refused_429 / self.sent if self.sent else 0.0

    def percentile(self, p: float) -> float:
        return pct(self.latencies_ms + self.waited_ms, p)

    @property
    def cpu_us_per_tx(self) -> list[float]:
        """Each node's CPU over what it committed in the same interval."""
        return [
            cpu / committed * 1e6 if committed else math.nan
            for cpu, committed in zip(self.node_cpu_s, self.node_committed, strict=True)
        ]

    def figures(self) -> dict[str, Any]:
        """Everything measured and derived, for the JSON file (latencies as percentiles)."""
        # Not ``asdict``: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        raw = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("latencies_ms", "waited_ms", "send_lag_ms")
        }
        raw["refused_other"] = dict(self.refused_other)
        raw["failures"] = dict(self.failures)
        return raw | {
            "tx_per_s": self.tx_per_s,
            "share_of_bound": self.share_of_bound,
            "accepted": self.accepted,
            "accepted_committed": len(self.latencies_ms),
            "accepted_not_committed": len(self.waited_ms),
            "share_429": self.share_429,
            "latency_ms": {f"p{p}": self.percentile(p) for p in (50, 95, 99)},
            "send_lag_ms": {f"p{p}": pct(self.send_lag_ms, p) for p in (50, 99)},
            "cpu_us_per_tx": self.cpu_us_per_tx,
        }


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def print_phase(r: PhaseResult, report: Report_) -> None:
    offered = "as fast as it commits" if r.offered_rate is None else f"{r.offered_rate:,.0f} tx/s"
    others = ", ".join(f"{code} {n:,}" for code, n in sorted(r.refused_other.items())) or "0"
    rows = [
        (
            "offered",
            f"{offered} for {r.duration_s:g} s (committed counted over {r.window_s:.1f} s; "
            f"the last answer after {r.elapsed_s:.1f} s)",
        ),
        (
            "committed",
            f"{r.tx_per_s:,.0f} tx/s ({r.committed:,} in the window) = "
            f"{r.share_of_bound:.0%} of the bound ({r.bound:,.0f} tx/s)",
        ),
        (
            "accepted: latency p50 / p95 / p99",
            f"{_ms(r.percentile(50))} / {_ms(r.percentile(95))} / {_ms(r.percentile(99))} ms "
            f"({r.accepted:,} accepted; {len(r.waited_ms):,} not committed within the "
            f"{r.wait_s:g} s wait, counted at their wait"
            + (", so a percentile at or above it is a lower bound)" if r.waited_ms else ")"),
        ),
        (
            "refused with 429",
            f"{r.share_429:.1%} ({r.refused_429:,} of {r.sent:,} sent; "
            f"{r.retry_after_waits:,} Retry-After pauses)",
        ),
        ("refused otherwise", f"503 busy {r.refused_busy:,}; by code: {others}"),
        (
            "not offered / no answer",
            f"held back by the driver {r.held_back:,}; failed requests' txs {r.failed:,}"
            + (
                " (" + ", ".join(f"{n:,} {kind}" for kind, n in r.failures.most_common()) + ")"
                if r.failures
                else ""
            )
            + ("; the pre-signed feed ran dry" if r.feed_ran_dry else ""),
        ),
        ("view changes", " / ".join(str(v) for v in r.view_changes) + " (per node)"),
        (
            "peak RSS per node",
            " / ".join(f"{m:.0f}" for m in r.peak_rss_mib)
            + " MiB"
            + ("" if r.rss_since_phase_start else " (since the node started)"),
        ),
        (
            "CPU per committed tx per node",
            " / ".join(_ms(u) for u in r.cpu_us_per_tx)
            + " us ("
            + " / ".join(f"{c:.1f}" for c in r.node_cpu_s)
            + " CPU-s)",
        ),
        (
            "driver",
            f"{r.driver_cpu_s:.1f} CPU-s; requests started late by p50 "
            f"{_ms(pct(r.send_lag_ms, 50))} ms, p99 {_ms(pct(r.send_lag_ms, 99))} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    report(f"  {r.name}:\n")
    for name, value in rows:
        report(f"    {name:<{width}}  {value}\n")


# ----------------------------------------------------------------------- goals


@dataclass(frozen=True)
class GoalLine:
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    note: str = ""

    def text(self) -> str:
        verdict = {True: "met", False: "not met", None: "not measured"}[self.met]
        note = f" [{self.note}]" if self.note else ""
        return f"  {self.goal}: {self.measured}: {verdict}{note}\n"


def goal_lines(
    results: Sequence[PhaseResult],
    *,
    nodes: int,
    duration_s: float,
    link_delay_ms: float,
    round_trip_ms: float | None,
) -> list[GoalLine]:
    by_name = {r.name: r for r in results}
    setting = []
    if nodes != GOAL_NODES:
        setting.append(f"{nodes} nodes, the goals' are {GOAL_NODES}")
    if duration_s != GOAL_DURATION_S:
        setting.append(f"{duration_s:g} s phases, the goals' are {GOAL_DURATION_S:g} s")
    if link_delay_ms:
        setting.append(f"{link_delay_ms:g} ms link delay")
    common = "; ".join(setting)
    out = []
    missing = "not measured"

    def note(*extra: str) -> str:
        return "; ".join(x for x in (*extra, common) if x)

    if link_delay_ms:
        # A delayed run answers the delay goal only; the others assume direct links.
        rate = by_name.get("rate")
        if rate is None or round_trip_ms is None:
            out.append(GoalLine("link delay: rate p50 <= 4 round trips", missing, None))
        else:
            trips = rate.percentile(50) / round_trip_ms
            extra = []
            if rate.offered_rate != GOAL_DELAY_RATE:
                extra.append(
                    f"offered {rate.offered_rate:,.0f} tx/s, the goal's {GOAL_DELAY_RATE:g}"
                )
            if link_delay_ms != GOAL_DELAY_MS:
                extra.append(f"the goal's delay is {GOAL_DELAY_MS:g} ms")
            out.append(
                GoalLine(
                    "link delay: rate p50 <= 4 round trips",
                    f"{_ms(rate.percentile(50))} ms = {trips:.1f} round trips of "
                    f"{round_trip_ms:.1f} ms",
                    trips <= GOAL_DELAY_ROUND_TRIPS,
                    note(*extra),
                )
            )
        return out

    m = by_name.get("max")
    if m is None:
        out.append(GoalLine("max: committed >= 40% of the bound", missing, None))
    else:
        out.append(
            GoalLine(
                "max: committed >= 40% of the bound (aim 60%)",
                f"{m.tx_per_s:,.0f} tx/s = {m.share_of_bound:.0%} of {m.bound:,.0f}",
                m.share_of_bound >= GOAL_MAX_SHARE,
                note(),
            )
        )
    r = by_name.get("rate")
    if r is None:
        out.append(GoalLine("rate: p50 <= 100 ms, p99 <= 500 ms", missing, None))
    else:
        p50, p99 = r.percentile(50), r.percentile(99)
        offered = r.offered_rate or 0.0
        out.append(
            GoalLine(
                "rate: p50 <= 100 ms, p99 <= 500 ms",
                f"{_ms(p50)} / {_ms(p99)} ms at {offered:,.0f} tx/s offered",
                p50 <= GOAL_RATE_P50_MS and p99 <= GOAL_RATE_P99_MS,
                note(
                    *([f"the goal's rate is {GOAL_RATE:,.0f} tx/s"] if offered != GOAL_RATE else [])
                ),
            )
        )
    o = by_name.get("overload")
    if o is None:
        out.append(
            GoalLine("overload: >= 90% of max, accepted p99 <= 1 s, 0 view changes", missing, None)
        )
    else:
        p99 = o.percentile(99)
        share = o.tx_per_s / m.tx_per_s if m is not None and m.tx_per_s else math.nan
        views = max(o.view_changes, default=0)
        out.append(
            GoalLine(
                "overload: >= 90% of max, accepted p99 <= 1 s, 0 view changes",
                f"{o.tx_per_s:,.0f} tx/s = {share:.0%} of max; p99 {_ms(p99)} ms; "
                f"{views} view changes; {o.share_429:.0%} refused with 429",
                share >= GOAL_OVERLOAD_SHARE_OF_MAX and p99 <= GOAL_OVERLOAD_P99_MS and views == 0,
                note(*([] if m is not None else ["no max phase in this run"])),
            )
        )
    if results:
        worst_rss = max(max(x.peak_rss_mib, default=math.nan) for x in results)
        out.append(
            GoalLine(
                "peak RSS per node, every phase <= 200 MB",
                f"worst {worst_rss:.0f} MiB = {worst_rss * 2**20 / 1e6:.0f} MB",
                worst_rss <= GOAL_RSS_MIB,
                note(),
            )
        )
        per_phase = [(x.name, max(x.cpu_us_per_tx, default=math.nan)) for x in results]
        worst = max(u for _, u in per_phase)
        out.append(
            GoalLine(
                "CPU per committed tx per node <= 150 us",
                "worst node: " + ", ".join(f"{name} {_ms(u)} us" for name, u in per_phase),
                worst <= GOAL_CPU_US,
                note(),
            )
        )
    return out


def print_goals(lines: Sequence[GoalLine], report: Report_) -> None:
    report("goals (issue 16):\n")
    for line in lines:
        report(line.text())


def write_json(
    path: Path, run: dict[str, Any], results: Sequence[PhaseResult], goals: Sequence[GoalLine]
) -> None:
    doc = run | {
        "phases": [r.figures() for r in results],
        "goals": [asdict(g) for g in goals],
    }
    # NaN is not JSON: a figure that could not be measured is null.
    path.write_text(json.dumps(_no_nan(doc), indent=2) + "\n")


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value

"""What a simulation run does: its cluster, its load and its faults."""

from __future__ import annotations

import random
from dataclasses import dataclass

from consensus.params import Params

# The kinds random schedules draw from. Frozen: a schedule number must keep meaning the
# same run (regression tests and ``--schedule`` replays name schedules by number).
SCHEDULE_KINDS = ("silent", "equivocate", "forge", "replay", "censor", "twins")
# What ``--fault`` offers: the Byzantine kinds, plus two named scenarios. ``censor-one``
# is a primary that leaves one client's requests out forever while it commits the
# others'; ``slow`` is an honest member whose processing is slow (each request it puts
# into a proposal costs ``FaultPlan.slow_ms_per_request`` of its time), so as primary it
# commits blocks steadily, about half as fast as clients offer requests, and a backlog
# builds: slow is not faulty, and it must not be replaced.
BYZANTINE_KINDS = (*SCHEDULE_KINDS, "censor-one", "slow")

SIM_PARAMS = Params(
    checkpoint_interval=5,
    window=10,
    max_batch_txs=20,
    batch_delay_ms=10,
    view_timeout_ms=400,
    max_view_timeout_ms=3200,
    heartbeat_ms=200,
)


@dataclass(frozen=True)
class Partition:
    """From ``start_ms`` to ``end_ms`` instances talk only inside their group."""

    start_ms: int
    end_ms: int
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Crash:
    """Instance ``instance`` stops at ``at_ms`` and restarts from durable state."""

    instance: int
    at_ms: int
    down_ms: int


@dataclass(frozen=True)
class Byzantine:
    member: int
    kind: str


@dataclass(frozen=True)
class FaultPlan:
    nodes: int = 4
    blocks: int = 50
    seed: int = 0
    params: Params = SIM_PARAMS
    request_interval_ms: int = 5
    request_bytes: int = 64
    min_delay_ms: int = 1
    max_delay_ms: int = 20
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    byzantine: tuple[Byzantine, ...] = ()
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    # Virtual-time limit; a run that has not committed ``blocks`` by then is not live.
    max_time_ms: int = 600_000
    # After the last fault ends, every honest replica must commit within this bound.
    recovery_bound_ms: int = 40_000
    twins_split: bool = True
    lower_quorum_by: int = 0  # test double for negative controls only
    trace_lines: int = 40
    # When set, clients offer exactly this many requests, and the run is done only once
    # every honest replica committed all of them (a backlog must drain, not just stay
    # live); ``blocks`` still has to be reached.
    requests: int = 0
    # Virtual time a ``slow`` member spends per request in each new proposal it makes
    # (checking and packing the batch); everything else waits meanwhile. The default, two
    # request intervals, lets it propose half of what clients offer.
    slow_ms_per_request: int = 0
    # Share of requests that reach the members other than the one a client submitted
    # to and the primary that member forwards it to. Below 1, as when members refuse
    # gossip they cannot hold under overload (issue 16's admission), a backup holds only
    # part of what the primary orders: its oldest request then waits out the primary's
    # whole backlog while the blocks before it commit requests it never held.
    gossip_share: float = 1.0
    # How often each member is the one a client submits to (by member; empty: all
    # alike). The slow-primary scenario has one bank's bulk upload enter at one member
    # and a trickle of other clients' requests at the rest.
    entry_weights: tuple[int, ...] = ()

    def slow_cost_ms(self) -> int:
        return self.slow_ms_per_request or 2 * self.request_interval_ms

    def faults_end_ms(self) -> int:
        ends = [p.end_ms for p in self.partitions] + [c.at_ms + c.down_ms for c in self.crashes]
        if any(b.kind == "twins" for b in self.byzantine) and self.twins_split:
            ends.append(TWINS_SPLIT_END_MS)
        return max(ends, default=0)


# The slow-primary scenario: one bank's bulk upload enters at the first member that is
# not slow, BULK_WEIGHT times as often as any other member is entered; members forward
# requests to the primary and gossip none beyond it (``FaultPlan.gossip_share``), so the
# other backups hold only a trickle of their own clients' requests, each of which waits
# out the primary's whole backlog after the one before it committed.
BULK_WEIGHT = 200

# Twins runs keep the two copies of each twinned member apart until this time.
TWINS_SPLIT_END_MS = 3_000


def random_plan(
    *,
    nodes: int,
    blocks: int,
    seed: int,
    byzantine: int = 0,
    kind: str = "silent",
    drop_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    reorder_rate: float = 0.0,
    partitions: int = 0,
    crashes: int = 0,
) -> FaultPlan:
    """A plan for the CLI: the fault counts and rates given, placed by the seed."""
    if kind not in BYZANTINE_KINDS:
        raise ValueError(
            f"unknown Byzantine kind {kind!r}; choose from {', '.join(BYZANTINE_KINDS)}"
        )
    if not 0 <= byzantine < nodes:
        raise ValueError("the Byzantine count must be below the number of nodes")
    rng = random.Random(f"plan/{seed}")
    members = list(range(nodes))
    # Member 0 is the first primary: make it Byzantine first, the hardest case.
    chosen = members[:byzantine]
    byz = tuple(Byzantine(m, kind) for m in chosen)
    # A slow primary is a backlog scenario: clients offer enough for ``blocks`` full
    # batches, faster than it commits, and the run ends when all of them committed.
    slow = kind == "slow" and byzantine > 0
    requests = blocks * SIM_PARAMS.max_batch_txs if slow else 0
    bulk_entry = tuple(BULK_WEIGHT if m == byzantine else 1 for m in members) if slow else ()
    parts: list[Partition] = []
    t = 1_000
    for _ in range(partitions):
        order = members[:]
        rng.shuffle(order)
        cut = rng.randint(1, nodes - 1)
        length = rng.randint(500, 4_000)
        parts.append(
            Partition(t, t + length, (tuple(sorted(order[:cut])), tuple(sorted(order[cut:]))))
        )
        t += length + rng.randint(500, 3_000)
    crash_list: list[Crash] = []
    honest = [m for m in members if m not in chosen]
    for _ in range(crashes):
        crash_list.append(
            Crash(rng.choice(honest), rng.randint(500, t + 2_000), rng.randint(200, 3_000))
        )
    return FaultPlan(
        nodes=nodes,
        blocks=blocks,
        seed=seed,
        drop_rate=drop_rate,
        duplicate_rate=duplicate_rate,
        reorder_rate=reorder_rate,
        byzantine=byz,
        partitions=tuple(parts),
        crashes=tuple(crash_list),
        requests=requests,
        gossip_share=0.0 if slow else 1.0,
        entry_weights=bulk_entry,
    )


def random_schedule(seed: int, sizes: tuple[int, ...] = (4, 4, 7, 7, 10)) -> FaultPlan:
    """Everything drawn from the seed: size, Byzantine members and kinds (up to f),
    partitions into two or three groups, crashes of honest members, and network rates.
    ``crosstrace simulate --explore`` runs these; ``--schedule S`` replays one."""
    rng = random.Random(f"schedule/{seed}")
    n = rng.choice(sizes)
    f = (n - 1) // 3
    members = list(range(n))
    rng.shuffle(members)
    byzantine = tuple(
        Byzantine(m, rng.choice(SCHEDULE_KINDS)) for m in sorted(members[: rng.randint(0, f)])
    )
    faulty = {b.member for b in byzantine}
    honest = [m for m in range(n) if m not in faulty]
    partitions = []
    t = rng.randint(0, 2_000)
    for _ in range(rng.randint(0, 3)):
        order = list(range(n))
        rng.shuffle(order)
        cuts = sorted(rng.sample(range(1, n), rng.randint(1, 2)))
        groups = [tuple(sorted(order[a:b])) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        length = rng.randint(100, 5_000)
        partitions.append(Partition(t, t + length, tuple(groups)))
        t += length + rng.randint(0, 3_000)
    crashes = tuple(
        Crash(rng.choice(honest), rng.randint(0, 8_000), rng.randint(50, 4_000))
        for _ in range(rng.randint(0, 3))
    )
    return FaultPlan(
        nodes=n,
        blocks=rng.randint(5, 30),
        seed=seed,
        drop_rate=rng.choice([0.0, 0.0, 0.01, 0.05, 0.1]),
        duplicate_rate=rng.choice([0.0, 0.02, 0.1]),
        reorder_rate=rng.choice([0.0, 0.05, 0.2]),
        byzantine=byzantine,
        partitions=tuple(partitions),
        crashes=crashes,
    )

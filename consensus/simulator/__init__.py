"""Deterministic cluster simulator: n replicas, a faulty virtual network, virtual time.

All randomness comes from one ``random.Random(seed)``; the same plan and seed replay
the same run, step for step.
"""

from consensus.simulator.plan import (
    Byzantine,
    Crash,
    FaultPlan,
    Partition,
    random_plan,
    random_schedule,
)
from consensus.simulator.runner import SimResult, Simulation, run_plan

__all__ = [
    "Byzantine",
    "Crash",
    "FaultPlan",
    "Partition",
    "SimResult",
    "Simulation",
    "random_plan",
    "random_schedule",
    "run_plan",
]

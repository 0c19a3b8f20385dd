"""``crosstrace simulate``: the consensus core in the deterministic cluster simulator,
with faults; one seed gives the same output byte for byte."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import click

from consensus.simulator import random_plan, random_schedule, run_plan
from consensus.simulator.plan import BYZANTINE_KINDS, SIM_PARAMS, FaultPlan
from consensus.simulator.report import summary
from node.commands.options import CONTEXT


def _rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be in [0, 1), got {value}")
    return value


@click.command(context_settings=CONTEXT)
@click.option("--nodes", "-n", default=4, show_default=True, help="Members in the consortium.")
@click.option("--byzantine", "-b", default=0, show_default=True, help="Byzantine members.")
@click.option(
    "--fault",
    type=click.Choice(BYZANTINE_KINDS),
    default="silent",
    show_default=True,
    help="What the Byzantine members do.",
)
@click.option("--drop", default=0.0, callback=_rate, help="Probability a message is lost.")
@click.option("--duplicate", default=0.0, callback=_rate, help="Probability of a duplicate.")
@click.option("--reorder", default=0.0, callback=_rate, help="Probability of a long extra delay.")
@click.option("--partitions", default=0, show_default=True, help="Partitions that later heal.")
@click.option("--crashes", default=0, show_default=True, help="Crash-and-restart events.")
@click.option("--blocks", default=100, show_default=True, help="Blocks each honest member commits.")
@click.option("--seed", default=0, show_default=True, help="All randomness comes from it.")
@click.option("--trace-lines", default=40, show_default=True, help="Trace kept for a violation.")
@click.option(
    "--explore",
    type=click.IntRange(min=1),
    help="Run this many random fault schedules, starting at --seed; report failures.",
)
@click.option(
    "--schedule",
    type=int,
    help="Replay one random schedule by its number (as --explore reports it).",
)
@click.option("--bench", is_flag=True, help="Benchmark n = 4, 7, 16, 31 instead (wall time).")
@click.option("--bench-blocks", default=50, show_default=True, help="Blocks per benchmark size.")
def simulate(
    nodes: int,
    byzantine: int,
    fault: str,
    drop: float,
    duplicate: float,
    reorder: float,
    partitions: int,
    crashes: int,
    blocks: int,
    seed: int,
    trace_lines: int,
    explore: int | None,
    schedule: int | None,
    bench: bool,
    bench_blocks: int,
) -> None:
    """Simulate a consortium in virtual time, faults included, and check the invariants.

    Exit status 0 only when every invariant held. The same seed prints the same output.

    \b
    Examples:
      crosstrace simulate --nodes 4 --blocks 200 --seed 7
      crosstrace simulate --nodes 7 --byzantine 2 --fault equivocate --drop 0.02
      crosstrace simulate --nodes 4 --byzantine 2 --fault twins     # f+1 twins: must fail
      crosstrace simulate --explore 200 --seed 5000   # random schedules, all faults mixed
      crosstrace simulate --schedule 5017             # replay one of them in full
      crosstrace simulate --bench
    """
    if bench:
        _bench(bench_blocks)
        return
    if explore is not None:
        _explore(seed, explore)
        return
    if schedule is not None:
        result = run_plan(replace(random_schedule(schedule), trace_lines=trace_lines))
        click.echo(summary(result))
        sys.exit(0 if result.safe else 1)
    if not 4 <= nodes <= 128:
        raise click.BadParameter("a consortium has 4 to 128 members", param_hint="--nodes")
    if blocks < 1:
        raise click.BadParameter("must be at least 1", param_hint="--blocks")
    try:
        plan = random_plan(
            nodes=nodes,
            blocks=blocks,
            seed=seed,
            byzantine=byzantine,
            kind=fault,
            drop_rate=drop,
            duplicate_rate=duplicate,
            reorder_rate=reorder,
            partitions=partitions,
            crashes=crashes,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    result = run_plan(replace(plan, trace_lines=trace_lines))
    click.echo(summary(result))
    sys.exit(0 if result.safe else 1)


def _explore(first: int, count: int) -> None:
    """Random schedules with a progress line; every failure gets its replay command."""
    failures: list[int] = []
    started = time.monotonic()
    for number in range(first, first + count):
        plan = replace(random_schedule(number), trace_lines=0)
        result = run_plan(plan)
        if not result.safe:
            failures.append(number)
            v = result.violation
            assert v is not None
            click.echo(
                f"schedule {number}: VIOLATION of {v.invariant}: {v.detail}\n"
                f"  replay: crosstrace simulate --schedule {number}"
            )
        done = number - first + 1
        if done % 10 == 0 or done == count:
            click.echo(
                f"  {done}/{count} schedules, {len(failures)} failing, "
                f"{time.monotonic() - started:.0f} s",
                err=True,
            )
    click.echo(f"explored {count} schedules from {first}: {len(failures)} violated an invariant")
    sys.exit(1 if failures else 0)


def _bench(blocks: int) -> None:
    click.echo(
        f"simulator benchmark: {blocks} blocks per size, batches of up to "
        f"{SIM_PARAMS.max_batch_txs} requests, real Ed25519 signatures, one core"
    )
    click.echo(
        f"{'nodes':>5} {'wall s':>8} {'blocks/s':>9} {'msgs':>9} {'msgs/s':>9} "
        f"{'verifies':>9} {'verif/msg':>9}"
    )
    for n in (4, 7, 16, 31):
        plan = FaultPlan(nodes=n, blocks=blocks, seed=1, trace_lines=0)
        started = time.perf_counter()
        result = run_plan(plan)
        wall = time.perf_counter() - started
        msgs = sum(result.messages.values())
        click.echo(
            f"{n:>5} {wall:>8.2f} {blocks / wall:>9.1f} {msgs:>9} {msgs / wall:>9.0f} "
            f"{result.verifications:>9} {result.verifications / max(msgs, 1):>9.2f}"
        )
        if not result.safe:
            raise click.ClickException(f"n={n}: invariant violated: {result.violation}")

"""``crosstrace bench``: the consortium benchmark (see ``node.ops.bench``)."""

from __future__ import annotations

from pathlib import Path

import click

from node.commands.options import CONTEXT
from node.ops.bench import BenchConfig, BenchError, run_bench
from node.ops.processes import ClusterError


@click.command(context_settings=CONTEXT)
@click.option("--nodes", "-n", default=4, show_default=True, help="Members (4 to 16).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds per phase.")
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(["max", "rate"]),
    help="max: as fast as it commits; rate: at --rate. Default: both, in that order.",
)
@click.option("--rate", default=1000.0, show_default=True, help="Offered tx/s in the rate phase.")
@click.option("--batch", default=100, show_default=True, help="Transactions per request (max).")
@click.option(
    "--concurrency", default=4, show_default=True, help="Requests in flight per member (max)."
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the consortium here (must not exist) instead of a temporary directory.",
)
@click.option("--profile", is_flag=True, help="Profile node 0 and print where its time goes.")
def bench(
    nodes: int,
    duration: float,
    phases: tuple[str, ...],
    rate: float,
    batch: int,
    concurrency: int,
    directory: Path | None,
    profile: bool,
) -> None:
    """Benchmark a local consortium of real node processes driven through their APIs.

    Prints committed tx/s, commit latency p50/p95/p99, view changes, each node's peak
    memory and CPU time, and the throughput as a share of this machine's Ed25519
    verification bound.

    \b
    Examples:
      crosstrace bench                                  # 4 members, 60 s max + 60 s at 1000 tx/s
      crosstrace bench --phase rate --rate 500 --duration 20
    """
    if not 4 <= nodes <= 16:
        raise click.BadParameter("must be between 4 and 16", param_hint="--nodes")
    if not 1 <= duration <= 3600:
        raise click.BadParameter("must be between 1 and 3600 seconds", param_hint="--duration")
    if not 1 <= rate <= 100_000:
        raise click.BadParameter("must be between 1 and 100000", param_hint="--rate")
    if not 1 <= batch <= 1000:
        raise click.BadParameter("must be between 1 and 1000", param_hint="--batch")
    if not 1 <= concurrency <= 64:
        raise click.BadParameter("must be between 1 and 64", param_hint="--concurrency")
    if directory is not None and directory.exists():
        raise click.BadParameter(f"{directory} exists; give a new directory", param_hint="--dir")
    cfg = BenchConfig(
        nodes=nodes,
        duration_s=duration,
        phases=phases or ("max", "rate"),
        rate=rate,
        batch=batch,
        concurrency=concurrency,
        directory=directory,
        profile=profile,
    )
    try:
        run_bench(cfg, lambda text: click.echo(text, nl=False))
    except (BenchError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from None

"""``crosstrace bench``: the consortium benchmark (see ``node.ops.bench``)."""

from __future__ import annotations

from pathlib import Path

import click

from node.commands.options import CONTEXT
from node.ops.bench import PHASES, BenchConfig, run_bench
from node.ops.bench_drive import BenchError
from node.ops.processes import ClusterError


@click.command(context_settings=CONTEXT)
@click.option("--nodes", "-n", default=4, show_default=True, help="Members (4 to 16).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds per phase.")
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(list(PHASES)),
    help="max: as fast as it commits; rate: at --rate; overload: at --overload-rate, "
    "by default twice what max committed. Repeat to choose several; they run in that "
    "order. Default: all three.",
)
@click.option("--rate", default=1000.0, show_default=True, help="Offered tx/s in the rate phase.")
@click.option(
    "--overload-rate",
    type=float,
    help="Offered tx/s in the overload phase. Default: twice what max committed.",
)
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
@click.option(
    "--link-delay",
    "link_delay_ms",
    default=0.0,
    show_default=True,
    help="Milliseconds each way on every link between members (a delaying proxy).",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every figure to this JSON file.",
)
@click.option(
    "--json-body",
    is_flag=True,
    help="Post hex in JSON instead of the binary batch body (to compare the two).",
)
@click.option("--profile", is_flag=True, help="Profile node 0 and print where its time goes.")
def bench(
    nodes: int,
    duration: float,
    phases: tuple[str, ...],
    rate: float,
    overload_rate: float | None,
    batch: int,
    concurrency: int,
    link_delay_ms: float,
    directory: Path | None,
    json_file: Path | None,
    json_body: bool,
    profile: bool,
) -> None:
    """Benchmark a local consortium of real node processes driven through their APIs.

    Per phase: committed tx/s and its share of this machine's Ed25519 verification
    bound (measured in the run), latency of accepted transactions p50/p95/p99, the share
    refused with 429, view changes, each node's peak memory and CPU per committed
    transaction, the driver's own CPU and lateness; then each goal of issue 16, met or
    not. Refused transactions are not sent again; the connection that was refused waits
    its Retry-After.

    \b
    Examples:
      crosstrace bench                      # 4 members; max, rate 1000 tx/s, overload; 60 s each
      crosstrace bench --phase rate --rate 500 --duration 20
      crosstrace bench --link-delay 25 --phase rate --rate 500 --json bench.json
    """
    if not 4 <= nodes <= 16:
        raise click.BadParameter("must be between 4 and 16", param_hint="--nodes")
    if not 1 <= duration <= 3600:
        raise click.BadParameter("must be between 1 and 3600 seconds", param_hint="--duration")
    if not 1 <= rate <= 100_000:
        raise click.BadParameter("must be between 1 and 100000", param_hint="--rate")
    if overload_rate is not None and not 1 <= overload_rate <= 100_000:
        raise click.BadParameter("must be between 1 and 100000", param_hint="--overload-rate")
    if "overload" in phases and "max" not in phases and overload_rate is None:
        raise click.BadParameter("overload without max needs --overload-rate", param_hint="--phase")
    if not 0 <= link_delay_ms <= 10_000:
        raise click.BadParameter("must be between 0 and 10000 ms", param_hint="--link-delay")
    if not 1 <= batch <= 1000:
        raise click.BadParameter("must be between 1 and 1000", param_hint="--batch")
    if not 1 <= concurrency <= 64:
        raise click.BadParameter("must be between 1 and 64", param_hint="--concurrency")
    if directory is not None and directory.exists():
        raise click.BadParameter(f"{directory} exists; give a new directory", param_hint="--dir")
    cfg = BenchConfig(
        nodes=nodes,
        duration_s=duration,
        phases=phases or PHASES,
        rate=rate,
        overload_rate=overload_rate,
        batch=batch,
        concurrency=concurrency,
        link_delay_ms=link_delay_ms,
        directory=directory,
        json_file=json_file,
        binary_body=not json_body,
        profile=profile,
    )
    try:
        run_bench(cfg, lambda text: click.echo(text, nl=False))
    except (BenchError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from None

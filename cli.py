"""The ``crosstrace`` command: parse arguments, call into node/ or consensus/, print."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import trio

from consensus.simulator import random_plan, random_schedule, run_plan
from consensus.simulator.plan import BYZANTINE_KINDS, SIM_PARAMS, FaultPlan
from consensus.simulator.report import summary

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="crosstrace")
def main() -> None:
    """crosstrace: a permissioned PBFT ledger for cross-institution crime tracing."""


def _rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be in [0, 1), got {value}")
    return value


@main.command(context_settings=CONTEXT)
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


@main.command("verify-ledger", context_settings=CONTEXT)
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--genesis",
    "genesis_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The consortium's genesis file: the member keys certificates are checked against.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the verdict.")
def verify_ledger_command(data_dir: Path, genesis_path: Path, quiet: bool) -> None:
    """Re-check every hash link, Merkle root, commit certificate and index of a ledger.

    Reports the first fault with its height. Exit status 0 when the ledger is sound,
    1 when a fault was found.

    \b
    Example:
      crosstrace verify-ledger node0/data --genesis node0/genesis.json
    """
    from node.ledger.verify import VerifyProgress, verify_ledger
    from node.setup.genesis import GenesisError, load_genesis

    if not data_dir.is_dir():
        raise click.ClickException(f"{data_dir}: no such ledger directory")
    try:
        genesis = load_genesis(genesis_path)
    except (GenesisError, OSError) as exc:
        raise click.ClickException(f"{genesis_path}: {exc}") from None
    last_shown = [0.0]

    def progress(p: VerifyProgress) -> None:
        now = time.monotonic()
        if quiet or (now - last_shown[0] < 0.5 and p.done != p.total):
            return
        last_shown[0] = now
        click.echo(f"  {p.phase}: {p.done}/{p.total}", err=True)

    report = verify_ledger(data_dir, genesis.membership(), progress=progress)
    if report.chain_id is not None and report.chain_id != genesis.chain_id:
        click.echo(
            f"FAULT: ledger is for chain {report.chain_id!r}, genesis is {genesis.chain_id!r}"
        )
        sys.exit(1)
    if report.ok:
        click.echo(
            f"ledger OK: chain {report.chain_id}, {report.blocks_checked} blocks, "
            f"{report.txs_checked} transactions, tip {report.tip_height}"
        )
        return
    click.echo(f"FAULT at {report.fault}")
    sys.exit(1)


def _read_passphrase(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text().rstrip("\n")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read the passphrase: {exc.strerror}") from None
    if not text:
        raise click.ClickException(f"{path}: the passphrase file is empty")
    return text


@main.command(context_settings=CONTEXT)
@click.argument("home", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="This member's name, as the genesis will list it.")
@click.option(
    "--institution",
    required=True,
    type=click.Choice(["police", "bank", "telecom", "utility", "other"]),
    help="What kind of institution runs this node.",
)
@click.option(
    "--roles",
    default="reporter,approver",
    show_default=True,
    help="Comma-separated: reporter, investigator, approver, auditor.",
)
@click.option("--address", required=True, help="host:port where the other members reach us.")
@click.option("--api-listen", default="127.0.0.1:8000", show_default=True, help="Local API.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Encrypt the node key under the passphrase in this file.",
)
def init(
    home: Path,
    name: str,
    institution: str,
    roles: str,
    address: str,
    api_listen: str,
    passphrase_file: Path | None,
) -> None:
    """Create one member's node key, config and public descriptor in HOME.

    Send HOME/member.json to whoever assembles the genesis; keep the key to yourself.

    \b
    Example:
      crosstrace init ./bank-a --name bank-a --institution bank --address 10.0.0.5:26656
    """
    from node.setup.config import ConfigError
    from node.setup.genesis import GenesisError
    from node.setup.keys import KeyFileError
    from node.setup.provision import ProvisionError, init_member

    try:
        created = init_member(
            home,
            name=name,
            institution=institution,
            roles=[r.strip() for r in roles.split(",") if r.strip()],
            address=address,
            api_listen=api_listen,
            passphrase=_read_passphrase(passphrase_file),
        )
    except (ProvisionError, GenesisError, ConfigError, KeyFileError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"member {name} created in {home}")
    click.echo(f"  public key: {created.descriptor.public_key.hex()}")
    click.echo(f"  descriptor: {home / 'member.json'} (send it to the genesis assembler)")
    click.echo(f"  config:     {created.config_file}")


@main.command(context_settings=CONTEXT)
@click.argument(
    "descriptors", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--chain-id", required=True, help="The consortium's chain id, e.g. sh-fraud-1.")
@click.option("--approvals", default=3, show_default=True, help="Approvals a case needs (k).")
@click.option(
    "--out",
    "out",
    default="genesis.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
def genesis(descriptors: tuple[Path, ...], chain_id: str, approvals: int, out: Path) -> None:
    """Assemble the consortium's genesis from the members' descriptors.

    The order of DESCRIPTORS is the order of members: member i is the primary of view i.

    \b
    Example:
      crosstrace genesis police/member.json bank-a/member.json telco-b/member.json \\
          utility-c/member.json --chain-id sh-fraud-1 --approvals 3
    """
    from node.setup.genesis import GenesisError, assemble_genesis, load_descriptor, save_genesis

    members = []
    for path in descriptors:
        try:
            members.append(load_descriptor(path))
        except (GenesisError, OSError) as exc:
            raise click.ClickException(f"{path}: {exc}") from None
    try:
        assembled = assemble_genesis(chain_id, members, case_approvals=approvals)
    except (GenesisError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if out.exists():
        raise click.ClickException(f"{out} already exists; refusing to overwrite a genesis")
    save_genesis(out, assembled)
    click.echo(f"genesis for chain {chain_id} with {len(members)} members written to {out}")
    click.echo(f"  genesis hash: {assembled.hash().hex()}")


@main.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--nodes", "-n", default=4, show_default=True, help="Members (4 to 64).")
@click.option("--chain-id", default="local", show_default=True)
@click.option("--p2p-port", default=26600, show_default=True, help="First member's p2p port.")
@click.option("--api-port", default=8600, show_default=True, help="First member's API port.")
def testnet(directory: Path, nodes: int, chain_id: str, p2p_port: int, api_port: int) -> None:
    """Create a whole local consortium on 127.0.0.1 in DIRECTORY, one home per member.

    \b
    Example:
      crosstrace testnet --nodes 4 ./consortium
    """
    from node.setup.provision import ProvisionError, make_testnet

    try:
        created, homes = make_testnet(
            directory, nodes, chain_id=chain_id, p2p_base_port=p2p_port, api_base_port=api_port
        )
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"local consortium {chain_id!r} with {nodes} members in {directory}")
    click.echo(f"  genesis hash: {created.hash().hex()}")
    for home in homes:
        click.echo(f"  {home.descriptor.name:<12} {home.path}  p2p {home.descriptor.address}")


@main.command(context_settings=CONTEXT)
@click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The member's home directory (made by init or testnet).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The passphrase of an encrypted node key.",
)
def start(home: Path, passphrase_file: Path | None) -> None:
    """Run this member's node until SIGTERM or SIGINT; logs go to stderr.

    \b
    Example:
      crosstrace start --home ./consortium/node0
    """
    from node.daemon import StartupError, configure_logging, load_node_files, serve

    try:
        files = load_node_files(home / "config.toml", _read_passphrase(passphrase_file))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(files.config.log.level, files.config.log.format)
    try:
        trio.run(serve, files)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


def _register_operator_commands() -> None:
    # Defined beside the code they drive, one module per concern, to keep this file short.
    from node.commands.bench import bench
    from node.commands.cases import audit, case
    from node.commands.cluster import cluster, demo
    from node.commands.details import details
    from node.commands.operator import peers, status, submit
    from node.commands.proof import proof, verify_proof
    from node.commands.psi import psi, psi_answer_set, psi_runs
    from node.commands.tracing import graph, history, trace

    for command in (status, peers, submit, details, cluster, demo, bench, proof, verify_proof):
        main.add_command(command)
    for command in (case, trace, graph, history, audit):
        main.add_command(command)
    for command in (psi, psi_answer_set, psi_runs):
        main.add_command(command)


_register_operator_commands()

if __name__ == "__main__":
    main()

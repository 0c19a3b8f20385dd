"""``crosstrace cluster up|down|status DIR`` and ``crosstrace demo``: a local
consortium's nodes as background processes, and the README's main command."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from node.client.http import ApiClient, ApiClientError, api_url_of_home
from node.client.pseudonyms import author_for_home
from node.commands.options import CONTEXT
from node.ledger.authoring import AuthoringError
from node.ops import processes
from node.ops.demo import CASE_ID, INVESTIGATOR, USERS_FILE, DemoError, console_sign_in, investigate
from node.ops.processes import ClusterError

# Police, two banks, two telecom operators and a utility: the fraud-ring story needs all six.
DEMO_MEMBERS = 6
directory_argument = click.argument("directory", type=click.Path(file_okay=False, path_type=Path))


@click.group(context_settings=CONTEXT)
def cluster() -> None:
    """Run a local consortium's nodes (made by testnet) as background processes.

    Each member home gets node.pid and node.log.

    \b
    Example:
      crosstrace testnet --nodes 4 ./consortium
      crosstrace cluster up ./consortium
      crosstrace cluster status ./consortium
      crosstrace cluster down ./consortium
    """


@cluster.command(context_settings=CONTEXT)
@directory_argument
@click.option(
    "--timeout", default=processes.START_TIMEOUT_S, show_default=True, help="Seconds per start."
)
def up(directory: Path, timeout: float) -> None:
    """Start every node of DIRECTORY that is not running; wait until each API answers.

    \b
    Example:
      crosstrace cluster up ./consortium
    """
    try:
        processes.up(directory, timeout_s=timeout, report=click.echo)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None


@cluster.command(context_settings=CONTEXT)
@directory_argument
@click.option(
    "--timeout",
    default=processes.STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def down(directory: Path, timeout: float) -> None:
    """Stop every node of DIRECTORY with SIGTERM (a clean stop; SIGKILL only after --timeout).

    \b
    Example:
      crosstrace cluster down ./consortium
    """
    try:
        processes.down(directory, timeout_s=timeout, report=click.echo)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None


@cluster.command("status", context_settings=CONTEXT)
@directory_argument
def cluster_status(directory: Path) -> None:
    """One line per node of DIRECTORY: pid, height, view, connected peers, API address.

    Exits 1 when a node is not running or does not answer.

    \b
    Example:
      crosstrace cluster status ./consortium
    """
    try:
        rows = processes.states(directory)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None
    for line in processes.state_lines(rows):
        click.echo(line)
    if any(row.status is None for row in rows):
        raise SystemExit(1)


@click.command(context_settings=CONTEXT)
@click.argument("directory", default="consortium", type=click.Path(file_okay=False, path_type=Path))
@click.option("--txs", default=20, show_default=True, help="Transactions to submit (1 to 1000).")
@click.option("--p2p-port", default=26600, show_default=True, help="First member's p2p port.")
@click.option("--api-port", default=8600, show_default=True, help="First member's API port.")
def demo(directory: Path, txs: int, p2p_port: int, api_port: int) -> None:
    """Start a local consortium in DIRECTORY (creating it on first use: police, two banks,
    two telecom operators and a utility, one node each), submit a stream of transactions
    and show them committed on every node; then the partners report a telecom-fraud ring,
    the police open a case that three partners approve, and a trace and a link graph
    under the case uncover the ring (the graph is written as DOT, and as SVG when
    Graphviz is installed).

    \b
    Example:
      crosstrace demo ./consortium
    """
    from node.setup.provision import ProvisionError, make_testnet

    if not 1 <= txs <= 1000:
        raise click.BadParameter("must be between 1 and 1000", param_hint="--txs")
    try:
        if not (directory / "node0" / "config.toml").is_file():
            make_testnet(directory, DEMO_MEMBERS, p2p_base_port=p2p_port, api_base_port=api_port)
            click.echo(f"created a local consortium of {DEMO_MEMBERS} members in {directory}")
        nodes = processes.up(directory, report=click.echo)
        # Only now: pseudonyms are evaluated by the running members together.
        author = author_for_home(nodes[1].home)
        urls = [api_url_of_home(node.home) for node in nodes]
        click.echo(f"\nsubmitting {txs} signed reports as {author.member} through {urls[1]} ...")
        first = int(time.time()) % 100_000 * 1000  # fresh made-up numbers on every run
        batch = list(author.sample_reports(txs, first))
    except (ProvisionError, ClusterError, AuthoringError, ApiClientError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        started = time.monotonic()
        with ApiClient(urls[1], timeout_s=10.0) as client:
            code, answer = client.submit(batch, wait=True, timeout_s=30.0)
        elapsed = time.monotonic() - started
        rows = answer["results"]
        if code != 200:
            bad = next(r for r in rows if not r.get("committed"))
            raise click.ClickException(
                f"not every transaction committed: {bad['tx_id'][:16]} {bad.get('code')} "
                f"{bad.get('message') or 'still pending'}; see crosstrace cluster status "
                f"{directory}"
            )
        heights = sorted({r["height"] for r in rows})
        click.echo(
            f"{len(rows)} committed in {elapsed * 1000:.0f} ms, in block(s) "
            f"{heights[0]}..{heights[-1]}"
        )
        _show_on_every_node(urls, [r["tx_id"] for r in rows], heights[-1])
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        investigate(directory, [node.home for node in nodes], click.echo)
    except (DemoError, AuthoringError) as exc:
        raise click.ClickException(str(exc)) from None
    exe = _command_name()
    click.echo(
        f"""
Look around:
  {exe} cluster status {directory}
  {exe} status --home {directory}/node0
  {exe} submit --home {directory}/node2 report phone:+8613800138000 --category fraud_call
  {exe} trace --home {directory}/node0 --case {CASE_ID} phone:+8617023114587
  {exe} audit --home {directory}/node0 --case {CASE_ID}
  curl -s {urls[0]}/metrics
  tail -f {directory}/node0/node.log
Stop it (a clean stop; the ledgers stay for next time):
  {exe} cluster down {directory}"""
    )
    console = console_sign_in(directory, [node.home for node in nodes])
    if console is not None:
        url, token = console
        click.echo(
            f"""
The investigator's console (in a browser on this host; sign in with the token of
{INVESTIGATOR}, police's investigator; it is also in {directory}/{USERS_FILE}):
  {url}
  token: {token}"""
        )


def _command_name() -> str:
    """How the operator can type this command again: ``.venv/bin/crosstrace`` after
    ``make demo``, plain ``crosstrace`` when it is on the PATH."""
    invoked = Path(sys.argv[0])
    if invoked.name != "crosstrace" or shutil.which("crosstrace") == str(invoked):
        return "crosstrace"
    try:
        return str(invoked.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(invoked)


def _show_on_every_node(urls: list[str], tx_ids: list[str], height: int) -> None:
    """Each node's view of the last transaction and of the block that holds it: the same
    height and the same block hash everywhere, or the demo says so."""
    deadline = time.monotonic() + 10.0
    hashes = set()
    click.echo(f"\n{'node API':<24} {'height':>6}  last tx at  block {height} hash")
    for url in urls:
        with ApiClient(url, timeout_s=5.0) as client:
            while True:
                try:
                    tx = client.tx(tx_ids[-1])
                    if tx["status"] == "committed" and client.status()["height"] >= height:
                        break
                except ApiClientError:
                    pass
                if time.monotonic() > deadline:
                    raise click.ClickException(f"{url} has not stored block {height} after 10 s")
                time.sleep(0.05)
            block = client.block(height)
            node_height = client.status()["height"]
        hashes.add(block["hash"])
        click.echo(f"{url:<24} {node_height:>6}  {tx['height']:>10}  {block['hash'][:32]}")
    if len(hashes) != 1:
        raise click.ClickException(f"the nodes disagree on block {height}: {sorted(hashes)}")
    click.echo(f"all {len(urls)} nodes hold the same block {height} with the transactions")

"""``crosstrace verify-ledger``: re-check a ledger directory offline against the genesis."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from node.commands.options import CONTEXT


@click.command("verify-ledger", context_settings=CONTEXT)
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

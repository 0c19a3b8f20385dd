"""``crosstrace start``: run this member's node in the foreground."""

from __future__ import annotations

from pathlib import Path

import click
import trio

from node.commands.options import CONTEXT, read_passphrase


@click.command(context_settings=CONTEXT)
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
        files = load_node_files(home / "config.toml", read_passphrase(passphrase_file))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(files.config.log.level, files.config.log.format)
    try:
        trio.run(serve, files)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None

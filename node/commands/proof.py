"""``crosstrace proof`` (fetch a transaction's inclusion proof from a node into a file)
and ``crosstrace verify-proof`` (check one offline, with the genesis file alone)."""

from __future__ import annotations

import binascii
from pathlib import Path

import click

from consensus.crypto import DIGEST_SIZE
from node.commands.options import CONTEXT, call, home_option, resolve_url, url_option
from node.ledger.proofs import (
    MAGIC,
    MAX_FILE_BYTES,
    ProofError,
    ProofVerifier,
    decode_proof,
    proof_file_name,
    summary_lines,
)
from node.setup.genesis import GenesisError, load_genesis
from node.setup.keys import atomic_write


def _tx_id(text: str) -> bytes:
    if len(text) != 2 * DIGEST_SIZE:
        raise click.BadParameter(f"a transaction id is {2 * DIGEST_SIZE} hex digits")
    try:
        return binascii.unhexlify(text)
    except binascii.Error:
        raise click.BadParameter("a transaction id is hex digits only") from None


@click.command(context_settings=CONTEXT)
@click.argument("tx_id")
@home_option
@url_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the proof [default: proof-<first 16 hex digits of TX_ID>.ctp].",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def proof(tx_id: str, home: Path | None, url: str | None, out: Path | None, force: bool) -> None:
    """Fetch the inclusion proof of committed transaction TX_ID from a node into a file.

    The file holds the transaction, its Merkle path, the block header and the commit
    certificate: anyone with the genesis file can check it offline with verify-proof.

    \b
    Example:
      crosstrace proof --home ./consortium/node0 \\
          3f1c0a2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8
      crosstrace verify-proof proof-3f1c0a2b4d5e6f70.ctp --genesis ./consortium/node0/genesis.json
    """
    wanted = _tx_id(tx_id)
    base_url = resolve_url(home, url)
    path = out if out is not None else Path(proof_file_name(wanted))
    if path.exists() and not force:
        raise click.ClickException(f"{path} already exists; give --force to overwrite it")
    data: bytes = call(base_url, lambda client: client.proof(wanted.hex()))
    try:
        fetched = decode_proof(data)
    except ProofError as exc:
        raise click.ClickException(f"{base_url} answered with no valid proof file: {exc}") from None
    if fetched.tx_id != wanted:
        raise click.ClickException(f"{base_url} answered with the proof of another transaction")
    try:
        atomic_write(path, data, 0o644)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror}") from None
    click.echo(
        f"proof of {wanted.hex()[:16]} (block {fetched.header.height}, index {fetched.index}) "
        f"written to {path}"
    )


def read_proof_file(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES and data.startswith(MAGIC):
        raise click.ClickException(
            f"{path}: proof rejected: larger than any proof file ({MAX_FILE_BYTES} bytes)"
        )
    return data


@click.command("verify-proof", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--genesis",
    "genesis_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The consortium's genesis file: its members' keys are all the proof is checked with.",
)
def verify_proof(file: Path, genesis_path: Path) -> None:
    """Check an inclusion proof FILE offline: the transaction is final on the chain.

    Exit status 0 with a summary when the proof holds; 1 with one line saying why when
    it does not.

    \b
    Example:
      crosstrace verify-proof proof-3f1c0a2b4d5e6f70.ctp --genesis ./genesis.json
    """
    data = read_proof_file(file)
    try:
        genesis = load_genesis(genesis_path)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        summary = ProofVerifier(genesis).verify_file(data)
    except ProofError as exc:
        raise click.ClickException(f"{file}: proof rejected: {exc}") from None
    for line in summary_lines(summary):
        click.echo(line)

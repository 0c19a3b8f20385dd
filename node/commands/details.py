"""Private details on the command line: ``--detail`` and ``--share-with`` of
``crosstrace submit report|link``, and ``crosstrace details TX`` to read them back.

The details are encoded, salted and committed to here, in the submitting member's
process; the transaction is signed with the commitment and posted to the member's own
node together with the salt and the details (``POST /details``), which keeps them in
its private store and sends them only to the members named. The recipient names are
checked against the genesis before anything is signed, so a misspelt name is one clear
line and not a report shared with nobody.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from node.client.http import ApiClient, ApiClientError
from node.commands.options import CONTEXT, call, home_option, json_option, resolve_url, url_option
from node.details.records import (
    Details,
    UnknownMembers,
    commitment,
    encode_details,
    new_salt,
    resolve_recipients,
)
from node.ledger.authoring import Author


@dataclass(frozen=True)
class Sharing:
    details: Details
    salt: bytes
    commitment: bytes
    share_with: tuple[str, ...] | None  # None: the node's default recipients


def prepare(author: Author, detail_args: Sequence[str], share_with: str | None) -> Sharing | None:
    """The details of ``--detail K=V ...`` with a fresh salt and their commitment, or
    None when there are none; every mistake is one line naming the option."""
    if not detail_args:
        if share_with is not None:
            raise click.ClickException("--share-with: needs at least one --detail")
        return None
    pairs = []
    for arg in detail_args:
        key, sep, value = arg.partition("=")
        if not sep:
            # Not quoted back: the value may be exactly what must stay private.
            raise click.ClickException("--detail: expected KEY=VALUE")
        pairs.append((key.strip(), value))
    try:
        details = Details.of(pairs)
        encoded = encode_details(details)
    except ValueError as exc:
        raise click.ClickException(f"--detail: {exc}") from None
    names: tuple[str, ...] | None = None
    if share_with is not None:
        names = tuple(n.strip() for n in share_with.split(",") if n.strip())
        try:
            resolve_recipients(author.genesis, author.member, names)
        except UnknownMembers as exc:
            raise click.ClickException(f"--share-with: {exc}") from None
    salt = new_salt()
    return Sharing(details, salt, commitment(salt, encoded), names)


def send(settings: tuple[Any, str, bool, float, float], tx: bytes, sharing: Sharing) -> None:
    """Post ``tx`` with its details to the member's node and print the outcome."""
    _, url, wait, timeout, _busy_wait = settings  # POST /details is not bounded
    status, answer = call(
        url,
        lambda client: client.submit_details(
            tx,
            sharing.salt,
            sharing.details.as_dict(),
            sharing.share_with,
            wait=wait,
            timeout_s=timeout,
        ),
        timeout_s=10.0,
    )
    if "results" not in answer:  # refused before the transaction was looked at
        raise click.ClickException(f"{answer.get('error')}: {answer.get('message')}")
    [row] = answer["results"]
    if not row["accepted"]:
        click.echo(f"{row['tx_id']}  refused: {row['code']}: {row['message']}")
        sys.exit(1)
    if row.get("committed"):
        click.echo(f"{row['tx_id']}  committed at height {row['height']}")
    elif wait:
        click.echo(f"{row['tx_id']}  accepted, not committed within {timeout:g} s")
    else:
        click.echo(f"{row['tx_id']}  accepted")
    click.echo(f"  details kept off the ledger, shared with {', '.join(row['shared_with'])}")
    if wait and status != 200:
        sys.exit(2)


@click.command(context_settings=CONTEXT)
@click.argument("tx_id")
@home_option
@url_option
@json_option
def details(tx_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Show the private details a node holds for transaction TX_ID, and whether they
    match the commitment on its ledger.

    \b
    Example:
      crosstrace details --home ./consortium/node0 3f2a...e1
    """
    try:
        with ApiClient(resolve_url(home, url)) as client:
            answer = client.details(tx_id)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    height = answer["height"]
    where = f"height {height}" if height is not None else "not committed here yet"
    stored = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(answer["stored_ms"] / 1000))
    verdict = {
        True: "yes: salt and details give the commitment on the ledger",
        False: "NO: they do not give the commitment on the ledger",
        None: "not yet known: the transaction is not committed here",
    }[answer["matches_commitment"]]
    click.echo(f"tx       {answer['tx_id']} ({where})")
    click.echo(f"from     {answer['sender']}")
    click.echo(f"stored   {stored}")
    click.echo(f"matches  {verdict}")
    if answer["shared_with"]:
        click.echo(f"shared   {', '.join(answer['shared_with'])}")
    if answer["undelivered"]:
        click.echo(f"waiting  {', '.join(answer['undelivered'])} (not yet acknowledged)")
    click.echo("details")
    for key, value in answer["details"].items():
        click.echo(f"  {key}: {value}")

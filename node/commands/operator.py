"""Operator commands that talk to a running node through its local API:
``crosstrace status``, ``crosstrace peers`` and ``crosstrace submit``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from node.client.http import ApiClient
from node.client.pseudonyms import author_for_home
from node.commands.details import prepare, send
from node.commands.disclosure import hand_identifiers
from node.commands.options import (
    CONTEXT,
    call,
    detail_option,
    home_option,
    json_option,
    resolve_url,
    share_with_option,
    url_option,
)
from node.ledger.attributes import CATEGORIES, CATEGORY_KEYS, SchemaError, attributes_of
from node.ledger.authoring import AuthoringError, parse_entity
from node.ledger.transactions import tx_id

# The keys each category takes, under `submit report --help`.
_ATTRIBUTE_HELP = "\b\nAttributes (--attr KEY=VALUE) each category takes:\n" + "\n".join(
    f"  {category}: {', '.join(CATEGORY_KEYS[category])}" for category in CATEGORIES
)


def _ago(unix_time: float | None) -> str:
    if unix_time is None:
        return "-"
    seconds = max(0.0, time.time() - unix_time)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def peer_lines(peers: Sequence[dict[str, Any]]) -> list[str]:
    header = f"{'#':>2} {'member':<14} {'address':<22} {'state':<12} {'for':>5} queued  last error"
    lines = [f"  {header}"]
    for p in peers:
        if p["connected"] is None:
            state = "unknown"
        elif p["connected"]:
            state = f"up ({p['direction']})"
        else:
            state = "down"
        queued = "-" if p["queued"] is None else str(p["queued"])
        lines.append(
            f"  {p['index']:>2} {p['name']:<14} {p['address']:<22} {state:<12} "
            f"{_ago(p['since']):>5} {queued:>6}  {p['last_error'] or ''}"
        )
    return lines


@click.command(context_settings=CONTEXT)
@home_option
@url_option
@json_option
def status(home: Path | None, url: str | None, as_json: bool) -> None:
    """Show a running node's height, view, primary, mempool and peers.

    \b
    Example:
      crosstrace status --home ./consortium/node0
    """
    answer = call(resolve_url(home, url), ApiClient.status)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    member = answer["member"]
    view = answer["view"]
    state = "active" if answer["view_active"] else "changing view"
    click.echo(f"member   {member['name']} (#{member['index']}) of chain {answer['chain_id']}")
    click.echo(f"height   {answer['height']}  tip {answer['tip_hash'][:16]}")
    click.echo(f"view     {view} ({state}), primary #{answer['primary']}")
    click.echo(f"mempool  {answer['mempool']['txs']} txs, {answer['mempool']['bytes']} bytes")
    connected = sum(1 for p in answer["peers"] if p["connected"])
    click.echo(f"peers    {connected} of {len(answer['peers'])} connected")
    for line in peer_lines(answer["peers"]):
        click.echo(line)


@click.command(context_settings=CONTEXT)
@home_option
@url_option
@json_option
def peers(home: Path | None, url: str | None, as_json: bool) -> None:
    """List a running node's peers: connection state, direction, queue, last error.

    \b
    Example:
      crosstrace peers --url http://127.0.0.1:8600
    """
    answer = call(resolve_url(home, url), ApiClient.status)
    if as_json:
        click.echo(json.dumps(answer["peers"], indent=2))
        return
    for line in peer_lines(answer["peers"]):
        click.echo(line)


@click.group(context_settings=CONTEXT)
@click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The submitting member's home: its key signs, its pseudonym key hides identifiers.",
)
@url_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the commit.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for it.")
@click.option(
    "--busy-wait",
    default=60.0,
    show_default=True,
    help="Seconds in all to wait and retry while the node answers 429 (overloaded), "
    "as its Retry-After says; 0 gives up at the first.",
)
@click.pass_context
def submit(
    ctx: click.Context, home: Path, url: str | None, wait: bool, timeout: float, busy_wait: float
) -> None:
    """Sign transactions as a member and submit them to a node.

    Identifiers are normalised here; the member's running node evaluates their
    pseudonyms together with the other members (each counts against the member's daily
    report quota). The signed transaction names the pseudonym only.

    \b
    Examples:
      crosstrace submit --home ./consortium/node1 report phone:+8613800138000 \\
          --category fraud_call --attr channel=voice
      crosstrace submit --home ./consortium/node1 link \\
          phone:+8613800138000 account:DE89370400440532013000 --relation uses
      crosstrace submit --home ./consortium/node1 sample --count 20
      crosstrace submit --home ./consortium/node1 report phone:+8613800138000 \\
          --category fraud_call --detail victim="Li Na" --share-with police-0
    """
    if not 0 < timeout <= 60:
        raise click.BadParameter("must be more than 0 and at most 60", param_hint="--timeout")
    if not 0 <= busy_wait <= 3600:
        raise click.BadParameter("must be from 0 to 3600", param_hint="--busy-wait")
    node_url = resolve_url(home, url)
    try:
        author = author_for_home(home, url=node_url)
    except AuthoringError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.obj = (author, node_url, wait, timeout, busy_wait)


def _busy(seconds: int, waited_s: float) -> None:
    click.echo(
        f"the node is overloaded (429); nothing was kept, trying again in {seconds} s",
        err=True,
    )


def _send(ctx: click.Context, txs: list[bytes]) -> None:
    _, url, wait, timeout, busy_wait = ctx.obj
    status_code, answer = call(
        url,
        lambda client: client.submit(
            txs, wait=wait, timeout_s=timeout, busy_wait_s=busy_wait, on_busy=_busy
        ),
        timeout_s=10.0,
    )
    refused = 0
    for row in answer["results"]:
        if not row["accepted"]:
            refused += 1
            click.echo(f"{row['tx_id']}  refused: {row['code']}: {row['message']}")
        elif row.get("committed"):
            click.echo(f"{row['tx_id']}  committed at height {row['height']}")
        elif wait:
            click.echo(f"{row['tx_id']}  accepted, not committed within {timeout:g} s")
        else:
            click.echo(f"{row['tx_id']}  accepted")
    if refused:
        click.echo(f"{refused} of {len(txs)} refused", err=True)
        sys.exit(1)
    if wait and status_code != 200:
        sys.exit(2)


def _author(ctx: click.Context) -> Any:
    return ctx.obj[0]


@submit.command(context_settings=CONTEXT, epilog=_ATTRIBUTE_HELP)
@click.argument("entity")
@click.option("--category", required=True, help="fraud_call, money_mule, phishing, ...")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    help=(
        "KEY=VALUE, repeatable: a key the category takes and a value of its type (a count "
        "is 14, a date 2026-11-02, an amount 48000 CNY, an enumeration one of its words); "
        "free text goes in --detail."
    ),
)
@click.option("--case", "case_id", help="The case this report belongs to.")
@detail_option
@share_with_option
@click.pass_context
def report(
    ctx: click.Context,
    entity: str,
    category: str,
    attrs: tuple[str, ...],
    case_id: str | None,
    details: tuple[str, ...],
    share_with: str | None,
) -> None:
    """Report an observation about ENTITY (TYPE:VALUE, e.g. phone:+8613800138000).

    The attributes are typed fields from the category's closed schema, never free text:
    notes, names and numbers go in --detail. With --detail, the details stay off the
    ledger: the report carries a salted commitment to them, and the node sends them only
    to the members named.

    \b
    Example:
      crosstrace submit --home ./consortium/node1 report phone:+8613800138000 \\
          --category fraud_call --attr complaints=14 --attr source=customer_complaint
    """
    pairs = []
    for attr in attrs:
        key, sep, value = attr.partition("=")
        if not sep:
            # Not quoted back: it may be an identifier typed in the wrong place.
            raise click.BadParameter("expected KEY=VALUE", param_hint="--attr")
        pairs.append((key, value))
    if category in CATEGORIES:
        try:
            attributes_of(category, pairs)
        except SchemaError as exc:
            raise click.ClickException(f"--attr: {exc}") from None
    sharing = prepare(_author(ctx), details, share_with)
    commitment = None if sharing is None else sharing.commitment
    try:
        entity_type, raw = parse_entity(entity)
        subject = _author(ctx).entity(entity_type, raw)
        tx = _author(ctx).report_about(subject, category, pairs, case_id, commitment)
    except AuthoringError as exc:
        raise click.ClickException(str(exc)) from None
    if sharing is None:
        _send(ctx, [tx])
    else:
        send(ctx.obj, tx, sharing)
    # Accepted (a refusal exits above): the node keeps the identifier for disclosure.
    hand_identifiers(ctx.obj[1], tx_id(tx).hex(), [(subject, raw)])


@submit.command(context_settings=CONTEXT)
@click.argument("a")
@click.argument("b")
@click.option("--relation", required=True, help="owns, uses, transferred_to, called, ...")
@detail_option
@share_with_option
@click.pass_context
def link(
    ctx: click.Context,
    a: str,
    b: str,
    relation: str,
    details: tuple[str, ...],
    share_with: str | None,
) -> None:
    """Report that entity A relates to entity B (each TYPE:VALUE); --detail gives the
    evidence, kept off the ledger like a report's details."""
    sharing = prepare(_author(ctx), details, share_with)
    commitment = None if sharing is None else sharing.commitment
    try:
        ends = [parse_entity(a), parse_entity(b)]
        # One request for both pseudonyms, kept for the disclosure hand-over below.
        ref_a, ref_b = _author(ctx).entities(ends)
        tx = _author(ctx).link_between(ref_a, ref_b, relation, commitment)
    except AuthoringError as exc:
        raise click.ClickException(str(exc)) from None
    if sharing is None:
        _send(ctx, [tx])
    else:
        send(ctx.obj, tx, sharing)
    hand_identifiers(ctx.obj[1], tx_id(tx).hex(), [(ref_a, ends[0][1]), (ref_b, ends[1][1])])


@submit.command(context_settings=CONTEXT)
@click.option("--count", default=10, show_default=True, help="How many (1 to 1000).")
@click.option("--first", default=0, show_default=True, help="Number of the first sample.")
@click.pass_context
def sample(ctx: click.Context, count: int, first: int) -> None:
    """Synthetic fraud-call reports about made-up numbers (+86 170 ...), for trying things."""
    if not 1 <= count <= 1000:
        raise click.BadParameter("must be between 1 and 1000", param_hint="--count")
    if first < 0:
        raise click.BadParameter("must not be negative", param_hint="--first")
    _send(ctx, list(_author(ctx).sample_reports(count, first)))

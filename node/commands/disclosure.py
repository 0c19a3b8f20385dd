"""Disclosure of identities on the command line: ``crosstrace disclose`` asks, under a
case, for the clear identifier behind a pseudonym met in a trace or graph;
``crosstrace disclosure pending|allow|deny`` is the operator's queue of requests this
member was asked; ``crosstrace disclosure show|list`` shows requests and their answers.
``crosstrace submit report|link`` hands the node the identifiers it reported
(``hand_identifiers``), so the node can answer such requests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from node.client.http import ApiClient
from node.commands.options import CONTEXT, call, home_option, json_option, resolve_url, url_option
from node.identifiers.normalize import normalize
from node.identifiers.pseudonym import EntityRef

_ENTITY = re.compile(r"([a-z_]+):([0-9a-fA-F]{64})")


def hand_identifiers(url: str, tx_id: str, entities: list[tuple[EntityRef, str]]) -> None:
    """After the node accepted ``tx_id``: the (type, pseudonym, normalised identifier) of
    each entity it names, given as (its reference, the value as typed), for the node's
    private store. The references are those the transaction was written with, so no
    pseudonym is evaluated twice. A failure is one warning line on stderr (never quoting
    the identifier); the submission stands."""
    items = []
    for ref, raw in entities:
        entity_type = ref.type
        items.append(
            {
                "type": entity_type,
                "pseudonym": ref.pseudonym.hex(),
                "identifier": normalize(entity_type, raw),
                "tx_id": tx_id,
            }
        )
    try:
        answer = call(url, lambda client: client.keep_identifiers(items))
    except click.ClickException as exc:
        click.echo(f"warning: the node did not take the identifiers: {exc.message}", err=True)
        return
    for row in answer.get("results", []):
        if not row.get("kept") and row.get("reason") != "already_kept":
            click.echo(
                f"warning: {row.get('type')}:{str(row.get('pseudonym'))[:8]} not kept for "
                f"disclosure: {row.get('reason')}",
                err=True,
            )


def _lines(answer: dict[str, Any]) -> list[str]:
    entity = answer["entity"]
    lines = [
        f"request   {answer['request_id']} ({answer['role']}, {answer['state']})",
        f"case      {answer['case_id']}",
        f"entity    {entity['type']} {entity['pseudonym'][:8]}",
        f"requester {answer['requester']}",
        f"created   {answer['created']}",
    ]
    if answer["asked"]:
        lines.append(f"asked     {', '.join(answer['asked'])}")
    for a in answer["answers"]:
        shown = a["identifier"] if a["identifier"] is not None else "-"
        lines.append(f"  {a['member']}: {a['outcome']}  {shown}  ({a['reason']})")
    if answer["role"] == "requester":
        waiting = [m for m in answer["asked"] if m not in {a["member"] for a in answer["answers"]}]
        if waiting:
            lines.append(f"  waiting for {', '.join(waiting)}")
    return lines


def _echo(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        for line in _lines(answer):
            click.echo(line)


@click.command(context_settings=CONTEXT)
@click.argument("entity")
@click.option("--case", "case_id", required=True, help="The active case it is asked under.")
@home_option
@url_option
@json_option
def disclose(entity: str, case_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Ask the members that reported ENTITY (TYPE:PSEUDONYM_HEX, as a trace or graph
    shows it) for its clear identifier, under an active case. The node checks that the
    entity is in the case's scope or within its graph depth, records the request on the
    ledger and asks; `crosstrace disclosure show` shows the answers.

    \b
    Example:
      crosstrace disclose phone:a8cf912f...e1 --case RING-2026-001 --home ./consortium/node0
    """
    match = _ENTITY.fullmatch(entity)
    if match is None:
        raise click.BadParameter(
            "expected TYPE:PSEUDONYM, the pseudonym in 64 hexadecimal digits", param_hint="ENTITY"
        )
    answer = call(
        resolve_url(home, url),
        lambda client: client.disclose(case_id, match.group(1), match.group(2).lower()),
        timeout_s=60.0,
    )
    _echo(answer, as_json)


@click.group(context_settings=CONTEXT)
def disclosure() -> None:
    """Disclosure requests: those this node made, and those held for its operator."""


@disclosure.command(context_settings=CONTEXT)
@home_option
@url_option
@json_option
def pending(home: Path | None, url: str | None, as_json: bool) -> None:
    """The requests held for this node's operator ([disclosure] policy = "queue")."""
    answer = call(resolve_url(home, url), ApiClient.disclosures_pending)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    if not answer["disclosures"]:
        click.echo("no requests waiting")
    for row in answer["disclosures"]:
        for line in _lines(row):
            click.echo(line)


@disclosure.command(context_settings=CONTEXT)
@click.argument("request_id")
@home_option
@url_option
@json_option
def allow(request_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Answer a held request with the identifier (the answer is recorded on the ledger)."""
    answer = call(
        resolve_url(home, url),
        lambda client: client.decide_disclosure(request_id, True),
        timeout_s=60.0,
    )
    _echo(answer, as_json)


@disclosure.command(context_settings=CONTEXT)
@click.argument("request_id")
@click.option("--reason", default="", help="Why, sent to the requester (no identifiers).")
@home_option
@url_option
@json_option
def deny(request_id: str, reason: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Refuse a held request (the refusal is recorded on the ledger)."""
    answer = call(
        resolve_url(home, url),
        lambda client: client.decide_disclosure(request_id, False, reason),
        timeout_s=60.0,
    )
    _echo(answer, as_json)


@disclosure.command(context_settings=CONTEXT)
@click.argument("request_id")
@home_option
@url_option
@json_option
def show(request_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """One request and its answers; on the requesting node, the checked identifiers."""
    answer = call(resolve_url(home, url), lambda client: client.disclosure(request_id))
    _echo(answer, as_json)


@disclosure.command(name="list", context_settings=CONTEXT)
@home_option
@url_option
@json_option
def list_(home: Path | None, url: str | None, as_json: bool) -> None:
    """Every request this node made or was asked, newest first."""
    answer = call(resolve_url(home, url), ApiClient.disclosures)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    for row in answer["disclosures"]:
        for line in _lines(row):
            click.echo(line)

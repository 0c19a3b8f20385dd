"""``crosstrace trace``, ``crosstrace graph`` and ``crosstrace history``: tracing
queries under a case, through a running node's local API.

The identifier is typed in the clear and goes to that local node only; it pseudonymises
it, checks the case, and answers only once the access record of the query is committed
on the ledger (``crosstrace audit`` lists them). A refusal is one line with the node's
reason and exit status 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node.client.text import (
    access_line,
    graph_lines,
    history_lines,
    timing_summary,
    trace_lines,
)
from node.commands.cases import echo_lines, parse_after, parse_window, with_client
from node.commands.options import CONTEXT, home_option, json_option, resolve_url, url_option

case_option = click.option(
    "--case", "case_id", required=True, help="The active case the query is made under."
)
window_options = [
    click.option("--from", "start", help="Only facts observed from then (ISO 8601, UTC)."),
    click.option("--to", "end", help="Only facts observed until then."),
]
timing_option = click.option(
    "--timing", is_flag=True, help="Also show the time the audit commit and the query took."
)


def _with_window(command: Any) -> Any:
    for option in reversed(window_options):
        command = option(command)
    return command


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        out.write_text(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot write: {exc.strerror}") from None


@click.command(context_settings=CONTEXT)
@click.argument("entity")
@case_option
@_with_window
@click.option("--limit", type=click.IntRange(1, 1000), help="At most this many records.")
@click.option("--after", help="HEIGHT:INDEX: continue after the last record of a page.")
@timing_option
@home_option
@url_option
@json_option
def trace(
    entity: str,
    case_id: str,
    start: str | None,
    end: str | None,
    limit: int | None,
    after: str | None,
    timing: bool,
    home: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Every report and link about ENTITY (TYPE:VALUE), in ledger order.

    \b
    Example:
      crosstrace trace phone:+8613800138000 --case HZ-2026-0193 --home ./consortium/node0
    """
    window = parse_window(start, end)
    position = parse_after(after)
    answer, headers = with_client(
        resolve_url(home, url),
        lambda c: c.trace(case_id, entity, window=window, limit=limit, after=position),
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    spent = timing_summary(headers.get("server-timing")) if timing else None
    echo_lines(trace_lines(answer, entity, spent))


@click.command(context_settings=CONTEXT)
@click.argument("entity")
@case_option
@click.option(
    "--depth", type=click.IntRange(0, 6), default=2, show_default=True, help="Hops from ENTITY."
)
@_with_window
@click.option(
    "--format",
    "shape",
    type=click.Choice(["text", "json", "dot"]),
    default="text",
    show_default=True,
    help="dot: a Graphviz picture (dot -Tsvg FILE > graph.svg).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout."
)
@timing_option
@home_option
@url_option
def graph(
    entity: str,
    case_id: str,
    depth: int,
    start: str | None,
    end: str | None,
    shape: str,
    out: Path | None,
    timing: bool,
    home: Path | None,
    url: str | None,
) -> None:
    """The link graph around ENTITY (TYPE:VALUE), breadth-first up to --depth hops.

    \b
    Examples:
      crosstrace graph phone:+8613800138000 --case HZ-2026-0193 --home ./consortium/node0
      crosstrace graph phone:+8613800138000 --case HZ-2026-0193 --depth 3 \\
          --format dot --out ring.dot --home ./consortium/node0 && dot -Tsvg ring.dot > ring.svg
    """
    window = parse_window(start, end)
    response = with_client(
        resolve_url(home, url),
        lambda c: c.graph(case_id, entity, depth=depth, window=window, dot=shape == "dot"),
    )
    spent = timing_summary(response.headers.get("server-timing")) if timing else None
    if shape == "dot":
        access = {
            "height": response.headers.get("crosstrace-access-height", "?"),
            "tx_id": response.headers.get("crosstrace-access-tx", "?"),
        }
        _write(response.text, out)
        if out is not None:
            click.echo(f"wrote {out}; {access_line(access, spent)}")
        return
    answer = response.json()
    text = (
        json.dumps(answer, indent=2)
        if shape == "json"
        else "\n".join(graph_lines(answer, entity, spent))
    )
    _write(text, out)
    if out is not None:
        nodes, edges = len(answer["nodes"]), len(answer["edges"])
        click.echo(
            f"wrote {out} ({nodes} entities, {edges} links); {access_line(answer['access'], spent)}"
        )


@click.command(context_settings=CONTEXT)
@click.argument("tx_id")
@case_option
@_with_window
@timing_option
@home_option
@url_option
@json_option
def history(
    tx_id: str,
    case_id: str,
    start: str | None,
    end: str | None,
    timing: bool,
    home: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Who submitted record TX_ID, when, and which later records refer to it.

    \b
    Example:
      crosstrace history 3f9a...c2 --case HZ-2026-0193 --home ./consortium/node0
    """
    window = parse_window(start, end)
    answer, headers = with_client(
        resolve_url(home, url), lambda c: c.history(case_id, tx_id, window=window)
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    spent = timing_summary(headers.get("server-timing")) if timing else None
    echo_lines(history_lines(answer, spent))

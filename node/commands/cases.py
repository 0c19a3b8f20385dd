"""``crosstrace case open|approve|close|list|show`` and ``crosstrace audit``: cases and
the audit trail through a running node's local API.

The node signs as its own member: ``case open`` and ``case close`` need a node whose
member holds the investigator role, ``case approve`` one with the approver role. Scope
identifiers are typed in the clear and sent to that local node only, which
pseudonymises them with the consortium key before anything is signed.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from node.client.http import ApiClientError
from node.client.text import audit_lines, case_lines, case_table, change_line, evaluation_lines
from node.client.tracing import TracingClient, refusal
from node.commands.options import CONTEXT, home_option, json_option, resolve_url, url_option
from node.details.records import MAX_JUSTIFICATION_CHARS, justification_problem
from node.ledger.kinds import PURPOSES

T = TypeVar("T")
DAY_MS = 86_400_000
_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
TIME_HELP = "ISO 8601, UTC unless an offset is given (2026-11-01, 2026-11-01T08:00+08:00)"


def with_client(url: str, action: Callable[[TracingClient], T]) -> T:
    """Run ``action`` against the node; any failure is one line and exit 1."""
    client = TracingClient(url)
    try:
        return action(client)
    except ApiClientError as exc:
        raise click.ClickException(refusal(exc)) from None
    finally:
        client.close()


def parse_time_ms(text: str, option: str) -> int:
    """A date or time as a person types it -> milliseconds since the epoch."""
    if text.strip().lower() == "now":
        return int(time.time() * 1000)
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected a date or time, {TIME_HELP}", param_hint=option
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1000)


def parse_window(start: str | None, end: str | None) -> tuple[int, int] | None:
    """``--from`` and ``--to`` of a query; either may be left out (no limit that side)."""
    if start is None and end is None:
        return None
    low = 0 if start is None else parse_time_ms(start, "--from")
    high = 2**63 - 1 if end is None else parse_time_ms(end, "--to")
    if low > high:
        raise click.BadParameter("--from is after --to", param_hint="--from")
    return low, high


def parse_duration_ms(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(
            "expected a number and a unit: m, h, d or w (90m, 12h, 30d, 2w)",
            param_hint="--expires-in",
        )
    return int(match[1]) * _UNIT_MS[match[2]]


def parse_after(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    height, sep, index = text.partition(":")
    if not (sep and height.isdigit() and index.isdigit()):
        raise click.BadParameter(
            "expected HEIGHT:INDEX, as a previous page ends", param_hint="--after"
        )
    return int(height), int(index)


def echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


def finish_change(verb: str, status_code: int, answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo(change_line(verb, answer))
    if status_code == 202:
        sys.exit(2)  # submitted, not committed in time: as `submit --wait` does


class PurposeChoice(click.Choice[str]):
    """One of the purposes; a refusal says which there are and does not quote what was
    typed (free text here is what the purposes replace: it may hold names, numbers)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(
                f"must be one of {', '.join(PURPOSES)}; the reasons go in --justification",
                param,
                ctx,
            )


@click.group(context_settings=CONTEXT)
def case() -> None:
    """Open, approve, close and look at investigation cases.

    A case names what may be queried (its scope), why (its purpose, one of the
    consortium's purposes, and its written justification) and over which time window;
    it authorises queries once k members (k from the genesis) have approved it, until it
    expires or is closed. The justification never goes on the ledger: the case carries a
    salted commitment to it, and the node sends it over the secure channel to the members
    that approve cases, whose `case show` displays it and checks it against the ledger.

    \b
    Example:
      crosstrace case open HZ-2026-0193 --home ./consortium/node0 \\
          --purpose telecom_fraud \\
          --justification "Report no. 1187 of 2026: 14 victims, transfers to one account" \\
          --scope phone:+8613800138000 --scope account:6222020200112233445 \\
          --from 2026-10-01 --expires-in 30d
      crosstrace case approve HZ-2026-0193 --home ./consortium/node1
      crosstrace case show HZ-2026-0193 --home ./consortium/node0
    """


@case.command("open", context_settings=CONTEXT)
@click.argument("case_id")
@click.option(
    "--purpose",
    required=True,
    type=PurposeChoice(PURPOSES),
    help="Why, as one of the consortium's purposes (on the ledger).",
)
@click.option(
    "--justification",
    required=True,
    help=(
        f"The written reasons, for the approvers (at most {MAX_JUSTIFICATION_CHARS} "
        "characters): kept off the ledger, sent to the members that approve cases."
    ),
)
@click.option(
    "--scope",
    "scope",
    multiple=True,
    required=True,
    help="TYPE:VALUE, repeatable: the entities the case may query (at most 64).",
)
@click.option("--from", "start", required=True, help=f"Start of the time window: {TIME_HELP}.")
@click.option("--to", "end", help="End of the time window (default: the expiry).")
@click.option("--expires", help=f"When the case stops authorising queries: {TIME_HELP}.")
@click.option("--expires-in", help="Or how long from now: 90m, 12h, 30d, 2w (default 30d).")
@home_option
@url_option
@json_option
def open_case(
    case_id: str,
    purpose: str,
    justification: str,
    scope: tuple[str, ...],
    start: str,
    end: str | None,
    expires: str | None,
    expires_in: str | None,
    home: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Open case CASE_ID, signed by the node's member (role investigator).

    \b
    Example:
      crosstrace case open HZ-2026-0193 --home ./consortium/node0 --purpose telecom_fraud \\
          --justification "Report no. 1187 of 2026: 14 victims of calls from this number" \\
          --scope phone:+8613800138000 --from 2026-10-01 --expires 2026-12-31
    """
    problem = justification_problem(justification)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--justification")
    if expires is not None and expires_in is not None:
        raise click.UsageError("give --expires or --expires-in, not both")
    if expires is not None:
        expires_ms = parse_time_ms(expires, "--expires")
    else:
        expires_ms = int(time.time() * 1000) + parse_duration_ms(expires_in or "30d")
    window = (
        parse_time_ms(start, "--from"),
        expires_ms if end is None else parse_time_ms(end, "--to"),
    )
    if window[0] > window[1]:
        raise click.BadParameter("the window must not end before it starts", param_hint="--from")
    status_code, answer = with_client(
        resolve_url(home, url),
        lambda c: c.open_case(case_id, purpose, justification, list(scope), window, expires_ms),
    )
    finish_change(f"case {case_id} opened", status_code, answer, as_json)
    if not as_json and answer["committed"] and answer["case"] is not None:
        needed = answer["case"]["needed"]
        click.echo(
            f"it authorises queries once {needed} members approve it: "
            f"crosstrace case approve {case_id} --home <an approver's home>"
        )


@case.command(context_settings=CONTEXT)
@click.argument("case_id")
@home_option
@url_option
@json_option
def approve(case_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Approve case CASE_ID as the node's member (role approver).

    \b
    Example:
      crosstrace case approve HZ-2026-0193 --home ./consortium/node1
    """
    status_code, answer = with_client(resolve_url(home, url), lambda c: c.approve(case_id))
    finish_change(f"case {case_id} approved", status_code, answer, as_json)


@case.command(context_settings=CONTEXT)
@click.argument("case_id")
@home_option
@url_option
@json_option
def close(case_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """Close case CASE_ID for good (role investigator): it authorises nothing more.

    \b
    Example:
      crosstrace case close HZ-2026-0193 --home ./consortium/node0
    """
    status_code, answer = with_client(resolve_url(home, url), lambda c: c.close_case(case_id))
    finish_change(f"case {case_id} closed", status_code, answer, as_json)


@case.command("list", context_settings=CONTEXT)
@home_option
@url_option
@json_option
def list_cases(home: Path | None, url: str | None, as_json: bool) -> None:
    """Every case on the ledger: state, approvals, opener, expiry, purpose.

    \b
    Example:
      crosstrace case list --home ./consortium/node2
    """
    answer = with_client(resolve_url(home, url), TracingClient.cases)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        echo_lines(case_table(answer))


@case.command(context_settings=CONTEXT)
@click.argument("case_id")
@home_option
@url_option
@json_option
def show(case_id: str, home: Path | None, url: str | None, as_json: bool) -> None:
    """One case: state and why, purpose, window, scope, approvals (n of k), closure, and
    its written justification when this node holds it (an approver's does), checked
    against the commitment on the ledger.

    \b
    Example:
      crosstrace case show HZ-2026-0193 --url http://127.0.0.1:8600
    """
    answer = with_client(resolve_url(home, url), lambda c: c.case(case_id))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        echo_lines(case_lines(answer))


@click.command(context_settings=CONTEXT)
@click.option("--case", "case_id", help="Only queries under this case.")
@click.option("--member", help="Only queries by this member (its genesis name).")
@click.option(
    "--query",
    type=click.Choice(["trace", "graph", "history", "psi"]),
    help="Only this kind of query.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", help="HEIGHT:INDEX: continue after the last record of a page.")
@click.option(
    "--evaluations",
    is_flag=True,
    help="Instead: the pseudonym evaluations this member did for the others today, "
    "against the genesis quotas, and its evaluation log (operator role).",
)
@home_option
@url_option
@json_option
def audit(
    case_id: str | None,
    member: str | None,
    query: str | None,
    limit: int,
    after: str | None,
    evaluations: bool,
    home: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Who queried what under which case, and when: the access records on the ledger.

    Every answered query leaves one, committed through consensus before the answer is
    given, so every member's ledger holds the same trail. Each names the pseudonym
    evaluation it used; with --evaluations the command shows instead what this member
    evaluated for the others today (per member and per case, against the quotas), so an
    enumeration attempt or an evaluation that no access record names stands out.

    \b
    Examples:
      crosstrace audit --home ./consortium/node2 --case HZ-2026-0193
      crosstrace audit --home ./consortium/node1 --evaluations
    """
    if evaluations:
        used = with_client(resolve_url(home, url), lambda c: c.evaluations(limit=limit))
        if as_json:
            click.echo(json.dumps(used, indent=2))
        else:
            echo_lines(evaluation_lines(used))
        return
    position = parse_after(after)
    answer = with_client(
        resolve_url(home, url),
        lambda c: c.audit(case_id=case_id, member=member, query=query, limit=limit, after=position),
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        echo_lines(audit_lines(answer))

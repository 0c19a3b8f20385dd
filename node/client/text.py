"""Case, query and audit answers of the local API as text for an investigator: member
names, heights, times in UTC, categories and relations, entities as their type and a
short pseudonym (the node never sends an identifier back in the clear).

Each function takes the JSON the API answered (``node.tracing.render``'s shapes) and
returns lines, so the commands only print, and tests can read the same lines.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

Json = Mapping[str, Any]
JUSTIFICATION_WIDTH = 84  # indented by four: 88 columns


def entity(ref: Json | None) -> str:
    if ref is None:
        return "-"
    return f"{ref['type']} {ref['pseudonym'][:8]}"


def short_tx(tx_id: str) -> str:
    return tx_id[:16]


def access_line(access: Json, timing: str | None = None) -> str:
    line = f"access recorded at height {access['height']} (tx {short_tx(access['tx_id'])})"
    return f"{line}  [{timing}]" if timing else line


def timing_summary(server_timing: str | None) -> str | None:
    """``Server-Timing`` as "audit commit 31.0 ms, query 1.2 ms"."""
    if not server_timing:
        return None
    parts = {}
    for item in server_timing.split(","):
        name, _, value = item.strip().partition(";dur=")
        try:
            parts[name] = float(value)
        except ValueError:
            continue
    if "audit" not in parts or "query" not in parts:
        return None
    return f"audit commit {parts['audit']:.1f} ms, query {parts['query']:.1f} ms"


def window_text(window: Json) -> str:
    return f"{window['start']} to {window['end']}"


# -- cases ------------------------------------------------------------------------------


def case_table(answer: Json) -> list[str]:
    cases = answer["cases"]
    if not cases:
        return [f"no cases on the ledger (height {answer['height']})"]
    width = max(len("case"), *(len(c["case_id"]) for c in cases))
    lines = [
        f"{'case':<{width}}  {'state':<8} {'approvals':>9}  {'opened by':<12} "
        f"{'expires (UTC)':<24} purpose"
    ]
    for c in cases:
        approvals = f"{len(c['approvals'])}/{c['needed']}"
        lines.append(
            f"{c['case_id']:<{width}}  {c['state']:<8} {approvals:>9}  "
            f"{c['opened']['member']:<12} {c['expires']:<24} {c['purpose']}"
        )
    return lines


def case_lines(case: Json) -> list[str]:
    opened = case["opened"]
    lines = [
        f"case      {case['case_id']}: {case['state']}",
        f"reason    {case['reason']}",
        f"purpose   {case['purpose']}",
        f"opened    by {opened['member']} at height {opened['height']}, {opened['time']} "
        f"(tx {short_tx(opened['tx_id'])}), user {actor_text(opened)}",
        f"window    {window_text(case['window'])}",
        f"expires   {case['expires']}",
    ]
    for i, ref in enumerate(case["scope"]):
        lines.append(f"{'scope' if i == 0 else '':<9} {entity(ref)}")
    approvals = case["approvals"]
    lines.append(f"approvals {len(approvals)} of {case['needed']} needed")
    for a in approvals:
        lines.append(
            f"          {a['member']:<14} height {a['height']:<6} {a['time']}  user {actor_text(a)}"
        )
    closed = case["closed"]
    if closed is not None:
        lines.append(
            f"closed    by {closed['member']} at height {closed['height']}, {closed['time']}, "
            f"user {actor_text(closed)}"
        )
    return lines + justification_lines(case.get("justification"))


def justification_lines(shown: Json | None) -> list[str]:
    """The case's written justification as this node holds it, or why it holds none;
    its text indented under the heading, so no line of it can pass for another field."""
    if shown is None:
        return []
    if shown["status"] != "held" or shown["text"] is None:
        return [f"justification  not held here ({shown['status']}): {shown['message']}"]
    verdict = "matches the ledger" if shown["matches_commitment"] else "DOES NOT MATCH the ledger"
    lines = [f"justification  from {shown['sender']}, {verdict}:"]
    for paragraph in str(shown["text"]).splitlines() or [""]:
        lines += [f"    {line}" for line in textwrap.wrap(paragraph, JUSTIFICATION_WIDTH) or [""]]
    return lines


def change_line(verb: str, answer: Json) -> str:
    """One line for an open, approve or close that the node submitted."""
    tx = short_tx(answer["tx_id"])
    if not answer["committed"]:
        return f"{verb}: submitted (tx {tx}), not committed yet"
    case = answer["case"]
    line = f"{verb} at height {answer['height']} (tx {tx})"
    if case is not None:
        line += f"; {case['reason']}"
    return line


# -- queries ----------------------------------------------------------------------------


def _subject(answer: Json, given: str | None) -> str:
    ref = entity(answer["entity"])
    return f"{given} ({ref})" if given else ref


def _fact_text(record: Json) -> str:
    if record["kind"] == "report":
        text = f"report  {record['category']}"
        if record.get("case_id"):
            text += f" (case {record['case_id']})"
        attributes = record.get("attributes") or {}
        if attributes:
            text += "  " + " ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
        return text
    if record["kind"] == "link":
        return f"link    {entity(record['a'])} -{record['relation']}-> {entity(record['b'])}"
    return str(record["kind"])


def _row(record: Json, when: str | None = None) -> str:
    stamp = when if when is not None else record.get("observed", record["time"])
    return f"{record['height']:>7}  {stamp:<24} {record['member']:<14} "


def trace_lines(answer: Json, given: str | None = None, timing: str | None = None) -> list[str]:
    lines = [
        f"trace of {_subject(answer, given)} under case {answer['case_id']}, "
        f"window {window_text(answer['window'])}",
        access_line(answer["access"], timing),
        "",
        f"{'height':>7}  {'observed (UTC)':<24} {'member':<14} record",
    ]
    for record in answer["records"]:
        lines.append(_row(record) + _fact_text(record))
    count = len(answer["records"])
    summary = f"{count} record{'s' if count != 1 else ''}"
    if answer["truncated"] and answer["next_after"] is not None:
        height, index = answer["next_after"]
        summary += f"; more after --after {height}:{index}"
    return [*lines, summary]


def graph_lines(answer: Json, given: str | None = None, timing: str | None = None) -> list[str]:
    lines = [
        f"graph of {_subject(answer, given)} under case {answer['case_id']}, depth "
        f"{answer['depth']}, window {window_text(answer['window'])}",
        access_line(answer["access"], timing),
        "",
        f"entities ({len(answer['nodes'])}):",
    ]
    for node in answer["nodes"]:
        lines.append(f"  depth {node['depth']}  {entity(node)}")
    lines.append(f"links ({len(answer['edges'])}):")
    for edge in answer["edges"]:
        lines.append(f"  {_row(edge)}{entity(edge['a'])} -{edge['relation']}-> {entity(edge['b'])}")
    if answer["truncated"]:
        lines.append("truncated: the caps on entities and links left part of the graph out")
    return lines


def history_lines(answer: Json, timing: str | None = None) -> list[str]:
    record = answer["record"]
    lines = [
        f"record    {record['kind']} by {record['member']} at height {record['height']}, "
        f"{record['time']} (tx {record['tx_id']})",
        f"about     {_record_text(record)}",
        f"case      {answer['case_id']} (window {window_text(answer['window'])})",
        access_line(answer["access"], timing),
        "",
        f"referred to by ({len(answer['referred_by'])}):",
    ]
    for ref in answer["referred_by"]:
        lines.append(f"  {_row(ref, ref['time'])}{ref['how']:<14} {_record_text(ref)}")
    if answer["truncated"]:
        lines.append("truncated: only the earliest referrers are shown")
    return lines


def _record_text(record: Json) -> str:
    kind = record["kind"]
    if kind in ("report", "link"):
        return f"{_fact_text(record)}, observed {record['observed']}"
    if kind == "case":
        scope = ", ".join(entity(e) for e in record["scope"])
        return f"case {record['case_id']}: {record['purpose']} (scope {scope})"
    if kind in ("approve", "close"):
        return f"{kind} of case {record['case_id']}"
    if kind == "access":
        return f"{record['query']} of {entity(record['subject'])} under case {record['case_id']}"
    return str(kind)


# -- audit ------------------------------------------------------------------------------


def audit_lines(answer: Json) -> list[str]:
    records: Sequence[Json] = answer["records"]
    if not records:
        return ["no access records match"]
    width = max(len("case"), *(len(r["case_id"]) for r in records))
    actors = [actor_text(r) for r in records]
    by = max(len("by"), *(len(a) for a in actors))
    lines = [
        f"{'height':>7}  {'time (UTC)':<24} {'member':<14} {'by':<{by}}  "
        f"{'case':<{width}}  {'query':<8} subject"
    ]
    for r, actor in zip(records, actors, strict=True):
        lines.append(
            f"{r['height']:>7}  {r['answered']:<24} {r['member']:<14} {actor:<{by}}  "
            f"{r['case_id']:<{width}}  {r['query']:<8} {_audit_subject(r)}"
        )
    count = len(records)
    summary = f"{count} access record{'s' if count != 1 else ''}"
    if answer["next_after"] is not None:
        height, index = answer["next_after"]
        summary += f"; more after --after {height}:{index}"
    return [*lines, summary]


def evaluation_lines(answer: Json) -> list[str]:
    """Today's pseudonym evaluations for the others, against the quotas, then the log."""
    usage: Sequence[Json] = answer["usage"]
    lines = [f"pseudonym evaluations this member did for the others on {answer['day']} (UTC)"]
    if not usage:
        lines.append("  none yet today")
    for row in usage:
        share = row["points"] / row["quota"] if row["quota"] else 0.0
        whose = "member" if row["kind"] == "report" else "case"
        lines.append(
            f"  {row['kind']:<6} {whose} {row['name']:<24} {row['points']:>9} of "
            f"{row['quota']:>9} ({share:.1%})"
        )
    records: Sequence[Json] = answer["records"]
    if records:
        lines.append(
            f"{'time (UTC)':<24} {'requester':<14} {'purpose':<7} {'points':>7}  "
            f"{'outcome':<14} {'case':<16} request"
        )
        for r in records:
            lines.append(
                f"{r['at']:<24} {r['requester']:<14} {r['purpose']:<7} {r['points']:>7}  "
                f"{r['outcome']:<14} {r['case_id'] or '-':<16} {r['request_id']}"
            )
    wrong = answer.get("wrong_proofs") or {}
    for member, count in sorted(wrong.items()):
        lines.append(f"member {member} answered {count} evaluation(s) with a wrong proof")
    return lines


def actor_text(record: Json) -> str:
    """Who acted: the user's name with its actor id on the member that owns it, the
    actor id elsewhere, ``node`` for the node's own policy."""
    actor = record.get("actor")
    if actor is None:
        return "-"
    if actor == "00" * 16:
        return "node"
    name = record.get("actor_name")
    return f"{name} ({actor})" if name else actor


def _audit_subject(record: Json) -> str:
    psi = record.get("psi")
    if psi is None:
        return entity(record["subject"])
    return (
        f"{psi['entity_type']} sets of {psi['initiator']} ({psi['initiator_size']}) and "
        f"{psi['responder']} ({psi['responder_size']}): {psi['result_size']} shared, "
        f"{psi['outcome']}"
    )

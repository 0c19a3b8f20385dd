"""Tracing results as JSON-able dicts (for the API and the CLI) and as Graphviz DOT.

Entities appear as their type and pseudonym (hex); the DOT picture shows the type and
a short pseudonym, which is all a picture needs and all that should be printed. Times
are milliseconds since the epoch, with an ISO 8601 copy for people.
"""

from __future__ import annotations

from typing import Any

from node.identifiers.pseudonym import EntityRef
from node.ledger.cases import CaseRecord, CaseStatus, LedgerEntry, format_time_ms
from node.ledger.kinds import Access, Approve, Body, Case, Close, Link, PsiRun, Report
from node.tracing.queries import (
    Fact,
    Grant,
    GraphResult,
    HistoryResult,
    Refusal,
    TimeWindow,
    TraceResult,
    short_pseudonym,
)

Json = dict[str, Any]


def entity_json(entity: EntityRef) -> Json:
    return {"type": entity.type, "pseudonym": entity.pseudonym.hex()}


def window_json(window: TimeWindow) -> Json:
    return {
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "start": format_time_ms(window.start_ms),
        "end": format_time_ms(window.end_ms),
    }


def entry_json(entry: LedgerEntry) -> Json:
    return {
        "tx_id": entry.tx_id.hex(),
        "member": entry.member,
        "height": entry.height,
        "index": entry.index,
        "time_ms": entry.time_ms,
        "time": format_time_ms(entry.time_ms),
    } | ({} if entry.actor is None else {"actor": entry.actor.hex()})


def refusal_json(refusal: Refusal) -> Json:
    return {"error": refusal.code.value, "message": refusal.message}


def grant_json(grant: Grant) -> Json:
    out: Json = {
        "case_id": grant.case_id,
        "case_tx": grant.case_tx.hex(),
        "query": grant.query,
        "entity": entity_json(grant.entity),
        "window": window_json(grant.window),
    }
    if grant.record is not None:
        out["record"] = grant.record.hex()
    return out


def body_json(body: Body) -> Json:
    """The fields of a transaction body that a reader of a trace needs."""
    match body:
        case Report():
            return {
                "category": body.category,
                "subject": entity_json(body.subject),
                "attributes": {a.key: a.value for a in body.attributes},
                "case_id": body.case_id,
                "observed_ms": body.observed_ms,
                "observed": format_time_ms(body.observed_ms),
                "has_details": body.details_commitment is not None,
            }
        case Link():
            return {
                "relation": body.relation,
                "a": entity_json(body.a),
                "b": entity_json(body.b),
                "observed_ms": body.observed_ms,
                "observed": format_time_ms(body.observed_ms),
                "has_evidence": body.evidence_commitment is not None,
            }
        case Case():
            return {
                "case_id": body.case_id,
                "purpose": body.purpose,
                "justification_commitment": body.justification_commitment.hex(),
                **_case_terms(body),
            }
        case Approve() | Close():
            return {"case_id": body.case_id, "case_tx": body.case_tx.hex()}
        case Access():
            subject = None if body.subject is None else entity_json(body.subject)
            return {"case_id": body.case_id, "query": body.query, "subject": subject}
        case PsiRun():
            return {
                "case_id": body.case_id,
                "case_tx": body.case_tx.hex(),
                "run_id": body.run_id.hex(),
                "initiator": body.initiator,
                "responder": body.responder,
                "entity_type": body.entity_type,
                "initiator_size": body.initiator_size,
                "responder_size": body.responder_size,
                "result_size": body.result_size,
                "outcome": body.outcome,
                "finished_ms": body.finished_ms,
            }
    raise TypeError(f"no JSON form for {type(body).__name__}")


def _case_terms(body: Case) -> Json:
    return {
        "scope": [entity_json(e) for e in body.scope],
        "window": window_json(TimeWindow(body.window_start_ms, body.window_end_ms)),
        "expires_ms": body.expires_ms,
        "expires": format_time_ms(body.expires_ms),
    }


def fact_json(fact: Fact) -> Json:
    return {**entry_json(fact.entry), "kind": fact.body.kind, **body_json(fact.body)}


def case_json(record: CaseRecord) -> Json:
    return {"opened": entry_json(record.opened), **body_json(record.body)}


def status_json(status: CaseStatus) -> Json:
    return {
        **case_json(status.case),
        "state": status.state.value,
        "reason": status.reason,
        "approvals": [entry_json(e) for e in status.approvals],
        "needed": status.needed,
        "closed": None if status.closed is None else entry_json(status.closed),
        "now_ms": status.now_ms,
    }


def trace_json(result: TraceResult) -> Json:
    return {
        **grant_json(result.grant),
        "records": [fact_json(f) for f in result.facts],
        "truncated": result.truncated,
        "next_after": None if result.next_after is None else list(result.next_after),
    }


def graph_json(result: GraphResult) -> Json:
    return {
        **grant_json(result.grant),
        "depth": result.depth,
        "nodes": [{**entity_json(n.entity), "depth": n.depth} for n in result.nodes],
        "edges": [
            {
                **entry_json(e.fact.entry),
                "relation": e.link.relation,
                "a": entity_json(e.link.a),
                "b": entity_json(e.link.b),
                "observed_ms": e.link.observed_ms,
                "observed": format_time_ms(e.link.observed_ms),
            }
            for e in result.edges
        ],
        "truncated": result.truncated,
    }


def history_json(result: HistoryResult) -> Json:
    return {
        **grant_json(result.grant),
        "record": {**entry_json(result.entry), "kind": result.kind, **body_json(result.body)},
        "referred_by": [
            {**entry_json(r.entry), "kind": r.kind, "how": r.how.value, **body_json(r.body)}
            for r in result.referred_by
        ],
        "truncated": result.truncated,
    }


# -- Graphviz -----------------------------------------------------------------------


def dot_string(text: str) -> str:
    """A DOT double-quoted string: quotes and backslashes escaped, line breaks as the
    ``\\n`` escape, so no input can end the string or the statement early."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{escaped}"'


def graph_dot(result: GraphResult) -> str:
    """The graph as a DOT digraph: one node per entity (the start drawn bold), one edge
    per link, labelled with the relation, the reporting member and the height."""
    ids = {node.entity: f"n{i}" for i, node in enumerate(result.nodes)}
    start = result.grant.entity
    title = (
        f"case {result.grant.case_id}: {start.type} {short_pseudonym(start)}, "
        f"depth {result.depth}, {result.grant.window}"
    )
    if result.truncated:
        title += " (truncated)"
    lines = [
        "digraph trace {",
        f"  graph [label={dot_string(title)}, labelloc=t, fontsize=11];",
        '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for node in result.nodes:
        label = dot_string(f"{node.entity.type}\n{short_pseudonym(node.entity)}")
        bold = ", penwidth=2" if node.entity == start else ""
        lines.append(f"  {ids[node.entity]} [label={label}{bold}];")
    for edge in result.edges:
        link, entry = edge.link, edge.fact.entry
        label = dot_string(f"{link.relation}\n{entry.member} @{entry.height}")
        lines.append(f"  {ids[link.a]} -> {ids[link.b]} [label={label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"

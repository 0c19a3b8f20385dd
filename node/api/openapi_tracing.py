"""The OpenAPI paths and schemas of the case, tracing and audit endpoints
(``node.api.tracing``), merged into the document by ``node.api.openapi``.

Response schemas list every field the handlers always send, with its type, so a
fuzzer checking responses against the document (``tests/test_api_fuzz.py``) catches a
field that goes missing or changes type. Request schemas match what the handlers
accept: no unknown fields, no nulls for optional fields.
"""

from __future__ import annotations

from typing import Any

from node.identifiers.normalize import EntityType
from node.ledger.kinds import CATEGORIES, PSI_OUTCOMES, QUERY_KINDS, RELATIONS
from node.ledger.transactions import MAX_SCOPE, MAX_STRING_CHARS
from node.tracing.audit import MAX_LIMIT
from node.tracing.queries import DEFAULT_TRACE_LIMIT, MAX_GRAPH_DEPTH, Reference

JSON = "application/json"
DOT = "text/vnd.graphviz"
MAX_TIME_MS = 2**63 - 1
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
DIGEST_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
HEX = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}
TIME_MS = {"type": "integer", "minimum": 0, "maximum": MAX_TIME_MS}
CASE_ID = {"type": "string", "minLength": 1, "maxLength": MAX_STRING_CHARS}
# The examples of the request bodies; the fuzz test opens this very case, so the
# document's examples are answered, not only refused.
EXAMPLE_CASE_ID = "HZ-2026-0193"
EXAMPLE_ENTITY = "phone:+86 139 0000 0001"
EXAMPLE_WINDOW = {"start_ms": 1_767_225_600_000, "end_ms": 4_102_444_800_000}  # 2026 to 2100
IDENTIFIER = {
    "type": "string",
    "description": "TYPE:VALUE in the clear, e.g. `phone:+86 138 0013 8000`; TYPE is one of "
    + ", ".join(t.value for t in EntityType),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    """A request object: nothing but these fields."""
    return _obj(required, **properties) | {"additionalProperties": False}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _array(items: dict[str, Any], **limits: int) -> dict[str, Any]:
    return {"type": "array", "items": items, **limits}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


ENTRY_FIELDS = {
    "tx_id": DIGEST_HEX,
    "member": STR,
    "height": INT,
    "index": INT,
    "time_ms": INT,
    "time": STR | {"description": "`time_ms` in UTC, ISO 8601"},
}
ENTRY = list(ENTRY_FIELDS)
ENTITY = _obj(
    ["type", "pseudonym"],
    type={"enum": [t.value for t in EntityType]},
    pseudonym=DIGEST_HEX | {"description": "keyed BLAKE2b-256 of the normalised value"},
)
WINDOW = _obj(["start_ms", "end_ms", "start", "end"], start_ms=INT, end_ms=INT, start=STR, end=STR)
REPORT_FIELDS = {
    "category": {"enum": list(CATEGORIES)},
    "subject": _ref("Entity"),
    "attributes": {"type": "object", "additionalProperties": STR},
    "case_id": _nullable(STR),
    "observed_ms": INT,
    "observed": STR,
    "has_details": BOOL,
}
LINK_FIELDS = {
    "relation": {"enum": list(RELATIONS)},
    "a": _ref("Entity"),
    "b": _ref("Entity"),
    "observed_ms": INT,
    "observed": STR,
    "has_evidence": BOOL,
}


def _fact(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    return _obj([*ENTRY, "kind", *fields], **ENTRY_FIELDS, kind={"const": kind}, **fields)


GRANT_FIELDS = {
    "case_id": STR,
    "case_tx": DIGEST_HEX,
    "query": {"enum": ["trace", "graph", "history"]},
    "entity": _ref("Entity") | {"description": "the subject (for history: the record's)"},
    "window": _ref("Window") | {"description": "the case's window, narrowed as asked"},
    "access": _ref("AccessRecord"),
}
GRANT = list(GRANT_FIELDS)
RECORD_KINDS = ["report", "link", "case", "approve", "close", "access", "psi"]

SCHEMAS: dict[str, Any] = {
    "Entity": ENTITY,
    "Window": WINDOW,
    "LedgerEntry": _obj(ENTRY, **ENTRY_FIELDS),
    "CaseStatus": _obj(
        [
            "opened",
            "case_id",
            "purpose",
            "scope",
            "window",
            "expires_ms",
            "expires",
            "state",
            "reason",
            "approvals",
            "needed",
            "closed",
            "now_ms",
        ],
        opened=_ref("LedgerEntry"),
        case_id=STR,
        purpose=STR,
        scope=_array(_ref("Entity")),
        window=_ref("Window"),
        expires_ms=INT,
        expires=STR,
        state={"enum": ["pending", "active", "expired", "closed"]},
        reason=STR | {"description": "the state, for a person: approvals, expiry, closure"},
        approvals=_array(_ref("LedgerEntry")) | {"description": "those that count"},
        needed=INT | {"description": "approvals the genesis requires (k)"},
        closed=_nullable(_ref("LedgerEntry")),
        now_ms=INT | {"description": "the time the state was decided at"},
    ),
    "CaseList": _obj(
        ["needed", "height", "cases"], needed=INT, height=INT, cases=_array(_ref("CaseStatus"))
    ),
    "CaseChange": _obj(
        ["tx_id", "committed", "height", "index", "case"],
        tx_id=DIGEST_HEX,
        committed=BOOL,
        height=_nullable(INT),
        index=_nullable(INT),
        case=_nullable(_ref("CaseStatus")) | {"description": "the case once committed"},
    ),
    "AccessRecord": _obj(
        ["tx_id", "committed", "height", "index"],
        tx_id=DIGEST_HEX,
        committed={"const": True},
        height=INT,
        index=INT,
    ),
    "Fact": {"oneOf": [_fact("report", REPORT_FIELDS), _fact("link", LINK_FIELDS)]},
    "TraceAnswer": _obj(
        [*GRANT, "records", "truncated", "next_after"],
        **GRANT_FIELDS,
        records=_array(_ref("Fact")) | {"description": "reports and links, in ledger order"},
        truncated=BOOL,
        next_after=_nullable(_array(INT, minItems=2, maxItems=2))
        | {"description": "pass as `after` for the next page"},
    ),
    "GraphAnswer": _obj(
        [*GRANT, "depth", "nodes", "edges", "truncated"],
        **GRANT_FIELDS,
        depth=INT,
        nodes=_array(
            _obj(
                ["type", "pseudonym", "depth"],
                type={"enum": [t.value for t in EntityType]},
                pseudonym=DIGEST_HEX,
                depth=INT,
            )
        ),
        edges=_array(
            _obj(
                [*ENTRY, "relation", "a", "b", "observed_ms", "observed"],
                **ENTRY_FIELDS,
                relation={"enum": list(RELATIONS)},
                a=_ref("Entity"),
                b=_ref("Entity"),
                observed_ms=INT,
                observed=STR,
            )
        ),
        truncated=BOOL | {"description": "a cap on nodes or edges left some out"},
    ),
    "HistoryAnswer": _obj(
        [*GRANT, "record", "referred_by", "truncated"],
        **GRANT_FIELDS,
        record=_obj([*ENTRY, "kind"], **ENTRY_FIELDS, kind={"enum": RECORD_KINDS}),
        referred_by=_array(
            _obj(
                [*ENTRY, "kind", "how"],
                **ENTRY_FIELDS,
                kind={"enum": RECORD_KINDS},
                how={"enum": [r.value for r in Reference]},
            )
        ),
        truncated=BOOL,
    ),
    "AuditRecord": _obj(
        [*ENTRY, "case_id", "query", "subject", "answered_ms", "answered", "psi"],
        **ENTRY_FIELDS,
        case_id=STR,
        query={"enum": list(QUERY_KINDS)},
        subject=_nullable(_ref("Entity")) | {"description": "null for a PSI run"},
        answered_ms=INT,
        answered=STR,
        psi=_nullable(
            _obj(
                [
                    "run_id",
                    "initiator",
                    "responder",
                    "entity_type",
                    "initiator_size",
                    "responder_size",
                    "result_size",
                    "outcome",
                ],
                run_id=HEX,
                initiator=STR,
                responder=STR,
                entity_type={"enum": [t.value for t in EntityType]},
                initiator_size=INT,
                responder_size=INT,
                result_size=INT,
                outcome={"enum": list(PSI_OUTCOMES)},
            )
        )
        | {"description": "a PSI run's record (the two members, set sizes, outcome)"},
    ),
    "AuditList": _obj(
        ["records", "next_after"],
        records=_array(_ref("AuditRecord")),
        next_after=_nullable(_array(INT, minItems=2, maxItems=2))
        | {"description": "pass as `after=HEIGHT:INDEX` for the next page"},
    ),
    "WindowRequest": _closed(["start_ms", "end_ms"], start_ms=TIME_MS, end_ms=TIME_MS),
    "OpenCaseRequest": _closed(
        ["case_id", "purpose", "scope", "window", "expires_ms"],
        case_id=CASE_ID,
        purpose=STR,
        scope=_array(IDENTIFIER, minItems=1, maxItems=MAX_SCOPE),
        window=_ref("WindowRequest"),
        expires_ms=TIME_MS,
    )
    | {
        "example": {
            "case_id": "HZ-2026-0194",
            "purpose": "Telecom fraud ring, report 2026/1187",
            "scope": [EXAMPLE_ENTITY, "account:6222020200112233445"],
            "window": EXAMPLE_WINDOW,
            "expires_ms": EXAMPLE_WINDOW["end_ms"],
        }
    },
    "TraceRequest": _closed(
        ["case_id", "entity"],
        case_id=CASE_ID,
        entity=IDENTIFIER,
        window=_ref("WindowRequest"),
        limit={"type": "integer", "minimum": 1, "maximum": DEFAULT_TRACE_LIMIT},
        after=_array(TIME_MS, minItems=2, maxItems=2),
    )
    | {"example": {"case_id": EXAMPLE_CASE_ID, "entity": EXAMPLE_ENTITY, "limit": 100}},
    "GraphRequest": _closed(
        ["case_id", "entity"],
        case_id=CASE_ID,
        entity=IDENTIFIER,
        depth={"type": "integer", "minimum": 0, "maximum": MAX_GRAPH_DEPTH, "default": 2},
        window=_ref("WindowRequest"),
        format={"enum": ["json", "dot"], "default": "json"},
    )
    | {"example": {"case_id": EXAMPLE_CASE_ID, "entity": EXAMPLE_ENTITY, "depth": 3}},
    "HistoryRequest": _closed(
        ["case_id", "tx_id"], case_id=CASE_ID, tx_id=DIGEST_HEX, window=_ref("WindowRequest")
    )
    | {"example": {"case_id": EXAMPLE_CASE_ID, "tx_id": "3f" * 32}},
    "EmptyRequest": _closed([]),
}

BAD_INPUT = _error("The request is malformed; the message names the field.")
UNAVAILABLE = _error(
    "The node cannot serve this now: no tracing service or pseudonym key, a full mempool "
    "(`node_busy`), or the access record was not committed in time (`audit_timeout`)."
)
TOO_LARGE = _error("The body is larger than 64 KiB.")
ACCESS_HEADERS = {
    "Server-Timing": {
        "description": "`authorise`, `audit` (the access record's commit), `query` and "
        "`total` (the whole handler, audit included) in ms",
        "schema": STR,
    },
    "Crosstrace-Access-Tx": {"description": "the access record's tx id", "schema": DIGEST_HEX},
    "Crosstrace-Access-Height": {"description": "the height it committed at", "schema": STR},
}


def _case_id_parameter() -> dict[str, Any]:
    return {"name": "case_id", "in": "path", "required": True, "schema": STR}


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": _ref(name)}}}


def _change_op(summary: str, role: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_case_id_parameter()],
        "requestBody": _body("EmptyRequest", required=False),
        "responses": {
            "200": _json(_ref("CaseChange"), "Committed; `case` is its new state."),
            "202": _json(_ref("CaseChange"), "Submitted, not committed in time."),
            "400": BAD_INPUT,
            "403": _error(f"This node's member lacks the {role} role (`forbidden_role`)."),
            "404": _error("There is no such case (`no_case`)."),
            "409": _error("Already done, or the case is closed or expired."),
            "413": TOO_LARGE,
            "422": _error("The node refused the transaction (`rejected`)."),
            "503": UNAVAILABLE,
        },
    }


def _query_op(summary: str, request: str, answer: str, dot: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _ref(answer)}}
    if dot:
        content[DOT] = {"schema": STR}
    return {
        "summary": summary,
        "requestBody": _body(request),
        "responses": {
            "200": {
                "description": "The answer; its access record is committed.",
                "headers": ACCESS_HEADERS,
                "content": content,
            },
            "400": BAD_INPUT,
            "403": _error(
                "Refused: `no_case`, `not_approved`, `expired`, `closed`, `out_of_scope`, "
                "`outside_window`, or this node may not sign access records (`forbidden_role`)."
            ),
            "404": _error("No such record (`no_record`, history only)."),
            "413": TOO_LARGE,
            "422": _error("The node refused the access record (`rejected`)."),
            "503": UNAVAILABLE,
        },
    }


def tracing_paths() -> dict[str, Any]:
    return {
        "/cases": {
            "get": {
                "summary": "Every case on the ledger with its state, approvals and reason.",
                "responses": {"200": _json(_ref("CaseList"), "The cases."), "503": UNAVAILABLE},
            },
            "post": {
                "summary": (
                    "Open a case: the node signs a `case` transaction as its member (role "
                    "investigator). Scope identifiers are given in the clear and "
                    "pseudonymised by the node; the case is active once k members approve."
                ),
                "requestBody": _body("OpenCaseRequest"),
                "responses": {
                    "201": _json(_ref("CaseChange"), "Committed; `case` is pending approval."),
                    "202": _json(_ref("CaseChange"), "Submitted, not committed in time."),
                    "400": BAD_INPUT,
                    "403": _error("This node's member is no investigator (`forbidden_role`)."),
                    "409": _error("The case id is taken (`case_exists`)."),
                    "413": TOO_LARGE,
                    "422": _error("The node refused the transaction (`rejected`)."),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/cases/{case_id}": {
            "get": {
                "summary": "One case: state, approvals (n of k), reason, scope, window.",
                "parameters": [_case_id_parameter()],
                "responses": {
                    "200": _json(_ref("CaseStatus"), "The case."),
                    "400": BAD_INPUT,
                    "404": _error("There is no such case (`no_case`)."),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/cases/{case_id}/approve": {
            "post": _change_op("Approve a case as this node's member.", "approver")
        },
        "/cases/{case_id}/close": {
            "post": _change_op("Close a case for good as this node's member.", "investigator")
        },
        "/trace": {
            "post": _query_op(
                "Every report and link about an entity in scope of an active case.",
                "TraceRequest",
                "TraceAnswer",
            )
        },
        "/graph": {
            "post": _query_op(
                "The link graph around an entity in scope, breadth-first to `depth`, as "
                "JSON or Graphviz DOT.",
                "GraphRequest",
                "GraphAnswer",
                dot=True,
            )
        },
        "/history": {
            "post": _query_op(
                "Who submitted a record, when, and what refers to it.",
                "HistoryRequest",
                "HistoryAnswer",
            )
        },
        "/audit": {
            "get": {
                "summary": "Access records from the ledger: who queried what under which case.",
                "parameters": [
                    {"name": "case", "in": "query", "schema": CASE_ID},
                    {"name": "member", "in": "query", "schema": STR},
                    {"name": "query", "in": "query", "schema": {"enum": list(QUERY_KINDS)}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}:[0-9]{1,19}$"},
                        "description": "HEIGHT:INDEX, as `next_after` gives it",
                    },
                ],
                "responses": {
                    "200": _json(_ref("AuditList"), "Access records in ledger order."),
                    "400": BAD_INPUT,
                    "503": UNAVAILABLE,
                },
            }
        },
    }

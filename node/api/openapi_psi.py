"""The OpenAPI paths and schemas of the PSI endpoints (``node.api.psi``), merged into the
document by ``node.api.openapi``. Response schemas list every field the handlers always
send, with its type."""

from __future__ import annotations

from typing import Any

from node.identifiers.normalize import EntityType
from node.psi.run import RunState

JSON = "application/json"
TEXT = "text/plain"
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
ENTITY_TYPE = {"type": "string", "enum": [t.value for t in EntityType]}
RUN_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_PROGRESS = _obj(
    ["done", "total", "own_sent", "peer_received", "peer_tagged", "tags_received"],
    done=INT,
    total=_null(INT),
    own_sent=INT,
    peer_received=INT,
    peer_tagged=INT,
    tags_received=INT,
)
_RUN_FIELDS: dict[str, Any] = {
    "run_id": RUN_ID,
    "role": {"type": "string", "enum": ["initiator", "responder"]},
    "peer": STR,
    "case_id": STR,
    "entity_type": ENTITY_TYPE,
    "state": {"type": "string", "enum": [s.value for s in RunState]},
    "outcome": _null(STR),
    "message": STR,
    "own_size": INT,
    "peer_size": _null(INT),
    "result_size": _null(INT),
    "prepared": BOOL,
    "progress": _PROGRESS,
    "record": _null(_obj(["tx_id", "height"], tx_id=STR, height=_null(INT))),
    "started_ms": INT,
    "finished_ms": _null(INT),
    "timings_s": {"type": "object", "additionalProperties": {"type": "number"}},
}
_RUN_REQUIRED = list(_RUN_FIELDS)
_PROBLEM = _obj(["line", "message"], line=INT, message=STR)

SCHEMAS: dict[str, Any] = {
    "PsiRun": _obj(_RUN_REQUIRED, **_RUN_FIELDS),
    "PsiRunStarted": _obj(
        [*_RUN_REQUIRED, "input"],
        **_RUN_FIELDS,
        input=_obj(
            ["lines", "identifiers", "dropped", "seconds"],
            lines=INT,
            identifiers=INT,
            dropped=INT,
            seconds={"type": "number", "description": "Normalising and checking the set."},
        ),
    ),
    "PsiRunResult": _obj(
        [*_RUN_REQUIRED, "intersection"],
        **_RUN_FIELDS,
        intersection=_null({"type": "array", "items": STR}),
    ),
    "PsiInputError": _obj(
        ["error", "message", "problems"],
        error={
            "type": "string",
            "description": "bad_lines, empty, duplicates, not_text, bad_type or too_large",
        },
        message=STR,
        problems={"type": "array", "items": _PROBLEM},
    ),
    "PsiAnswerSets": _obj(
        ["answering", "answer_sets", "loading"],
        answering=BOOL,
        answer_sets={
            "type": "object",
            "additionalProperties": _obj(
                ["size", "source", "loaded_ms", "prepared"],
                size=INT,
                source=STR,
                loaded_ms=INT,
                prepared=BOOL,
            ),
        },
        loading={"type": "array", "items": STR},
    ),
    "PsiAnswerSet": _obj(
        ["entity_type", "size", "source", "loaded_ms"],
        entity_type=ENTITY_TYPE,
        size=INT,
        source=STR,
        loaded_ms=INT,
    ),
}

_UNAVAILABLE = _error("This node runs no PSI service (`unavailable`).")
_BODY = {
    "required": True,
    "content": {
        TEXT: {
            "schema": {"type": "string"},
            "example": "+86 138 0013 8000\n+86 139 0000 0001\n",
        }
    },
    "description": "One identifier a line; blank lines are skipped.",
}
_DEDUPE = {
    "name": "dedupe",
    "in": "query",
    "schema": {"type": "boolean", "default": False},
    "description": "Keep the first of identifiers that repeat once normalised, not refuse.",
}


def psi_paths() -> dict[str, Any]:
    return {
        "/psi/runs": {
            "post": {
                "summary": (
                    "Start a private set intersection with another member under an active "
                    "case naming both; the run goes on in the background."
                ),
                "parameters": [
                    {"name": "case", "in": "query", "required": True, "schema": STR},
                    {"name": "with", "in": "query", "required": True, "schema": STR},
                    {"name": "type", "in": "query", "required": True, "schema": ENTITY_TYPE},
                    _DEDUPE,
                ],
                "requestBody": _BODY,
                "responses": {
                    "202": _json(_ref("PsiRunStarted"), "The run started."),
                    "400": {
                        "description": "A bad query, or the set is refused.",
                        "content": {
                            JSON: {"schema": {"anyOf": [_ref("Error"), _ref("PsiInputError")]}}
                        },
                    },
                    "403": _error("The case does not name both members, or a role is missing."),
                    "404": _error("No such case or member."),
                    "409": _error("The case is not active."),
                    "413": _json(
                        {"anyOf": [_ref("Error"), _ref("PsiInputError")]},
                        "The body or the set is larger than the node takes.",
                    ),
                    "503": _error("Busy, not connected to that member, or no PSI service."),
                },
            },
            "get": {
                "summary": "The runs going on or recently ended here, either role.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["runs", "answering", "answer_sets", "workers", "stats"],
                            "properties": {
                                "runs": {"type": "array", "items": _ref("PsiRun")},
                                "answering": BOOL,
                                "answer_sets": {"type": "object"},
                                "loading": {"type": "array", "items": STR},
                                "workers": INT,
                                "stats": {"type": "object"},
                            },
                        },
                        "The runs, newest first, and the service's counters.",
                    ),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/psi/runs/{run_id}": {
            "get": {
                "summary": "One run; with its intersection once completed and recorded.",
                "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": STR}],
                "responses": {
                    "200": _json(_ref("PsiRunResult"), "The run."),
                    "404": _error("No such run here."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/psi/answer-sets": {
            "get": {
                "summary": "The sets this node answers other members' runs with.",
                "responses": {
                    "200": _json(_ref("PsiAnswerSets"), "By entity type."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/psi/answer-sets/{entity_type}": {
            "put": {
                "summary": "Replace the set this node answers with, for one entity type.",
                "parameters": [
                    {"name": "entity_type", "in": "path", "required": True, "schema": STR},
                    _DEDUPE,
                ],
                "requestBody": _BODY,
                "responses": {
                    "200": _json(_ref("PsiAnswerSet"), "Loaded and hashed."),
                    "400": _json(
                        {"anyOf": [_ref("Error"), _ref("PsiInputError")]}, "The set is refused."
                    ),
                    "413": _json(
                        {"anyOf": [_ref("Error"), _ref("PsiInputError")]},
                        "The body or the set is larger than the node takes.",
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
    }

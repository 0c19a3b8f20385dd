"""The OpenAPI 3.1 document of the local query API (``GET /openapi.json``).

Hand-written: the handlers parse their input themselves (to answer every mistake with
a precise 4xx), so there are no request models a generator could read the shapes from.
``tests/test_api.py`` checks that the document and the app's routes list the same
operations, so neither can gain an endpoint the other lacks.
"""

from __future__ import annotations

from typing import Any

from node.api.openapi_psi import SCHEMAS as PSI_SCHEMAS
from node.api.openapi_psi import psi_paths
from node.api.openapi_tracing import SCHEMAS as TRACING_SCHEMAS
from node.api.openapi_tracing import tracing_paths

JSON = "application/json"
HEX = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}
DIGEST_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error", "message"],
        error={"type": "string", "description": "A stable, machine-readable code."},
        message={"type": "string", "description": "What went wrong, for a person."},
    ),
    "Peer": _obj(
        ["index", "name", "address", "connected"],
        index=INT,
        name=STR,
        address=STR,
        connected=_nullable(BOOL) | {"description": "null when the transport cannot tell"},
        direction=_nullable({"enum": ["inbound", "outbound"]}),
        since=_nullable({"type": "number"})
        | {"description": "Unix time (s) of the last connect or disconnect"},
        sessions=_nullable(INT),
        queued=_nullable(INT) | {"description": "frames waiting in the send queue"},
        last_error=_nullable(STR),
    ),
    "Status": _obj(
        [
            "chain_id",
            "member",
            "height",
            "tip_hash",
            "consensus_height",
            "view",
            "view_active",
            "primary",
            "stable_checkpoint",
            "mempool",
            "peers",
        ],
        chain_id=STR,
        member=_obj(["name", "index"], name=STR, index=INT),
        height=INT | {"description": "height of the last stored block"},
        tip_hash=DIGEST_HEX,
        consensus_height=INT
        | {"description": "height consensus has executed; may briefly lead `height`"},
        view=_nullable(INT),
        view_active=_nullable(BOOL),
        primary=_nullable(INT),
        stable_checkpoint=_nullable(INT),
        mempool=_obj(["txs", "bytes"], txs=INT, bytes=INT),
        peers={"type": "array", "items": _ref("Peer")},
    ),
    "SubmitRequest": {
        "oneOf": [
            _obj(["tx"], tx=HEX),
            _obj(["txs"], txs={"type": "array", "items": HEX, "minItems": 1, "maxItems": 1000}),
        ]
    },
    "SubmitResult": _obj(
        ["tx_id", "accepted", "code", "message"],
        tx_id=DIGEST_HEX,
        accepted=BOOL,
        code={"type": "string", "description": "`accepted`, or why the tx was refused"},
        message=STR,
        committed={"type": "boolean", "description": "only with `wait`"},
        height=INT | {"description": "only once committed"},
        index=INT | {"description": "only once committed"},
    ),
    "SubmitResponse": _obj(["results"], results={"type": "array", "items": _ref("SubmitResult")}),
    "Rejected": {
        "allOf": [_ref("Error"), _ref("SubmitResponse")],
        "description": "No transaction was accepted; `results` says why for each.",
    },
    "Transaction": _obj(
        ["tx_id", "status", "tx"],
        tx_id=DIGEST_HEX,
        status={"enum": ["committed", "pending"]},
        tx=HEX,
        height=INT,
        index=INT,
        envelope=_obj(
            ["chain_id", "member", "signer_key", "nonce", "time_ms", "kind"],
            chain_id=STR,
            member=STR,
            signer_key=HEX,
            nonce=INT,
            time_ms=INT,
            kind=STR,
        ),
    ),
    "Block": _obj(
        ["height", "hash", "header", "tx_ids", "certificate"],
        height=INT,
        hash=DIGEST_HEX,
        header=_obj(
            ["chain_id", "height", "timestamp_ms", "tx_count", "tx_root", "parent_hash"],
            chain_id=STR,
            height=INT,
            timestamp_ms=INT,
            tx_count=INT,
            tx_root=DIGEST_HEX,
            parent_hash=DIGEST_HEX,
        ),
        tx_ids={"type": "array", "items": DIGEST_HEX},
        certificate=_obj(
            ["view", "height", "digest", "signers"],
            view=INT,
            height=INT,
            digest=DIGEST_HEX,
            signers={
                "type": "array",
                "items": _obj(["index", "name", "signature"], index=INT, name=STR, signature=HEX),
            },
        ),
    ),
}

# Private details (``node.api.details``); limits as in ``node.details.records``.
_DETAIL_FIELDS = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 64,
    "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
    "additionalProperties": {"type": "string", "maxLength": 4096},
    "description": "Text fields; at most 65536 bytes in their canonical encoding.",
}
_MEMBER_NAMES = {"type": "array", "items": STR}
SCHEMAS |= {
    "DetailsRequest": _obj(
        ["tx", "salt", "details"],
        tx=HEX | {"description": "the signed report or link, committing to the details"},
        salt=DIGEST_HEX | {"description": "the 32-byte salt of the commitment"},
        details=_DETAIL_FIELDS,
        share_with=_MEMBER_NAMES
        | {
            "description": "member names; the submitter is always included. Default: the "
            "members with the investigator role. Never written to the ledger."
        },
    )
    | {"additionalProperties": False},
    "DetailsResult": {
        "allOf": [
            _ref("SubmitResult"),
            _obj(
                ["shared_with"],
                shared_with=_MEMBER_NAMES
                | {"description": "the recipients, in genesis order, this member included"},
            ),
        ]
    },
    "DetailsSubmitResponse": _obj(
        ["results"],
        results={"type": "array", "items": _ref("DetailsResult"), "minItems": 1, "maxItems": 1},
    ),
    "DetailsRejected": {
        "allOf": [_ref("Error"), _ref("DetailsSubmitResponse")],
        "description": "The transaction was refused; the details were not kept.",
    },
    "PrivateDetails": _obj(
        [
            "tx_id",
            "details",
            "salt",
            "sender",
            "stored_ms",
            "commitment",
            "height",
            "matches_commitment",
            "shared_with",
            "undelivered",
        ],
        tx_id=DIGEST_HEX,
        details=_DETAIL_FIELDS,
        salt=DIGEST_HEX,
        sender=STR | {"description": "the member that signed the transaction and sent them"},
        stored_ms=INT | {"description": "Unix time (ms) they were stored here"},
        commitment=_nullable(DIGEST_HEX)
        | {"description": "the commitment on this node's ledger; null until committed here"},
        height=_nullable(INT),
        matches_commitment=_nullable(BOOL)
        | {"description": "whether salt and details give the on-ledger commitment"},
        shared_with=_MEMBER_NAMES
        | {"description": "on the submitting node only: the recipients it named"},
        undelivered=_MEMBER_NAMES
        | {"description": "on the submitting node only: recipients yet to acknowledge"},
    ),
    "DetailsNotHeld": {
        "allOf": [
            _ref("Error"),
            _obj(
                ["error"],
                error={
                    "enum": ["not_found", "no_commitment", "not_entitled", "pending", "deleted"]
                },
            ),
        ],
        "description": "Why this node shows no details: `not_found` (no such committed "
        "transaction), `no_commitment` (it commits to none), `not_entitled` (this member "
        "is not a recipient, or they have not arrived), `pending` (they arrived before the "
        "transaction committed here), `deleted` (by retention; the commitment stays).",
    },
}

BAD_INPUT = _error("The request is malformed (the `error` code says how).")
NOT_FOUND = _error("There is no such object.")
UNAVAILABLE = _error("This node keeps no private details (`unavailable`).")


def _block_op(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    responses = {"200": _json(_ref("Block"), "The block."), "404": NOT_FOUND}
    if parameters:
        responses["400"] = BAD_INPUT
    return {"summary": summary, "parameters": parameters, "responses": responses}


def _details_paths() -> dict[str, Any]:
    tx_id = {"name": "tx_id", "in": "path", "required": True, "schema": DIGEST_HEX}
    wait = [
        {
            "name": "wait",
            "in": "query",
            "schema": {"type": "boolean", "default": False},
            "description": "Answer once the transaction is committed.",
        },
        {
            "name": "timeout",
            "in": "query",
            "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 5},
            "description": "Seconds to wait for commitment (with `wait`).",
        },
    ]
    return {
        "/details": {
            "post": {
                "summary": (
                    "Submit a report or link signed by this node's member together with the "
                    "private details it commits to: the node checks the commitment, keeps "
                    "the details in its private store, submits the transaction and sends "
                    "the details over the secure channel to the named members only."
                ),
                "parameters": wait,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("DetailsRequest")}},
                },
                "responses": {
                    "200": _json(_ref("DetailsSubmitResponse"), "Committed."),
                    "202": _json(
                        _ref("DetailsSubmitResponse"),
                        "Accepted; not (yet) committed, or `wait` was not asked for.",
                    ),
                    "400": BAD_INPUT,
                    "409": _error("Details for this transaction are already held."),
                    "413": _error("The body is larger than the limit."),
                    "422": {
                        "description": "Refused: signed by another member (`not_own`), no "
                        "commitment (`no_commitment`), details that do not match it "
                        "(`mismatch`), or the transaction itself (`rejected`).",
                        "content": {
                            JSON: {"schema": {"oneOf": [_ref("Error"), _ref("DetailsRejected")]}}
                        },
                    },
                    "503": UNAVAILABLE,
                },
            }
        },
        "/details/{tx_id}": {
            "get": {
                "summary": (
                    "The private details of a transaction if this node holds them, and "
                    "whether they match the commitment on its ledger."
                ),
                "parameters": [tx_id],
                "responses": {
                    "200": _json(_ref("PrivateDetails"), "The details."),
                    "400": BAD_INPUT,
                    "404": _json(_ref("DetailsNotHeld"), "Not held here; the code says why."),
                    "503": UNAVAILABLE,
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document; the app renders it once, when it is built."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crosstrace node: local query API",
            "version": "1",
            "description": (
                "Served by each node on 127.0.0.1. Every error is a JSON object "
                '`{"error": code, "message": text}` with a 4xx status.'
            ),
        },
        "paths": {
            "/status": {
                "get": {
                    "summary": "Chain, member, consensus state, mempool and peers.",
                    "responses": {"200": _json(_ref("Status"), "The node's status.")},
                }
            },
            "/txs": {
                "post": {
                    "summary": "Submit one transaction or a batch of up to 1000.",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "boolean", "default": False},
                            "description": "Answer once every accepted tx is committed.",
                        },
                        {
                            "name": "timeout",
                            "in": "query",
                            "schema": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": 60,
                                "default": 5,
                            },
                            "description": "Seconds to wait for commitment (with `wait`).",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                }
                            },
                            JSON: {"schema": _ref("SubmitRequest")},
                        },
                    },
                    "responses": {
                        "200": _json(_ref("SubmitResponse"), "Every accepted tx is committed."),
                        "202": _json(
                            _ref("SubmitResponse"),
                            "Accepted; not (yet) committed, or `wait` was not asked for.",
                        ),
                        "400": BAD_INPUT,
                        "413": _error("The body is larger than the limit."),
                        "415": _error("The body is neither JSON nor octet-stream."),
                        "422": _json(_ref("Rejected"), "Every transaction was refused."),
                    },
                }
            },
            "/txs/{tx_id}": {
                "get": {
                    "summary": "A committed or pending transaction and its location.",
                    "parameters": [
                        {"name": "tx_id", "in": "path", "required": True, "schema": DIGEST_HEX}
                    ],
                    "responses": {
                        "200": _json(_ref("Transaction"), "The transaction."),
                        "400": BAD_INPUT,
                        "404": NOT_FOUND,
                    },
                }
            },
            "/txs/{tx_id}/proof": {
                "get": {
                    "summary": (
                        "The inclusion proof of a committed transaction: a binary file "
                        "(the transaction, its Merkle path, the block header and the commit "
                        "certificate) that `crosstrace verify-proof FILE --genesis G` "
                        "checks offline."
                    ),
                    "parameters": [
                        {"name": "tx_id", "in": "path", "required": True, "schema": DIGEST_HEX}
                    ],
                    "responses": {
                        "200": {
                            "description": "The proof file (format: `node.ledger.proofs`).",
                            "content": {
                                "application/octet-stream": {
                                    "schema": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    }
                                }
                            },
                        },
                        "400": BAD_INPUT,
                        "404": _error(
                            "No such transaction (`not_found`), or not committed yet (`pending`)."
                        ),
                    },
                }
            },
            "/blocks/latest": {"get": _block_op("The last stored block.", [])},
            "/blocks/{height}": {
                "get": _block_op(
                    "The block at a height, with its commit certificate.",
                    [{"name": "height", "in": "path", "required": True, "schema": INT}],
                )
            },
            **_details_paths(),
            **tracing_paths(),
            **psi_paths(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format 0.0.4).",
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
        },
        "components": {"schemas": SCHEMAS | TRACING_SCHEMAS | PSI_SCHEMAS},
    }

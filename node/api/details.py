"""Private details in the local API: ``POST /details`` and ``GET /details/{tx_id}``
(their metrics: ``node.api.metrics``).

``POST /txs`` only ever sees signed transaction bytes, so it cannot carry details. The
submitting member's tools (``crosstrace submit report ... --detail K=V``) sign the
transaction with the commitment themselves and post it here together with the salt, the
details and the recipients; the node checks the commitment, keeps the details in its
private store, submits the transaction and delivers the details
(``node.details.service``). Like the rest of the API this is for 127.0.0.1 only: the
body holds the details in the clear.

``GET /details/{tx_id}`` answers with the details this node holds and whether they
match the commitment on its ledger, or 404 with the reason as the error code:
``not_found`` (no such committed transaction), ``no_commitment`` (it commits to no
details), ``not_entitled`` (this member was not a recipient, or they have not arrived),
``pending`` (they arrived; the transaction is not committed here yet), ``deleted``
(retention deleted them; the commitment stays on the ledger).
"""

from __future__ import annotations

import json
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.api.input import ApiError, digest, read_body, tx_hex, wait_options
from node.details.records import Details, encode_details
from node.details.service import NotHeld, PrivateDetailsService, ShareError
from node.ledger.store import LedgerStore

# Far above the largest valid request (a 16 KiB transaction and 64 KiB of details, both
# hex or JSON-escaped), far below anything that could hurt.
MAX_DETAILS_BODY = 1024 * 1024
_FIELDS = {"tx", "salt", "details", "share_with"}


def details_routes(service: PrivateDetailsService | None, store: LedgerStore) -> list[Route]:
    """The two routes; without a service (a node built without a private store) they
    answer 503, so the API's shape does not depend on how the node was assembled."""

    def need_service() -> PrivateDetailsService:
        if service is None:
            raise ApiError(503, "unavailable", "this node keeps no private details")
        return service

    async def submit(request: Request) -> Response:
        details_service = need_service()
        wait, timeout = wait_options(request.query_params)
        tx_bytes, salt, details, share_with = parse_share(
            await read_body(request, MAX_DETAILS_BODY)
        )
        try:
            result, shared_with = await details_service.submit_with_details(
                tx_bytes, salt, details, share_with
            )
        except ShareError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        row: dict[str, Any] = {
            "tx_id": result.tx_id.hex(),
            "accepted": result.accepted,
            "code": result.code,
            "message": result.message,
            "shared_with": list(shared_with),
        }
        if not result.accepted:
            raise ApiError(422, "rejected", "the transaction was refused", {"results": [row]})
        if not wait:
            return JSONResponse({"results": [row]}, 202)
        with trio.move_on_after(timeout):
            await details_service.runtime.wait_committed(result.tx_id)
        location = store.tx_location(result.tx_id)
        row["committed"] = location is not None
        if location is not None:
            row["height"], row["index"] = location
        return JSONResponse({"results": [row]}, 200 if location is not None else 202)

    async def show(request: Request) -> Response:
        details_service = need_service()
        wanted = digest(request.path_params["tx_id"], "tx_id")
        try:
            view = details_service.lookup(wanted)
        except NotHeld as exc:
            raise ApiError(404, exc.code, exc.message) from None
        return JSONResponse(
            {
                "tx_id": view.tx_id.hex(),
                "details": view.details,
                "salt": view.salt.hex(),
                "sender": view.sender,
                "stored_ms": view.stored_ms,
                "commitment": None if view.commitment is None else view.commitment.hex(),
                "height": view.height,
                "matches_commitment": view.matches,
                "shared_with": list(view.shared_with),
                "undelivered": list(view.undelivered),
            }
        )

    return [
        Route("/details", submit, methods=["POST"]),
        Route("/details/{tx_id}", show, methods=["GET"]),
    ]


def parse_share(body: bytes) -> tuple[bytes, bytes, Details, list[str] | None]:
    """``{"tx": hex, "salt": hex, "details": {key: text}, "share_with": [name, ...]}``;
    ``share_with`` may be left out for the default recipients. Values are never quoted
    back: they are private."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if (
        not isinstance(doc, dict)
        or not doc.keys() <= _FIELDS
        or not {"tx", "salt", "details"} <= doc.keys()
    ):
        raise ApiError(
            400,
            "bad_request",
            'expected an object with "tx", "salt", "details" and optionally "share_with"',
        )
    tx_bytes = tx_hex(doc["tx"], "tx")
    if not isinstance(doc["salt"], str):
        raise ApiError(400, "bad_hex", "salt must be a string of hex digits")
    salt = digest(doc["salt"], "salt")
    fields = doc["details"]
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise ApiError(400, "bad_details", "details must be an object of text fields")
    try:
        details = Details.of(fields)
        encode_details(details)
    except ValueError as exc:
        raise ApiError(400, "bad_details", str(exc)) from None
    share_with = doc.get("share_with")
    if share_with is not None and (
        not isinstance(share_with, list) or not all(isinstance(n, str) for n in share_with)
    ):
        raise ApiError(400, "bad_request", "share_with must be a list of member names")
    return tx_bytes, salt, details, share_with

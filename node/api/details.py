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

from typing import Annotated, Any

import trio
from fastapi import Depends, FastAPI, Path, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.fields import DigestHex
from node.api.input import JsonBody
from node.api.models import (
    BAD_INPUT,
    DetailsNotHeld,
    DetailsRejected,
    DetailsRequest,
    DetailsSubmitResponse,
    Error,
    PrivateDetails,
    WaitQuery,
    answer,
    refusal,
)
from node.details.service import PrivateDetailsService
from node.ledger.store import LedgerStore
from node.refusals import Rejected, Unavailable

# Far above the largest valid request (a 16 KiB transaction and 64 KiB of details, both
# hex or JSON-escaped), far below anything that could hurt.
MAX_DETAILS_BODY = 1024 * 1024
SHARE = JsonBody(DetailsRequest, MAX_DETAILS_BODY)
UNAVAILABLE = refusal("This node keeps no private details (`unavailable`).")


def details_routes(app: FastAPI, service: PrivateDetailsService | None, store: LedgerStore) -> None:
    """Adds the two routes; without a service (a node built without a private store) they
    answer 503, so the API's shape does not depend on how the node was assembled."""

    def need_service() -> PrivateDetailsService:
        if service is None:
            raise Unavailable("unavailable", "this node keeps no private details")
        return service

    async def need() -> None:
        need_service()

    async def submit(request: Request, options: Annotated[WaitQuery, Query()]) -> Response:
        details_service = need_service()
        share = await SHARE.read(request)
        result, shared_with = await details_service.submit_with_details(
            share.tx, share.salt, share.details, share.share_with
        )
        row: dict[str, Any] = {
            "tx_id": result.tx_id.hex(),
            "accepted": result.accepted,
            "code": result.code,
            "message": result.message,
            "shared_with": list(shared_with),
        }
        if not result.accepted:
            raise Rejected("rejected", "the transaction was refused", {"results": [row]})
        if not options.wait:
            return JSONResponse({"results": [row]}, 202)
        with trio.move_on_after(options.timeout):
            await details_service.runtime.wait_committed(result.tx_id)
        location = store.tx_location(result.tx_id)
        row["committed"] = location is not None
        if location is not None:
            row["height"], row["index"] = location
        return JSONResponse({"results": [row]}, 200 if location is not None else 202)

    async def show(tx_id: Annotated[DigestHex, Path()]) -> Response:
        view = need_service().lookup(tx_id)
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

    app.add_api_route(
        "/details",
        submit,
        methods=["POST"],
        dependencies=[Depends(need)],
        summary=(
            "Submit a report, link or case signed by this node's member together with the "
            "private details it commits to (a case's: its justification): the node checks "
            "the commitment, keeps the details in its private store, submits the "
            "transaction and sends the details over the secure channel to the named "
            "members only."
        ),
        openapi_extra=SHARE.openapi,
        responses={
            200: answer(DetailsSubmitResponse, "Committed."),
            202: answer(
                DetailsSubmitResponse,
                "Accepted; not (yet) committed, or `wait` was not asked for.",
            ),
            400: BAD_INPUT,
            409: refusal("Details for this transaction are already held."),
            413: refusal("The body is larger than the limit."),
            422: answer(
                Error | DetailsRejected,
                "Refused: signed by another member (`not_own`), no commitment "
                "(`no_commitment`), details that do not match it (`mismatch`), or the "
                "transaction itself (`rejected`).",
            ),
            503: UNAVAILABLE,
        },
    )
    app.add_api_route(
        "/details/{tx_id}",
        show,
        methods=["GET"],
        dependencies=[Depends(need)],
        summary=(
            "The private details of a transaction if this node holds them, and whether they "
            "match the commitment on its ledger."
        ),
        responses={
            200: answer(PrivateDetails, "The details."),
            400: BAD_INPUT,
            404: answer(DetailsNotHeld, "Not held here; the code says why."),
            503: UNAVAILABLE,
        },
    )

"""The local query API: HTTP/JSON for the member's own tools, served inside the node's
trio run (``node.api.server.serve_api`` runs in the caller's nursery and stops when it
is cancelled).

FastAPI (on Starlette) routes the requests and Hypercorn serves them; all run on trio
(Starlette through anyio), so a handler reads the runtime, mempool and store directly,
with no locks: nothing else runs between two awaits. Every handler that touches the
runtime is ``async def`` (FastAPI would run a plain ``def`` in a thread). Work that may
take long (decoding a large block, parsing a large body) goes to a worker thread so
consensus keeps moving.

The API is meant for 127.0.0.1. Every operation but ``/healthz``, ``/readyz``,
``/metrics``, ``/openapi.json`` and the console's static files (``/console/``) needs
the bearer token of one of the member's users
(``node.setup.users``) holding a role the table in ``node.api.auth`` names for it; what
a user does under a case is recorded on the ledger with the user's pseudonymous actor
id. The node still accepts a transaction only with a valid signature of a member's
key, as it does from peers. A web page in a
browser on the same host cannot drive it (``node.api.guard``: JSON or documented bytes
only on state-changing requests, the ``Host`` and ``Origin`` checked, no CORS), and the
bodies of all requests share one memory budget and one deadline. ``node.api.server``
serves it with a cap on connections.

Every error is ``{"error": code, "message": text}`` with a 4xx status: the services
raise the project's refusals and ``node.api.errors`` gives each kind its status; bad
input never produces a 500, and messages never quote what the client sent (it may be an
identifier). Request and response bodies are pydantic models (``node.api.models*``),
from which the OpenAPI document is generated (``node.api.document``, served at
``/openapi.json``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

import trio
from fastapi import FastAPI, Path, Query
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consensus.codec import DecodeError
from node.api.auth import Authenticate
from node.api.console import console_routes
from node.api.details import details_routes
from node.api.disclosure import disclosure_routes
from node.api.document import DESCRIPTION, TITLE, VERSION, openapi_document
from node.api.errors import EXCEPTION_HANDLERS
from node.api.fields import DigestHex, Height
from node.api.guard import (
    DEFAULT_BODY_BUDGET_BYTES,
    BodyBudget,
    GuardPolicy,
    GuardStatistics,
    RequestGuard,
)
from node.api.input import (
    JSON,
    MAX_BODY_BYTES,
    OCTETS,
    JsonBody,
    off_the_loop_if_large,
    raw_content,
    read_body,
    request_body,
)
from node.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.api.metrics import (
    DetailsCollector,
    GuardCollector,
    MetricsCollector,
    PseudonymCollector,
    PsiCollector,
)
from node.api.models import (
    BAD_INPUT,
    Block,
    Status,
    SubmitRequest,
    SubmitResponse,
    Transaction,
    WaitQuery,
    answer,
    refusal,
)
from node.api.models import Rejected as RejectedBatch
from node.api.proof import proof_route
from node.api.pseudonyms import pseudonym_routes
from node.api.psi import psi_routes
from node.api.tracing import tracing_routes
from node.details.service import PrivateDetailsService
from node.disclosure.service import DisclosureService
from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime, SubmitResult
from node.ledger.layout import MAX_HEIGHT
from node.ledger.store import LedgerStore
from node.ledger.transactions import decode_tx, tx_id
from node.ledger.tx_batch import BatchBodyError, is_batch_body, parse_batch_body
from node.pseudonyms.service import PseudonymService
from node.psi.service import PsiService
from node.refusals import Busy, Invalid, NotFound, Rejected, Unsupported
from node.setup.genesis import Genesis
from node.setup.users import UserStore
from node.tracing.service import TracingService

log = logging.getLogger("crosstrace.api")


class _Api:
    def __init__(
        self, runtime: NodeRuntime, store: LedgerStore, genesis: Genesis, max_body_bytes: int
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.genesis = genesis
        self.max_body_bytes = max_body_bytes
        self.metrics_collector = MetricsCollector(
            runtime, store, genesis.members[runtime.member].name
        )
        self.submit_body = JsonBody(SubmitRequest, max_body_bytes)
        self.openapi_bytes = b""  # once every route is added (build_app)

    # -------------------------------------------------------------- status and metrics

    async def status(self, request: Request) -> Response:
        runtime, genesis = self.runtime, self.genesis
        height, tip_hash = self.store.tip()
        replica = runtime.replica  # None only until the runtime has restored its state
        return JSONResponse(
            {
                "chain_id": genesis.chain_id,
                "member": {"name": genesis.members[runtime.member].name, "index": runtime.member},
                "height": height,
                "tip_hash": tip_hash.hex(),
                # Consensus executes a block before the worker thread stores it; blocks
                # up to ``height`` can be fetched, this one may be a little ahead.
                "consensus_height": runtime.height,
                "view": None if replica is None else replica.view,
                "view_active": None if replica is None else replica.view_active,
                "primary": None if replica is None else replica.primary,
                "stable_checkpoint": None if replica is None else replica.low_watermark,
                "mempool": {"txs": len(runtime.mempool), "bytes": runtime.mempool.size_bytes},
                "peers": self._peers(),
            }
        )

    def _peers(self) -> list[dict[str, Any]]:
        stats = peer_statistics(self.runtime)
        # The transport's ``since`` is trio's clock; shown as Unix time, which is what a
        # person or a tool can compare with other timestamps.
        offset = time.time() - trio.current_time()
        rows: list[dict[str, Any]] = []
        for index, member in enumerate(self.genesis.members):
            if index == self.runtime.member:
                continue
            row: dict[str, Any] = {"index": index, "name": member.name, "address": member.address}
            peer = None if stats is None else stats.get(index)
            if peer is None:
                row |= {
                    "connected": None,
                    "direction": None,
                    "since": None,
                    "sessions": None,
                    "queued": None,
                    "last_error": None,
                }
            else:
                row |= {
                    "connected": peer.connected,
                    "direction": peer.direction,
                    "since": None if peer.since is None else round(peer.since + offset, 3),
                    "sessions": peer.sessions,
                    "queued": peer.queued,
                    "last_error": peer.last_error,
                }
            rows.append(row)
        return rows

    async def metrics(self, request: Request) -> Response:
        return Response(self.metrics_collector.render(), media_type=METRICS_CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        if self.runtime.replica is None:
            return JSONResponse(
                {"status": "starting", "message": "the runtime has not restored its state yet"},
                503,
            )
        return JSONResponse({"status": "ready"})

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_bytes, media_type=JSON)

    # -------------------------------------------------------------- submitting

    async def submit(self, request: Request, options: Annotated[WaitQuery, Query()]) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in (OCTETS, JSON):
            raise Unsupported(
                "unsupported_media_type",
                "send the transaction as application/octet-stream, or JSON "
                '{"tx": hex} or {"txs": [hex, ...]} as application/json',
            )
        body = await read_body(request, self.max_body_bytes)
        # Past the bound even for one transaction: refused before the body is parsed.
        # (Read first: an HTTP/1.1 answer before the body is in may cost the client its
        # connection while it still sends, an error instead of the 429.)
        self.runtime.refuse_if_busy(1)
        if kind == OCTETS:
            if not body:
                raise Invalid("empty_body", "the body holds no transaction")
            # One encoded transaction, or many in the binary batch format.
            txs = (
                await off_the_loop_if_large(_parse_batch_body, body)
                if is_batch_body(body)
                else [body]
            )
        else:
            txs = (await off_the_loop_if_large(self.submit_body.parse, body)).txs
        # Past the admission bound this raises Busy (429 with Retry-After) before any
        # signature is checked; nothing of the request is kept.
        results = await self.runtime.submit_batch(txs, bounded=True)
        rows = [_result_row(raw, result) for raw, result in zip(txs, results, strict=True)]
        accepted = [result.tx_id for result in results if result.accepted]
        if not accepted and all(result.code in _RETRYABLE for result in results):
            # Only a full pool stood in the way: that is overload too, not a bad request.
            raise Busy(
                "overloaded",
                "the mempool has no room for these transactions; nothing was kept, send "
                "the same request again after retry_after seconds",
                {"reason": "mempool", "results": rows},
                retry_after_s=self.runtime.admission.retry_after_s(len(txs), trio.current_time()),
            )
        if not accepted:
            raise Rejected(
                "rejected", "no transaction was accepted; each result says why", {"results": rows}
            )
        if not options.wait:
            return JSONResponse({"results": rows}, 202)
        with trio.move_on_after(options.timeout):
            for accepted_id in accepted:
                await self.runtime.wait_committed(accepted_id)
        all_committed = True
        for row, result in zip(rows, results, strict=True):
            if not result.accepted:
                continue
            location = self.store.tx_location(result.tx_id)
            row["committed"] = location is not None
            if location is None:
                all_committed = False
            else:
                row["height"], row["index"] = location
        return JSONResponse({"results": rows}, 200 if all_committed else 202)

    # -------------------------------------------------------------- reading the ledger

    async def get_tx(self, tx_id: Annotated[DigestHex, Path()]) -> Response:
        wanted = tx_id
        location = self.store.tx_location(wanted)
        data = None if location is None else self.store.tx(wanted)
        if location is not None and data is not None:
            row: dict[str, Any] = {"tx_id": wanted.hex(), "status": "committed"}
            row["height"], row["index"] = location
        else:
            entry = self.runtime.mempool.get(wanted)
            if entry is None:
                raise NotFound("not_found", "no transaction with this id is known")
            data = entry.data
            row = {"tx_id": wanted.hex(), "status": "pending"}
        row["tx"] = data.hex()
        envelope = _envelope(data)
        if envelope is not None:
            row["envelope"] = envelope
        return JSONResponse(row)

    async def get_block(self, height: Annotated[Height, Path()]) -> Response:
        if not 1 <= height <= MAX_HEIGHT:
            raise NotFound("not_found", "there is no block at this height")
        return await self._block_response(height)

    async def latest_block(self, request: Request) -> Response:
        height, _ = self.store.tip()
        if height == 0:
            raise NotFound("not_found", "no block has been committed yet")
        return await self._block_response(height)

    async def _block_response(self, height: int) -> Response:
        view = await trio.to_thread.run_sync(self._block_view, height)
        if view is None:
            raise NotFound("not_found", "there is no block at this height")
        return JSONResponse(view)

    def _block_view(self, height: int) -> dict[str, Any] | None:
        block = self.store.block(height)
        cert = self.store.certificate(height)
        if block is None or cert is None:
            return None
        header = block.header
        members = self.genesis.members
        return {
            "height": header.height,
            "hash": block.hash().hex(),
            "header": {
                "chain_id": header.chain_id,
                "height": header.height,
                "timestamp_ms": header.timestamp_ms,
                "tx_count": header.tx_count,
                "tx_root": header.tx_root.hex(),
                "parent_hash": header.parent_hash.hex(),
            },
            "tx_ids": [tx_id(tx).hex() for tx in block.txs],
            "certificate": {
                "view": cert.view,
                "height": cert.height,
                "digest": cert.digest.hex(),
                "signers": [
                    {
                        "index": sig.member,
                        "name": members[sig.member].name if sig.member < len(members) else None,
                        "signature": sig.signature.hex(),
                    }
                    for sig in cert.signatures
                ],
            },
        }


def build_app(
    runtime: NodeRuntime,
    store: LedgerStore,
    genesis: Genesis,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    tracing: TracingService | None = None,
    details: PrivateDetailsService | None = None,
    psi: PsiService | None = None,
    disclosure: DisclosureService | None = None,
    pseudonyms: PseudonymService | None = None,
    guard: GuardPolicy | None = None,
    body_budget_bytes: int = DEFAULT_BODY_BUDGET_BYTES,
    users: UserStore | None = None,
) -> FastAPI:
    """The node's API. ``guard`` says which host names it answers to (the loopback names
    by default) and ``body_budget_bytes`` how many bytes of request bodies it holds at
    once, over all requests (``node.api.guard``). ``users`` are the member's users whose
    tokens it takes (``node.api.auth``); without it only the open endpoints answer."""
    api = _Api(runtime, store, genesis, max_body_bytes)
    budget = BodyBudget(body_budget_bytes)
    guard_stats = GuardStatistics()
    api.metrics_collector.register(GuardCollector(budget, guard_stats))
    if details is not None:
        api.metrics_collector.register(DetailsCollector(details))
    if psi is not None:
        api.metrics_collector.register(PsiCollector(psi))
    if pseudonyms is not None:
        api.metrics_collector.register(PseudonymCollector(pseudonyms))
    app = FastAPI(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        # The document is served by a route of its own below, generated once; no pages
        # (Swagger UI, ReDoc) that would load scripts from the internet.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        exception_handlers=EXCEPTION_HANDLERS,
        separate_input_output_schemas=False,
        # No OpenTelemetry: the node exports nothing, and the checks cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    not_found = refusal("There is no such object.")
    app.add_api_route(
        "/status",
        api.status,
        methods=["GET"],
        summary="Chain, member, consensus state, mempool and peers.",
        responses={200: answer(Status, "The node's status.")},
    )
    app.add_api_route(
        "/txs",
        api.submit,
        methods=["POST"],
        summary="Submit one transaction or a batch of up to 1000.",
        openapi_extra=request_body(raw_content(OCTETS), api.submit_body.content),
        responses={
            200: answer(SubmitResponse, "Every accepted tx is committed."),
            202: answer(
                SubmitResponse, "Accepted; not (yet) committed, or `wait` was not asked for."
            ),
            400: BAD_INPUT,
            413: refusal("The body is larger than the limit."),
            415: refusal("The body is neither JSON nor octet-stream."),
            422: answer(RejectedBatch, "Every transaction was refused."),
            429: refusal(
                "Overloaded: the node holds what it commits in about a second and this "
                "member is past its share, or the mempool is full. Nothing was kept; "
                "`Retry-After` (and `retry_after` in the body) says after how many "
                "seconds to send the same request again; `reason` is `share`, "
                "`capacity` or `mempool`."
            )
            | {
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before sending the request again.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
            },
        },
    )
    app.add_api_route(
        "/txs/{tx_id}",
        api.get_tx,
        methods=["GET"],
        summary="A committed or pending transaction and its location.",
        responses={200: answer(Transaction, "The transaction."), 400: BAD_INPUT, 404: not_found},
    )
    proof_route(app, runtime, store)
    # Before "/blocks/{height}", which would otherwise take "latest" as a height.
    app.add_api_route(
        "/blocks/latest",
        api.latest_block,
        methods=["GET"],
        summary="The last stored block.",
        responses={200: answer(Block, "The block."), 404: not_found},
    )
    app.add_api_route(
        "/blocks/{height}",
        api.get_block,
        methods=["GET"],
        summary="The block at a height, with its commit certificate.",
        responses={200: answer(Block, "The block."), 400: BAD_INPUT, 404: not_found},
    )
    details_routes(app, details, store)
    tracing_routes(app, tracing, details, users)  # cases, queries and audit: node.api.tracing
    psi_routes(app, psi)  # private set intersection: node.api.psi
    disclosure_routes(app, disclosure)  # identities under a case: node.api.disclosure
    pseudonym_routes(app, pseudonyms)  # threshold pseudonyms: node.api.pseudonyms
    app.add_api_route(
        "/metrics",
        api.metrics,
        methods=["GET"],
        response_class=Response,  # not JSON: the document shows the route's own type
        summary="Prometheus metrics (text exposition format 0.0.4).",
        responses={200: {"description": "The metrics.", "content": raw_content("text/plain")}},
    )
    app.add_api_route(
        "/healthz",
        api.healthz,
        methods=["GET"],
        summary="Liveness: the API answers.",
        responses={200: {"description": "Alive."}},
    )
    app.add_api_route(
        "/readyz",
        api.readyz,
        methods=["GET"],
        summary="Readiness: the runtime has restored its state and the API serves.",
        responses={
            200: {"description": "Ready."},
            503: {"description": "Still restoring the runtime's state."},
        },
    )
    app.add_api_route(
        "/openapi.json",
        api.openapi,
        methods=["GET"],
        summary="This document.",
        responses={
            200: {
                "description": "The OpenAPI document.",
                "content": {JSON: {"schema": {"type": "object"}}},
            }
        },
    )
    console_routes(app)  # the investigator's console: static files, node.api.console
    # Inside the guard: who the caller is and whether its roles allow the route.
    app.add_middleware(Authenticate, routes=app.router.routes, users=users)
    # Outermost: a request the guard refuses never reaches routing or a handler.
    app.add_middleware(
        RequestGuard, policy=guard or GuardPolicy(), budget=budget, stats=guard_stats
    )
    api.openapi_bytes = json.dumps(openapi_document(app), separators=(",", ":")).encode()
    # HEAD where there is GET, as Starlette's own routes have it; added once the document
    # is made, which lists the GET operations only.
    for route in app.routes:
        if isinstance(route, APIRoute) and route.methods and "GET" in route.methods:
            route.methods.add("HEAD")
    return app


# Mempool refusals that waiting cures (node.host.mempool.RejectReason).
_RETRYABLE = frozenset({"full", "member_quota"})


def _parse_batch_body(body: bytes) -> list[bytes]:
    try:
        return parse_batch_body(body)
    except BatchBodyError as exc:
        raise Invalid("bad_batch", f"the binary batch body is malformed: {exc}") from None


def _result_row(raw: bytes, result: SubmitResult) -> dict[str, Any]:
    # The runtime leaves the id empty for a transaction it could not decode; the id is
    # a hash of the bytes, so the client still gets one to match its request against.
    return {
        "tx_id": (result.tx_id or tx_id(raw)).hex(),
        "accepted": result.accepted,
        "code": result.code,
        "message": result.message,
    }


def _envelope(data: bytes) -> dict[str, Any] | None:
    try:
        tx = decode_tx(data)
    except (DecodeError, ValueError):
        return None  # only possible for bytes that never passed admission
    return {
        "chain_id": tx.chain_id,
        "member": tx.member,
        "signer_key": tx.signer_key.hex(),
        "nonce": tx.nonce,
        "time_ms": tx.time_ms,
        "kind": tx.kind,
    }

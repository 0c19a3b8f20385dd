"""The local query API: HTTP/JSON for the member's own tools, served inside the node's
trio run (``serve_api`` runs in the caller's nursery and stops when it is cancelled).

Starlette routes the requests and Hypercorn serves them; both run on trio (Starlette
through anyio), so a handler reads the runtime, mempool and store directly, with no
locks: nothing else runs between two awaits. Work that may take long (decoding a
large block, parsing a large body) goes to a worker thread so consensus keeps moving.

The API is meant for 127.0.0.1 and has no authentication: whoever can reach it can read
the whole ledger and submit transactions, though the node accepts a transaction only
with a valid signature of a member's key, as it does from peers.

Every error is ``{"error": code, "message": text}`` with a 4xx status; bad input never
produces a 500, and messages never quote what the client sent (it may be an
identifier). Endpoints: see ``node.api.openapi`` (served at ``/openapi.json``).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consensus.codec import DecodeError
from node.api.details import details_routes
from node.api.input import MAX_BODY_BYTES, ApiError, digest, parse_json_txs, read_body, wait_options
from node.api.input import height as parse_height
from node.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.api.metrics import DetailsCollector, MetricsCollector, PsiCollector
from node.api.openapi import openapi_document
from node.api.proof import proof_route
from node.api.psi import psi_routes
from node.api.tracing import tracing_routes
from node.details.service import PrivateDetailsService
from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime, SubmitResult
from node.ledger.layout import MAX_HEIGHT
from node.ledger.store import LedgerStore
from node.ledger.transactions import decode_tx, tx_id
from node.psi.service import PsiService
from node.setup.genesis import Genesis
from node.tracing.service import TracingService

log = logging.getLogger("crosstrace.api")
# Hypercorn's own log: its errors are worth seeing, its info lines ("Running on ...
# (CTRL + C to quit)") are not, since ``serve_api`` logs the bound address itself.
server_log = logging.getLogger("crosstrace.api.server")
server_log.setLevel(logging.WARNING)

# Bodies above this are parsed in a worker thread: a 30 MB batch takes long enough to
# parse that it would hold up consensus on the event loop.
PARSE_IN_THREAD_BYTES = 64 * 1024
# How long open requests may finish after the API is asked to stop.
GRACEFUL_S = 2.0


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status, headers=headers)


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
        self.openapi_bytes = json.dumps(openapi_document(), separators=(",", ":")).encode()

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

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_bytes, media_type="application/json")

    # -------------------------------------------------------------- submitting

    async def submit(self, request: Request) -> Response:
        wait, timeout = wait_options(request.query_params)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/octet-stream", "application/json"):
            raise ApiError(
                415,
                "unsupported_media_type",
                "send the transaction as application/octet-stream, or JSON "
                '{"tx": hex} or {"txs": [hex, ...]} as application/json',
            )
        body = await read_body(request, self.max_body_bytes)
        if kind == "application/octet-stream":
            if not body:
                raise ApiError(400, "empty_body", "the body holds no transaction")
            txs = [body]
        elif len(body) > PARSE_IN_THREAD_BYTES:
            txs = await trio.to_thread.run_sync(parse_json_txs, body)
        else:
            txs = parse_json_txs(body)
        results = await self.runtime.submit_batch(txs)
        rows = [_result_row(raw, result) for raw, result in zip(txs, results, strict=True)]
        accepted = [result.tx_id for result in results if result.accepted]
        if not accepted:
            raise ApiError(
                422,
                "rejected",
                "no transaction was accepted; each result says why",
                {"results": rows},
            )
        if not wait:
            return JSONResponse({"results": rows}, 202)
        with trio.move_on_after(timeout):
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

    async def get_tx(self, request: Request) -> Response:
        wanted = digest(request.path_params["tx_id"], "tx_id")
        location = self.store.tx_location(wanted)
        data = None if location is None else self.store.tx(wanted)
        if location is not None and data is not None:
            row: dict[str, Any] = {"tx_id": wanted.hex(), "status": "committed"}
            row["height"], row["index"] = location
        else:
            entry = self.runtime.mempool.get(wanted)
            if entry is None:
                raise ApiError(404, "not_found", "no transaction with this id is known")
            data = entry.data
            row = {"tx_id": wanted.hex(), "status": "pending"}
        row["tx"] = data.hex()
        envelope = _envelope(data)
        if envelope is not None:
            row["envelope"] = envelope
        return JSONResponse(row)

    async def get_block(self, request: Request) -> Response:
        height = parse_height(request.path_params["height"])
        if not 1 <= height <= MAX_HEIGHT:
            raise ApiError(404, "not_found", "there is no block at this height")
        return await self._block_response(height)

    async def latest_block(self, request: Request) -> Response:
        height, _ = self.store.tip()
        if height == 0:
            raise ApiError(404, "not_found", "no block has been committed yet")
        return await self._block_response(height)

    async def _block_response(self, height: int) -> Response:
        view = await trio.to_thread.run_sync(self._block_view, height)
        if view is None:
            raise ApiError(404, "not_found", "there is no block at this height")
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
) -> Starlette:
    api = _Api(runtime, store, genesis, max_body_bytes)
    if details is not None:
        api.metrics_collector.register(DetailsCollector(details))
    if psi is not None:
        api.metrics_collector.register(PsiCollector(psi))
    routes = [
        Route("/status", api.status, methods=["GET"]),
        Route("/txs", api.submit, methods=["POST"]),
        Route("/txs/{tx_id}", api.get_tx, methods=["GET"]),
        proof_route(runtime, store),
        # Before "/blocks/{height}", which would otherwise take "latest" as a height.
        Route("/blocks/latest", api.latest_block, methods=["GET"]),
        Route("/blocks/{height}", api.get_block, methods=["GET"]),
        *details_routes(details, store),
        *tracing_routes(tracing),  # cases, queries and audit: node.api.tracing
        *psi_routes(psi),  # private set intersection: node.api.psi
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


async def serve_api(
    app: Starlette,
    host: str,
    port: int,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled, or until ``shutdown`` is set (then
    open requests get ``GRACEFUL_S`` to finish). ``task_status.started`` receives the
    bound port, which is the one the OS chose when ``port`` is 0."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # one line per request would drown the node's own log
    config.errorlog = server_log
    config.graceful_timeout = GRACEFUL_S
    config.include_server_header = False

    async def shutdown_trigger() -> None:
        if shutdown is None:
            await trio.sleep_forever()
        else:
            await shutdown.wait()

    serve = partial(
        hypercorn_serve,
        cast(Framework, app),
        config,
        shutdown_trigger=shutdown_trigger,
        mode="asgi",
    )
    if port != 0:
        _check_bindable(host, port)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve)
        # Hypercorn reports each listening socket as "http://host:port", read back from
        # the socket itself (getsockname), so the port is the real one even for port 0.
        bound = _port_of(binds)
        log.info("local API listening on %s", ", ".join(binds))
        task_status.started(bound)


def _check_bindable(host: str, port: int) -> None:
    """Raise a plain ``OSError`` now if ``host:port`` cannot be bound (typically: in
    use). Hypercorn would raise it too, but wrapped in an exception group and leaving
    its socket unclosed; this probe binds as Hypercorn does and always closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {host}:{port} for the local API: {exc.strerror}"
            ) from None


def _port_of(binds: Sequence[str]) -> int:
    if len(binds) != 1:
        raise RuntimeError(f"expected one listening socket, hypercorn reports {binds!r}")
    return int(binds[0].rsplit(":", 1)[1])


# ------------------------------------------------------------------ errors


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.code, "message": exc.message} | exc.extra, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route: 404, wrong method: 405) in our shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "bad_request")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug or a broken store, never the client's input: the same JSON shape, and
    Starlette re-raises the exception afterwards so the server logs its traceback."""
    return error_response(500, "internal", "the node failed to answer; see its log")


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

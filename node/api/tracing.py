"""The case, tracing and audit endpoints of the local API (``tracing_routes``).

Identifiers travel in request bodies, never in URLs, so they cannot land in an access
log or a proxy's history; they reach only this node, which pseudonymises them
(``node.tracing.service``). A query is answered only once its ``access`` record is
committed; the answer carries where that record landed, in the body (JSON) or in the
``Crosstrace-Access-Tx`` and ``Crosstrace-Access-Height`` headers (DOT), and the time
spent on each step in ``Server-Timing`` (authorise, audit, query), so the cost of the
query and of the audit commit can be told apart.

Request bodies are small JSON objects checked field by field: an unknown field, a
missing one or a value of the wrong type is a 400 naming the field, never quoting
what was sent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.api.input import ApiError, digest, read_body
from node.ledger.application import entity_key
from node.ledger.cases import CaseStatus
from node.ledger.kinds import QUERY_KINDS
from node.tracing.audit import DEFAULT_LIMIT, MAX_LIMIT, audit_json, audit_trail
from node.tracing.queries import DEFAULT_TRACE_LIMIT, MAX_GRAPH_DEPTH, Grant, TimeWindow
from node.tracing.render import graph_dot, graph_json, history_json, status_json, trace_json
from node.tracing.service import Answer, Committed, TracingError, TracingService, check_case_id

MAX_REQUEST_BYTES = 64 * 1024
MAX_TIME_MS = 2**63 - 1
DEFAULT_GRAPH_DEPTH = 2
INLINE_TRACE_RECORDS = 100
DOT_MEDIA_TYPE = "text/vnd.graphviz"
JSON_MEDIA_TYPE = "application/json"

Handler = Callable[[Request], Awaitable[Response]]


class _Fields:
    """The fields of one JSON request body, each read once and checked."""

    def __init__(
        self, doc: object, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> None:
        if not isinstance(doc, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        if not doc.keys() <= set(allowed):
            raise ApiError(
                400, "bad_request", f"unexpected fields; the fields are {', '.join(allowed)}"
            )
        for name in required:
            if name not in doc:
                raise ApiError(400, "bad_request", f"{name} is required")
        self.doc: dict[str, Any] = doc

    # An optional field is either left out or given a value of its type: null is not
    # "left out", so the document's schemas need no nullable request fields.

    def text(self, name: str, default: str | None = None) -> str:
        if name not in self.doc and default is not None:
            return default
        value = self.doc.get(name)
        if not isinstance(value, str):
            raise ApiError(400, "bad_request", f"{name} must be a string")
        return value

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        if name not in self.doc and default is not None:
            return default
        return integer(self.doc.get(name), name, low, high)

    def window(self, name: str = "window") -> TimeWindow | None:
        if name not in self.doc:
            return None
        value = self.doc[name]
        fields = _Fields(value, ("start_ms", "end_ms"), ("start_ms", "end_ms"))
        start = fields.integer("start_ms", 0, MAX_TIME_MS)
        end = fields.integer("end_ms", 0, MAX_TIME_MS)
        if start > end:
            raise ApiError(400, "bad_window", f"{name}.start_ms is after {name}.end_ms")
        return TimeWindow(start, end)


def integer(value: object, name: str, low: int, high: int) -> int:
    # bool is an int in Python but not in JSON; an integral float is one in JSON Schema.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "bad_request", f"{name} must be an integer")
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name} must be {low} to {high}")
    return value


async def read_json(request: Request) -> object:
    """The body as JSON (empty: ``{}``), refused with 413 past ``MAX_REQUEST_BYTES``."""
    body = await read_body(request, MAX_REQUEST_BYTES)
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def _committed_json(committed: Committed) -> dict[str, Any]:
    height, index = committed.location if committed.location is not None else (None, None)
    return {
        "tx_id": committed.tx_id.hex(),
        "committed": committed.committed,
        "height": height,
        "index": index,
    }


def _timing_headers(answer: Answer[Any], request: Request) -> dict[str, str]:
    """Where the access record went, and the milliseconds each step took: ``total`` is
    the whole handler (reading the request to rendering the answer), audit included."""
    t = answer.timings
    total = (time.perf_counter() - request.state.started) * 1000
    location = answer.access.location
    assert location is not None  # an answer exists only once its access record does
    return {
        "server-timing": (
            f"authorise;dur={t.authorise_ms:.3f}, audit;dur={t.audit_ms:.3f}, "
            f"query;dur={t.query_ms:.3f}, total;dur={total:.3f}"
        ),
        "crosstrace-access-tx": answer.access.tx_id.hex(),
        "crosstrace-access-height": str(location[0]),
    }


class _TracingApi:
    def __init__(self, service: TracingService | None) -> None:
        self._service = service

    @property
    def service(self) -> TracingService:
        if self._service is None:
            raise ApiError(
                503,
                "tracing_unavailable",
                "this node was started without its tracing service: cases, queries and "
                "the audit trail are not served",
            )
        return self._service

    # -- cases ----------------------------------------------------------------------

    async def list_cases(self, request: Request) -> Response:
        service = self.service
        return JSONResponse(
            {
                "needed": service.registry.needed,
                "height": service.registry.height,
                "cases": [status_json(s) for s in service.statuses()],
            }
        )

    async def show_case(self, request: Request) -> Response:
        case_id = check_case_id(request.path_params["case_id"])
        status = self.service.status(case_id)
        if status is None:
            raise ApiError(404, "no_case", f"there is no case {case_id!r} on the ledger")
        return JSONResponse(status_json(status))

    async def open_case(self, request: Request) -> Response:
        service = self.service
        fields = _Fields(
            await read_json(request),
            ("case_id", "purpose", "scope", "window", "expires_ms"),
            ("case_id", "purpose", "scope", "window", "expires_ms"),
        )
        case_id = check_case_id(fields.doc["case_id"])
        purpose = fields.text("purpose")
        scope = fields.doc["scope"]
        if not isinstance(scope, list):
            raise ApiError(400, "bad_scope", "scope must be a list of TYPE:VALUE strings")
        window = fields.window()
        assert window is not None  # required above, and null is not an object
        expires_ms = fields.integer("expires_ms", 0, MAX_TIME_MS)
        committed = await service.open_case(case_id, purpose, scope, window, expires_ms)
        if committed.committed and service.case_of(committed, case_id) is None:
            owner = service.registry.case(case_id)
            assert owner is not None
            raise ApiError(
                409,
                "case_exists",
                f"another case {case_id!r} was committed first (opened by {owner.opener!r} "
                f"at height {owner.opened.height}); this one authorises nothing",
                {"tx_id": committed.tx_id.hex()},
            )
        return self._change(committed, case_id, 201)

    async def approve_case(self, request: Request) -> Response:
        _Fields(await read_json(request), ())
        case_id = request.path_params["case_id"]
        return self._change(await self.service.approve(case_id), case_id, 200)

    async def close_case(self, request: Request) -> Response:
        _Fields(await read_json(request), ())
        case_id = request.path_params["case_id"]
        return self._change(await self.service.close(case_id), case_id, 200)

    def _change(self, committed: Committed, case_id: str, status_code: int) -> Response:
        """200/201 with the case's new state once committed, else 202: not yet."""
        status: CaseStatus | None = None
        if committed.committed:
            status = self.service.status(case_id)
        body = _committed_json(committed) | {
            "case": None if status is None else status_json(status)
        }
        return JSONResponse(body, status_code if committed.committed else 202)

    # -- queries --------------------------------------------------------------------

    async def trace(self, request: Request) -> Response:
        service = self.service
        fields = _Fields(
            await read_json(request),
            ("case_id", "entity", "window", "limit", "after"),
            ("case_id", "entity"),
        )
        case_id = check_case_id(fields.doc["case_id"])
        entity = service.entity(fields.doc["entity"], "entity")
        window = fields.window()
        limit = fields.integer("limit", 1, DEFAULT_TRACE_LIMIT, DEFAULT_TRACE_LIMIT)
        after = _location(fields.doc["after"], "after") if "after" in fields.doc else None

        def run(grant: Grant) -> dict[str, Any]:
            return trace_json(service.tracer.trace(grant, limit, after))

        # A trip to a worker thread costs about a millisecond on a busy node, more than
        # reading a few dozen records: a short trace runs here, on the event loop, and a
        # long one in a thread, so consensus keeps moving while it reads.
        postings = service.store.entity_tx_count(entity_key(entity))
        inline = min(postings, limit) <= INLINE_TRACE_RECORDS
        answer = await service.answer(case_id, "trace", entity, window, run, in_thread=not inline)
        return self._json_answer(answer, request)

    async def graph(self, request: Request) -> Response:
        service = self.service
        fields = _Fields(
            await read_json(request),
            ("case_id", "entity", "depth", "window", "format"),
            ("case_id", "entity"),
        )
        case_id = check_case_id(fields.doc["case_id"])
        entity = service.entity(fields.doc["entity"], "entity")
        depth = fields.integer("depth", 0, MAX_GRAPH_DEPTH, DEFAULT_GRAPH_DEPTH)
        window = fields.window()
        shape = fields.text("format", "json")
        if shape not in ("json", "dot"):
            raise ApiError(400, "bad_request", "format must be json or dot")

        def run(grant: Grant) -> dict[str, Any] | str:
            result = service.tracer.graph(grant, depth)
            return graph_dot(result) if shape == "dot" else graph_json(result)

        answer = await service.answer(case_id, "graph", entity, window, run)
        if isinstance(answer.result, str):
            return Response(
                answer.result, media_type=DOT_MEDIA_TYPE, headers=_timing_headers(answer, request)
            )
        return self._json_answer(answer, request)

    async def history(self, request: Request) -> Response:
        service = self.service
        fields = _Fields(
            await read_json(request), ("case_id", "tx_id", "window"), ("case_id", "tx_id")
        )
        case_id = check_case_id(fields.doc["case_id"])
        record = digest(fields.text("tx_id"), "tx_id")
        window = fields.window()

        def run(grant: Grant) -> dict[str, Any]:
            return history_json(service.tracer.history(grant))

        # On the event loop: a case's history reads the registry, which is not
        # thread-safe; the referrers it reads are bounded by the history limit.
        answer = await service.answer(case_id, "history", record, window, run, in_thread=False)
        return self._json_answer(answer, request)

    @staticmethod
    def _json_answer(answer: Answer[Any], request: Request) -> Response:
        body = answer.result | {"access": _committed_json(answer.access)}
        # Rendered as JSONResponse does, but before the headers, so ``total`` covers it.
        content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return Response(
            content.encode(), media_type=JSON_MEDIA_TYPE, headers=_timing_headers(answer, request)
        )

    # -- audit ----------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        service = self.service
        params = request.query_params
        unknown = set(params.keys()) - {"case", "member", "query", "limit", "after"}
        if unknown:
            raise ApiError(
                400,
                "bad_query",
                "unexpected parameters; they are case, member, query, limit, after",
            )
        case_id = check_case_id(params["case"]) if "case" in params else None
        member = params.get("member")
        if member is not None and service.genesis.member_by_name(member) is None:
            raise ApiError(400, "bad_query", "member names no member of this consortium")
        query = params.get("query")
        if query is not None and query not in QUERY_KINDS:
            raise ApiError(400, "bad_query", f"query must be one of {', '.join(QUERY_KINDS)}")
        limit = _decimal(params.get("limit"), "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
        after = _after_param(params.get("after"))
        page = await trio.to_thread.run_sync(
            lambda: audit_trail(
                service.store,
                case_id=case_id,
                member=member,
                query=query,
                limit=limit,
                after=after,
            )
        )
        return JSONResponse(audit_json(page))


def _location(value: object, name: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ApiError(400, "bad_request", f"{name} must be [height, index]")
    return (
        integer(value[0], f"{name}[0]", 0, MAX_TIME_MS),
        integer(value[1], f"{name}[1]", 0, MAX_TIME_MS),
    )


def _decimal(text: str | None, name: str, low: int, high: int, default: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ApiError(400, "bad_query", f"{name} must be a whole number, {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, "bad_query", f"{name} must be {low} to {high}")
    return value


def _after_param(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    height, sep, index = text.partition(":")
    if not sep:
        raise ApiError(400, "bad_query", "after must be HEIGHT:INDEX")
    return (
        _decimal(height, "after height", 0, MAX_TIME_MS, 0),
        _decimal(index, "after index", 0, MAX_TIME_MS, 0),
    )


def _errors_as_api_errors(handler: Handler) -> Handler:
    async def handle(request: Request) -> Response:
        request.state.started = time.perf_counter()
        try:
            return await handler(request)
        except TracingError as exc:
            raise ApiError(exc.status, exc.code, exc.message, exc.extra) from None

    return handle


def tracing_routes(service: TracingService | None) -> list[Route]:
    """The routes; with ``service`` None each answers 503 (the node runs without it)."""
    api = _TracingApi(service)
    table: Mapping[tuple[str, str], Handler] = {
        ("/cases", "GET"): api.list_cases,
        ("/cases", "POST"): api.open_case,
        # Case ids may hold "/" (they are "HZ/2026/0001" in some bureaus): the path
        # converter takes them whole, and the suffixed routes come first.
        ("/cases/{case_id:path}/approve", "POST"): api.approve_case,
        ("/cases/{case_id:path}/close", "POST"): api.close_case,
        ("/cases/{case_id:path}", "GET"): api.show_case,
        ("/trace", "POST"): api.trace,
        ("/graph", "POST"): api.graph,
        ("/history", "POST"): api.history,
        ("/audit", "GET"): api.audit,
    }
    return [
        Route(path, _errors_as_api_errors(handler), methods=[method])
        for (path, method), handler in table.items()
    ]

"""The case, tracing and audit endpoints of the local API (``tracing_routes``).

Identifiers travel in request bodies, never in URLs, so they cannot land in an access
log or a proxy's history; they reach only this node, which pseudonymises them
(``node.tracing.service``). A query is answered only once its ``access`` record is
committed; the answer carries where that record landed, in the body (JSON) or in the
``Crosstrace-Access-Tx`` and ``Crosstrace-Access-Height`` headers (DOT), and the time
spent on each step in ``Server-Timing`` (authorise, audit, query), so the cost of the
query and of the audit commit can be told apart.

Opening a case (``POST /cases``) takes its purpose (one of ``PURPOSES``) and its
written justification: the node salts and commits to the justification, signs the case
with the commitment, and hands both to the private-details service
(``node.details.service``), which keeps the justification and sends it over the secure
channel to the members that approve cases only; nothing of it goes on the ledger or in a
log line. ``GET /cases/{id}`` shows the justification when this node holds it, and
whether it matches the commitment on the ledger.

Request bodies are small JSON objects checked field by field by their models
(``node.api.models_tracing``): an unknown field, a missing one or a value of the wrong
type is a 400 naming the field, never quoting what was sent. Answers are rendered
once, as JSON bytes (``node.tracing.render``), not validated again against their
models: a trace of a thousand records is on the hot path.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import trio
from fastapi import Depends, FastAPI, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.auth import actor_of, name_actors
from node.api.fields import DIGEST_SCHEMA
from node.api.input import JSON, JsonBody
from node.api.models import EmptyRequest, answer, refusal
from node.api.models_tracing import (
    AuditList,
    AuditQuery,
    CaseChange,
    CaseList,
    CaseShown,
    GraphAnswer,
    GraphRequest,
    HistoryAnswer,
    HistoryRequest,
    OpenCaseRequest,
    TraceAnswer,
    TraceRequest,
    time_window,
)
from node.details.records import (
    case_recipients,
    commitment,
    encode_details,
    justification_details,
    justification_of,
    new_salt,
)
from node.details.service import PrivateDetailsService
from node.host.runtime import SubmitResult
from node.ledger.application import entity_key
from node.ledger.cases import CaseStatus
from node.refusals import Conflict, Invalid, NotFound, Unavailable
from node.setup.users import UserStore
from node.tracing.audit import audit_json, audit_trail
from node.tracing.queries import Grant
from node.tracing.render import graph_dot, graph_json, history_json, status_json, trace_json
from node.tracing.service import Answer, Committed, TracingService, check_case_id

MAX_REQUEST_BYTES = 64 * 1024
INLINE_TRACE_RECORDS = 100
DOT_MEDIA_TYPE = "text/vnd.graphviz"

OPEN_CASE = JsonBody(OpenCaseRequest, MAX_REQUEST_BYTES)
NO_FIELDS = JsonBody(EmptyRequest, MAX_REQUEST_BYTES, empty=True)
TRACE = JsonBody(TraceRequest, MAX_REQUEST_BYTES)
GRAPH = JsonBody(GraphRequest, MAX_REQUEST_BYTES)
HISTORY = JsonBody(HistoryRequest, MAX_REQUEST_BYTES)

BAD_INPUT = refusal("The request is malformed; the message names the field.")
UNAVAILABLE = refusal(
    "The node cannot serve this now: no tracing service or pseudonym key, a full mempool "
    "(`node_busy`), or the access record was not committed in time (`audit_timeout`)."
)
TOO_LARGE = refusal("The body is larger than 64 KiB.")
REJECTED = refusal("The node refused the transaction (`rejected`).")
ACCESS_HEADERS = {
    "Server-Timing": {
        "description": "`authorise`, `audit` (the access record's commit), `query` and "
        "`total` (the whole handler, audit included) in ms",
        "schema": {"type": "string"},
    },
    "Crosstrace-Access-Tx": {
        "description": "the access record's tx id",
        "schema": DIGEST_SCHEMA,
    },
    "Crosstrace-Access-Height": {
        "description": "the height it committed at",
        "schema": {"type": "string"},
    },
}


def _committed_json(committed: Committed) -> dict[str, Any]:
    height, index = committed.location if committed.location is not None else (None, None)
    return {
        "tx_id": committed.tx_id.hex(),
        "committed": committed.committed,
        "height": height,
        "index": index,
    }


def _timing_headers(answer: Answer[Any], started: float) -> dict[str, str]:
    """Where the access record went, and the milliseconds each step took: ``total`` is
    the whole handler (reading the request to rendering the answer), audit included."""
    t = answer.timings
    total = (time.perf_counter() - started) * 1000
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
    def __init__(
        self,
        service: TracingService | None,
        details: PrivateDetailsService | None,
        users: UserStore | None = None,
    ) -> None:
        self._service = service
        self._details = details
        self._users = users

    def _named(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with this member's users' names beside their actor ids."""
        service = self.service
        named: dict[str, Any] = name_actors(body, service.member, self._users)
        return named

    async def need(self) -> None:
        """The first dependency of a route whose parameters FastAPI checks: without the
        service, 503 before anything (the others ask for ``service`` first thing)."""
        _ = self.service

    @property
    def service(self) -> TracingService:
        if self._service is None:
            raise Unavailable(
                "tracing_unavailable",
                "this node was started without its tracing service: cases, queries and "
                "the audit trail are not served",
            )
        return self._service

    # -- cases ----------------------------------------------------------------------

    async def list_cases(self) -> Response:
        service = self.service
        return JSONResponse(
            self._named(
                {
                    "needed": service.registry.needed,
                    "height": service.registry.height,
                    "cases": [status_json(s) for s in service.statuses()],
                }
            )
        )

    async def show_case(self, case_id: str) -> Response:
        case_id = check_case_id(case_id)
        status = self.service.status(case_id)
        if status is None:
            raise NotFound("no_case", f"there is no case {case_id!r} on the ledger")
        shown = status_json(status) | {"justification": self._justification(status)}
        return JSONResponse(self._named(shown))

    def _justification(self, status: CaseStatus) -> dict[str, Any]:
        """The justification held here for the case, checked against its commitment."""
        shown: dict[str, Any] = {
            "text": None,
            "matches_commitment": None,
            "sender": None,
        }
        if self._details is None:
            message = "this node keeps no private details"
            return shown | {"status": "unavailable", "message": message}
        try:
            view = self._details.lookup(status.case.tx_id)
        except NotFound as exc:
            return shown | {"status": exc.code, "message": exc.message}
        text = justification_of(view.details)
        if text is None:
            message = "the details held for the case hold no justification"
        elif view.matches:
            message = "matches the commitment on the ledger"
        else:
            message = "does NOT match the commitment on the ledger: do not rely on it"
        return {
            "status": "held",
            "text": text,
            "matches_commitment": view.matches,
            "sender": view.sender,
            "message": message,
        }

    async def open_case(self, request: Request) -> Response:
        service = self.service
        body = await OPEN_CASE.read(request)
        case_id = body.case_id
        if self._details is None:
            raise Unavailable(
                "unavailable",
                "this node keeps no private details, so it cannot keep and share a case's "
                "justification",
            )
        details_service = self._details
        try:
            details = justification_details(body.justification)
        except ValueError as exc:
            raise Invalid("bad_justification", str(exc)) from None
        salt = new_salt()
        recipients = case_recipients(service.genesis, service.member)

        async def keep_and_share(tx: bytes) -> SubmitResult:
            result, _ = await details_service.submit_with_details(tx, salt, details, recipients)
            return result

        committed = await service.open_case(
            case_id,
            body.purpose,
            commitment(salt, encode_details(details)),
            body.scope,
            body.window.time_window,
            body.expires_ms,
            submit=keep_and_share,
            actor=actor_of(request),
        )
        if committed.committed and service.case_of(committed, case_id) is None:
            owner = service.registry.case(case_id)
            assert owner is not None
            raise Conflict(
                "case_exists",
                f"another case {case_id!r} was committed first (opened by {owner.opener!r} "
                f"at height {owner.opened.height}); this one authorises nothing",
                {"tx_id": committed.tx_id.hex()},
            )
        return self._change(committed, case_id, 201)

    async def approve_case(self, case_id: str, request: Request) -> Response:
        await NO_FIELDS.read(request)
        return self._change(await self.service.approve(case_id, actor_of(request)), case_id, 200)

    async def close_case(self, case_id: str, request: Request) -> Response:
        await NO_FIELDS.read(request)
        return self._change(await self.service.close(case_id, actor_of(request)), case_id, 200)

    def _change(self, committed: Committed, case_id: str, status_code: int) -> Response:
        """200/201 with the case's new state once committed, else 202: not yet."""
        status = self.service.status(case_id) if committed.committed else None
        body = _committed_json(committed) | {
            "case": None if status is None else status_json(status)
        }
        return JSONResponse(self._named(body), status_code if committed.committed else 202)

    # -- queries --------------------------------------------------------------------

    async def trace(self, request: Request) -> Response:
        started = time.perf_counter()
        service = self.service
        body = await TRACE.read(request)
        case_id, limit = body.case_id, body.limit
        entity, evaluation = await service.entity(body.entity, "entity", case_id)
        after = None if body.after is None else (body.after[0], body.after[1])

        def run(grant: Grant) -> dict[str, Any]:
            return trace_json(service.tracer.trace(grant, limit, after))

        # A trip to a worker thread costs about a millisecond on a busy node, more than
        # reading a few dozen records: a short trace runs here, on the event loop, and a
        # long one in a thread, so consensus keeps moving while it reads.
        postings = service.store.entity_tx_count(entity_key(entity))
        inline = min(postings, limit) <= INLINE_TRACE_RECORDS
        answer = await service.answer(
            case_id,
            "trace",
            entity,
            time_window(body.window),
            run,
            in_thread=not inline,
            actor=actor_of(request),
            evaluation=evaluation,
        )
        return _json_answer(answer, started)

    async def graph(self, request: Request) -> Response:
        started = time.perf_counter()
        service = self.service
        body = await GRAPH.read(request)
        entity, evaluation = await service.entity(body.entity, "entity", body.case_id)
        depth, shape = body.depth, body.format

        def run(grant: Grant) -> dict[str, Any] | str:
            result = service.tracer.graph(grant, depth)
            return graph_dot(result) if shape == "dot" else graph_json(result)

        answer = await service.answer(
            body.case_id,
            "graph",
            entity,
            time_window(body.window),
            run,
            actor=actor_of(request),
            evaluation=evaluation,
        )
        if isinstance(answer.result, str):
            return Response(
                answer.result, media_type=DOT_MEDIA_TYPE, headers=_timing_headers(answer, started)
            )
        return _json_answer(answer, started)

    async def history(self, request: Request) -> Response:
        started = time.perf_counter()
        service = self.service
        body = await HISTORY.read(request)

        def run(grant: Grant) -> dict[str, Any]:
            return history_json(service.tracer.history(grant))

        # On the event loop: a case's history reads the registry, which is not
        # thread-safe; the referrers it reads are bounded by the history limit.
        answer = await service.answer(
            body.case_id,
            "history",
            body.tx_id,
            time_window(body.window),
            run,
            in_thread=False,
            actor=actor_of(request),
        )
        return _json_answer(answer, started)

    # -- audit ----------------------------------------------------------------------

    async def audit(self, query: Annotated[AuditQuery, Query()]) -> Response:
        service = self.service
        member = query.member
        if member is not None and service.genesis.member_by_name(member) is None:
            raise Invalid("bad_query", "member names no member of this consortium")
        page = await trio.to_thread.run_sync(
            lambda: audit_trail(
                service.store,
                case_id=query.case,
                member=member,
                query=query.query,
                limit=query.limit,
                after=None if query.after is None else (query.after.height, query.after.index),
            )
        )
        return JSONResponse(self._named(audit_json(page)))


def _json_answer(answer: Answer[Any], started: float) -> Response:
    body = answer.result | {"access": _committed_json(answer.access)}
    # Rendered as JSONResponse does, but before the headers, so ``total`` covers it.
    content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(content.encode(), media_type=JSON, headers=_timing_headers(answer, started))


def _change_op(summary: str, role: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "openapi_extra": NO_FIELDS.openapi,
        "responses": {
            200: answer(CaseChange, "Committed; `case` is its new state."),
            202: answer(CaseChange, "Submitted, not committed in time."),
            400: BAD_INPUT,
            403: refusal(f"This node's member lacks the {role} role (`forbidden_role`)."),
            404: refusal("There is no such case (`no_case`)."),
            409: refusal("Already done, or the case is closed or expired."),
            413: TOO_LARGE,
            422: REJECTED,
            503: UNAVAILABLE,
        },
    }


def _query_op(
    summary: str, body: JsonBody[Any], model: type[Any], dot: bool = False
) -> dict[str, Any]:
    content = {DOT_MEDIA_TYPE: {"schema": {"type": "string"}}} if dot else {}
    return {
        "summary": summary,
        "openapi_extra": body.openapi,
        "responses": {
            200: answer(
                model,
                "The answer; its access record is committed.",
                headers=ACCESS_HEADERS,
                content=content,
            ),
            400: BAD_INPUT,
            403: refusal(
                "Refused: `no_case`, `not_approved`, `expired`, `closed`, `out_of_scope`, "
                "`outside_window`, or this node may not sign access records (`forbidden_role`)."
            ),
            404: refusal("No such record (`no_record`, history only)."),
            413: TOO_LARGE,
            422: refusal("The node refused the access record (`rejected`)."),
            503: UNAVAILABLE,
        },
    }


def tracing_routes(
    app: FastAPI,
    service: TracingService | None,
    details: PrivateDetailsService | None = None,
    users: UserStore | None = None,
) -> None:
    """Adds the routes; with ``service`` None each answers 503 (the node runs without it).
    ``details`` keeps and shares cases' justifications; without it no case is opened
    here (503) and none is shown. ``users`` name this member's actors in the answers."""
    api = _TracingApi(service, details, users)
    app.add_api_route(
        "/cases",
        api.list_cases,
        methods=["GET"],
        summary="Every case on the ledger with its state, approvals and reason.",
        responses={200: answer(CaseList, "The cases."), 503: UNAVAILABLE},
    )
    app.add_api_route(
        "/cases",
        api.open_case,
        methods=["POST"],
        status_code=201,
        summary=(
            "Open a case: the node signs a `case` transaction as its member (role "
            "investigator). Scope identifiers are given in the clear and pseudonymised by "
            "the node; the purpose is one of the consortium's purposes; the written "
            "justification stays off the ledger (the case carries a salted commitment to "
            "it) and goes over the secure channel to the members that approve cases. The "
            "case is active once k members approve."
        ),
        openapi_extra=OPEN_CASE.openapi,
        responses={
            201: answer(CaseChange, "Committed; `case` is pending approval."),
            202: answer(CaseChange, "Submitted, not committed in time."),
            400: BAD_INPUT,
            403: refusal("This node's member is no investigator (`forbidden_role`)."),
            409: refusal("The case id is taken (`case_exists`)."),
            413: TOO_LARGE,
            422: REJECTED,
            503: refusal(
                "The node cannot serve this now: no tracing service or pseudonym key, no "
                "private details to keep the justification in (`unavailable`), a full "
                "mempool (`node_busy`)."
            ),
        },
    )
    # Case ids may hold "/" (they are "HZ/2026/0001" in some bureaus): the path
    # converter takes them whole, and the suffixed routes come first.
    app.add_api_route(
        "/cases/{case_id:path}/approve",
        api.approve_case,
        methods=["POST"],
        **_change_op("Approve a case as this node's member.", "approver"),
    )
    app.add_api_route(
        "/cases/{case_id:path}/close",
        api.close_case,
        methods=["POST"],
        **_change_op("Close a case for good as this node's member.", "investigator"),
    )
    app.add_api_route(
        "/cases/{case_id:path}",
        api.show_case,
        methods=["GET"],
        summary=(
            "One case: state, approvals (n of k), reason, purpose, scope, window, and the "
            "written justification when this node holds it, checked against the ledger."
        ),
        responses={
            200: answer(CaseShown, "The case."),
            400: BAD_INPUT,
            404: refusal("There is no such case (`no_case`)."),
            503: UNAVAILABLE,
        },
    )
    app.add_api_route(
        "/trace",
        api.trace,
        methods=["POST"],
        **_query_op(
            "Every report and link about an entity in scope of an active case.",
            TRACE,
            TraceAnswer,
        ),
    )
    app.add_api_route(
        "/graph",
        api.graph,
        methods=["POST"],
        **_query_op(
            "The link graph around an entity in scope, breadth-first to `depth`, as JSON or "
            "Graphviz DOT.",
            GRAPH,
            GraphAnswer,
            dot=True,
        ),
    )
    app.add_api_route(
        "/history",
        api.history,
        methods=["POST"],
        **_query_op("Who submitted a record, when, and what refers to it.", HISTORY, HistoryAnswer),
    )
    app.add_api_route(
        "/audit",
        api.audit,
        methods=["GET"],
        dependencies=[Depends(api.need)],
        summary="Access records from the ledger: who queried what under which case.",
        responses={
            200: answer(AuditList, "Access records in ledger order."),
            400: BAD_INPUT,
            503: UNAVAILABLE,
        },
    )

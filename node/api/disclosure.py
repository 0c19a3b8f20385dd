"""Disclosure of identities in the local API (``node.disclosure.service`` does the work).

* ``POST /disclosure/identifiers``: the submitting tools hand over the (type, pseudonym,
  normalised identifier, tx id) of each entity this member just reported; each is kept
  only if it hashes to the pseudonym and this member's own transaction names it.
* ``POST /disclosures`` ``{case_id, entity: {type, pseudonym}}``: ask the members that
  reported the entity for its clear identifier; 403 with the reason outside the case's
  reach, 404 when no other member reported it; 201 with the request once its ledger
  record is committed and the asks are sent.
* ``GET /disclosures``, ``GET /disclosures/{request_id}``: the requests this node made
  or was asked, with the answers (and, on the requester, the checked identifiers).
* ``GET /disclosure/pending``, ``POST /disclosure/pending/{request_id}/allow`` and
  ``.../deny``: the requests held for this node's operator (``[disclosure] policy =
  "queue"``).

Like the whole API this is for 127.0.0.1: bodies and answers hold identifiers in the
clear, which are never logged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.auth import actor_of
from node.api.fields import DigestHex
from node.api.input import JsonBody
from node.api.models import BAD_INPUT, answer, refusal
from node.disclosure.service import DisclosureService
from node.disclosure.store import RequestRecord
from node.identifiers.normalize import EntityType
from node.identifiers.pseudonym import EntityRef
from node.ledger.cases import format_time_ms
from node.refusals import Invalid, Unavailable

MAX_BODY = 256 * 1024
MAX_IDENTIFIERS = 256
UNAVAILABLE = refusal("This node runs no disclosure service (`unavailable`).")


class EntityIn(BaseModel):
    type: EntityType
    pseudonym: DigestHex


class DisclosureAsk(BaseModel):
    case_id: str = Field(min_length=1, max_length=256)
    entity: EntityIn


class ReportedIdentifier(BaseModel):
    type: EntityType
    pseudonym: DigestHex
    identifier: str = Field(min_length=1, max_length=256, description="normalised")
    tx_id: DigestHex | None = Field(default=None, description="the transaction that names it")


class ReportedIdentifiers(BaseModel):
    identifiers: list[ReportedIdentifier] = Field(max_length=MAX_IDENTIFIERS)


class DenyBody(BaseModel):
    reason: str = Field(default="", max_length=200)


class DisclosureAnswerOut(BaseModel):
    member: str
    outcome: str
    reason: str
    identifier: str | None
    answered_ms: int
    answered: str
    answer_tx: str | None


class DisclosureOut(BaseModel):
    request_id: str
    role: str
    state: str
    case_id: str
    case_tx: str
    request_tx: str
    entity: dict[str, str]
    requester: str
    asked: list[str]
    answers: list[DisclosureAnswerOut]
    created_ms: int
    created: str


class DisclosureList(BaseModel):
    disclosures: list[DisclosureOut]


class KeptOut(BaseModel):
    results: list[dict[str, Any]]


ASK = JsonBody(DisclosureAsk, MAX_BODY)
IDENTIFIERS = JsonBody(ReportedIdentifiers, MAX_BODY)
DENY = JsonBody(DenyBody, MAX_BODY, empty=True)


def disclosure_json(record: RequestRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id.hex(),
        "role": record.role,
        "state": record.state,
        "case_id": record.case_id,
        "case_tx": record.case_tx.hex(),
        "request_tx": record.request_tx.hex(),
        "entity": {"type": record.entity.type, "pseudonym": record.entity.pseudonym.hex()},
        "requester": record.requester,
        "asked": list(record.asked),
        "answers": [
            {
                "member": a.member,
                "outcome": a.outcome,
                "reason": a.reason,
                "identifier": a.identifier,
                "answered_ms": a.answered_ms,
                "answered": format_time_ms(a.answered_ms),
                "answer_tx": None if a.answer_tx is None else a.answer_tx.hex(),
            }
            for a in record.answers
        ],
        "created_ms": record.created_ms,
        "created": format_time_ms(record.created_ms),
    }


def _request_id(text: str) -> bytes:
    try:
        wanted = bytes.fromhex(text)
    except ValueError:
        wanted = b""
    if len(wanted) != 16:
        raise Invalid("bad_request_id", "a request id is 32 hexadecimal digits")
    return wanted


def disclosure_routes(app: FastAPI, service: DisclosureService | None) -> None:
    """Adds the routes; without a service they answer 503, so the API keeps its shape."""

    def need() -> DisclosureService:
        if service is None:
            raise Unavailable("unavailable", "this node runs no disclosure service")
        return service

    async def available() -> None:
        need()

    async def keep(request: Request) -> Response:
        disclosure = need()
        body = await IDENTIFIERS.read(request)
        results = await disclosure.keep_identifiers(
            [(i.type.value, i.pseudonym, i.identifier, i.tx_id) for i in body.identifiers]
        )
        return JSONResponse(
            {
                "results": [
                    {
                        "type": r.entity.type,
                        "pseudonym": r.entity.pseudonym.hex(),
                        "kept": r.kept,
                        "reason": r.reason,
                    }
                    for r in results
                ]
            }
        )

    async def ask(request: Request) -> Response:
        disclosure = need()
        body = await ASK.read(request)
        entity = EntityRef(body.entity.type.value, body.entity.pseudonym)
        record = await disclosure.request(body.case_id, entity, actor_of(request))
        return JSONResponse(disclosure_json(record), 201)

    async def listing() -> Response:
        rows = [disclosure_json(r) for r in reversed(need().views())]
        return JSONResponse({"disclosures": rows})

    async def one(request_id: Annotated[str, Path()]) -> Response:
        return JSONResponse(disclosure_json(need().view(_request_id(request_id))))

    async def pending() -> Response:
        return JSONResponse({"disclosures": [disclosure_json(r) for r in need().pending()]})

    async def allow(request: Request, request_id: Annotated[str, Path()]) -> Response:
        record = await need().allow(_request_id(request_id), actor_of(request))
        return JSONResponse(disclosure_json(record))

    async def deny(request: Request, request_id: Annotated[str, Path()]) -> Response:
        wanted = _request_id(request_id)
        body = await DENY.read(request)
        record = await need().deny(wanted, body.reason, actor_of(request))
        return JSONResponse(disclosure_json(record))

    first = [Depends(available)]
    one_answer = answer(DisclosureOut, "The request with its answers.")
    not_found = refusal("No such request here.")
    app.add_api_route(
        "/disclosure/identifiers",
        keep,
        methods=["POST"],
        dependencies=first,
        summary=(
            "Hand the node the normalised identifiers behind the entities this member "
            "reported; each is kept in the private store only if it hashes to the "
            "pseudonym and this member's own transaction names the entity."
        ),
        openapi_extra=IDENTIFIERS.openapi,
        responses={200: answer(KeptOut, "What was kept, and why not."), 400: BAD_INPUT},
    )
    app.add_api_route(
        "/disclosures",
        ask,
        methods=["POST"],
        dependencies=first,
        summary=(
            "Ask the members that reported an entity for its clear identifier under an "
            "active case; the request is recorded on the ledger first."
        ),
        openapi_extra=ASK.openapi,
        status_code=201,
        responses={
            201: one_answer,
            400: BAD_INPUT,
            403: refusal("The case is not active or the entity is outside its reach."),
            404: refusal("No such case, or no other member reported the entity."),
            503: UNAVAILABLE,
        },
    )
    app.add_api_route(
        "/disclosures",
        listing,
        methods=["GET"],
        dependencies=first,
        summary="The disclosure requests this node made or was asked, newest first.",
        responses={200: answer(DisclosureList, "The requests.")},
    )
    app.add_api_route(
        "/disclosures/{request_id}",
        one,
        methods=["GET"],
        dependencies=first,
        summary="One disclosure request with its answers (the checked identifiers).",
        responses={200: one_answer, 400: BAD_INPUT, 404: not_found},
    )
    app.add_api_route(
        "/disclosure/pending",
        pending,
        methods=["GET"],
        dependencies=first,
        summary="The requests held for this node's operator.",
        responses={200: answer(DisclosureList, "The requests waiting.")},
    )
    app.add_api_route(
        "/disclosure/pending/{request_id}/allow",
        allow,
        methods=["POST"],
        dependencies=first,
        summary="Answer a held request with the identifier (recorded on the ledger first).",
        responses={200: one_answer, 400: BAD_INPUT, 404: not_found, 409: refusal("Answered.")},
    )
    app.add_api_route(
        "/disclosure/pending/{request_id}/deny",
        deny,
        methods=["POST"],
        dependencies=first,
        summary="Refuse a held request, with an optional reason (recorded on the ledger).",
        openapi_extra=DENY.openapi,
        responses={200: one_answer, 400: BAD_INPUT, 404: not_found, 409: refusal("Answered.")},
    )

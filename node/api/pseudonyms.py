"""Threshold pseudonyms in the local API (``node.pseudonyms.service`` does the work).

* ``POST /pseudonyms`` ``{identifiers: ["TYPE:VALUE", ...]}``: the pseudonyms of up to
  10,000 identifiers, evaluated with purpose ``report`` (this member's daily quota at
  every evaluating member) or taken from this node's cache. The command line calls it
  before it signs reports and links; the clear values go no further than this node.
* ``GET /pseudonyms/evaluations``: what this member evaluated for the others today
  (points per member and purpose, per case for queries, against the genesis quotas) and
  its most recent evaluation records: an enumeration attempt shows here.

Like the whole API this is for 127.0.0.1: bodies hold identifiers in the clear, which
are never logged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.fields import query_integer, refused
from node.api.input import JsonBody
from node.api.models import BAD_INPUT, answer, refusal
from node.ledger.cases import format_time_ms
from node.pseudonyms.service import PseudonymService, Purpose
from node.pseudonyms.store import DAY_MS, day_of
from node.refusals import Unavailable
from node.tracing.service import normalised_items

MAX_IDENTIFIERS = 10_000
MAX_RECORDS = 10_000
DEFAULT_RECORDS = 100
MAX_BODY = 4 * 1024 * 1024


class EvaluationsQuery(BaseModel):
    """The parameters of ``GET /pseudonyms/evaluations``, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Annotated[int, Field(ge=1, le=MAX_RECORDS), query_integer(1, MAX_RECORDS)] = (
        DEFAULT_RECORDS
    )

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.keys() <= cls.model_fields.keys():
            raise refused("bad_query", "unexpected parameters; the only one is limit")
        return data


class PseudonymsIn(BaseModel):
    identifiers: list[str] = Field(
        min_length=1,
        max_length=MAX_IDENTIFIERS,
        description="`TYPE:VALUE` as typed; normalised by the node.",
    )


class PseudonymOut(BaseModel):
    type: str
    pseudonym: str


class PseudonymsOut(BaseModel):
    pseudonyms: list[PseudonymOut]
    evaluation: str = Field(description="The id of the evaluation that produced them.")
    from_cache: int = Field(description="How many came from this node's own cache.")


class UsageOut(BaseModel):
    kind: str = Field(description="`report` (per member) or `query` (per case).")
    name: str
    points: int
    quota: int


class RecordOut(BaseModel):
    request_id: str
    requester: str
    purpose: str
    case_id: str
    points: int
    outcome: str
    at_ms: int
    at: str


class EvaluationsOut(BaseModel):
    day: str
    usage: list[UsageOut]
    records: list[RecordOut]
    asked: dict[str, int] = Field(description="Outcomes of this member's own requests.")
    wrong_proofs: dict[str, int] = Field(description="Members caught answering wrongly.")


BODY = JsonBody(PseudonymsIn, MAX_BODY)


def pseudonym_routes(app: FastAPI, service: PseudonymService | None) -> None:
    """Adds the routes; without a service they answer 503, so the API keeps its shape."""

    def need() -> PseudonymService:
        if service is None:
            raise Unavailable("unavailable", "this node runs no pseudonym service")
        return service

    async def pseudonymise(request: Request) -> Response:
        pseudonyms = need()
        body = await BODY.read(request)
        where = [f"identifiers[{i}]" for i in range(len(body.identifiers))]
        items = normalised_items(body.identifiers, where)
        evaluated = await pseudonyms.refs(items, Purpose.report())
        return JSONResponse(
            {
                "pseudonyms": [
                    {"type": r.type, "pseudonym": r.pseudonym.hex()} for r in evaluated.refs
                ],
                "evaluation": evaluated.evaluation.hex(),
                "from_cache": evaluated.from_cache,
            }
        )

    async def evaluations(query: Annotated[EvaluationsQuery, Query()]) -> Response:
        pseudonyms = need()
        limit = query.limit
        now = pseudonyms.clock_ms()
        day = day_of(now)
        params = pseudonyms.genesis.pseudonyms
        quotas = {
            "report": params.report_quota_per_day,
            "query": params.query_quota_per_case_per_day,
        }
        usage = pseudonyms.store.usage(day)
        records = pseudonyms.store.records(since_ms=now - DAY_MS, limit=limit)
        doc: dict[str, Any] = {
            "day": format_time_ms(day * DAY_MS)[:10],
            "usage": [
                {"kind": u.kind, "name": u.name, "points": u.points, "quota": quotas[u.kind]}
                for u in usage
            ],
            "records": [
                {
                    "request_id": r.request_id.hex(),
                    "requester": r.requester,
                    "purpose": r.purpose,
                    "case_id": r.case_id,
                    "points": r.points,
                    "outcome": r.outcome,
                    "at_ms": r.at_ms,
                    "at": format_time_ms(r.at_ms),
                }
                for r in records
            ],
            "asked": dict(pseudonyms.stats.asked),
            "wrong_proofs": dict(pseudonyms.stats.wrong_proofs),
        }
        return JSONResponse(doc)

    app.add_api_route(
        "/pseudonyms",
        pseudonymise,
        methods=["POST"],
        summary=(
            "The pseudonyms of up to 10,000 identifiers, evaluated with the other members "
            "under this member's daily report quota (or from this node's cache)."
        ),
        openapi_extra=BODY.openapi,
        responses={
            200: answer(PseudonymsOut, "The pseudonyms, in the order asked."),
            400: BAD_INPUT,
            403: refusal("An evaluating member refused: the daily quota is spent."),
            503: refusal("Too few members answer, or this node has no key share."),
        },
    )
    app.add_api_route(
        "/pseudonyms/evaluations",
        evaluations,
        methods=["GET"],
        summary=(
            "What this member evaluated for the others today, against the quotas, and "
            "its latest evaluation records."
        ),
        responses={200: answer(EvaluationsOut, "Today's evaluations."), 400: BAD_INPUT},
    )

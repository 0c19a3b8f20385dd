"""Private set intersection in the local API (``node.psi.service`` does the work).

* ``POST /psi/runs?case=C&with=MEMBER&type=T[&dedupe=true]``: start a run with the body,
  one identifier a line (the file as it is: line numbers in errors are the file's). The
  set is checked before anything is sent: 400 with ``problems`` (line, message) for bad
  lines, duplicates or an empty set; 403/404/409 when the case does not allow the run;
  503 when this node is busy or not connected to that member. Otherwise 202 with the
  run, which goes on in the background.
* ``GET /psi/runs``: every run this node has going or recently ended, either role, with
  its progress, and the service's counters.
* ``GET /psi/runs/{run_id}``: one run; once completed (its ledger record committed),
  with ``intersection``: this member's elements in common, normalised, in input order.
* ``PUT /psi/answer-sets/{type}[?dedupe=true]``: the set this node answers other
  members' runs with, replacing the one from ``[psi.answer_sets]`` until restart.
* ``GET /psi/answer-sets``: the answer sets held, by entity type.

Like the whole API this is for 127.0.0.1: bodies and answers hold identifiers in the
clear. Error messages never quote an input line.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, FastAPI, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.auth import actor_of
from node.api.input import OCTETS, raw_content, read_body, request_body
from node.api.models import Error, answer, refusal
from node.api.models_psi import (
    EXAMPLE_SET,
    DedupeQuery,
    PsiAnswerSet,
    PsiAnswerSets,
    PsiInputError,
    PsiRunList,
    PsiRunResult,
    PsiRunStarted,
    StartQuery,
)
from node.psi.run import run_json
from node.psi.service import PsiService
from node.refusals import NotFound, Unavailable

# A million identifiers of 48 bytes on average (an E.164 number takes 13, an IBAN 34);
# below the default budget for all bodies at once ([api] body_budget_mib), or a set of
# the largest size could never be received.
MAX_SET_BODY = 48 * 1024 * 1024
SET_BODY = request_body(
    raw_content(OCTETS, EXAMPLE_SET),
    description="One identifier a line, UTF-8; blank lines are skipped.",
)
UNAVAILABLE = refusal("This node runs no PSI service (`unavailable`).")
SET_TOO_LARGE = answer(Error | PsiInputError, "The body or the set is larger than the node takes.")


def psi_routes(app: FastAPI, service: PsiService | None) -> None:
    """Adds the routes; without a service they answer 503, so the API keeps its shape."""

    def need() -> PsiService:
        if service is None:
            raise Unavailable("unavailable", "this node runs no PSI service")
        return service

    async def available() -> None:
        need()

    async def start(request: Request, query: Annotated[StartQuery, Query()]) -> Response:
        psi = need()
        # The case, the member and capacity before the body: a caller without a case it
        # may use is refused before a byte of the set is read.
        psi.check_start(query.case, query.with_)
        body = await read_body(request, MAX_SET_BODY)
        began = time.perf_counter()
        ids = await psi.read_set(query.type, body, dedupe=query.dedupe)
        checked = time.perf_counter() - began
        run = await psi.start(query.case, query.with_, ids, actor_of(request))
        answer = run_json(run)
        answer["input"] = {
            "lines": ids.lines,
            "identifiers": len(ids.values),
            "dropped": ids.dropped,
            "seconds": round(checked, 3),
        }
        return JSONResponse(answer, 202)

    async def runs() -> Response:
        psi = need()
        rows = [run_json(run) for run in reversed(psi.runs.values())]
        return JSONResponse({"runs": rows, **psi.statistics()})

    async def one_run(run_id: str) -> Response:
        psi = need()
        try:
            wanted = bytes.fromhex(run_id)
        except ValueError:
            wanted = b""
        run = psi.runs.get(wanted)
        if run is None:
            raise NotFound("not_found", "no PSI run with this id is known here")
        return JSONResponse(run_json(run, with_result=True))

    async def put_answer_set(
        request: Request, entity_type: str, query: Annotated[DedupeQuery, Query()]
    ) -> Response:
        psi = need()
        body = await read_body(request, MAX_SET_BODY)
        answer_set = await psi.set_answer_set(entity_type, body, dedupe=query.dedupe)
        return JSONResponse(
            {
                "entity_type": entity_type,
                "size": len(answer_set.values),
                "source": answer_set.source,
                "loaded_ms": answer_set.loaded_ms,
            }
        )

    async def answer_sets() -> Response:
        stats = need().statistics()
        return JSONResponse({k: stats[k] for k in ("answering", "answer_sets", "loading")})

    # Where FastAPI checks parameters, the service check comes first, as a dependency.
    need_first = [Depends(available)]
    app.add_api_route(
        "/psi/runs",
        start,
        methods=["POST"],
        dependencies=need_first,
        status_code=202,
        summary=(
            "Start a private set intersection with another member under an active case "
            "naming both; the run goes on in the background."
        ),
        openapi_extra=SET_BODY,
        responses={
            202: answer(PsiRunStarted, "The run started."),
            400: answer(Error | PsiInputError, "A bad query, or the set is refused."),
            403: refusal("The case does not name both members, or a role is missing."),
            404: refusal("No such case or member."),
            409: refusal("The case is not active."),
            413: SET_TOO_LARGE,
            503: refusal("Busy, not connected to that member, or no PSI service."),
        },
    )
    app.add_api_route(
        "/psi/runs",
        runs,
        methods=["GET"],
        summary="The runs going on or recently ended here, either role.",
        responses={
            200: answer(PsiRunList, "The runs, newest first, and the service's counters."),
            503: UNAVAILABLE,
        },
    )
    app.add_api_route(
        "/psi/runs/{run_id}",
        one_run,
        methods=["GET"],
        summary="One run; with its intersection once completed and recorded.",
        responses={
            200: answer(PsiRunResult, "The run."),
            404: refusal("No such run here."),
            503: UNAVAILABLE,
        },
    )
    app.add_api_route(
        "/psi/answer-sets",
        answer_sets,
        methods=["GET"],
        summary="The sets this node answers other members' runs with.",
        responses={200: answer(PsiAnswerSets, "By entity type."), 503: UNAVAILABLE},
    )
    app.add_api_route(
        "/psi/answer-sets/{entity_type}",
        put_answer_set,
        methods=["PUT"],
        dependencies=need_first,
        summary="Replace the set this node answers with, for one entity type.",
        openapi_extra=SET_BODY,
        responses={
            200: answer(PsiAnswerSet, "Loaded and hashed."),
            400: answer(Error | PsiInputError, "The set is refused."),
            413: SET_TOO_LARGE,
            503: UNAVAILABLE,
        },
    )

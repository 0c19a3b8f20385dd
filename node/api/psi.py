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
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.api.input import ApiError, read_body
from node.psi.inputs import PsiInputError
from node.psi.run import run_json
from node.psi.service import PsiError, PsiService

MAX_SET_BODY = 256 * 1024 * 1024  # a million identifiers of up to 256 characters


def psi_routes(service: PsiService | None) -> list[Route]:
    """The routes; without a service they answer 503, so the API keeps its shape."""

    def need() -> PsiService:
        if service is None:
            raise ApiError(503, "unavailable", "this node runs no PSI service")
        return service

    async def start(request: Request) -> Response:
        psi = need()
        params = request.query_params
        case_id, peer, entity_type = (_param(params, k) for k in ("case", "with", "type"))
        body = await read_body(request, MAX_SET_BODY)
        began = time.perf_counter()
        try:
            ids = await psi.read_set(entity_type, body, dedupe=_flag(params, "dedupe"))
            checked = time.perf_counter() - began
            run = await psi.start(case_id, peer, ids)
        except PsiInputError as exc:
            raise _input_error(exc) from None
        except PsiError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        answer = run_json(run)
        answer["input"] = {
            "lines": ids.lines,
            "identifiers": len(ids.values),
            "dropped": ids.dropped,
            "seconds": round(checked, 3),
        }
        return JSONResponse(answer, 202)

    async def runs(request: Request) -> Response:
        psi = need()
        rows = [run_json(run) for run in reversed(psi.runs.values())]
        return JSONResponse({"runs": rows, **psi.statistics()})

    async def one_run(request: Request) -> Response:
        psi = need()
        text = request.path_params["run_id"]
        try:
            run_id = bytes.fromhex(text)
        except ValueError:
            run_id = b""
        run = psi.runs.get(run_id)
        if run is None:
            raise ApiError(404, "not_found", "no PSI run with this id is known here")
        return JSONResponse(run_json(run, with_result=True))

    async def put_answer_set(request: Request) -> Response:
        psi = need()
        entity_type = request.path_params["entity_type"]
        body = await read_body(request, MAX_SET_BODY)
        try:
            answer_set = await psi.set_answer_set(
                entity_type, body, dedupe=_flag(request.query_params, "dedupe")
            )
        except PsiInputError as exc:
            raise _input_error(exc) from None
        return JSONResponse(
            {
                "entity_type": entity_type,
                "size": len(answer_set.values),
                "source": answer_set.source,
                "loaded_ms": answer_set.loaded_ms,
            }
        )

    async def answer_sets(request: Request) -> Response:
        psi = need()
        stats = psi.statistics()
        return JSONResponse(
            {k: stats[k] for k in ("answering", "answer_sets", "loading")},
        )

    return [
        Route("/psi/runs", start, methods=["POST"]),
        Route("/psi/runs", runs, methods=["GET"]),
        Route("/psi/runs/{run_id}", one_run, methods=["GET"]),
        Route("/psi/answer-sets", answer_sets, methods=["GET"]),
        Route("/psi/answer-sets/{entity_type}", put_answer_set, methods=["PUT"]),
    ]


def _param(params: Any, name: str) -> str:
    value = params.get(name)
    if not value:
        raise ApiError(400, "bad_query", f"the query needs {name}=...")
    return str(value)


def _flag(params: Any, name: str) -> bool:
    text = str(params.get(name, "false")).lower()
    if text not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_query", f"{name} must be true or false")
    return text in ("true", "1")


def _input_error(exc: PsiInputError) -> ApiError:
    problems = [{"line": p.line, "message": p.message} for p in exc.problems]
    status = 413 if exc.code == "too_large" else 400
    return ApiError(status, exc.code, exc.message, {"problems": problems})

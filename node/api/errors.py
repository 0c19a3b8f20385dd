"""Where the project's refusals meet HTTP: each kind (``node.refusals``) has its status,
and every refusal is answered with ``{"error": code, "message": message, **details}``.
Nothing below ``node.api`` knows a status.

The app's exception handlers (``EXCEPTION_HANDLERS``) also answer, in the same shape:
requests that failed validation of their parameters or body (FastAPI's
``RequestValidationError``, pydantic's ``ValidationError``), as the ``Invalid`` refusal
``node.api.fields.refusal_of`` makes of them, never FastAPI's own 422 format; requests
no route takes (404, 405); and a bug or a broken store (500, logged by the server).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.api.fields import refusal_of
from node.refusals import (
    Busy,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    Rejected,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unsupported,
)

STATUS: Mapping[type[Refusal], int] = {
    Invalid: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unsupported: 415,
    Rejected: 422,
    Busy: 429,
    Unavailable: 503,
}


def status_of(refusal: Refusal) -> int:
    """The status of ``refusal``'s kind (a subclass of a kind has its kind's status)."""
    for kind in type(refusal).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    raise TypeError(f"{type(refusal).__name__} is no kind of refusal the API knows")


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message} | dict(details or {})


def refusal_response(refusal: Refusal) -> JSONResponse:
    # A busy node says when to come back, in the header every HTTP client knows
    # (RFC 9110, section 10.2.3) as well as in the body.
    headers = {"Retry-After": str(refusal.retry_after_s)} if isinstance(refusal, Busy) else None
    return JSONResponse(
        error_body(refusal.code, refusal.message, refusal.details),
        status_of(refusal),
        headers=headers,
    )


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return refusal_response(exc)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return refusal_response(refusal_of(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route: 404, wrong method: 405) in our shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "bad_request")
    headers = dict(exc.headers) if exc.headers else None
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug or a broken store, never the client's input: the same JSON shape, and
    Starlette re-raises the exception afterwards so the server logs its traceback."""
    return JSONResponse(error_body("internal", "the node failed to answer; see its log"), 500)


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    Refusal: _refused,
    RequestValidationError: _invalid,
    ValidationError: _invalid,
    HTTPException: _http_error,
    Exception: _internal_error,
}

"""Reading what a client sends to the local query API: bodies within their limits, and
JSON bodies checked by their request model (``JsonBody``), which also describes the
body in the OpenAPI document.

A body is never buffered past its limit: ``read_body`` checks Content-Length before
reading anything and counts while the body streams in. A large body is parsed in a
worker thread, so consensus keeps moving meanwhile. Every mistake is an ``Invalid``
refusal (or ``TooLarge``) with a stable code and a message that names the field at
fault but never quotes its value: it may be an identifier.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Generic, TypeVar

import trio
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from node.api.fields import refusal_of
from node.api.models import MAX_BATCH
from node.ledger.transactions import MAX_TX_BYTES
from node.refusals import Invalid, TooLarge

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON = "application/json"
OCTETS = "application/octet-stream"
SCHEMA_REF = "#/components/schemas/{model}"
# Large enough for the largest valid request (a full batch of the largest transactions,
# hex-encoded in JSON, with room for the syntax), so the limit never refuses valid
# input; anything larger is refused before it is buffered.
MAX_BODY_BYTES = MAX_BATCH * (2 * MAX_TX_BYTES + 8) + 64 * 1024
# Bodies above this are parsed in a worker thread: a 30 MB batch takes long enough to
# parse that it would hold up consensus on the event loop.
PARSE_IN_THREAD_BYTES = 64 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with ``TooLarge`` as soon as it is known to exceed ``limit``: from
    Content-Length before reading anything, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Invalid("bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        # aclosing: leaving the stream early (too large) must finalise it now, on this
        # task, not whenever the garbage collector gets to it.
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to answer; a refusal keeps it out of the error log.
        raise Invalid("incomplete_body", "the client left before sending the body") from None
    return b"".join(chunks)


def too_large(limit: int) -> TooLarge:
    return TooLarge("body_too_large", f"the body is larger than {limit} bytes")


async def off_the_loop_if_large(parse: Callable[[bytes], T], body: bytes) -> T:
    if len(body) > PARSE_IN_THREAD_BYTES:
        return await trio.to_thread.run_sync(parse, body)
    return parse(body)


class JsonBody(Generic[M]):
    """A JSON request body of model ``M``, at most ``limit`` bytes. With ``empty`` an
    empty body stands for ``{}`` (and the body is optional in the document)."""

    def __init__(
        self, model: type[M], limit: int, *, empty: bool = False, description: str | None = None
    ) -> None:
        self.model = model
        self.limit = limit
        self.empty = empty
        self.description = description

    async def read(self, request: Request) -> M:
        return await off_the_loop_if_large(self.parse, await read_body(request, self.limit))

    def parse(self, body: bytes) -> M:
        if self.empty and not body.strip():
            doc: Any = {}
        else:
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                raise Invalid("bad_json", "the body is not valid JSON") from None
        try:
            return self.model.model_validate(doc)
        except ValidationError as exc:
            raise refusal_of(exc.errors()) from None

    @property
    def content(self) -> dict[str, Any]:
        """The body's media type and schema, for ``request_body``."""
        return {JSON: {"schema": self.model.model_json_schema(ref_template=SCHEMA_REF)}}

    @property
    def openapi(self) -> dict[str, Any]:
        """The route's ``openapi_extra``: this body."""
        return request_body(self.content, required=not self.empty, description=self.description)


def request_body(
    *contents: dict[str, Any], required: bool = True, description: str | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body itself (so FastAPI knows no body
    parameter): the ``requestBody`` in each of ``contents``' media types. A model's schema
    goes to the document's components (``node.api.document``)."""
    body: dict[str, Any] = {"required": required, "content": {}}
    for content in contents:
        body["content"] |= content
    if description is not None:
        body["description"] = description
    return {"requestBody": body}


def raw_content(media_type: str, example: str | None = None) -> dict[str, Any]:
    """A body taken as it is (bytes or text)."""
    schema = {"type": "string"}
    if media_type == OCTETS:
        schema["contentMediaType"] = OCTETS
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {media_type: media}

"""Reading what a client sends to the local query API: query options, transaction
bodies, hex ids. Every mistake becomes an ``ApiError`` with a 4xx status and a stable
code; no input can make these functions raise anything else.

Messages name the field at fault but never quote its value: it may be an identifier.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from starlette.requests import ClientDisconnect, Request

from consensus.crypto import DIGEST_SIZE
from node.ledger.transactions import MAX_TX_BYTES

MAX_BATCH = 1000
# Large enough for the largest valid request (a full batch of the largest transactions,
# hex-encoded in JSON, with room for the syntax), so the limit never refuses valid
# input; anything larger is refused before it is buffered.
MAX_BODY_BYTES = MAX_BATCH * (2 * MAX_TX_BYTES + 8) + 64 * 1024
DEFAULT_WAIT_S = 5.0
MAX_WAIT_S = 60.0


class ApiError(Exception):
    """A refusal with an HTTP status and a stable code; rendered as the error object,
    with ``extra`` fields merged in (the per-transaction results of a refused batch)."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``: from
    Content-Length before reading anything, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ApiError(400, "bad_request", "Content-Length is not a number")
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
        # Nobody is left to answer; an ApiError keeps it out of the error log.
        raise ApiError(400, "incomplete_body", "the client left before sending the body") from None
    return b"".join(chunks)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")


def wait_options(params: Mapping[str, str]) -> tuple[bool, float]:
    """``wait`` and ``timeout`` of ``POST /txs``."""
    wait_text = params.get("wait", "false").lower()
    if wait_text not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_query", "wait must be true or false")
    try:
        timeout = float(params.get("timeout", DEFAULT_WAIT_S))
    except ValueError:
        raise ApiError(400, "bad_query", "timeout must be a number of seconds") from None
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_WAIT_S):
        raise ApiError(400, "bad_query", f"timeout must be more than 0 and at most {MAX_WAIT_S:g}")
    return wait_text in ("true", "1"), timeout


def parse_json_txs(body: bytes) -> list[bytes]:
    """``{"tx": hex}`` or ``{"txs": [hex, ...]}``; nothing else, so a typo in a field
    name is an error rather than a silently empty submission."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(doc, dict) or len(doc) != 1 or not doc.keys() <= {"tx", "txs"}:
        raise ApiError(400, "bad_request", 'expected an object with one field: "tx" or "txs"')
    if "tx" in doc:
        return [tx_hex(doc["tx"], "tx")]
    items = doc["txs"]
    if not isinstance(items, list) or not items:
        raise ApiError(400, "bad_request", '"txs" must be a non-empty list of hex strings')
    if len(items) > MAX_BATCH:
        raise ApiError(400, "too_many_txs", f"at most {MAX_BATCH} transactions per request")
    return [tx_hex(item, f"txs[{i}]") for i, item in enumerate(items)]


def tx_hex(value: object, where: str) -> bytes:
    data = from_hex(value, where)
    if not data:
        raise ApiError(400, "empty_tx", f"{where} is empty")
    return data


def from_hex(value: object, where: str) -> bytes:
    # binascii, unlike bytes.fromhex, refuses whitespace: one spelling per value.
    if not isinstance(value, str) or not value.isascii():
        raise ApiError(400, "bad_hex", f"{where} must be a string of hex digits")
    try:
        return binascii.unhexlify(value)
    except binascii.Error:
        raise ApiError(400, "bad_hex", f"{where} is not an even number of hex digits") from None


def digest(text: str, where: str) -> bytes:
    """A 32-byte id (transaction, block hash) given as 64 hex digits."""
    if len(text) != 2 * DIGEST_SIZE:
        raise ApiError(400, "bad_hex", f"{where} must be {2 * DIGEST_SIZE} hex digits")
    return from_hex(text, where)


def height(text: str) -> int:
    """A block height in a path. Digits only: int() would also take signs, underscores,
    spaces and non-ASCII digits, and converting a huge numeral costs time."""
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ApiError(400, "bad_height", "a height is a decimal number, 1 or more")
    return int(text)

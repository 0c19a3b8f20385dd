"""The gate in front of every route: who may drive the node through its API, and how much
of it one caller may take.

A browser on the member's host must not be able to drive the node. A web page can send
a cross-origin POST without asking first (a "simple request") only with a body of
``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data``, or with
no body at all; so every state-changing request must say ``application/json`` (or
``application/octet-stream`` where a route documents raw bytes), which a page can only
send after a CORS preflight, and the node answers no preflight (it sends no CORS
headers, ever). A request whose ``Origin`` is not the node's own, or that the browser
marks ``Sec-Fetch-Site: cross-site``, is refused whatever its method. And the ``Host``
header must name an address the API is configured to answer, or a page on a domain
that an attacker re-points to 127.0.0.1 (DNS rebinding) would be same-origin with it.

Budgets, so that many callers at once cannot exhaust the node: the bodies of all
requests in flight share one memory budget (a body that would take the total past it is
refused with 503 and ``Retry-After``, before it is read when its ``Content-Length`` says
so, else as soon as it streams past); and a request has a deadline to deliver its whole
body (a client that trickles a byte at a time is cut off with 408). The connection cap
and the per-read timeout are the server's (``node.api.server``).

Refusals here are written directly, as ASGI messages: the request never reached a route,
and the body is the API's usual ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import cast

import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.api.errors import error_body

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
OCTETS = "application/octet-stream"
MIB = 1024 * 1024
DEFAULT_BODY_BUDGET_BYTES = 64 * MIB
DEFAULT_BODY_DEADLINE_S = 30.0
RETRY_AFTER_S = 1
TRIM_AFTER_BYTES = 4 * MIB


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None).malloc_trim)
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``)."""
    if _TRIM is not None:
        _TRIM(0)


@dataclass
class BodyBudget:
    """Bytes of request bodies held at once, over all requests. ``take`` never waits:
    a caller over budget is told to come back, so waiting bodies hold no memory."""

    limit: int
    in_flight: int = 0
    peak: int = 0
    refused: int = 0

    def take(self, n: int) -> bool:
        if self.in_flight + n > self.limit:
            self.refused += 1
            return False
        self.in_flight += n
        self.peak = max(self.peak, self.in_flight)
        return True

    def give_back(self, n: int) -> None:
        self.in_flight -= n


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
# What a state-changing request may carry besides JSON, by path prefix: transactions as
# bytes, and the PSI sets (one identifier a line).
OCTET_PATHS = ("/txs", "/psi/runs", "/psi/answer-sets/")


@dataclass(frozen=True)
class GuardPolicy:
    """``names`` are the host names (lower case, IPv6 without brackets) this API answers
    to, on the port it listens on; ``octet_paths`` the path prefixes whose
    state-changing requests may carry raw bytes."""

    names: frozenset[str] = LOOPBACK_NAMES
    octet_paths: tuple[str, ...] = OCTET_PATHS
    body_deadline_s: float = DEFAULT_BODY_DEADLINE_S


@dataclass
class GuardStatistics:
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


def allowed_names(listen_host: str, names: Collection[str] = ()) -> frozenset[str]:
    """The host names for an API listening on ``listen_host``: that address, the
    loopback names when it is a loopback or wildcard address, and any extra ``names``
    (for an API reached through a name). A wildcard listen address alone admits only
    the loopback names: any other name must be configured."""
    host = listen_host.lower().strip("[]")
    bases = {host} - {"0.0.0.0", "::"}
    if host in LOOPBACK_NAMES | {"0.0.0.0", "::"}:
        bases |= LOOPBACK_NAMES
    return frozenset(bases | {n.lower().strip("[]") for n in names})


def split_host(value: str, default_port: int) -> tuple[str, int | None]:
    """A ``Host`` header (or an origin's authority) -> (name, port); ("", None) when it
    cannot be one."""
    value = value.strip().lower()
    port_text: str | None
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return "", None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.partition(":")
        if not sep:
            port_text = None
    if port_text is None:
        return name, default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < len(port_text) <= 5):
        return "", None
    return name, int(port_text)


class RequestGuard:
    """ASGI middleware: the checks above, then the app with a budgeted, timed body."""

    def __init__(
        self,
        app: ASGIApp,
        policy: GuardPolicy | None = None,
        budget: BodyBudget | None = None,
        stats: GuardStatistics | None = None,
    ) -> None:
        self.app = app
        self.policy = policy or GuardPolicy()
        self.budget = budget or BodyBudget(DEFAULT_BODY_BUDGET_BYTES)
        self.stats = stats or GuardStatistics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, code, message = refusal
            self.stats.count(code)
            await _respond(send, status, code, message)
            return
        declared = headers.get("content-length")
        expected = int(declared) if declared is not None and declared.isdigit() else 0
        if expected > self.budget.limit:
            # Larger than any route takes: the route refuses it (413) before reading it.
            expected = 0
        elif expected and not self.budget.take(expected):
            self.stats.count("busy")
            await _respond(send, 503, "busy", _BUSY, {"retry-after": str(RETRY_AFTER_S)})
            return
        body = _TimedBody(receive, self.budget, expected, self.policy.body_deadline_s)
        try:
            await self.app(scope, body.receive, body.wrap(send))
        finally:
            body.release()
        if body.failure is not None:
            self.stats.count(body.failure[1])
        if body.received >= TRIM_AFTER_BYTES:
            # A large body leaves its parsed pieces in freed heap pages that the C
            # allocator keeps; hand them back, or every burst of uploads ratchets the
            # node's resident memory up. Off the loop: it walks the whole heap.
            await trio.to_thread.run_sync(release_free_memory)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        default_port = 443 if scope.get("scheme") == "https" else 80
        server = scope.get("server")
        # The port this request came in on (an in-process client may leave it out).
        port = server[1] if server and server[1] is not None else default_port
        name, host_port = split_host(headers.get("host", ""), default_port)
        if name not in self.policy.names or host_port != port:
            return 421, "wrong_host", "this API answers only for its configured address"
        origin = headers.get("origin")
        if origin is not None:
            scheme, _, rest = origin.partition("://")
            authority = rest.split("/", 1)[0]
            seen = split_host(authority, 443 if scheme == "https" else 80)
            if scheme != scope.get("scheme", "http") or seen != (name, port):
                return 403, "cross_origin", "requests from another origin are refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross_origin", "requests from another site are refused"
        if scope["method"] not in STATE_CHANGING:
            return None
        # A page may POST cross-origin without a preflight, with or without a body; the
        # other methods always need a preflight, which this API never grants, so only
        # their bodies are held to the rule (a bodiless DELETE gets its 404 or 405).
        has_body = "content-length" in headers or "transfer-encoding" in headers
        if scope["method"] != "POST" and not has_body:
            return None
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media == JSON:
            return None
        if media == OCTETS and scope["path"].startswith(self.policy.octet_paths):
            return None
        accepted = JSON
        if scope["path"].startswith(self.policy.octet_paths):
            accepted = f"{JSON} or {OCTETS}"
        return 415, "unsupported_media_type", f"a {scope['method']} here must be {accepted}"


_BUSY = "too many request bodies are being received at once; retry shortly"


class _TimedBody:
    """The app's ``receive``: the body within its deadline and the shared budget. A body
    cut off (late, or over budget past what it declared) reads as a disconnect, and the
    app's answer to it is replaced with the refusal."""

    def __init__(
        self, receive: Receive, budget: BodyBudget, reserved: int, deadline_s: float
    ) -> None:
        self._receive = receive
        self._budget = budget
        self._reserved = reserved
        self.received = 0
        self._deadline = trio.current_time() + deadline_s
        self._done = False
        self.failure: tuple[int, str, str] | None = None

    async def receive(self) -> Message:
        if self.failure is not None:
            return {"type": "http.disconnect"}
        if self._done:
            return await self._receive()  # after the body: wait for the disconnect
        with trio.move_on_at(self._deadline):
            message = await self._receive()
            if message["type"] == "http.request":
                self._count(len(message.get("body", b"")))
                if not message.get("more_body", False):
                    self._done = True
            if self.failure is None:
                return message
            return {"type": "http.disconnect"}
        self.failure = (408, "body_timeout", "the body did not arrive in time")
        return {"type": "http.disconnect"}

    def _count(self, n: int) -> None:
        self.received += n
        beyond = self.received - self._reserved
        if beyond <= 0:
            return
        if not self._budget.take(beyond):
            self.failure = (503, "busy", _BUSY)
            return
        self._reserved += beyond

    def release(self) -> None:
        self._budget.give_back(self._reserved)
        self._reserved = 0

    def wrap(self, send: Send) -> Send:
        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if self.failure is None and not replaced:
                await send(message)
                return
            if message["type"] == "http.response.start" and not replaced:
                replaced = True
                status, code, text = self.failure or (500, "internal", "")
                extra = {"retry-after": str(RETRY_AFTER_S)} if status == 503 else {}
                await _respond(send, status, code, text, extra)
            # The app's own answer to what it saw as a disconnect is dropped.

        return guarded_send


def _headers(scope: Scope) -> dict[str, str]:
    # Repeated headers: the last one wins, as for Starlette's ``Headers.get`` of a dict.
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _respond(
    send: Send, status: int, code: str, message: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The connection may hold an unread body; the client must open a new one.
        (b"connection", b"close"),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

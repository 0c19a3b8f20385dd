"""Who may call what: bearer tokens of the member's users (``node.setup.users``) and the
one table of the roles each operation needs (``ROUTE_ROLES``).

``Authenticate`` is ASGI middleware inside the gate (``node.api.guard``): it finds the
route a request is for, lets the open ones through (``OPEN``: liveness, readiness,
metrics, the OpenAPI document and the console's static files), and for every other one
asks for
``Authorization: Bearer <token>`` of a user holding one of the roles the table names:
401 ``unauthenticated`` (with ``WWW-Authenticate: Bearer``) without a token, or with
one that is unknown, revoked or expired (saying which of the last two, never whether a
name exists), 403 ``forbidden_role`` naming the roles needed. A route missing from the
table is refused to everyone: adding a route means adding its roles here. The user who
passed is in the request's state (``user_of``, ``actor_of``). Tokens are never logged
nor put in an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from node.api.errors import refusal_response, status_of
from node.refusals import Forbidden, Refusal, Unauthenticated
from node.setup.users import NODE_ACTOR, User, UserStore

INVESTIGATOR = "investigator"
APPROVER = "approver"
REPORTER = "reporter"
OPERATOR = "operator"
_CASE_READERS = frozenset({INVESTIGATOR, APPROVER, OPERATOR})

OPEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        # The console's static files (node.api.console): no data, every call it makes
        # is one of the routes below with the user's token.
        ("GET", "/console/"),
        ("GET", "/console/{asset}"),
    }
)
# (method, route path) -> the user roles any one of which allows it. HEAD is GET.
ROUTE_ROLES: Mapping[tuple[str, str], frozenset[str]] = {
    ("GET", "/status"): frozenset({OPERATOR}),
    ("POST", "/txs"): frozenset({REPORTER}),
    ("GET", "/txs/{tx_id}"): frozenset({OPERATOR}),
    ("GET", "/txs/{tx_id}/proof"): frozenset({OPERATOR}),
    ("GET", "/blocks/latest"): frozenset({OPERATOR}),
    ("GET", "/blocks/{height}"): frozenset({OPERATOR}),
    ("POST", "/details"): frozenset({REPORTER}),
    ("GET", "/details/{tx_id}"): frozenset({REPORTER, INVESTIGATOR}),
    ("POST", "/cases"): frozenset({INVESTIGATOR}),
    ("GET", "/cases"): _CASE_READERS,
    ("GET", "/cases/{case_id:path}"): _CASE_READERS,
    ("POST", "/cases/{case_id:path}/approve"): frozenset({APPROVER}),
    ("POST", "/cases/{case_id:path}/close"): frozenset({INVESTIGATOR}),
    ("POST", "/trace"): frozenset({INVESTIGATOR}),
    ("POST", "/graph"): frozenset({INVESTIGATOR}),
    ("POST", "/history"): frozenset({INVESTIGATOR}),
    ("GET", "/audit"): _CASE_READERS,
    ("POST", "/psi/runs"): frozenset({INVESTIGATOR}),
    ("GET", "/psi/runs"): frozenset({INVESTIGATOR, OPERATOR}),
    ("GET", "/psi/runs/{run_id}"): frozenset({INVESTIGATOR, OPERATOR}),
    ("GET", "/psi/answer-sets"): frozenset({OPERATOR}),
    ("PUT", "/psi/answer-sets/{entity_type}"): frozenset({OPERATOR}),
    # Disclosure (node.api.disclosure): the submitting tools hand over what they reported;
    # investigators ask and read; the operator decides what its policy holds back.
    ("POST", "/disclosure/identifiers"): frozenset({REPORTER}),
    # Threshold pseudonyms (node.api.pseudonyms): reporters pseudonymise what they
    # report; the operator watches what this member evaluates for the others.
    ("POST", "/pseudonyms"): frozenset({REPORTER}),
    ("GET", "/pseudonyms/evaluations"): frozenset({OPERATOR}),
    ("POST", "/disclosures"): frozenset({INVESTIGATOR}),
    ("GET", "/disclosures"): frozenset({INVESTIGATOR}),
    ("GET", "/disclosures/{request_id}"): frozenset({INVESTIGATOR}),
    ("GET", "/disclosure/pending"): frozenset({OPERATOR}),
    ("POST", "/disclosure/pending/{request_id}/allow"): frozenset({OPERATOR}),
    ("POST", "/disclosure/pending/{request_id}/deny"): frozenset({OPERATOR}),
}

_REASONS = {
    "missing": "this operation needs `Authorization: Bearer <token>` of a user of this member",
    "unknown": "the token is not one of this member's users' tokens",
    "revoked": "the token's user has been revoked",
    "expired": "the token's user has expired",
}


def roles_for(method: str, path: str) -> frozenset[str] | None:
    """The roles that allow ``method`` on route ``path``; None for an open route,
    the empty set for a route nobody may call (it is missing from the table)."""
    method = "GET" if method == "HEAD" else method
    if (method, path) in OPEN:
        return None
    return ROUTE_ROLES.get((method, path), frozenset())


def name_actors(obj: Any, member: str, users: UserStore | None) -> Any:
    """``obj`` (an answer's JSON) with ``actor_name`` beside every ``actor`` of a record
    this member signed whose user is in ``users``; other members' actors stay ids."""
    if isinstance(obj, list):
        return [name_actors(item, member, users) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {key: name_actors(value, member, users) for key, value in obj.items()}
    actor = obj.get("actor")
    if isinstance(actor, str) and obj.get("member") == member and users is not None:
        try:
            name = users.name_of(bytes.fromhex(actor))
        except ValueError:
            name = None
        if name is not None:
            out["actor_name"] = name
    return out


def user_of(request: Request) -> User | None:
    user = request.scope.get("crosstrace.user")
    return user if isinstance(user, User) else None


def actor_of(request: Request) -> bytes:
    """The pseudonymous actor id of the request's user (the node's own otherwise)."""
    user = user_of(request)
    return NODE_ACTOR if user is None else user.actor


class Authenticate:
    """ASGI middleware: the bearer token and the role table, before any handler."""

    def __init__(self, app: ASGIApp, routes: list[Any], users: UserStore | None) -> None:
        self.app = app
        self.routes = routes
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            response = refusal_response(refusal)
            if status_of(refusal) == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="crosstrace"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _route_path(self, scope: Scope) -> str | None:
        for route in self.routes:
            if isinstance(route, Route):
                match, _ = route.matches(scope)
                if match is Match.FULL:
                    return route.path
        return None

    def _refusal(self, scope: Scope) -> Refusal | None:
        path = self._route_path(scope)
        if path is None:
            return None  # no route takes it: 404 or 405 follow, nothing to protect
        needed = roles_for(scope["method"], path)
        if needed is None:
            return None
        token = self._token(scope)
        verdict = None if self.users is None else self.users.check(token)
        if verdict is None or verdict.user is None:
            reason = "missing" if not token else (verdict.reason if verdict else "unknown")
            return Unauthenticated("unauthenticated", _REASONS[reason])
        if not needed:
            return Forbidden("forbidden_role", "no role allows this operation")
        if not needed & set(verdict.user.roles):
            return Forbidden(
                "forbidden_role",
                f"this operation needs the {' or '.join(sorted(needed))} role; "
                f"user {verdict.user.name!r} holds {', '.join(verdict.user.roles)}",
                {"roles_needed": sorted(needed)},
            )
        scope["crosstrace.user"] = verdict.user
        return None

    @staticmethod
    def _token(scope: Scope) -> str | None:
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                text = bytes(value).decode("latin-1")
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return str(token.strip())
                return None
        return None

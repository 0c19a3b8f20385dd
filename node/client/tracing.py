"""The case, query and audit calls of the local API, for the command line
(``node.commands.cases``, ``node.commands.tracing``) and the benchmark.

Identifiers go in request bodies, in the clear, to the local node only: it is the one
that pseudonymises them. Every failure is an ``ApiClientError`` whose message is one
line; a refusal keeps the node's code and message (``refusal``).
"""

from __future__ import annotations

from typing import Any

import httpx

from node.client.http import ApiClient, ApiClientError

# The node waits up to 10 s for an access record or a case transaction to commit; the
# client waits that long plus a margin before it gives up on the answer.
DEFAULT_TIMEOUT_S = 30.0


def refusal(exc: ApiClientError) -> str:
    """The node's own words for a refused call (``code: message``), else the client's
    message (no node, no answer, not JSON)."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{body.get('error')}: {body['message']}"
    return str(exc)


class TracingClient(ApiClient):
    def __init__(
        self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, token: str | None = None
    ) -> None:
        super().__init__(base_url, timeout_s=timeout_s, token=token)

    # -- cases ----------------------------------------------------------------------

    def cases(self) -> dict[str, Any]:
        return self._object(self._request("GET", "/cases"))

    def case(self, case_id: str) -> dict[str, Any]:
        return self._object(self._request("GET", f"/cases/{case_id}"))

    def open_case(
        self,
        case_id: str,
        purpose: str,
        justification: str,
        scope: list[str],
        window: tuple[int, int],
        expires_ms: int,
    ) -> tuple[int, dict[str, Any]]:
        """(201 committed | 202 not yet, the answer). ``purpose`` is one of the ledger's
        purposes; ``justification`` the written reasons, which the node keeps off the
        ledger and sends to the approvers only."""
        body = {
            "case_id": case_id,
            "purpose": purpose,
            "justification": justification,
            "scope": scope,
            "window": {"start_ms": window[0], "end_ms": window[1]},
            "expires_ms": expires_ms,
        }
        response = self._request("POST", "/cases", json=body, ok=(201, 202))
        return response.status_code, self._object(response)

    def approve(self, case_id: str) -> tuple[int, dict[str, Any]]:
        response = self._request("POST", f"/cases/{case_id}/approve", json={}, ok=(200, 202))
        return response.status_code, self._object(response)

    def close_case(self, case_id: str) -> tuple[int, dict[str, Any]]:
        response = self._request("POST", f"/cases/{case_id}/close", json={}, ok=(200, 202))
        return response.status_code, self._object(response)

    # -- queries --------------------------------------------------------------------

    def trace(
        self,
        case_id: str,
        entity: str,
        *,
        window: tuple[int, int] | None = None,
        limit: int | None = None,
        after: tuple[int, int] | None = None,
    ) -> tuple[dict[str, Any], httpx.Headers]:
        """The answer, and the headers that say where its access record went and how
        long each step took (``Server-Timing``)."""
        body: dict[str, Any] = {"case_id": case_id, "entity": entity}
        _optional(body, window=window, limit=limit, after=after)
        response = self._request("POST", "/trace", json=body)
        return self._object(response), response.headers

    def graph(
        self,
        case_id: str,
        entity: str,
        *,
        depth: int | None = None,
        window: tuple[int, int] | None = None,
        dot: bool = False,
    ) -> httpx.Response:
        """The raw response: JSON, or DOT text with the access record in its headers."""
        body: dict[str, Any] = {"case_id": case_id, "entity": entity}
        _optional(body, window=window, depth=depth)
        if dot:
            body["format"] = "dot"
        return self._request("POST", "/graph", json=body)

    def history(
        self, case_id: str, tx_id: str, *, window: tuple[int, int] | None = None
    ) -> tuple[dict[str, Any], httpx.Headers]:
        body: dict[str, Any] = {"case_id": case_id, "tx_id": tx_id}
        _optional(body, window=window)
        response = self._request("POST", "/history", json=body)
        return self._object(response), response.headers

    def audit(
        self,
        *,
        case_id: str | None = None,
        member: str | None = None,
        query: str | None = None,
        limit: int | None = None,
        after: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        for name, value in (("case", case_id), ("member", member), ("query", query)):
            if value is not None:
                params[name] = value
        if limit is not None:
            params["limit"] = str(limit)
        if after is not None:
            params["after"] = f"{after[0]}:{after[1]}"
        return self._object(self._request("GET", "/audit", params=params))

    def evaluations(self, *, limit: int | None = None) -> dict[str, Any]:
        """What this member evaluated for the others today (``GET /pseudonyms/evaluations``)."""
        params = {} if limit is None else {"limit": str(limit)}
        return self._object(self._request("GET", "/pseudonyms/evaluations", params=params))

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        answer = self._json(response)
        if not isinstance(answer, dict):
            raise ApiClientError(f"{response.request.url}: the answer is not a JSON object")
        return answer


def _optional(body: dict[str, Any], **fields: Any) -> None:
    for name, value in fields.items():
        if value is None:
            continue
        if name == "window":
            body[name] = {"start_ms": value[0], "end_ms": value[1]}
        elif name == "after":
            body[name] = list(value)
        else:
            body[name] = value

"""The PSI endpoints of a node's local API, from the operator's side (the CLI, the tests
and the benchmark use it). Errors are ``ApiClientError``; a refused set carries its
``problems`` (line, message) in the error's body."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from node.client.http import ApiClientError, auth_headers

# The sets travel as bytes, one identifier a line: the API takes no text/plain bodies.
OCTETS = {"content-type": "application/octet-stream"}

ENDED = ("completed", "failed", "refused")


class PsiClient:
    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, headers=auth_headers(self.base_url)
        )

    def __enter__(self) -> PsiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def start(
        self, case_id: str, peer: str, entity_type: str, data: bytes, *, dedupe: bool = False
    ) -> dict[str, Any]:
        params = {"case": case_id, "with": peer, "type": entity_type}
        if dedupe:
            params["dedupe"] = "true"
        return self._call("POST", "/psi/runs", (202,), params=params, content=data, headers=OCTETS)

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/psi/runs/{run_id}", (200,))

    def runs(self) -> dict[str, Any]:
        return self._call("GET", "/psi/runs", (200,))

    def set_answer_set(
        self, entity_type: str, data: bytes, *, dedupe: bool = False
    ) -> dict[str, Any]:
        params = {"dedupe": "true"} if dedupe else {}
        return self._call(
            "PUT",
            f"/psi/answer-sets/{entity_type}",
            (200,),
            params=params,
            content=data,
            headers=OCTETS,
        )

    def wait(
        self,
        run_id: str,
        *,
        timeout_s: float,
        poll_s: float = 0.2,
        on_progress: Callable[[dict[str, Any]], None] = lambda run: None,
    ) -> dict[str, Any]:
        """Poll the run until it ends (or ``timeout_s``); the last answer."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.run(run_id)
            on_progress(answer)
            if answer["state"] in ENDED:
                return answer
            if time.monotonic() > deadline:
                raise ApiClientError(
                    f"psi run {run_id[:8]} did not end within {timeout_s:g} s; it goes on at "
                    "the node (crosstrace psi-runs)"
                )
            time.sleep(poll_s)

    def _call(self, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiClientError(f"no node answers at {self.base_url}: is it running?") from None
        except httpx.TimeoutException:
            raise ApiClientError(f"{self.base_url}{path}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiClientError(f"{self.base_url}{path}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in ok:
            if isinstance(body, dict) and "message" in body:
                detail = f"{body.get('error')}: {body['message']}"
            else:
                detail = response.text.strip()[:200]
            raise ApiClientError(
                f"HTTP {response.status_code} {detail}".rstrip(), response.status_code, body
            )
        if not isinstance(body, dict):
            raise ApiClientError(f"{self.base_url}{path}: the answer is not a JSON object")
        return body


def problem_text(exc: ApiClientError, limit: int = 10) -> str:
    """The error with the lines it names, on one line."""
    body = exc.body if isinstance(exc.body, dict) else {}
    problems = body.get("problems") or []
    message = f"{body['error']}: {body['message']}" if "message" in body else str(exc)
    if not problems:
        return message
    shown = "; ".join(f"line {p['line']}: {p['message']}" for p in problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{message}: {shown}{more}"

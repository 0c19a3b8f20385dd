"""A client of one node's local query API, for the operator commands and the benchmark.

Every way a call can fail (the node is not running, it answered with an error object,
it answered with something that is not JSON) becomes one ``ApiClientError`` whose
message is a single line an operator can act on.

Every call carries the bearer token of one of the member's users (``token_for``):
``CROSSTRACE_TOKEN`` when it is set, else the owner-only ``token`` file of the home the
URL was read from (``api_url_of_home``). The token goes in a header only, never in a
URL, a message or a log line.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from node.setup.config import ConfigError, load_config
from node.setup.genesis import split_host_port
from node.setup.users import TOKEN_FILE, UserError, read_token_file

DEFAULT_TIMEOUT_S = 10.0
# A node past its admission bound answers 429 with Retry-After (node.host.admission).
BUSY = 429
TOKEN_ENV = "CROSSTRACE_TOKEN"
# The home each API URL was read from, so a client of that URL finds its token file.
_HOMES: dict[str, Path] = {}


class ApiClientError(Exception):
    """A call to the local API failed; the message says which node and why."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        body: Any = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after  # the Retry-After header, as the node sent it


def api_url_of_home(home: Path) -> str:
    """The API base URL a member's ``config.toml`` gives (a wildcard host means local)."""
    try:
        config = load_config(home / "config.toml")
    except (ConfigError, OSError) as exc:
        raise ApiClientError(str(exc)) from None
    host, port = split_host_port(config.api.listen, allow_port_zero=True)
    if port == 0:
        raise ApiClientError(
            f"{home / 'config.toml'}: api.listen has port 0, so the API port is only known "
            "to the running node; give --url instead"
        )
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}"
    _HOMES[url] = home
    return url


def token_for(base_url: str, home: Path | None = None) -> str | None:
    """The token to present to ``base_url``: ``CROSSTRACE_TOKEN``, else the ``token``
    file of ``home`` (or of the home the URL was read from); refuses a token file that
    group or others may read."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    home = home or _HOMES.get(base_url.rstrip("/"))
    if home is None:
        return None
    path = home / TOKEN_FILE
    try:
        return read_token_file(path) or None
    except FileNotFoundError:
        return None
    except UserError as exc:
        raise ApiClientError(str(exc)) from None
    except OSError as exc:
        raise ApiClientError(f"{path}: cannot read the token: {exc.strerror}") from None


def retry_after_s(error: ApiClientError) -> int:
    """The whole seconds a 429 asks to wait: its ``Retry-After`` header in seconds (the
    node also puts it in the body as ``retry_after``), at least 1."""
    header = (error.retry_after or "").strip()
    if header.isdigit():
        return max(1, int(header))
    body = error.body if isinstance(error.body, dict) else {}
    value = body.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(1, math.ceil(value))
    return 1


def auth_headers(base_url: str, home: Path | None = None) -> dict[str, str]:
    token = token_for(base_url, home)
    return {} if token is None else {"authorization": f"Bearer {token}"}


class ApiClient:
    def __init__(
        self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        token = token or token_for(self.base_url)
        # The API server closes a connection idle for 5 s; reusing one that old races
        # with that close, so idle connections are dropped sooner here.
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            limits=httpx.Limits(keepalive_expiry=1.0),
            headers={} if token is None else {"authorization": f"Bearer {token}"},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def status(self) -> dict[str, Any]:
        answer = self._call("GET", "/status")
        assert isinstance(answer, dict)
        return answer

    def metrics(self) -> str:
        response = self._request("GET", "/metrics")
        return response.text

    def submit(
        self,
        txs: Sequence[bytes],
        *,
        wait: bool = False,
        timeout_s: float = 5.0,
        busy_wait_s: float = 0.0,
        on_busy: Callable[[int, float], None] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Submit signed transactions; the status (200 committed, 202 accepted or still
        pending, 422 all refused) and the answer with one result per transaction.

        A busy node (429: nothing of the request was kept) is asked again after the
        seconds its ``Retry-After`` says, for at most ``busy_wait_s`` seconds of waiting
        in all; ``on_busy(seconds, waited_s)`` is told before each wait. Past that, or
        with ``busy_wait_s`` 0, the 429 is an ``ApiClientError`` with status 429."""
        body = {"txs": [tx.hex() for tx in txs]}
        waited = 0.0
        while True:
            try:
                return self._post_waiting("/txs", body, wait, timeout_s)
            except ApiClientError as exc:
                if exc.status != BUSY:
                    raise
                seconds = retry_after_s(exc)
                if waited + seconds > busy_wait_s:
                    if busy_wait_s <= 0:
                        raise
                    raise ApiClientError(
                        f"{self.base_url}/txs: the node is overloaded (HTTP 429) and still "
                        f"asks to wait {seconds} s after {waited:g} s of waiting; "
                        "nothing was kept, submit again later",
                        BUSY,
                        exc.body,
                    ) from None
                if on_busy is not None:
                    on_busy(seconds, waited)
                time.sleep(seconds)
                waited += seconds

    def tx(self, tx_id: str) -> dict[str, Any]:
        answer = self._call("GET", f"/txs/{tx_id}")
        assert isinstance(answer, dict)
        return answer

    def block(self, height: int | str) -> dict[str, Any]:
        answer = self._call("GET", f"/blocks/{height}")
        assert isinstance(answer, dict)
        return answer

    def proof(self, tx_id: str) -> bytes:
        """The inclusion proof file of a committed transaction."""
        return self._request("GET", f"/txs/{tx_id}/proof").content

    def submit_details(
        self,
        tx: bytes,
        salt: bytes,
        details: dict[str, str],
        share_with: Sequence[str] | None,
        *,
        wait: bool = False,
        timeout_s: float = 5.0,
    ) -> tuple[int, dict[str, Any]]:
        """A signed report, link or case with the private details it commits to
        (``POST /details``); the answer has the shape of ``submit``'s."""
        body: dict[str, Any] = {"tx": tx.hex(), "salt": salt.hex(), "details": details}
        if share_with is not None:
            body["share_with"] = list(share_with)
        return self._post_waiting("/details", body, wait, timeout_s)

    def _post_waiting(
        self, path: str, body: dict[str, Any], wait: bool, timeout_s: float
    ) -> tuple[int, dict[str, Any]]:
        """POST transactions; with ``wait`` the node answers once they commit (200), or
        after ``timeout_s`` (202), so the HTTP timeout grows by as much."""
        params = {"wait": "true", "timeout": f"{timeout_s:g}"} if wait else {}
        response = self._request(
            "POST",
            path,
            json=body,
            params=params,
            ok=(200, 202, 422),
            extra_timeout_s=timeout_s if wait else 0.0,
        )
        answer = self._json(response)
        assert isinstance(answer, dict)
        return response.status_code, answer

    def details(self, tx_id: str) -> dict[str, Any]:
        """The private details this node holds for a transaction (``GET /details/{id}``)."""
        answer = self._call("GET", f"/details/{tx_id}")
        assert isinstance(answer, dict)
        return answer

    def pseudonyms(self, identifiers: Sequence[str], timeout_s: float | None = None) -> Any:
        """The consortium's pseudonyms of ``TYPE:VALUE`` identifiers (``POST /pseudonyms``,
        purpose report), evaluated by the node with the other members; see
        ``node.client.pseudonyms`` for the source an ``Author`` uses."""
        kwargs: dict[str, Any] = {"json": {"identifiers": list(identifiers)}}
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
        return self._json(self._request("POST", "/pseudonyms", **kwargs))

    # ------------------------------------------------------------------ disclosure

    def keep_identifiers(self, items: Sequence[dict[str, str]]) -> dict[str, Any]:
        """Hand the node the identifiers behind what this member just reported
        (``POST /disclosure/identifiers``): each has type, pseudonym, identifier, tx_id."""
        answer = self._json(
            self._request("POST", "/disclosure/identifiers", json={"identifiers": list(items)})
        )
        assert isinstance(answer, dict)
        return answer

    def disclose(self, case_id: str, entity_type: str, pseudonym_hex: str) -> dict[str, Any]:
        """Ask for the identifier behind an entity under a case (``POST /disclosures``)."""
        body = {"case_id": case_id, "entity": {"type": entity_type, "pseudonym": pseudonym_hex}}
        answer = self._json(self._request("POST", "/disclosures", json=body, ok=(201,)))
        assert isinstance(answer, dict)
        return answer

    def disclosures(self) -> dict[str, Any]:
        answer = self._call("GET", "/disclosures")
        assert isinstance(answer, dict)
        return answer

    def disclosure(self, request_id: str) -> dict[str, Any]:
        answer = self._call("GET", f"/disclosures/{request_id}")
        assert isinstance(answer, dict)
        return answer

    def disclosures_pending(self) -> dict[str, Any]:
        answer = self._call("GET", "/disclosure/pending")
        assert isinstance(answer, dict)
        return answer

    def decide_disclosure(self, request_id: str, allow: bool, reason: str = "") -> dict[str, Any]:
        """Allow or deny a request held for the operator."""
        verb = "allow" if allow else "deny"
        kwargs: dict[str, Any] = {"json": {} if allow else {"reason": reason}}
        path = f"/disclosure/pending/{request_id}/{verb}"
        answer = self._json(self._request("POST", path, **kwargs))
        assert isinstance(answer, dict)
        return answer

    # ------------------------------------------------------------------ plumbing

    def _call(self, method: str, path: str) -> Any:
        return self._json(self._request(method, path))

    def _request(
        self,
        method: str,
        path: str,
        *,
        ok: Sequence[int] = (200,),
        extra_timeout_s: float = 0.0,
        **kwargs: Any,
    ) -> httpx.Response:
        timeout = self._http.timeout.read
        if extra_timeout_s and timeout is not None:
            kwargs["timeout"] = timeout + extra_timeout_s
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiClientError(
                f"no node answers at {self.base_url}: is it running? "
                "(crosstrace cluster status DIR, or its log)"
            ) from None
        except httpx.TimeoutException:
            raise ApiClientError(f"{self.base_url}{path}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiClientError(f"{self.base_url}{path}: {exc}") from None
        if response.status_code not in ok:
            body = self._maybe_json(response)
            if isinstance(body, dict) and "message" in body:
                detail = f"{body.get('error')}: {body['message']}"
            else:
                detail = response.text.strip().splitlines()[0] if response.text.strip() else ""
            raise ApiClientError(
                f"{self.base_url}{path}: HTTP {response.status_code} {detail}".rstrip(),
                response.status_code,
                body,
                response.headers.get("retry-after"),
            )
        return response

    def _json(self, response: httpx.Response) -> Any:
        body = self._maybe_json(response)
        if body is None:
            raise ApiClientError(f"{response.request.url}: the answer is not JSON")
        return body

    @staticmethod
    def _maybe_json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

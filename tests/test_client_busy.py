"""The API client (``node.client.http``, behind ``crosstrace submit``) honours a busy
node's 429: it waits what ``Retry-After`` says and sends the same request again, for a
bounded time in all. The node is a scripted httpx transport; the sleeps are recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from node.client.http import ApiClient, ApiClientError

TX = bytes(range(40))


def busy(retry_after: str | None = "2") -> httpx.Response:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    body = {"error": "overloaded", "message": "busy", "retry_after": 7, "reason": "share"}
    return httpx.Response(429, json=body, headers=headers)


def accepted(request: httpx.Request) -> httpx.Response:
    [tx] = json.loads(request.content)["txs"]
    row = {"tx_id": "ab" * 32, "accepted": True, "code": "accepted", "message": ""}
    assert tx == TX.hex()
    return httpx.Response(202, json={"results": [row]})


def client_of(answers: list[Callable[[httpx.Request], httpx.Response]]) -> ApiClient:
    """A client whose node answers each request with the next of ``answers``."""
    client = ApiClient("http://127.0.0.1:1", token="t")

    def handle(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)(request)

    client._http = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(handle))
    return client


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the module the client calls
    return slept


def test_a_busy_node_is_asked_again_after_its_retry_after(sleeps: list[float]) -> None:
    told: list[tuple[int, float]] = []
    client = client_of([lambda _: busy("2"), lambda _: busy("1"), accepted])
    code, answer = client.submit(
        [TX], busy_wait_s=10, on_busy=lambda s, waited: told.append((s, waited))
    )
    assert code == 202 and answer["results"][0]["accepted"]
    assert sleeps == [2, 1]
    assert told == [(2, 0.0), (1, 2.0)]


def test_the_header_wins_and_the_body_stands_in_for_it(sleeps: list[float]) -> None:
    client = client_of([lambda _: busy(None), lambda _: busy("soon"), accepted])
    client.submit([TX], busy_wait_s=60)
    # No header: the body's retry_after; a header that is not seconds: the body's too.
    assert sleeps == [7, 7]


def test_the_total_wait_is_bounded(sleeps: list[float]) -> None:
    client = client_of([lambda _: busy("4")] * 10)
    with pytest.raises(ApiClientError, match=r"overloaded \(HTTP 429\).* 8 s of waiting") as info:
        client.submit([TX], busy_wait_s=10)
    assert info.value.status == 429
    assert sleeps == [4, 4]  # a third wait would pass 10 s


def test_without_a_wait_the_429_is_the_answer(sleeps: list[float]) -> None:
    client = client_of([lambda _: busy("3")])
    with pytest.raises(ApiClientError, match="HTTP 429 overloaded") as info:
        client.submit([TX])
    assert info.value.status == 429 and info.value.retry_after == "3"
    assert sleeps == []

"""The API's gate (``node.api.guard``) on a small app: what a browser page could send is
refused, a foreign ``Host`` is refused, and bodies share one budget and one deadline."""

from __future__ import annotations

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from node.api.guard import (
    LOOPBACK_NAMES,
    BodyBudget,
    GuardPolicy,
    RequestGuard,
    allowed_names,
    split_host,
)

HOSTS = {"127.0.0.1:8600", "localhost:8600", "[::1]:8600"}
BASE = "http://127.0.0.1:8600"
JSON = {"content-type": "application/json"}


async def echo(request: Request) -> Response:
    try:
        body = await request.body()
    except ClientDisconnect:
        return JSONResponse({"error": "incomplete_body", "message": "left"}, 400)
    return JSONResponse({"size": len(body)})


def guarded(budget_bytes: int = 1 << 20, deadline_s: float = 5.0) -> RequestGuard:
    app = Starlette(
        routes=[
            Route("/cases", echo, methods=["GET", "POST"]),
            Route("/txs", echo, methods=["POST"]),
        ]
    )
    policy = GuardPolicy(LOOPBACK_NAMES, octet_paths=("/txs",), body_deadline_s=deadline_s)
    return RequestGuard(app, policy, BodyBudget(budget_bytes))


def client(app: RequestGuard, base: str = BASE) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


def test_the_loopback_names_are_allowed_for_a_loopback_or_wildcard_listen() -> None:
    assert allowed_names("127.0.0.1") == LOOPBACK_NAMES
    assert allowed_names("0.0.0.0") == LOOPBACK_NAMES
    assert allowed_names("[::1]") == LOOPBACK_NAMES
    assert allowed_names("10.0.0.5", ["Node.Example.org"]) == {"10.0.0.5", "node.example.org"}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8600", ("127.0.0.1", 8600)),
        ("LOCALHOST", ("localhost", 80)),
        ("[::1]:8600", ("::1", 8600)),
        ("[::1]", ("::1", 80)),
        ("[::1", ("", None)),
        ("[::1]x", ("", None)),
        ("host:", ("", None)),
        ("host:99999999", ("", None)),
        ("host:\uff18\uff16", ("", None)),  # full-width digits
    ],
)
def test_host_values_are_split_strictly(value: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(value, 80) == parsed


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_what_a_page_can_send_without_a_preflight_is_refused(
    content_type: str | None,
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with client(guarded()) as c:
        response = await c.post("/cases", content=b'{"case_id": "X"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert "access-control-allow-origin" not in response.headers


async def test_json_is_accepted_and_octets_only_where_documented() -> None:
    async with client(guarded()) as c:
        assert (await c.post("/cases", json={"a": 1})).status_code == 200
        octets = {"content-type": "application/octet-stream"}
        assert (await c.post("/txs", content=b"\x01\x02", headers=octets)).status_code == 200
        refused = await c.post("/cases", content=b"\x01", headers=octets)
    assert refused.status_code == 415
    assert refused.json()["message"] == "a POST here must be application/json"


@pytest.mark.parametrize(
    "host", ["evil.example:8600", "127.0.0.1:8601", "127.0.0.1", "attacker.test", "", "[::1]x"]
)
async def test_a_foreign_host_header_is_refused(host: str) -> None:
    async with client(guarded()) as c:
        response = await c.get("/cases", headers={"host": host})
    assert response.status_code == 421
    assert response.json()["error"] == "wrong_host"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": "http://evil.example"}, 403),
        ({"origin": "null"}, 403),
        ({"origin": "http://127.0.0.1:8601"}, 403),
        ({"origin": "https://127.0.0.1:8600"}, 403),
        ({"origin": "http://127.0.0.1:8600"}, 200),
        ({"sec-fetch-site": "cross-site"}, 403),
        ({"sec-fetch-site": "same-origin"}, 200),
    ],
)
async def test_another_origin_is_refused_even_for_reads(
    headers: dict[str, str], status: int
) -> None:
    async with client(guarded()) as c:
        response = await c.get("/cases", headers=headers)
    assert response.status_code == status


@given(st.text(max_size=40))
def test_any_host_value_outside_the_set_is_refused(host: str) -> None:
    async def probe() -> int:
        async with client(guarded()) as c:
            try:
                response = await c.get("/cases", headers={"host": host})
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                return 421  # not even sendable as a header
            return response.status_code

    status = trio.run(probe)
    assert (status == 200) == (host.lower() in HOSTS)


async def test_bodies_in_flight_share_one_budget() -> None:
    app = guarded(budget_bytes=1000)
    budget = app.budget
    assert budget.take(900)  # another request is holding 900 bytes
    async with client(app) as c:
        refused = await c.post(
            "/cases", content=b"x" * 200, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "busy"
        budget.give_back(900)
        accepted = await c.post(
            "/cases", content=b"x" * 200, headers={"content-type": "application/json"}
        )
    assert accepted.status_code == 200
    assert budget.in_flight == 0 and budget.peak == 900 and budget.refused == 1


async def raw_request(
    app: RequestGuard, body_parts: list[bytes], delay_s: float, declared: int | None = None
) -> list[Message]:
    """One POST through the ASGI interface with the body in ``body_parts``, each part
    ``delay_s`` after the last (what a byte-at-a-time client does)."""
    sent: list[Message] = []
    parts = list(body_parts)
    headers = [(b"host", b"127.0.0.1:8600"), (b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/cases",
        "raw_path": b"/cases",
        "query_string": b"",
        "headers": headers,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8600),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
    }

    async def receive() -> Message:
        if not parts:
            await trio.sleep_forever()
        await trio.sleep(delay_s)
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_its_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = guarded(deadline_s=3.0)
    started = trio.current_time()
    sent = await raw_request(app, [b"x"] * 1000, delay_s=0.5)
    assert trio.current_time() - started == pytest.approx(3.0)
    assert sent[0]["status"] == 408
    assert b'"body_timeout"' in sent[1]["body"]
    assert app.budget.in_flight == 0
    assert app.stats.refused == {"body_timeout": 1}


async def test_a_chunked_body_is_refused_once_it_streams_past_the_budget(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = guarded(budget_bytes=2500)
    sent = await raw_request(app, [b"x" * 1000] * 5, delay_s=0.01)
    assert sent[0]["status"] == 503
    assert app.budget.in_flight == 0
    ok = await raw_request(app, [b"x" * 1000] * 2, delay_s=0.01)
    assert ok[0]["status"] == 200


async def test_a_declared_length_larger_than_the_budget_is_left_to_the_route(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The route's own limit answers 413 from Content-Length before reading; here the
    # echo route reads, and the guard cuts it off once the budget is passed.
    app = guarded(budget_bytes=2500)
    sent = await raw_request(app, [b"x" * 1000] * 3, delay_s=0.01, declared=10**9)
    assert sent[0]["status"] == 503

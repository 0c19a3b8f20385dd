"""The API's listener (``node.api.server``): one connection's failure ends that
connection only, and a connection's data and its EOF never collide.

The end-to-end hostile-neighbour test once lost member 0's whole API (and daemon) to
trio's ``BusyResourceError``: the guard cut a trickled body off with a 408 and
``connection: close``, Hypercorn sent the EOF, and the client closed at the same moment,
so Hypercorn's reader task answered the broken request while the EOF was under way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any

import pytest
import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import node.api.server as server_module
from node.api.guard import LOOPBACK_NAMES, BodyBudget, GuardPolicy, RequestGuard
from node.api.server import _SlotStream, serve_api

pytestmark = pytest.mark.timeout(60)


def slot_stream_pair() -> tuple[_SlotStream, trio.SocketStream, trio.CapacityLimiter]:
    ours, theirs = trio.socket.socketpair()
    limiter = trio.CapacityLimiter(1)
    token = object()
    limiter.acquire_on_behalf_of_nowait(token)
    return _SlotStream(trio.SocketStream(ours), limiter, token), trio.SocketStream(theirs), limiter


async def read_all(stream: trio.SocketStream) -> bytes:
    received = bytearray()
    while chunk := await stream.receive_some(1 << 16):
        received += chunk
    return bytes(received)


async def test_an_eof_asked_for_during_a_send_waits_for_it() -> None:
    stream, peer, limiter = slot_stream_pair()
    data = b"x" * (8 << 20)  # more than the socket buffers: the send blocks on the reader
    got: list[bytes] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, data)
            await trio.sleep(0.05)  # the send is under way and blocked
            nursery.start_soon(stream.send_eof)  # trio alone: BusyResourceError
            await trio.sleep(0.05)

            async def reader() -> None:
                got.append(await read_all(peer))

            nursery.start_soon(reader)
    assert got == [data]  # every byte, then the EOF
    await stream.aclose()
    await peer.aclose()
    assert limiter.borrowed_tokens == 0


async def test_a_send_asked_for_during_an_eof_waits_and_meets_a_closed_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Hypercorn expects of a stream the other side of a ``connection: close``."""
    stream, peer, _ = slot_stream_pair()
    real_eof = stream.inner.send_eof

    async def slow_eof() -> None:
        await trio.sleep(0.2)  # an EOF under way, as at trio's checkpoint inside it
        await real_eof()

    monkeypatch.setattr(stream.inner, "send_eof", slow_eof)
    outcome: list[BaseException | None] = []

    async def late_send() -> None:
        try:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_eof)
            await trio.sleep(0.05)
            nursery.start_soon(late_send)
        assert await read_all(peer) == b""
    [exc] = outcome
    assert isinstance(exc, trio.ClosedResourceError)
    await stream.aclose()
    await peer.aclose()


async def hello(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def http_get(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        received = bytearray()
        while chunk := await stream.receive_some(4096):
            received += chunk
    return bytes(received)


async def test_a_connection_that_fails_ends_only_itself(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = server_module.TCPServer
    made: list[int] = []

    def failing_first(*args: Any) -> Awaitable[None]:
        made.append(1)
        if len(made) == 1:

            async def fail() -> None:
                raise trio.BusyResourceError("another task is currently sending data")

            return fail()
        return real(*args)  # type: ignore[no-any-return]

    monkeypatch.setattr(server_module, "TCPServer", failing_first)
    app = Starlette(routes=[Route("/", hello)])
    shutdown = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            # One slot: the second request is served only if the failed one gave it back.
            port = await nursery.start(
                partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown, max_connections=1)
            )
            first = await http_get(port)
            second = await http_get(port)
            shutdown.set()
    assert first == b""  # closed, not answered
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(b'{"ok":true}')
    assert "a local API connection failed" in caplog.text


async def trickle_then_close(port: int) -> bytes:
    """A POST whose body never comes; closes the moment the answer starts."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"POST /cases HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n["
        )
        return bytes(await stream.receive_some(4096))


async def test_many_bodies_cut_off_while_their_clients_close_leave_the_api_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def echo(request: Request) -> Response:
        try:
            return JSONResponse({"size": len(await request.body())})
        except ClientDisconnect:
            return JSONResponse({"error": "incomplete_body"}, 400)

    app = RequestGuard(
        Starlette(routes=[Route("/cases", echo, methods=["POST"]), Route("/", hello)]),
        GuardPolicy(LOOPBACK_NAMES, body_deadline_s=0.2),
        BodyBudget(64 << 20),  # room for every declared body,
    )
    caplog.set_level(logging.ERROR)
    shutdown = trio.Event()
    answers: list[bytes] = []
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown))
            for _ in range(5):
                async with trio.open_nursery() as clients:
                    for _ in range(40):

                        async def one() -> None:
                            answers.append(await trickle_then_close(port))

                        clients.start_soon(one)
            served = await http_get(port)
            shutdown.set()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers if a), answers[:3]
    assert served.startswith(b"HTTP/1.1 200")
    assert "BusyResourceError" not in caplog.text


async def test_a_client_that_never_reads_its_answer_gives_its_slot_back() -> None:
    big = b"x" * (32 << 20)  # far more than the socket buffers hold

    async def large(request: Request) -> Response:
        return Response(big, media_type="application/octet-stream")

    app = Starlette(routes=[Route("/large", large), Route("/", hello)])
    shutdown = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                partial(
                    serve_api,
                    app,
                    "127.0.0.1",
                    0,
                    shutdown=shutdown,
                    max_connections=1,
                    send_timeout_s=0.5,
                )
            )
            reader = await trio.open_tcp_stream("127.0.0.1", port)
            await reader.send_all(f"GET /large HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            # It never reads; the one slot comes back once a write waited 0.5 s.
            started = trio.current_time()
            served = await http_get(port)
            waited = trio.current_time() - started
            await reader.aclose()
            shutdown.set()
    assert served.startswith(b"HTTP/1.1 200")
    # Not Hypercorn's keep-alive timeout (5 s) later: the stalled connection's tasks end.
    assert 0.4 < waited < 4, waited


@pytest.mark.timeout(90)
async def test_a_keep_alive_connection_serves_on_after_a_request_longer_than_ten_seconds() -> None:
    """Hypercorn's read deadline (10 s, once set here) ran while a request was answered:
    the next request on the same connection was never read, and its caller got a reset
    after the keep-alive timeout (``POST /txs?wait=true`` with a long wait did this)."""

    async def slow(request: Request) -> Response:
        await request.body()
        await trio.sleep(float(request.query_params["s"]))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/slow", slow, methods=["POST"])])
    shutdown = trio.Event()
    answers: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                for wait_s in (11, 0):
                    await stream.send_all(
                        f"POST /slow?s={wait_s} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode()
                    )
                    received = b""
                    with trio.move_on_after(20):
                        while not received.endswith(b'{"ok":true}'):
                            chunk = await stream.receive_some(4096)
                            if not chunk:
                                break
                            received += chunk
                    answers.append(received)
            shutdown.set()
    assert [a.split(b"\r\n")[0] for a in answers] == [b"HTTP/1.1 200 "] * 2


async def test_a_silent_connection_and_a_trickled_head_are_closed_within_the_keep_alive() -> None:
    """With no read deadline, what ends a caller that sends no request: Hypercorn's
    keep-alive timeout (5 s), which runs until a whole head has arrived."""
    app = Starlette(routes=[Route("/", hello)])
    shutdown = trio.Event()
    closed_after: dict[str, float] = {}

    async def caller(name: str, port: int, first: bytes, trickle: bool) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            started = trio.current_time()
            await stream.send_all(first)
            try:
                while True:
                    if trickle:
                        await stream.send_all(b"a")
                    with trio.move_on_after(0.5):
                        if await stream.receive_some(100) == b"":
                            break
            except trio.BrokenResourceError:
                pass
            closed_after[name] = trio.current_time() - started

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown))
            head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()
            async with trio.open_nursery() as callers:
                callers.start_soon(caller, "silent", port, b"", False)
                callers.start_soon(caller, "trickled head", port, head, True)
            shutdown.set()
    assert set(closed_after) == {"silent", "trickled head"}
    assert all(4 < s < 8 for s in closed_after.values()), closed_after


async def test_a_stalled_connection_that_also_fails_ends_alone() -> None:
    """The stall's cancellation and another error at once: what escapes is only the
    error, which the connection's handler takes."""
    stream, peer, limiter = slot_stream_pair()

    async def connection_server(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, _SlotStream)
        stream.on_stall()  # as a write past its deadline does

        async def fail_after_a_step() -> None:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)
            raise RuntimeError("and then this")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(fail_after_a_step)

    with trio.fail_after(10):
        await server_module._serve_connection(connection_server, stream)
    assert limiter.borrowed_tokens == 0  # closed, its slot given back
    await peer.aclose()

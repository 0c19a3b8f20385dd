"""Serving the API: Hypercorn's HTTP/1.1 protocol on trio, behind a listener that holds
at most ``max_connections`` connections at once.

Hypercorn's own ``serve`` accepts every connection the kernel hands it, so a caller
that opens thousands (each trickling a body) takes the process's file descriptors,
and with them the peers' sockets and the store's files. Here the accept loop takes a
slot before it accepts: past the cap, new connections wait in the kernel's backlog
(costing this process nothing) until a slot frees. What frees slots: a request head
must arrive within Hypercorn's ``keep_alive_timeout`` of the connection going idle
(whole: a head that trickles in is still idle), a body has the guard's deadline
(``node.api.guard``), and a write ``SEND_TIMEOUT_S``. Hypercorn's ``read_timeout`` is
off: it ran while a request was being answered, so a keep-alive connection whose
request took longer (``POST /txs?wait=true``) stopped reading and its next request
was never answered.

This reuses Hypercorn's per-connection server (``TCPServer``) and worker context
directly, the parts its own ``worker_serve`` composes; the version range in
pyproject.toml is the one this was written against. ASGI lifespan events are not
sent: the app has no start-up or shut-down handlers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, Framework
from hypercorn.utils import wrap_app

log = logging.getLogger("crosstrace.api")
# Hypercorn's own log: its errors are worth seeing, its info lines are not.
server_log = logging.getLogger("crosstrace.api.server")
server_log.setLevel(logging.WARNING)

# How long open requests may finish after the API is asked to stop.
GRACEFUL_S = 2.0
DEFAULT_MAX_CONNECTIONS = 256
# A write the client does not take within this long ends the connection (Hypercorn
# shields its writes from cancellation, so without this a client that asks for an
# answer and never reads it would hold its connection slot for good).
SEND_TIMEOUT_S = 10.0
BACKLOG = 128


class CappedListener(trio.abc.Listener[trio.abc.Stream]):
    """Accepts only while a slot is free; each accepted stream gives its slot back when
    it is closed."""

    def __init__(
        self,
        inner: trio.SocketListener,
        limiter: trio.CapacityLimiter,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.send_timeout_s = send_timeout_s
        self.accepted = 0

    async def accept(self) -> trio.abc.Stream:
        token = object()
        await self.limiter.acquire_on_behalf_of(token)
        try:
            stream = await self.inner.accept()
        except BaseException:
            self.limiter.release_on_behalf_of(token)
            raise
        self.accepted += 1
        return _SlotStream(stream, self.limiter, token, self.send_timeout_s)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _SlotStream(trio.abc.HalfCloseableStream):
    """A socket stream that returns its listener slot once, when closed. Hypercorn reads
    ``.socket`` for the peer's address.

    Sending data and sending EOF take turns here. Hypercorn serialises its sends but
    not the EOF it sends when a response ends with ``connection: close``: if the client
    closes at that moment (as one cut off by the body deadline does), Hypercorn's
    reader task answers the broken request while the EOF is under way, and trio's
    ``BusyResourceError`` ended the whole API. In turn, the later send meets a closed
    stream, which Hypercorn expects.

    A write not taken within ``send_timeout_s`` closes the stream, raises
    ``BrokenResourceError`` (to Hypercorn, a client gone) and calls ``on_stall``
    (``_serve_connection`` ends the connection's tasks with it: Hypercorn's reader
    would otherwise wait out its keep-alive timeout before letting go)."""

    def __init__(
        self,
        inner: trio.SocketStream,
        limiter: trio.CapacityLimiter,
        token: object,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.inner = inner
        self.socket = inner.socket
        self._limiter = limiter
        self._token: object | None = token
        self._sending = trio.Lock()
        self._send_timeout_s = send_timeout_s
        self.on_stall: Callable[[], None] = lambda: None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._sending:
            # Our own deadline: it applies inside Hypercorn's shielded scope.
            with trio.move_on_after(self._send_timeout_s) as waited:
                await self.inner.send_all(data)
            if waited.cancelled_caught:
                await trio.aclose_forcefully(self.inner)
                self.on_stall()
                raise trio.BrokenResourceError(
                    f"the client took no answer for {self._send_timeout_s:g} s: closed"
                )

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_eof(self) -> None:
        async with self._sending:
            await self.inner.send_eof()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self._token is not None:
                self._limiter.release_on_behalf_of(self._token)
                self._token = None

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.inner.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        return self.inner.getsockopt(level, option, buffersize)


def hypercorn_config() -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None  # one line per request would drown the node's own log
    config.errorlog = server_log
    config.graceful_timeout = GRACEFUL_S
    config.include_server_header = False
    config.read_timeout = None  # see the module's notes: the deadlines above cover reads
    return config


async def serve_api(
    app: Any,
    host: str,
    port: int,
    *,
    shutdown: trio.Event | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    send_timeout_s: float = SEND_TIMEOUT_S,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled, or until ``shutdown`` is set (then
    open requests get ``GRACEFUL_S`` to finish). ``task_status.started`` receives the
    bound port, which is the one the OS chose when ``port`` is 0."""
    config = hypercorn_config()
    sock = _listening_socket(host, port)
    limiter = trio.CapacityLimiter(max_connections)
    listener = CappedListener(
        trio.SocketListener(trio.socket.from_stdlib_socket(sock)), limiter, send_timeout_s
    )
    bound = sock.getsockname()[1]
    context = WorkerContext(None)
    connection_server = partial(
        TCPServer, wrap_app(cast(Framework, app), config.wsgi_max_body_size, "asgi"), config
    )
    handler = partial(_serve_connection, partial(connection_server, context, ConnectionState({})))
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(
                partial(trio.serve_listeners, handler, [listener], handler_nursery=connections)
            )
            log.info(
                "local API listening on %s:%d (at most %d connections)",
                host,
                bound,
                max_connections,
            )
            task_status.started(bound)
            if shutdown is None:
                await trio.sleep_forever()
            await shutdown.wait()
            accepting.cancel_scope.cancel()
        await listener.aclose()
        # Idle keep-alive connections close now; busy ones get the grace period.
        await context.terminated.set()
        connections.cancel_scope.deadline = trio.current_time() + GRACEFUL_S


async def _serve_connection(
    connection_server: Callable[[trio.abc.Stream], Awaitable[None]], stream: trio.abc.Stream
) -> None:
    """One connection, whose failure ends that connection only: an error escaping a
    connection's handler would otherwise end the listener's nursery, and with it the
    API (and the daemon) for every caller. However it ends, its stream is closed here,
    which gives its slot back."""
    try:
        # Outside it, the scope's own cancellation (a stall) is already taken out of
        # whatever else the connection raised.
        with trio.CancelScope() as connection:
            if isinstance(stream, _SlotStream):
                stream.on_stall = connection.cancel
            await connection_server(stream)
    except Exception:
        log.exception("a local API connection failed; it is closed, the API serves on")
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening, or a plain ``OSError`` that names the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port} for the local API: {exc.strerror}"
        ) from None
    return sock

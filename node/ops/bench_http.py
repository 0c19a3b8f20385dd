"""A lean HTTP/1.1 connection for the benchmark driver.

The driver long-polls (``POST /txs?wait=true``), so at 1,000 tx/s it holds hundreds
of requests open at once. httpx's connection pool walks every connection it holds on
every request, which made the driver, not the nodes, the bottleneck: it started
requests seconds late. A lane here is one keep-alive connection that carries one
request at a time, parsed with h11 (the protocol engine under httpx), so a request
costs the same however many lanes are open.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
import trio

from node.client.http import ApiClientError

READ_BYTES = 65536
# Reconnect rather than reuse a connection idle this long: the server may be closing it.
MAX_IDLE_S = 2.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    # Seconds the server asked us to wait (``Retry-After``, delay-seconds form), if any.
    retry_after_s: float | None = None


def retry_after_of(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None  # an HTTP date: not sent by the nodes; treated as absent
    return None


class Lane:
    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.token = token
        self.host = host
        self.port = port
        self._stream: trio.SocketStream | None = None
        self._conn = h11.Connection(h11.CLIENT)
        self._last_used = 0.0

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def _connect(self) -> trio.SocketStream:
        now = trio.current_time()
        if self._stream is not None and (
            now - self._last_used > MAX_IDLE_S or self._conn.our_state is not h11.IDLE
        ):
            await self.aclose()
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT)
        return self._stream

    async def post(self, target: str, body: bytes, content_type: str) -> Answer:
        """One request and its whole response; ``ApiClientError`` if the exchange fails."""
        return await self._exchange("POST", target, body, content_type)

    async def get(self, target: str) -> Answer:
        return await self._exchange("GET", target, b"", None)

    async def _exchange(
        self, method: str, target: str, body: bytes, content_type: str | None
    ) -> Answer:
        try:
            return await self._request(method, target, body, content_type)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            await self.aclose()
            raise ApiClientError(f"request to {self.host}:{self.port} failed: {exc}") from exc
        finally:
            self._last_used = trio.current_time()

    async def _request(
        self, method: str, target: str, body: bytes, content_type: str | None
    ) -> Answer:
        stream = await self._connect()
        request = h11.Request(
            method=method,
            target=target,
            headers=[
                ("Host", f"{self.host}:{self.port}"),
                *([] if content_type is None else [("Content-Type", content_type)]),
                ("Content-Length", str(len(body))),
                *([] if self.token is None else [("Authorization", f"Bearer {self.token}")]),
            ],
        )
        await stream.send_all(
            self._conn.send(request)
            + self._conn.send(h11.Data(data=body))
            + self._conn.send(h11.EndOfMessage())
        )
        status = 0
        retry_after: float | None = None
        chunks: list[bytes] = []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_BYTES)
                self._conn.receive_data(data)
                if not data and self._conn.their_state is not h11.DONE:
                    raise h11.RemoteProtocolError("the server closed the connection")
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                retry_after = retry_after_of(list(event.headers))
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the server closed the connection")
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
        else:
            await self.aclose()
        return Answer(status, b"".join(chunks), retry_after)

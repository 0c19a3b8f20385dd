"""The link proxy delays each direction by its delay, keeps the order of the bytes, and
passes a stream larger than its buffers (so it pushes back instead of dropping); its
round-trip probe in a child process measures what the delay adds."""

from __future__ import annotations

import pytest
import trio

from node.ops.link_proxy import BUFFER, QUEUED_CHUNKS, DelayedLinks, LinkProxy

DELAY_S = 0.05


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


@pytest.mark.timeout(30)
async def test_each_direction_is_delayed_and_the_order_kept() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, _echo, 0)
        target = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        proxy = LinkProxy(target, delay_s=DELAY_S)
        port = await nursery.start(proxy.run)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        # A round trip crosses the proxy twice, so it takes at least two delays.
        started = trio.current_time()
        await stream.send_all(b"ping")
        assert await stream.receive_some(4) == b"ping"
        assert trio.current_time() - started >= 2 * DELAY_S
        # More than the proxy may hold in one direction, in numbered pieces, comes back
        # whole and in order.
        total = 2 * BUFFER * QUEUED_CHUNKS
        payload = bytes(i % 251 for i in range(total))
        received = bytearray()

        async def read_back() -> None:
            while len(received) < total:
                received.extend(await stream.receive_some(65536))

        async with trio.open_nursery() as io:
            io.start_soon(read_back)
            for offset in range(0, total, 10_000):
                await stream.send_all(payload[offset : offset + 10_000])
        assert bytes(received) == payload
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(60)
def test_delayed_links_in_a_child_process_measure_their_round_trip() -> None:
    with DelayedLinks([], delay_s=DELAY_S) as links:
        trip = links.round_trip_ms(samples=5)
    assert 2 * DELAY_S * 1000 <= trip < 2 * DELAY_S * 1000 + 100
    without = DelayedLinks([], delay_s=0.0)
    with without:
        assert without.round_trip_ms(samples=5) < 2 * DELAY_S * 1000

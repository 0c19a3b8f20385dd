"""A TCP forwarder for the links between members: cut and heal them, or delay them.

``LinkProxy(target, delay_s=...).run`` listens on 127.0.0.1 (port 0: the kernel picks a
free one, handed to ``nursery.start``) and forwards every accepted connection to
``target``. Two uses:

- fault tests: ``cut()`` closes every open connection at once (both sides see it) and,
  until ``heal()``, accepts new ones only to close them: the dialler sees its handshake
  fail and backs off, as it would behind a firewall that resets;
- the benchmark's ``--link-delay``: each byte reaches the other side ``delay_s`` after
  it arrived, in each direction, standing in for the distance between institutions
  (the kernel here has no netem). Each direction is a FIFO (a reader stamps chunks, a
  writer sends each one when it is due), so the order is kept and chunks pipeline: the
  delay adds latency, not a throughput limit. The FIFO is bounded (``QUEUED_CHUNKS``
  chunks of at most ``BUFFER`` bytes), so a slow receiver pushes back on the sender
  through TCP instead of filling the proxy's memory.

When either direction ends (EOF or error), the whole connection is closed, after the
data already read was delivered: the nodes never half-close, and a forwarder that kept
the other half open could hide a broken link from them.

``DelayedLinks`` runs a set of delaying proxies in a process of their own (so their
work competes neither with the benchmark driver's event loop nor its GIL), with an echo
service behind one more proxy so the round trip through a proxy can be measured.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import socket
import statistics
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType

import trio

BUFFER = 64 * 1024
QUEUED_CHUNKS = 64  # per direction: at most 4 MiB held per direction
_END = b""  # queued after the last chunk of a direction


class LinkProxy:
    def __init__(self, target: tuple[str, int], delay_s: float = 0.0) -> None:
        self.target = target
        self.delay_s = delay_s
        self.port: int | None = None
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections closed at once because the link was cut
        self.bytes_forwarded = 0
        self._cut = False
        self._open: set[trio.CancelScope] = set()

    def cut(self) -> None:
        self._cut = True
        for scope in self._open:
            scope.cancel()

    def heal(self) -> None:
        self._cut = False

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, client: trio.SocketStream) -> None:
        # The cut check and the registration happen before the first checkpoint, so a
        # connection is either refused here or cancelled by a later cut(): never missed.
        with trio.CancelScope() as scope:
            if self._cut:
                self.refused += 1
                await trio.aclose_forcefully(client)
                return
            self._open.add(scope)
            try:
                try:
                    upstream = await trio.open_tcp_stream(*self.target)
                except OSError:
                    return  # the target is down: the client sees its connection closed
                self.accepted += 1
                try:
                    async with trio.open_nursery() as nursery:
                        for source, sink in ((client, upstream), (upstream, client)):
                            if self.delay_s > 0:
                                nursery.start_soon(
                                    self._delayed, source, sink, nursery.cancel_scope
                                )
                            else:
                                nursery.start_soon(self._pump, source, sink, nursery.cancel_scope)
                finally:
                    await trio.aclose_forcefully(upstream)
            finally:
                self._open.discard(scope)
                await trio.aclose_forcefully(client)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(BUFFER):
                await sink.send_all(data)
                self.bytes_forwarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()

    async def _delayed(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](QUEUED_CHUNKS)

        async def read() -> None:
            async with send:
                # BrokenResourceError from ``send``: the writer is gone (its sink broke)
                # and is cancelling both directions.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while data := await source.receive_some(BUFFER):
                        await send.send((trio.current_time() + self.delay_s, data))
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send((trio.current_time() + self.delay_s, _END))

        async def write() -> None:
            async with receive:
                try:
                    async for due, data in receive:
                        await trio.sleep_until(due)
                        if data == _END:
                            break
                        await sink.send_all(data)
                        self.bytes_forwarded += len(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            both.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)


async def _echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(BUFFER):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _serve_links(
    targets: Sequence[tuple[str, int]], delay_s: float, pipe: Connection
) -> None:
    async with trio.open_nursery() as nursery:
        echo = await nursery.start(trio.serve_tcp, _echo, 0)
        echo_port = echo[0].socket.getsockname()[1]
        ports = []
        for target in [*targets, ("127.0.0.1", echo_port)]:
            ports.append(await nursery.start(LinkProxy(target, delay_s).run))
        pipe.send(ports)
        # Runs until the parent ends this process (``DelayedLinks.__exit__``).


def _proxy_process(targets: list[tuple[str, int]], delay_s: float, pipe: Connection) -> None:
    trio.run(_serve_links, targets, delay_s, pipe)


class DelayedLinks:
    """Delaying proxies for ``targets`` in a child process, for a ``with`` block.

    ``ports[k]`` is the local port that reaches ``targets[k]`` with the delay;
    ``round_trip_ms()`` measures a round trip through one more such proxy (to an echo
    service), so the figure includes the proxy's own cost, as the nodes see it."""

    def __init__(self, targets: Sequence[tuple[str, int]], delay_s: float) -> None:
        self.targets = list(targets)
        self.delay_s = delay_s
        self.ports: list[int] = []
        self._probe_port = 0
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> DelayedLinks:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_proxy_process, args=(self.targets, self.delay_s, theirs), daemon=True
        )
        process.start()
        self._process = process
        if not ours.poll(30):
            self.close()
            raise OSError("the link proxies did not start within 30 s")
        *self.ports, self._probe_port = ours.recv()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # the child this object started, by its own handle
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)

    def cpu_seconds(self) -> float:
        """CPU time of the proxy process so far (``nan`` off Linux or once stopped)."""
        from node.ops.proc_stats import cpu_seconds

        pid = None if self._process is None else self._process.pid
        return math.nan if pid is None else cpu_seconds(pid)

    def round_trip_ms(self, samples: int = 20) -> float:
        """Median time for a small message to go through a proxy and back (blocking)."""
        times = []
        with socket.create_connection(("127.0.0.1", self._probe_port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(samples):
                started = time.perf_counter()
                sock.sendall(b"x")
                if sock.recv(16) != b"x":
                    raise OSError("the echo through the link proxy answered something else")
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

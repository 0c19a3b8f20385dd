"""A TCP forwarder for fault tests: put it between two nodes, then cut and heal the link.

``FaultProxy(target).run`` listens on 127.0.0.1 (port 0: the kernel picks a free one,
handed to ``nursery.start``) and forwards every accepted connection to ``target``.
``cut()`` closes every open connection at once (both sides see it) and, until
``heal()``, accepts new ones only to close them: the dialler sees its handshake fail
and backs off, as it would behind a firewall that resets. Everything runs in the
caller's nursery, so leaving it closes every socket.

When either direction ends (EOF or error), the whole connection is closed: the nodes
never half-close, and a forwarder that kept the other half open could hide a broken
link from them.
"""

from __future__ import annotations

import trio

BUFFER = 64 * 1024


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
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
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
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

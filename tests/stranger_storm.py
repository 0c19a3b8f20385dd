"""Strangers hammering members' p2p ports, for ``test_e2e_storm.py``: what an outside
tester did to a local consortium.

``StrangerStorm`` runs threads of blocking sockets, only to 127.0.0.1, bounded in
connections and in time. One thread holds ``held`` sockets spread over the ports, silent
or with half a length prefix in turn; whenever a node closes one, the thread opens
another in its place at once. ``churners`` threads connect in a loop, each connection
one of: a reset at once, garbage then a reset, a half-close, a silent socket, or a valid
Noise message 1 under a random key and then nothing (a stalled handshake, the costliest
kind to tell from a member until it fails to send message 3); the last three are kept
open among the thread's last ``KEPT_PER_CHURNER``. The storm is paced at ``rate``
connections a second in all (half for reopening held sockets, half for the churners)
and stops after ``duration_s`` or ``max_connections``. Strangers close with a reset (no
TIME_WAIT), so the storm does not use up the ephemeral ports the members dial from.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

from hostile_peer import LOCAL, noise_frame

from net.secure_session import SecureSession
from net.tcp_session import prologue

CONNECT_TIMEOUT_S = 1.0
KEPT_PER_CHURNER = 16


def reset_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class StrangerStorm:
    def __init__(
        self,
        ports: Sequence[int],
        chain_id: str,
        *,
        held: int = 200,
        churners: int = 4,
        rate: float = 2000.0,
        duration_s: float = 30.0,
        max_connections: int = 100_000,
    ) -> None:
        self.ports = list(ports)
        self.chain_id = chain_id
        self.held = held
        self.duration_s = duration_s
        self.max_connections = max_connections
        # Connections a second: half for reopening held sockets, half for the churners.
        self._interval = {"held": 2.0 / rate} | {
            f"storm-{k}": 2.0 * churners / rate for k in range(churners)
        }
        self.failures: Counter[str] = Counter()
        self.opened = 0  # connections established
        self.connect_failures = 0  # refused, timed out, or no port to dial from
        self.closed_by_node = 0  # held sockets the node closed
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._hold, name="storm-held", daemon=True)]
        self._threads += [
            threading.Thread(target=self._churn, args=(k,), name=f"storm-{k}", daemon=True)
            for k in range(churners)
        ]

    # ------------------------------------------------------------ control

    def start(self) -> None:
        self.started_at = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()

    def running(self) -> bool:
        return not self._over()

    def __str__(self) -> str:
        lasted = (self.stopped_at or time.monotonic()) - (self.started_at or time.monotonic())
        return (
            f"{self.opened} stranger connections in {lasted:.1f} s "
            f"({self.opened / max(lasted, 1e-9):.0f}/s) to {len(self.ports)} ports, "
            f"{self.held} held at a time; {self.closed_by_node} held ones closed by the nodes, "
            f"{self.connect_failures} connects failed {dict(self.failures)}"
        )

    # ------------------------------------------------------------ the strangers

    def _over(self) -> bool:
        if self._stopping.is_set() or self.started_at is None:
            return self._stopping.is_set()
        return (
            time.monotonic() - self.started_at > self.duration_s
            or self.opened >= self.max_connections
        )

    def _pace(self, thread: str, last: float) -> float:
        """Sleeps until this thread may open its next connection; returns the time."""
        wait = last + self._interval[thread] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return time.monotonic()

    def _connect(self, port: int) -> socket.socket | None:
        try:
            sock = socket.create_connection((LOCAL, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            with self._lock:
                self.connect_failures += 1
                self.failures[type(exc).__name__ if exc.errno is None else str(exc.errno)] += 1
            return None
        with self._lock:
            self.opened += 1
        return sock

    def _message_1(self) -> bytes:
        session = SecureSession.initiator(os.urandom(32), prologue(self.chain_id))
        return noise_frame(session.write_handshake())

    def _open_held(self, slot: int) -> socket.socket | None:
        sock = self._connect(self.ports[slot % len(self.ports)])
        if sock is None:
            return None
        opening = (b"", b"\x00\x00")[slot % 2]
        try:
            if opening:
                sock.sendall(opening)
            sock.setblocking(False)
        except OSError:
            reset_close(sock)
            return None
        return sock

    def _hold(self) -> None:
        slots: dict[socket.socket, int] = {}
        vacant: deque[int] = deque(range(self.held))
        last = 0.0
        filled = False  # the first ``held`` are opened at once, the reopening is paced
        with selectors.DefaultSelector() as selector:
            try:
                while not self._over():
                    for _ in range(len(vacant)):
                        if self._over():
                            break
                        if filled:
                            last = self._pace("held", last)
                        slot = vacant.popleft()
                        sock = self._open_held(slot)
                        if sock is None:
                            vacant.append(slot)
                            continue
                        slots[sock] = slot
                        selector.register(sock, selectors.EVENT_READ)
                    filled = True
                    for key, _ in selector.select(0.01 if not vacant else 0):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        try:
                            if sock.recv(65536):
                                continue  # the node's message 2: still open
                        except BlockingIOError:
                            continue
                        except OSError:
                            pass
                        selector.unregister(sock)
                        vacant.append(slots.pop(sock))
                        reset_close(sock)
                        with self._lock:
                            self.closed_by_node += 1
            finally:
                for sock in slots:
                    reset_close(sock)

    def _churn(self, k: int) -> None:
        kept: deque[socket.socket] = deque()
        garbage = b"GET / HTTP/1.1\r\nHost: node\r\n\r\n"
        try:
            n = k
            last = 0.0
            while not self._over():
                n += 1
                last = self._pace(f"storm-{k}", last)
                sock = self._connect(self.ports[n % len(self.ports)])
                if sock is None:
                    time.sleep(0.01)
                    continue
                try:
                    match n % 5:
                        case 0:
                            reset_close(sock)
                            continue
                        case 1:
                            sock.sendall(garbage)
                            reset_close(sock)
                            continue
                        case 2:
                            sock.shutdown(socket.SHUT_WR)
                        case 3:
                            sock.sendall(self._message_1())
                        case _:
                            pass
                except OSError:
                    reset_close(sock)
                    continue
                kept.append(sock)
                while len(kept) > KEPT_PER_CHURNER:
                    reset_close(kept.popleft())
        finally:
            for sock in kept:
                reset_close(sock)

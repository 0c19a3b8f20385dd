"""A hostile neighbour on a member's host, for the end-to-end tests and the benchmark
that measure the node's budgets (``benchmarks/neighbour_bench.py``): large bodies at
once, bodies sent a byte at a time, a flood of PSI lines, requests a web page could
send; and the probes that measure what they cost (peak memory, how long the node took
to answer an honest request meanwhile).

Everything here talks to 127.0.0.1 only, is bounded in count and time, and stops by
itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def rss_bytes(pid: int, field_name: str = "VmRSS") -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field_name} for process {pid}")


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@dataclass
class Probe:
    """An honest client asking ``url`` every ``every_s`` in a thread: the longest wait
    for an answer is how long the node kept its callers waiting (a stalled event loop
    shows here), ``failures`` the requests that got no answer at all."""

    url: str
    every_s: float = 0.05
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)  # the bearer token, say
    worst_s: float = 0.0
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, trust_env=False, headers=self.headers) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    client.get(self.url).raise_for_status()
                    self.answered += 1
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.worst_s = max(self.worst_s, time.monotonic() - started)
                self._stop.wait(self.every_s)


@dataclass
class PeakMemory:
    """The highest resident set of ``pid`` while the block runs, sampled every 20 ms
    (``VmHWM`` would also count what came before the block)."""

    pid: int
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return


def json_junk_body(size: int) -> bytes:
    """A ``POST /txs`` JSON body of about ``size`` bytes that parses (a batch of hex
    strings) and is refused transaction by transaction."""
    item = '"' + "00" * 15_000 + '"'
    count = max(1, min(1000, size // (len(item) + 1)))
    return ('{"txs": [' + ",".join([item] * count) + "]}").encode()


def concurrent_posts(
    url: str,
    body: bytes,
    count: int,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> list[int | str]:
    """``count`` POSTs of ``body`` at once, each from its own thread, with ``headers``
    besides the content type; the statuses (or the error of a request that got none)."""
    results: list[int | str] = [""] * count

    def post(i: int) -> None:
        try:
            with httpx.Client(timeout=120, trust_env=False) as client:
                results[i] = client.post(
                    url, content=body, headers={"content-type": content_type} | (headers or {})
                ).status_code
        except httpx.HTTPError as exc:
            results[i] = type(exc).__name__

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return results


@dataclass
class SlowBodies:
    """``count`` connections that each announce a body of ``declared`` bytes and send it
    a byte every ``every_s``, for at most ``for_s``. ``cut_after`` holds, for each
    connection the node closed, how long it had been open."""

    host: str
    port: int
    count: int
    path: str = "/txs"
    declared: int = 1_000_000
    every_s: float = 1.0
    for_s: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    opened: int = 0
    refused: int = 0
    cut_after: list[float] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        per_thread = 50
        for first in range(0, self.count, per_thread):
            n = min(per_thread, self.count - first)
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, n: int) -> None:
        extra = "".join(f"{key}: {value}\r\n" for key, value in self.headers.items())
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {self.declared}\r\n\r\n"
        ).encode()
        sockets: list[tuple[socket.socket, float]] = []
        for _ in range(n):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=5)
                sock.sendall(head)
                sock.setblocking(False)
                sockets.append((sock, time.monotonic()))
                with self._lock:
                    self.opened += 1
            except OSError:
                with self._lock:
                    self.refused += 1
        deadline = time.monotonic() + self.for_s
        while sockets and not self._stop.is_set() and time.monotonic() < deadline:
            alive = []
            for sock, since in sockets:
                try:
                    sock.send(b"[")
                    try:
                        closed = sock.recv(4096) == b""
                    except BlockingIOError:
                        closed = False
                    if not closed:
                        alive.append((sock, since))
                        continue
                except OSError:
                    pass
                with self._lock:
                    self.cut_after.append(time.monotonic() - since)
                sock.close()
            sockets = alive
            self._stop.wait(self.every_s)
        for sock, _since in sockets:
            sock.close()


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result

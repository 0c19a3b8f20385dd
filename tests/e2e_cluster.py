"""The consortium ``test_e2e_hostile.py`` runs against, and what it measures with.

``Consortium`` holds the three honest ``crosstrace start`` processes, member 3's
stand-in (``hostile_peer.Member3``) and the background client ``Load`` (with its
``Submission`` records), and reads the nodes' /status, /metrics and logs.
``configure`` tightens the honest nodes' p2p limits so the tests reach them quickly;
``stop_processes``, ``eventually`` and ``peak_rss_bytes`` are
the process, port and polling helpers the fixture and the tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from hostile_peer import HANDSHAKE_TIMEOUT_S, Member3
from metrics_helpers import sample_value

from node.client.http import ApiClient, ApiClientError
from node.ledger.authoring import Author
from node.ops.processes import process_alive
from node.setup.genesis import Genesis

HONEST = (0, 1, 2)
BYZANTINE = 3
MAX_UNAUTHENTICATED = 8
MAX_INBOUND = 16
COMMIT_WAIT_S = 10.0


# ------------------------------------------------------------------ small helpers


def eventually(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}. {explain()}")
        time.sleep(0.05)


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


# ------------------------------------------------------------------ the load


@dataclass(frozen=True)
class Submission:
    node: int
    sent: float
    done: float
    committed: bool
    detail: str


class Load:
    """A client that submits a few signed reports at a time to each honest node in turn
    and waits for them to commit, from a thread, all through the tests."""

    BATCH = 4

    def __init__(self, author: Author, urls: list[str]) -> None:
        self.author = author
        self.urls = urls
        self.results: list[Submission] = []
        self.crash: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=COMMIT_WAIT_S + 10)

    def _run(self) -> None:
        clients = [ApiClient(url, timeout_s=5.0) for url in self.urls]
        try:
            k = 0
            while not self._stopping.is_set():
                node = k % len(clients)
                txs = list(self.author.sample_reports(self.BATCH, first=k * self.BATCH))
                sent = time.monotonic()
                try:
                    code, body = clients[node].submit(txs, wait=True, timeout_s=COMMIT_WAIT_S)
                    rows = body.get("results", [])
                    committed = code == 200 and all(row.get("committed") for row in rows)
                    detail = f"HTTP {code}"
                except ApiClientError as exc:
                    committed, detail = False, str(exc)
                self.results.append(Submission(node, sent, time.monotonic(), committed, detail))
                k += 1
                self._stopping.wait(0.05)
        except Exception as exc:
            self.crash = repr(exc)
        finally:
            for client in clients:
                client.close()

    def committed_during(self, start: float, end: float) -> int:
        """Submissions sent at or after ``start`` that were committed by ``end``."""
        return sum(1 for r in self.results if r.committed and start <= r.sent and r.done <= end)

    def failures_since(self, start: float) -> list[Submission]:
        return [r for r in self.results if not r.committed and r.sent >= start]


# ------------------------------------------------------------------ the consortium


@dataclass
class Consortium:
    genesis: Genesis
    homes: list[Path]
    p2p_ports: list[int]
    api_urls: list[str]
    pids: dict[int, int]
    member3: Member3
    load: Load
    author: Author
    http: httpx.Client

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def status(self, i: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get(f"{self.api_urls[i]}/status").json()
        return answer

    def metric(self, i: int, name: str) -> float:
        return sample_value(self.http.get(f"{self.api_urls[i]}/metrics").text, name)

    def assert_alive(self, nodes: Iterable[int] = HONEST) -> None:
        for i in nodes:
            assert process_alive(self.pids[i]), f"node{i} died; its log ends: {self.tail(i)}"

    def commit_on_every_node(self, count: int = 3) -> int:
        """Submit to each honest node and wait for the commit (HTTP 200 with every
        transaction committed), then for every honest node to store those blocks.
        Returns the height reached."""
        top = 0
        for i in HONEST:
            txs = list(self.author.sample_reports(count, first=random.randrange(10**8)))
            with ApiClient(self.api_urls[i], timeout_s=5.0) as client:
                code, body = client.submit(txs, wait=True, timeout_s=COMMIT_WAIT_S)
            assert code == 200, f"node{i}: HTTP {code}: {body}"
            assert all(row["committed"] for row in body["results"]), body
            top = max(top, *(row["height"] for row in body["results"]))
        for i in HONEST:
            eventually(partial(self.reached, i, top), 10, f"node{i} at height {top}")
        return top

    def reached(self, i: int, height: int) -> bool:
        return bool(self.status(i)["height"] >= height)

    def grew(self, i: int, name: str, before: float, by: float = 1) -> bool:
        return self.metric(i, name) - before >= by

    def log(self, i: int) -> list[dict[str, Any]]:
        text = (self.homes[i] / "node.log").read_text()
        # The node may be writing the last line right now: only whole lines count.
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def log_mark(self) -> dict[int, int]:
        return {i: len(self.log(i)) for i in HONEST}

    def wait_log(self, i: int, text: str, since: dict[int, int], timeout: float = 10) -> None:
        def logged() -> bool:
            return any(text in line["message"] for line in self.log(i)[since[i] :])

        eventually(logged, timeout, f"node{i} logs {text!r}")

    def tail(self, i: int) -> str:
        lines = (self.homes[i] / "node.log").read_text().splitlines()
        return "\n".join(lines[-5:])

    def check_load(self, since: float) -> None:
        assert self.load.crash is None, self.load.crash
        assert self.load.failures_since(since) == []
        waits = [r.done - r.sent for r in self.load.results if r.sent >= since]
        print(f"load: {len(waits)} submissions committed, slowest {max(waits, default=0):.2f} s")


def configure(home: Path) -> None:
    """Tighter p2p limits than the defaults, so the tests reach them quickly."""
    path = home / "config.toml"
    text = path.read_text()
    for key, value in (
        ("handshake_timeout_s", HANDSHAKE_TIMEOUT_S),
        ("max_unauthenticated", MAX_UNAUTHENTICATED),
        ("max_inbound", MAX_INBOUND),
    ):
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, f"{key} not in {path}"
    path.write_text(text)


def stop_processes(pids: Iterable[int], grace_s: float) -> None:
    """SIGTERM, then SIGKILL whatever is still running after ``grace_s``; reaps all."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for pid in pids:
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

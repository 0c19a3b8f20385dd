"""Driving one phase of ``crosstrace bench`` and measuring it (``node.ops.bench`` runs
the whole benchmark; ``node.ops.bench_report`` prints the figures).

Each member gets its own connections (``node.ops.bench_http.Lane``, one request at a
time each). ``max`` keeps ``concurrency`` batches in flight per member; ``rate`` and
``overload`` post batches on a clock and count a batch that falls due while every
connection is busy as held back. A ``429`` or ``503`` answer is not retried: its
transactions are dropped from the offered load and counted as refused, and the
connection that got it waits its ``Retry-After`` before it sends anything else.

Each node's counters are read twice a second over a connection kept open for the
phase, so the window throughput is counted over is framed by two reads close to its
ends even when the node's API is at its connection limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from node.client.http import ApiClientError, token_for
from node.client.submit_body import binary_submission
from node.ops.bench_http import Answer, Lane
from node.ops.bench_report import PhaseResult
from node.ops.proc_stats import cpu_seconds, peak_rss_mib, reset_peak_rss

Due = tuple[list[bytes], float]  # a batch and when it was due
# Each request's ``?wait=true&timeout=``: what is still pending after it is answered
# 202 and counted as accepted, not committed within the wait. (Chosen below 10 s when
# the API's read deadline ran during an answer and dropped a longer one's connection.)
WAIT_S = 8
MAX_LANES_PER_MEMBER = 200  # requests in flight per member in rate and overload


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


@dataclass(frozen=True)
class Load:
    """How a phase drives the members."""

    duration_s: float
    rate: float | None  # tx/s offered on a clock; None: as fast as they commit
    batch: int = 100  # transactions per request (max)
    concurrency: int = 4  # requests in flight per member (max)
    binary_body: bool = True  # the binary batch body; False: hex in JSON


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Feed:
    """One member's pre-signed transactions, handed out batch by batch."""

    def __init__(self, txs: list[bytes]) -> None:
        self.txs = txs
        self.next = 0

    def take(self, count: int) -> list[bytes]:
        batch = self.txs[self.next : self.next + count]
        self.next += len(batch)
        return batch


async def _send(
    lane: Lane, batch: list[bytes], due: float, result: PhaseResult, binary: bool
) -> float | None:
    """Posts one batch and counts its answer; the Retry-After to honour, if refused."""
    result.send_lag_ms.append((trio.current_time() - due) * 1000)
    result.sent += len(batch)
    if binary:
        body, content_type = binary_submission(batch)
    else:
        body = json.dumps({"txs": [tx.hex() for tx in batch]}).encode()
        content_type = "application/json"
    try:
        answer = await lane.post(f"/txs?wait=true&timeout={WAIT_S}", body, content_type)
    except ApiClientError as exc:
        result.failed += len(batch)
        cause = exc.__cause__
        result.failures[type(cause).__name__ if cause else "ApiClientError"] += 1
        return None
    return account(answer, len(batch), (trio.current_time() - due) * 1000, result)


def account(answer: Answer, count: int, latency_ms: float, result: PhaseResult) -> float | None:
    """Counts the answer to a batch of ``count``; the seconds to wait before the next
    request on this connection (``Retry-After``), or None to go on at once."""
    try:
        doc: Any = json.loads(answer.body)
    except ValueError:
        doc = None
    rows = doc.get("results") if isinstance(doc, dict) else None
    if answer.status in (429, 503):
        refused = count
        if isinstance(rows, list):  # a node may keep part of a batch (a fair share)
            refused = count - _account_rows(rows, latency_ms, result, count_refused=False)
        if answer.status == 429:
            result.refused_429 += refused
        else:
            result.refused_busy += refused
        return 1.0 if answer.retry_after_s is None else answer.retry_after_s
    if answer.status in (200, 202) and isinstance(rows, list):
        _account_rows(rows, latency_ms, result, count_refused=True)
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    result.refused_other[f"{answer.status} {code or 'error'}"] += count
    return None


def _account_rows(
    rows: list[Any], latency_ms: float, result: PhaseResult, *, count_refused: bool
) -> int:
    """Counts the rows of a batch; how many the node accepted."""
    accepted = 0
    for row in rows:
        if not isinstance(row, dict):
            continue
        if row.get("accepted"):
            accepted += 1
            if row.get("committed"):
                result.latencies_ms.append(latency_ms)
            else:
                result.waited_ms.append(latency_ms)
        elif count_refused:
            result.refused_other[str(row.get("code") or "refused")] += 1
    return accepted


def _lane_for(url: str) -> Lane:
    address = httpx.URL(url)
    return Lane(address.host, address.port or 80, token_for(url))


async def drive_max(
    urls: Sequence[str], feeds: Sequence[Feed], load: Load, result: PhaseResult
) -> None:
    async def worker(url: str, feed: Feed, stop_at: float) -> None:
        lane = _lane_for(url)
        try:
            while (now := trio.current_time()) < stop_at:
                batch = feed.take(load.batch)
                if not batch:
                    result.feed_ran_dry = True
                    return
                wait = await _send(lane, batch, now, result, load.binary_body)
                if wait is not None:
                    result.retry_after_waits += 1
                    await trio.sleep(min(wait, max(0.0, stop_at - trio.current_time())))
        finally:
            with trio.CancelScope(shield=True):
                await lane.aclose()

    stop_at = trio.current_time() + load.duration_s
    async with trio.open_nursery() as nursery:
        for url, feed in zip(urls, feeds, strict=True):
            for _ in range(load.concurrency):
                nursery.start_soon(worker, url, feed, stop_at)


async def drive_rate(
    urls: Sequence[str], feeds: Sequence[Feed], load: Load, result: PhaseResult
) -> None:
    assert load.rate is not None
    rate, duration_s = load.rate, load.duration_s
    # About 50 batches a second per member: small enough batches that batching adds
    # little latency, few enough requests that the driver keeps up.
    per_member = rate / len(urls)
    batch = max(1, round(per_member / 50))
    interval = batch / per_member
    # Bounded: a cluster that stops answering must not make the driver pile up
    # requests without end; a batch due when every lane is busy is counted, not sent.
    # Up to 10 s of requests per member, but below the API's connection limit (256 by
    # default), which a partner's uploader would not exhaust either.
    lanes_per_member = min(MAX_LANES_PER_MEMBER, max(8, int(10 / interval)))

    async def lane_worker(lane: Lane, batches: trio.MemoryReceiveChannel[Due]) -> None:
        try:
            async for txs, due in batches:
                wait = await _send(lane, txs, due, result, load.binary_body)
                if wait is not None:  # this connection honours Retry-After
                    result.retry_after_waits += 1
                    await trio.sleep(wait)
        finally:
            with trio.CancelScope(shield=True):
                await lane.aclose()

    async def ticker(url: str, feed: Feed, start: float) -> None:
        send, receive = trio.open_memory_channel[Due](0)
        async with trio.open_nursery() as nursery:
            for _ in range(lanes_per_member):
                nursery.start_soon(lane_worker, _lane_for(url), receive)
            async with send:
                for tick in range(int(duration_s / interval)):
                    due = start + tick * interval
                    await trio.sleep_until(due)
                    txs = feed.take(batch)
                    if not txs:
                        result.feed_ran_dry = True
                        break
                    try:
                        send.send_nowait((txs, due))
                    except trio.WouldBlock:
                        result.held_back += len(txs)

    start = trio.current_time() + 0.05
    async with trio.open_nursery() as nursery:
        for index, (url, feed) in enumerate(zip(urls, feeds, strict=True)):
            # Members start out of step, as independent partners would.
            nursery.start_soon(ticker, url, feed, start + index * interval / len(urls))


@dataclass(frozen=True)
class Sample:
    at: float  # trio time the answer arrived
    committed: float  # the node's counter
    view_changes: float
    cpu_s: float  # the node process's CPU time, read when the answer arrived


class CounterWatch:
    """Each node's counters, read every ``POLL_S`` over a connection of its own kept
    open for the whole phase: a node at its API connection limit, holding long-polling
    requests, would make a new connection wait behind them, and the window the
    throughput is counted over would stretch by as much."""

    POLL_S = 0.5

    def __init__(self, urls: Sequence[str], pids: Sequence[int]) -> None:
        self.lanes = [_lane_for(url) for url in urls]
        self.pids = pids
        self.samples: list[list[Sample]] = [[] for _ in urls]

    async def read(self, index: int) -> None:
        try:
            answer = await self.lanes[index].get("/metrics")
        except ApiClientError:
            return  # counted as a missing sample; the next round tries again
        text = answer.body.decode("utf-8", "replace")
        committed = metric(text, "crosstrace_txs_committed_total")
        if answer.status != 200 or committed is None:
            return
        changes = metric(text, "crosstrace_view_changes_total")
        if changes is None:
            changes = metric(text, "crosstrace_view") or 0.0
        cpu = cpu_seconds(self.pids[index])
        self.samples[index].append(Sample(trio.current_time(), committed, changes, cpu))

    async def read_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(len(self.lanes)):
                nursery.start_soon(self.read, index)

    async def watch(self) -> None:
        """Reads every ``POLL_S`` until cancelled."""
        while True:
            await trio.sleep(self.POLL_S)
            await self.read_all()

    def frame(self, index: int, end: float) -> tuple[Sample, Sample, Sample]:
        """The node's first sample, its first at or after ``end`` (the window), and its
        last (the phase with its answers)."""
        samples = self.samples[index]
        if not samples:
            raise BenchError(f"node {index} answered none of its metrics requests in the phase")
        closing = next((s for s in samples if s.at >= end), samples[-1])
        return samples[0], closing, samples[-1]

    async def aclose(self) -> None:
        for lane in self.lanes:
            await lane.aclose()


async def run_phase(
    name: str,
    load: Load,
    urls: Sequence[str],
    pids: Sequence[int],
    feeds: Sequence[Feed],
    bound: float,
) -> PhaseResult:
    """Drives one phase and measures it; the driving and the measuring share a trio run."""
    result = PhaseResult(name, load.rate, duration_s=load.duration_s, bound=bound, wait_s=WAIT_S)
    result.rss_since_phase_start = all([reset_peak_rss(pid) for pid in pids])
    counters = CounterWatch(urls, pids)
    try:
        await counters.read_all()
        started = trio.current_time()
        window_end = started + load.duration_s
        cpu_before = time.process_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(counters.watch)
            if load.rate is None:
                await drive_max(urls, feeds, load, result)
            else:
                await drive_rate(urls, feeds, load, result)
            # A feed that ran dry ends the driving early; the window still closes on time.
            await trio.sleep_until(window_end)
            nursery.cancel_scope.cancel()
        result.driver_cpu_s = time.process_time() - cpu_before
        result.elapsed_s = trio.current_time() - started
        await counters.read_all()
    finally:
        with trio.CancelScope(shield=True):
            await counters.aclose()
    # Throughput and node CPU over the window the load was offered, framed by two reads
    # of each node's counters; the answers still open after it count for latency only.
    frames = [counters.frame(i, window_end) for i in range(len(urls))]
    first, closing, _ = frames[0]
    result.window_s = closing.at - first.at
    # Node 0's counter: every node commits every transaction.
    result.committed = int(closing.committed - first.committed)
    result.node_committed = [int(c.committed - f.committed) for f, c, _ in frames]
    result.node_cpu_s = [c.cpu_s - f.cpu_s for f, c, _ in frames]
    result.view_changes = [int(last.view_changes - f.view_changes) for f, _, last in frames]
    result.peak_rss_mib = [peak_rss_mib(pid) for pid in pids]
    return result

"""``crosstrace bench``: a local consortium of real node processes under load.

The benchmark creates a fresh consortium (one process per member, Noise between them,
fsync on: the production defaults), signs the workload before the clock starts (so the
signing does not compete with the nodes), then drives it through the members' own APIs
in up to two phases:

- ``max``: a fixed number of concurrent ``POST /txs?wait=true`` batches per member,
  each sent again as soon as the last one committed: the throughput the cluster
  sustains;
- ``rate``: batches at a fixed offered rate, on a clock, whatever the answers: the
  commit latency a partner sees at that load. Latency counts from the moment a batch
  was due, so a driver that falls behind shows up as latency, not as a lighter load.

Figures: committed tx/s (from the nodes' own counters), commit latency percentiles
(from the answers), view changes, each node's peak resident memory and CPU time, and
the ratio of the throughput to this machine's Ed25519 bound: every member verifies
every transaction's signature once, so ``cores x verifications per second per core /
members`` transactions per second is the most the machine could commit if it did
nothing but verify.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nacl.signing
import trio

from node.client.http import ApiClient, ApiClientError, api_url_of_home, auth_headers, token_for
from node.identifiers.normalize import EntityType, normalize
from node.identifiers.pseudonym import EntityRef, pseudonym
from node.ledger.authoring import load_author
from node.ledger.kinds import Attribute, Report
from node.ops import processes
from node.ops.bench_http import Lane
from node.ops.ports import free_port_block

Report_ = Callable[[str], None]
Due = tuple[list[bytes], float]  # a batch and when it was due


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


@dataclass(frozen=True)
class BenchConfig:
    nodes: int = 4
    duration_s: float = 60.0
    phases: tuple[str, ...] = ("max", "rate")
    rate: float = 1000.0
    batch: int = 100
    concurrency: int = 4
    directory: Path | None = None
    profile: bool = False


@dataclass
class PhaseResult:
    name: str
    offered: str
    elapsed_s: float = 0.0
    committed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0
    not_committed: int = 0
    skipped_batches: int = 0
    view_changes: int = 0
    # How late the driver started each request (a driver short of CPU offers less than
    # it claims), and the CPU it used: both say whether the figures are the nodes'.
    send_lag_ms: list[float] = field(default_factory=list)
    driver_cpu_s: float = 0.0

    @property
    def tx_per_s(self) -> float:
        return self.committed / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float) -> float:
        return _pct(self.latencies_ms, p)


# ----------------------------------------------------------------------- measuring


def verifications_per_second(seconds: float = 1.0) -> float:
    """Ed25519 verifications per second on one core, as the nodes do them (PyNaCl)."""
    key = nacl.signing.SigningKey.generate()
    signed = key.sign(os.urandom(200))
    verify = key.verify_key.verify
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(200):
            verify(signed)
        count += 200
    return count / elapsed


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ----------------------------------------------------------------------- workload


def _sign_chunk(home: str, first: int, count: int) -> list[bytes]:
    """Runs in a worker process. Reports about made-up devices, about 200 bytes each:
    the pseudonym is computed directly, skipping the phone-number parser, whose cost
    belongs to the operator's machine, not to the nodes being measured."""
    author = load_author(Path(home))
    secret = author.pseudonym_key.secret
    now = int(time.time() * 1000)
    out = []
    for i in range(first, first + count):
        body = Report(
            subject=EntityRef("device", pseudonym(secret, "device", _mac(i))),
            category="suspicious_device",
            attributes=(Attribute("source", "automated_detection"),),
            case_id=None,
            observed_ms=now,
            details_commitment=None,
        )
        out.append(author.sign(body, time_ms=now))
    return out


def _mac(i: int) -> str:
    # A locally administered MAC address (second hex digit 2), one per transaction,
    # spelt the way the device normaliser writes it.
    return normalize(EntityType.DEVICE, f"02{i:010x}")


def sign_workload(homes: Sequence[Path], per_member: int, report: Report_) -> list[list[bytes]]:
    chunk = 5000
    jobs = [
        (m, start, min(chunk, per_member - start))
        for m in range(len(homes))
        for start in range(0, per_member, chunk)
    ]
    out: list[list[bytes]] = [[] for _ in homes]
    started = time.monotonic()
    total = per_member * len(homes)
    with ProcessPoolExecutor(usable_cores()) as pool:
        futures = [
            (m, pool.submit(_sign_chunk, str(homes[m]), m * 10**9 + start, count))
            for m, start, count in jobs
        ]
        done = 0
        for m, future in futures:
            chunk_txs = future.result()
            out[m].extend(chunk_txs)
            done += len(chunk_txs)
            report(f"\r  signed {done:,} of {total:,}")
    report(f"\r  signed {total:,} transactions in {time.monotonic() - started:.1f} s\n")
    return out


# ----------------------------------------------------------------------- driving


class Feed:
    """One member's pre-signed transactions, handed out batch by batch."""

    def __init__(self, txs: list[bytes]) -> None:
        self.txs = txs
        self.next = 0

    def take(self, count: int) -> list[bytes]:
        batch = self.txs[self.next : self.next + count]
        self.next += len(batch)
        return batch


async def _post(
    client: httpx.AsyncClient,
    url: str,
    batch: list[bytes],
    due: float,
    result: PhaseResult,
    headers: dict[str, str],
) -> None:
    result.send_lag_ms.append((trio.current_time() - due) * 1000)
    body = {"txs": [tx.hex() for tx in batch]}
    try:
        response = await client.post(
            f"{url}/txs", params={"wait": "true", "timeout": "30"}, json=body, headers=headers
        )
        rows = response.json().get("results", [])
    except (httpx.HTTPError, ValueError):
        result.not_committed += len(batch)
        return
    _account(rows, due, result)


async def _post_on_lane(lane: Lane, batch: list[bytes], due: float, result: PhaseResult) -> None:
    result.send_lag_ms.append((trio.current_time() - due) * 1000)
    body = json.dumps({"txs": [tx.hex() for tx in batch]}).encode()
    try:
        _, data = await lane.post("/txs?wait=true&timeout=30", body, "application/json")
        rows = json.loads(data).get("results", [])
    except (ApiClientError, ValueError, AttributeError):
        result.not_committed += len(batch)
        return
    _account(rows, due, result)


def _account(rows: list[dict[str, object]], due: float, result: PhaseResult) -> None:
    latency_ms = (trio.current_time() - due) * 1000
    for row in rows:
        if not row.get("accepted"):
            result.refused += 1
        elif row.get("committed"):
            result.latencies_ms.append(latency_ms)
        else:
            result.not_committed += 1


async def drive_max(
    urls: Sequence[str], feeds: Sequence[Feed], cfg: BenchConfig, result: PhaseResult
) -> None:
    async def worker(client: httpx.AsyncClient, url: str, feed: Feed, stop_at: float) -> None:
        headers = auth_headers(url)  # the member's local user (``<home>/token``)
        while trio.current_time() < stop_at:
            batch = feed.take(cfg.batch)
            if not batch:
                return
            await _post(client, url, batch, trio.current_time(), result, headers)

    limits = httpx.Limits(max_connections=cfg.concurrency * len(urls) + 4, keepalive_expiry=1.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        stop_at = trio.current_time() + cfg.duration_s
        async with trio.open_nursery() as nursery:
            for url, feed in zip(urls, feeds, strict=True):
                for _ in range(cfg.concurrency):
                    nursery.start_soon(worker, client, url, feed, stop_at)


async def drive_rate(
    urls: Sequence[str], feeds: Sequence[Feed], cfg: BenchConfig, result: PhaseResult
) -> None:
    # About 50 batches a second per member: small enough batches that batching adds
    # little latency, few enough requests that the driver keeps up.
    per_member = cfg.rate / len(urls)
    batch = max(1, round(per_member / 50))
    interval = batch / per_member
    # Bounded: a cluster that stops answering must not make the driver pile up
    # requests without end; a batch due when every lane is busy is counted, not sent.
    lanes_per_member = max(8, int(10 / interval))

    async def lane_worker(lane: Lane, batches: trio.MemoryReceiveChannel[Due]) -> None:
        try:
            async for txs, due in batches:
                await _post_on_lane(lane, txs, due, result)
        finally:
            with trio.CancelScope(shield=True):
                await lane.aclose()

    async def ticker(url: str, feed: Feed, start: float) -> None:
        address = httpx.URL(url)
        send, receive = trio.open_memory_channel[Due](0)
        async with trio.open_nursery() as nursery:
            for _ in range(lanes_per_member):
                lane = Lane(address.host, address.port or 80, token_for(url))
                nursery.start_soon(lane_worker, lane, receive)
            async with send:
                for tick in range(int(cfg.duration_s / interval)):
                    due = start + tick * interval
                    await trio.sleep_until(due)
                    txs = feed.take(batch)
                    if not txs:
                        break
                    try:
                        send.send_nowait((txs, due))
                    except trio.WouldBlock:
                        result.skipped_batches += 1

    start = trio.current_time() + 0.05
    async with trio.open_nursery() as nursery:
        for index, (url, feed) in enumerate(zip(urls, feeds, strict=True)):
            # Members start out of step, as independent partners would.
            nursery.start_soon(ticker, url, feed, start + index * interval / len(urls))


async def run_phase(
    name: str, urls: Sequence[str], feeds: Sequence[Feed], cfg: BenchConfig
) -> PhaseResult:
    offered = "as fast as it commits" if name == "max" else f"{cfg.rate:g} tx/s offered"
    result = PhaseResult(name, offered)
    before = await trio.to_thread.run_sync(_counters, urls)
    started = trio.current_time()
    cpu_before = time.process_time()
    if name == "max":
        await drive_max(urls, feeds, cfg, result)
    else:
        await drive_rate(urls, feeds, cfg, result)
    result.driver_cpu_s = time.process_time() - cpu_before
    result.elapsed_s = trio.current_time() - started
    after = await trio.to_thread.run_sync(_counters, urls)
    # Node 0's counter: every node commits every transaction.
    result.committed = int(after[0][0] - before[0][0])
    result.view_changes = int(max(a[1] for a in after) - max(b[1] for b in before))
    return result


def _counters(urls: Sequence[str]) -> list[tuple[float, float]]:
    out = []
    for url in urls:
        with ApiClient(url) as client:
            text = client.metrics()
        out.append(
            (metric(text, "crosstrace_txs_committed_total"), metric(text, "crosstrace_view"))
        )
    return out


# ----------------------------------------------------------------------- the run


@contextlib.contextmanager
def _consortium_dir(cfg: BenchConfig) -> Iterator[Path]:
    if cfg.directory is not None:
        yield cfg.directory
        return
    tmp = Path(tempfile.mkdtemp(prefix="crosstrace-bench-"))
    try:
        yield tmp / "consortium"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_bench(cfg: BenchConfig, report: Report_) -> list[PhaseResult]:
    from node.setup.provision import make_testnet

    cores = usable_cores()
    report(
        f"crosstrace bench: {cfg.nodes} members, each its own process, on {cores} cores; "
        f"{cfg.duration_s:g} s per phase; Python {sys.version.split()[0]}\n"
    )
    vps = verifications_per_second()
    bound = cores * vps / cfg.nodes
    report(
        f"Ed25519 verification here: {vps:,.0f}/s per core; bound {bound:,.0f} tx/s "
        f"({cores} cores x {vps:,.0f} / {cfg.nodes} members)\n"
    )
    with _consortium_dir(cfg) as directory:
        try:
            base = free_port_block(2 * cfg.nodes)
        except OSError as exc:
            raise BenchError(str(exc)) from None
        _, homes = make_testnet(
            directory, cfg.nodes, p2p_base_port=base, api_base_port=base + cfg.nodes
        )
        per_member = (
            int(sum(_phase_need(p, cfg) for p in cfg.phases) / cfg.nodes * 1.1)
            + cfg.batch * cfg.concurrency
        )
        report(f"signing the workload ({per_member:,} per member) before the clock starts\n")
        signed = sign_workload([h.path for h in homes], per_member, report)
        nodes = [processes.NodeProcess(h.path) for h in homes]
        try:
            started = []
            for node in nodes:
                command = None
                if cfg.profile and node is nodes[0]:
                    prof = directory / "node0.prof"
                    command = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "cli"]
                    command += ["start", "--home", str(node.home)]
                started.append((node, processes.spawn(node, command)))
            urls = [api_url_of_home(node.home) for node in nodes]
            processes.wait_ready(started, dict(zip(nodes, urls, strict=True)))
            _wait_connected(urls)
            report(f"consortium up in {directory} (APIs {urls[0]} ...)\n")
            feeds = [Feed(txs) for txs in signed]
            results = []
            cpu_before = [cpu_seconds(_pid(n)) for n in nodes]
            for phase in cfg.phases:
                report(f"phase {phase}: running {cfg.duration_s:g} s ...\n")
                result = trio.run(run_phase, phase, urls, feeds, cfg)
                results.append(result)
                _print_phase(result, bound, report)
            cpu_after = [cpu_seconds(_pid(n)) for n in nodes]
            rss = [peak_rss_mib(_pid(n)) for n in nodes]
            committed = sum(r.committed for r in results)
            cpu = [a - b for a, b in zip(cpu_after, cpu_before, strict=True)]
            per_tx_us = sum(cpu) / max(committed, 1) * 1e6 / cfg.nodes
            report(
                f"nodes: peak RSS {' / '.join(f'{m:.0f}' for m in rss)} MiB "
                f"(max {max(rss):.0f}); CPU {' / '.join(f'{c:.0f}' for c in cpu)} s: "
                f"{sum(cpu):.0f} core-s for {committed:,} tx, {per_tx_us:,.0f} us per tx "
                "per node\n"
            )
        finally:
            processes.down(directory, report=lambda line: None)
        if cfg.profile:
            _print_profile(directory / "node0.prof", report)
    return results


def _pid(node: processes.NodeProcess) -> int:
    pid = node.pid()
    if pid is None:
        raise BenchError(f"{node.name} is no longer running; see {node.log_file}")
    return pid


def _phase_need(phase: str, cfg: BenchConfig) -> float:
    # Enough for 5,000 tx/s sustained, above the goal, so the feed never runs dry first.
    return cfg.duration_s * (5000 if phase == "max" else cfg.rate)


def _wait_connected(urls: Sequence[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for url in urls:
        with ApiClient(url) as client:
            while not all(p["connected"] for p in client.status()["peers"]):
                if time.monotonic() > deadline:
                    raise BenchError(f"{url}: the members did not all connect in {timeout_s} s")
                time.sleep(0.1)


def _print_phase(r: PhaseResult, bound: float, report: Report_) -> None:
    report(
        f"  {r.name}: {r.offered}; committed {r.tx_per_s:,.0f} tx/s ({r.committed:,} in "
        f"{r.elapsed_s:.1f} s) = {r.tx_per_s / bound:.0%} of the Ed25519 bound\n"
        f"    commit latency p50 {r.percentile(50):.0f} ms, p95 {r.percentile(95):.0f} ms, "
        f"p99 {r.percentile(99):.0f} ms ({len(r.latencies_ms):,} answers); "
        f"view changes {r.view_changes}; refused {r.refused}, not committed in 30 s "
        f"{r.not_committed}, batches skipped by the driver {r.skipped_batches}\n"
        f"    driver: {r.driver_cpu_s:.1f} CPU-s, requests started late by p50 "
        f"{_pct(r.send_lag_ms, 50):.0f} ms, p99 {_pct(r.send_lag_ms, 99):.0f} ms\n"
    )


def _pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _print_profile(path: Path, report: Report_, top: int = 25) -> None:
    import io
    import pstats

    if not path.exists():
        report(f"no profile at {path}: node 0 did not stop cleanly\n")
        return
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    report("node 0 profile (main thread, by own time):\n" + out.getvalue())

"""``crosstrace bench``: a local consortium of real node processes under load.

The benchmark creates a fresh consortium (one process per member, Noise between them,
fsync on: the production defaults), signs each phase's workload before that phase's
clock starts (so the signing does not compete with the nodes), then drives it through
the members' own APIs (``POST /txs?wait=true``) in up to three phases:

- ``max``: a fixed number of concurrent batches per member, each sent again as soon as
  the last one was answered: the throughput the cluster sustains;
- ``rate``: batches at a fixed offered rate, on a clock, whatever the answers: the
  commit latency a partner sees at that load. Latency counts from the moment a batch
  was due, so a driver that falls behind shows up as latency, not as a lighter load;
- ``overload``: the same at twice the rate ``max`` committed in this run (or
  ``--overload-rate``): whether the nodes refuse what they cannot commit (429) and
  keep committing, instead of absorbing a backlog.

Refusals. A request answered ``429`` (the node is past its admission bound) or ``503``
(its API is busy) is not sent again: its transactions are dropped from the offered load
and counted as refused, and the connection that got the answer waits the
``Retry-After`` it carried before it sends anything else (one connection carries one
request at a time, so this is Retry-After honoured per connection). A batch that falls
due while every connection is busy or waiting is counted as held back, not sent.

Figures per phase (``node.ops.bench_report``): committed tx/s (node 0's counter over
the window the load was offered) and its share of this machine's Ed25519 bound
measured in the same run (every member verifies every transaction's signature once,
so ``cores x verifications per second per core / members`` tx/s is the most the
machine could commit if it did nothing but verify); latency of accepted transactions;
the share refused with 429; view changes and peak resident memory per node; CPU per
committed transaction per node; the driver's own CPU and how late it started requests.

``--link-delay MS`` routes every member-to-member link through a delaying proxy
(``node.ops.link_proxy``, in a process of its own) and reports the round trip through
one.

This module sets the run up (consortium, bound, workload, proxies) and runs the phases;
``node.ops.bench_drive`` drives and measures one phase; ``node.ops.bench_report``
prints the figures, checks the goals and writes the JSON file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import trio

from node.client.http import ApiClient, ApiClientError, api_url_of_home
from node.client.pseudonyms import author_for_home
from node.identifiers.normalize import EntityType, normalize
from node.ledger.authoring import AuthoringError
from node.ledger.kinds import Attribute, Report
from node.ops import processes
from node.ops.bench_drive import BenchError, Feed, Load, run_phase
from node.ops.bench_report import (
    PhaseResult,
    Report_,
    goal_lines,
    print_goals,
    print_phase,
    write_json,
)
from node.ops.link_proxy import DelayedLinks
from node.ops.ports import free_port_block
from node.setup.config import load_config, render_config
from node.setup.genesis import Genesis, split_host_port

PHASES = ("max", "rate", "overload")
# The most ``max`` is signed for: 5,000 tx/s sustained, above the goal; 1.2 times the
# bound where that is less. If the feed runs dry first, the phase says so.
MAX_FEED_RATE = 5000.0
# Each member's daily report quota in the bench's genesis: every pre-signed report costs
# one pseudonym evaluation, and a run signs far more than a member's real daily quota
# (max alone is 5,000 tx/s for the phase's duration).
BENCH_REPORT_QUOTA = 1_000_000_000


@dataclass(frozen=True)
class BenchConfig:
    nodes: int = 4
    duration_s: float = 60.0
    phases: tuple[str, ...] = ("max", "rate", "overload")
    rate: float = 1000.0
    overload_rate: float | None = None  # None: twice what ``max`` committed
    batch: int = 100
    # The binary batch body bulk submitters send (``node.client.submit_body``); False:
    # hex in JSON, the body before it, to compare.
    binary_body: bool = True
    concurrency: int = 4
    link_delay_ms: float = 0.0
    directory: Path | None = None
    json_file: Path | None = None
    profile: bool = False


# ----------------------------------------------------------------------- measuring


def verifications_per_second(seconds: float = 0.4, rounds: int = 5) -> float:
    """Ed25519 verifications per second on one core, as the nodes do them (PyNaCl): the
    best of ``rounds`` short measurements, so that other work on the machine lowers the
    bound less (a lower bound would flatter the share of it the nodes reach)."""
    key = nacl.signing.SigningKey.generate()
    signed = key.sign(os.urandom(200))
    verify = key.verify_key.verify
    best = 0.0
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(200):
                verify(signed)
            count += 200
        best = max(best, count / elapsed)
    return best


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------- workload


def presigned_transactions(home: str, first: int, count: int) -> list[bytes]:
    """``count`` signed transactions of the member at ``home``, ready to post: the one
    place the workload is built.

    Runs in a worker process, before the phase's clock starts, with the nodes up: the
    pseudonyms are evaluated by the consortium through the member's own node (one
    ``POST /pseudonyms`` per ``PSEUDONYM_BATCH`` identifiers, counted against the
    member's report quota, which the bench's genesis sets high enough), then every
    report is signed here. Reports about made-up devices, about 200 bytes each: the
    device normaliser is cheap, unlike the phone-number parser, whose cost belongs to
    the operator's machine, not to the nodes being measured. The devices repeat every
    ``DEVICES`` transactions (a device reported many times, each report distinct): the
    node caches a pseudonym once evaluated, so a long run does not spend minutes
    evaluating before its clock starts."""
    try:
        author = author_for_home(Path(home))
        devices = [("device", _mac(i % DEVICES)) for i in range(first, first + count)]
        refs = author.entities(devices)
    except AuthoringError as exc:
        raise BenchError(f"{Path(home).name}: no pseudonyms for the workload: {exc}") from None
    now = int(time.time() * 1000)
    out = []
    for ref in refs:
        body = Report(
            subject=ref,
            category="suspicious_device",
            attributes=(Attribute("source", "automated_detection"),),
            case_id=None,
            observed_ms=now,
            details_commitment=None,
        )
        out.append(author.sign(body, time_ms=now))
    return out


DEVICES = 5_000


def _mac(i: int) -> str:
    # A locally administered MAC address (second hex digit 2), one per transaction,
    # spelt the way the device normaliser writes it.
    return normalize(EntityType.DEVICE, f"02{i:010x}")


class Workload:
    """Signs each phase's transactions before its clock starts, in worker processes
    (the nodes are up but idle then); every transaction of the run is distinct."""

    CHUNK = 5000

    def __init__(self, homes: Sequence[Path], report: Report_) -> None:
        self.homes = homes
        self.report = report
        self.signed = 0  # per member, so far: the next transaction's index

    def feeds(self, per_member: int) -> list[Feed]:
        jobs = [
            (m, start, min(self.CHUNK, per_member - start))
            for m in range(len(self.homes))
            for start in range(0, per_member, self.CHUNK)
        ]
        out: list[list[bytes]] = [[] for _ in self.homes]
        started = time.monotonic()
        total = per_member * len(self.homes)
        self.report(f"  signing {per_member:,} per member before the clock starts\n")
        with ProcessPoolExecutor(usable_cores()) as pool:
            futures = [
                (
                    m,
                    pool.submit(
                        presigned_transactions,
                        str(self.homes[m]),
                        m * 10**9 + self.signed + start,
                        count,
                    ),
                )
                for m, start, count in jobs
            ]
            done = 0
            for m, future in futures:
                chunk_txs = future.result()
                out[m].extend(chunk_txs)
                done += len(chunk_txs)
                self.report(f"\r  signed {done:,} of {total:,}")
        self.signed += per_member
        self.report(f"\r  signed {total:,} transactions in {time.monotonic() - started:.1f} s\n")
        return [Feed(txs) for txs in out]


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


def _route_through(genesis: Genesis, homes: Sequence[Path], links: DelayedLinks) -> None:
    """Member i dials every later member j through the proxy for (i, j) (the earlier
    member in the genesis dials: README, "A consortium across machines")."""
    ports = iter(links.ports)
    for i, home in enumerate(homes):
        path = home / "config.toml"
        config = load_config(path)
        peers = {
            genesis.members[j].name: f"127.0.0.1:{next(ports)}" for j in range(i + 1, len(homes))
        }
        p2p = dataclasses.replace(config.p2p, peer_addresses=peers)
        path.write_text(render_config(dataclasses.replace(config, p2p=p2p)))


def _link_targets(genesis: Genesis) -> list[tuple[str, int]]:
    """The p2p address of j for each pair i < j, in ``_route_through``'s order."""
    members = genesis.members
    return [
        split_host_port(members[j].address)
        for i in range(len(members))
        for j in range(i + 1, len(members))
    ]


def run_bench(cfg: BenchConfig, report: Report_) -> list[PhaseResult]:
    from node.setup.provision import make_testnet

    cores = usable_cores()
    report(
        f"crosstrace bench: {cfg.nodes} members, each its own process, on {cores} cores; "
        f"{cfg.duration_s:g} s per phase; "
        f"{'binary batch' if cfg.binary_body else 'hex-in-JSON'} request bodies; "
        f"Python {sys.version.split()[0]}\n"
    )
    vps = verifications_per_second()
    bound = cores * vps / cfg.nodes
    report(
        f"Ed25519 verification here: {vps:,.0f}/s per core; bound {bound:,.0f} tx/s "
        f"({cores} cores x {vps:,.0f} / {cfg.nodes} members)\n"
    )
    phases = [p for p in PHASES if p in cfg.phases]
    results: list[PhaseResult] = []
    round_trip_ms: float | None = None
    with _consortium_dir(cfg) as directory, contextlib.ExitStack() as stack:
        try:
            base = free_port_block(2 * cfg.nodes)
        except OSError as exc:
            raise BenchError(str(exc)) from None
        genesis, homes = make_testnet(
            directory,
            cfg.nodes,
            p2p_base_port=base,
            api_base_port=base + cfg.nodes,
            report_quota_per_day=BENCH_REPORT_QUOTA,
        )
        links = None
        if cfg.link_delay_ms:
            links = stack.enter_context(
                DelayedLinks(_link_targets(genesis), cfg.link_delay_ms / 1000)
            )
            _route_through(genesis, [h.path for h in homes], links)
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
            if links is not None:
                round_trip_ms = links.round_trip_ms()
                report(
                    f"every link between members through a proxy delaying {cfg.link_delay_ms:g} "
                    f"ms each way: round trip through one measured at {round_trip_ms:.1f} ms\n"
                )
            pids = [_pid(n) for n in nodes]
            workload = Workload([h.path for h in homes], report)
            for phase in phases:
                rate = _phase_rate(phase, cfg, results)
                # max is signed for a little more than the bound (the most the nodes
                # could commit), within MAX_FEED_RATE: signing is slow and comes first.
                feed_rate = min(MAX_FEED_RATE, 1.2 * bound) if rate is None else rate
                need = feed_rate * cfg.duration_s
                per_member = int(need / cfg.nodes * 1.1) + cfg.batch * cfg.concurrency
                offered = "as fast as it commits" if rate is None else f"{rate:,.0f} tx/s offered"
                report(f"phase {phase} ({offered}), {cfg.duration_s:g} s:\n")
                feeds = workload.feeds(per_member)
                result = _run_phase(phase, rate, urls, pids, feeds, cfg, bound)
                results.append(result)
                print_phase(result, report)
        finally:
            processes.down(directory, report=lambda line: None)
        proxy_cpu = None if links is None else links.cpu_seconds()
        if proxy_cpu is not None:
            # Work netem would do in the kernel: on the same cores as the nodes.
            report(f"the link proxies used {proxy_cpu:.1f} CPU-s in all\n")
        if cfg.profile:
            _print_profile(directory / "node0.prof", report)
    goals = goal_lines(
        results,
        nodes=cfg.nodes,
        duration_s=cfg.duration_s,
        link_delay_ms=cfg.link_delay_ms,
        round_trip_ms=round_trip_ms,
    )
    print_goals(goals, report)
    if cfg.json_file is not None:
        run = {
            "nodes": cfg.nodes,
            "cores": cores,
            "duration_s": cfg.duration_s,
            "python": sys.version.split()[0],
            "verifications_per_s_per_core": vps,
            "bound_tx_per_s": bound,
            "body": "binary" if cfg.binary_body else "json",
            "link_delay_ms": cfg.link_delay_ms,
            "round_trip_ms": round_trip_ms,
            "proxy_cpu_s": proxy_cpu,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(cfg.json_file, run, results, goals)
        report(f"figures written to {cfg.json_file}\n")
    return results


def _run_phase(
    phase: str,
    rate: float | None,
    urls: Sequence[str],
    pids: Sequence[int],
    feeds: Sequence[Feed],
    cfg: BenchConfig,
    bound: float,
) -> PhaseResult:
    """``run_phase`` in its own trio run; a node that stopped answering its metrics
    (it died, say) ends the benchmark with a ``BenchError`` that says which."""
    try:
        load = Load(cfg.duration_s, rate, cfg.batch, cfg.concurrency, cfg.binary_body)
        return trio.run(run_phase, phase, load, urls, pids, feeds, bound)
    except ApiClientError as exc:
        raise BenchError(f"phase {phase}: {exc}") from exc
    except ExceptionGroup as group:
        failed = group.subgroup(ApiClientError)
        if failed is None:
            raise
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise BenchError(f"phase {phase}: {first}") from group


def _phase_rate(phase: str, cfg: BenchConfig, done: Sequence[PhaseResult]) -> float | None:
    if phase == "max":
        return None
    if phase == "rate":
        return cfg.rate
    if cfg.overload_rate is not None:
        return cfg.overload_rate
    measured = [r for r in done if r.name == "max"]
    if not measured or measured[0].tx_per_s <= 0:
        raise BenchError("the overload phase needs a max phase that committed, or --overload-rate")
    return 2 * measured[0].tx_per_s


def _pid(node: processes.NodeProcess) -> int:
    pid = node.pid()
    if pid is None:
        raise BenchError(f"{node.name} is no longer running; see {node.log_file}")
    return pid


def _wait_connected(urls: Sequence[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for url in urls:
        with ApiClient(url) as client:
            while not all(p["connected"] for p in client.status()["peers"]):
                if time.monotonic() > deadline:
                    raise BenchError(f"{url}: the members did not all connect in {timeout_s} s")
                time.sleep(0.1)


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

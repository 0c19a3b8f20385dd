"""Tracing queries through the HTTP API on a big ledger: ``POST /trace`` and
``POST /graph`` (depth 3), each answered only after its access record is committed.

The ledger is ``trace_bench.py``'s (``--records`` reports and links over Zipf-popular
entities in fraud-ring clusters, sixteen active cases of 64 entities), except that
every entity's pseudonym is derived from a clear identifier with the consortium key,
so queries can name entities as an investigator does: ``phone:+86 170 ...``. The key is
one the benchmark dealt the members itself (``node.testing.dealer``, test fixtures
only), so it can write the ledger offline; the nodes still evaluate each query's
pseudonym with the threshold protocol, which is part of the latency measured. It is
built once and copied to the data directories of four member homes, which run as real
``crosstrace start`` processes on 127.0.0.1 (TCP with Noise between them, fsync on,
default consensus parameters but for a watermark window that reaches past the
prebuilt ledger); this process is the client of member 0's API, one query at a time.
Members 1 to 3 stand in for other institutions' machines: by default they run at a
lower CPU priority (``--others-nice``), so that on a small machine the committing of
each access record by three other processes does not take the CPU from the node
whose query latency is measured.

Each answer carries ``Server-Timing`` (authorise, audit, query). Reported per query kind:

- **query latency**: the HTTP round trip minus the audit step, i.e. request, parsing,
  pseudonymising, authorising, running the query, rendering and the response, as the
  client sees them; the figure the goals are about (trace p99 < 10 ms, graph depth 3
  p99 < 100 ms);
- **server query**: running the query and rendering it, measured inside the node;
- **audit commit**: submitting the access record and waiting until consensus has
  committed it, measured inside the node, reported apart;
- **full answer**: the whole round trip, audit included;
- and, to tell where the query latency goes: the **server handler** without the audit
  step (reading and checking the request, pseudonymising, authorising, the query,
  rendering) and the **HTTP transport and client** (the round trip minus the handler).

    python benchmarks/api_trace_bench.py                      # 100,000 records
    python benchmarks/api_trace_bench.py --records 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trace_bench as tb

from node.ledger.store import LedgerStore
from node.ops import processes
from node.ops.ports import free_port_block
from node.setup.config import load_config
from node.setup.genesis import Genesis, GenesisConsensus, assemble_draft, save_genesis
from node.setup.provision import CONFIG_FILE, GENESIS_FILE, init_member
from node.setup.shares import save_share
from node.setup.users import add_user
from node.testing.dealer import KeyedPseudonyms, dealt_genesis, key_from_label

KEY = key_from_label("api-trace-bench")
MEMBERS = tb.MEMBERS[:4]  # the opener and the approvers of trace_bench's cases
POLICE_ROLES = ("reporter", "investigator", "approver", "auditor")
PARTNER_ROLES = ("reporter", "approver", "auditor")
Answer = tuple[bytes, str]  # the body and the Server-Timing header


def provision(base: Path, blocks: int) -> tuple[Genesis, list[Path], str, str]:
    """Four member homes on 127.0.0.1 with a shared genesis and dealt pseudonym key shares; returns
    the genesis, the homes and member 0's API URL.

    The ledger is built outside consensus, so no checkpoint covers it: the watermark
    window must reach past its ``blocks`` for the first proposals to fall inside it.
    The other consensus parameters are the defaults.
    """
    port = free_port_block(len(MEMBERS), offsets=(0, 500))
    homes = [
        init_member(
            base / f"node{i}",
            name=name,
            institution="police" if name == "police" else "bank",
            roles=POLICE_ROLES if name == "police" else PARTNER_ROLES,
            address=f"127.0.0.1:{port + i}",
            p2p_listen=f"127.0.0.1:{port + i}",
            api_listen=f"127.0.0.1:{port + 500 + i}",
        )
        for i, name in enumerate(MEMBERS)
    ]
    interval = GenesisConsensus().checkpoint_interval
    window = max(GenesisConsensus().window, (2 * blocks // interval + 10) * interval)
    draft = assemble_draft(
        tb.CHAIN_ID,
        [home.descriptor for home in homes],
        case_approvals=3,
        params=GenesisConsensus(window=window),
    )
    genesis, shares, _ = dealt_genesis(draft, KEY)
    for home, share in zip(homes, shares, strict=True):
        save_genesis(home.path / GENESIS_FILE, genesis)
        share_file = load_config(home.config_file).tracing.pseudonym_share_file
        save_share(share_file, share, None)
    # The queries are an investigator's, with that user's token (init makes an operator).
    _user, token = add_user(homes[0].path, "investigator", ["investigator"], POLICE_ROLES)
    return genesis, [home.path for home in homes], f"http://127.0.0.1:{port + 500}", token


def renice(pid: int | None, niceness: int) -> None:
    """Lower the CPU priority of every thread of ``pid`` (Linux sets it per thread; the
    threads a node starts later inherit it from the thread that starts them)."""
    if pid is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def data_dir(home: Path) -> Path:
    return load_config(home / CONFIG_FILE).node.data_dir


def clear_identifier(n: int) -> str:
    """Entity ``n`` as an investigator would type it; distinct for distinct ``n``."""
    match n % 4:
        case 0:
            return f"phone:+86 170 {n // 10000 % 10000:04d} {n % 10000:04d}"
        case 1:
            return f"account:6222{n:012d}"
        case 2:
            return f"ip:10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        case _:
            return f"email:user{n}@example.com"


def build_ledger(args: argparse.Namespace, path: Path, genesis: Genesis) -> list[dict[str, str]]:
    """The ledger in ``path``; returns the query plan: (clear entity, case) per target."""
    # trace_bench dates everything from its NOW: today's, so its cases are active now.
    tb.NOW = int(time.time() * 1000)
    work = tb.Workload(args)
    clear = [clear_identifier(n) for n in range(len(work.entities))]
    work.entities = KeyedPseudonyms(KEY).refs(
        [(kind, value) for kind, _, value in (text.partition(":") for text in clear)]
    )
    by_ref = dict(zip(work.entities, clear, strict=True))
    print(
        f"build a ledger of {args.records:,} records over {len(work.entities):,} entities "
        f"({args.link_share:.0%} links, rings of {args.ring})",
        flush=True,
    )
    store = LedgerStore.open(path, chain_id=tb.CHAIN_ID, genesis_hash=genesis.hash(), sync=False)
    with store:
        targets = tb.build(args, work, store)
        height = store.tip()[0]
    plan = [
        {"entity": by_ref[ref], "case": f"BENCH-{i // tb.SCOPE}"} for i, ref in enumerate(targets)
    ]
    random.Random(args.seed + 2).shuffle(plan)
    print(f"  {height} blocks; {len(plan)} query targets in 16 active cases", flush=True)
    return plan


# -- the client ------------------------------------------------------------------------


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for item in header.split(","):
        name, _, value = item.strip().partition(";dur=")
        out[name] = float(value)
    return out


class Client:
    """HTTP/1.1 with keep-alive over the standard library: the lightest Python client,
    so the figures are the node's and not a client library's."""

    def __init__(self, url: str, token: str) -> None:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        self.connection = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=60)
        self.authorization = f"Bearer {token}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"authorization": self.authorization}
        if payload is not None:
            headers["content-type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return data, response.getheader("server-timing", "")

    def close(self) -> None:
        self.connection.close()


def measure(
    url: str, token: str, plan: Sequence[dict[str, str]], queries: int, depth: int
) -> dict[str, dict[str, list[float]]]:
    """One query at a time, as an investigator's tool would send them."""
    samples: dict[str, dict[str, list[float]]] = {}
    client = Client(url, token)
    try:
        for kind in ("trace", "graph"):
            rows: dict[str, list[float]] = {
                "total": [],
                "query_http": [],
                "query": [],
                "audit": [],
                "authorise": [],
                "handler": [],
                "transport": [],
                "size": [],
            }
            for i in range(queries + 20):  # the first 20 warm up and are not counted
                target = plan[i % len(plan)]
                body: dict[str, Any] = {"case_id": target["case"], "entity": target["entity"]}
                if kind == "graph":
                    body["depth"] = depth
                t0 = time.perf_counter()
                data, header = client.request("POST", f"/{kind}", body)
                total = (time.perf_counter() - t0) * 1000
                if i < 20:
                    continue
                timing = server_timing(header)
                answer = json.loads(data)
                rows["total"].append(total)
                rows["query_http"].append(total - timing["audit"])
                rows["query"].append(timing["query"])
                rows["audit"].append(timing["audit"])
                rows["authorise"].append(timing["authorise"])
                rows["handler"].append(timing["total"] - timing["audit"])
                rows["transport"].append(total - timing["total"])
                rows["size"].append(len(answer["records" if kind == "trace" else "edges"]))
            samples[kind] = rows
        # What the HTTP stack alone costs here: a read that leaves no access record.
        baseline: list[float] = []
        for i in range(queries + 20):
            t0 = time.perf_counter()
            client.request("GET", f"/cases/{plan[i % len(plan)]['case']}")
            if i >= 20:
                baseline.append((time.perf_counter() - t0) * 1000)
        samples["baseline"] = {"total": baseline}
    finally:
        client.close()
    return samples


# -- report ---------------------------------------------------------------------------


def report(samples: dict[str, dict[str, list[float]]], depth: int) -> None:
    labels = {
        "query_http": "query latency (HTTP, no audit)",
        "query": "server query + render",
        "authorise": "server authorise",
        "handler": "server handler, no audit",
        "transport": "HTTP transport and client",
        "audit": "audit commit",
        "total": "full answer",
    }
    baseline = samples.pop("baseline")["total"]
    print(
        f"HTTP baseline, GET /cases/{{id}} (no query, no audit): p50 "
        f"{tb.percentile(baseline, 50):.2f} ms   p99 {tb.percentile(baseline, 99):.2f} ms"
    )
    for kind, rows in samples.items():
        name = kind if kind == "trace" else f"graph depth {depth}"
        sizes = rows["size"]
        unit = "records" if kind == "trace" else "edges"
        print(
            f"{name}: {len(sizes)} queries, {unit} per answer median "
            f"{statistics.median(sizes):.0f}, p99 {tb.percentile(sizes, 99):.0f}, "
            f"max {max(sizes):.0f}"
        )
        for key, label in labels.items():
            values = rows[key]
            print(
                f"  {label:32s} p50 {tb.percentile(values, 50):8.2f} ms   "
                f"p99 {tb.percentile(values, 99):8.2f} ms   max {max(values):8.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    tb.add_ledger_arguments(parser)
    parser.add_argument("--queries", type=int, default=1000, help="per query kind")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument(
        "--others-nice",
        type=int,
        default=10,
        help="niceness of members 1 to 3, which stand in for other institutions' machines: "
        "on a small machine they would otherwise take the CPU from the node measured "
        "(0: equal priority)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        blocks = -(-args.records // args.block_txs) + 1
        genesis, homes, url, token = provision(base, blocks)
        plan = build_ledger(args, data_dir(homes[0]), genesis)
        size = sum(f.stat().st_size for f in data_dir(homes[0]).iterdir())
        print(f"  {size / 2**20:,.0f} MiB on disk; copied to the other three members", flush=True)
        for home in homes[1:]:
            shutil.copytree(data_dir(homes[0]), data_dir(home))
        nodes = processes.up(base)
        try:
            if args.others_nice:
                for node in nodes[1:]:
                    renice(node.pid(), args.others_nice)
            print(
                f"four node processes; {args.queries} trace and {args.queries} graph queries "
                "to member 0's API, one at a time",
                flush=True,
            )
            samples = measure(url, token, plan, args.queries, args.depth)
        finally:
            processes.down(base)
    report(samples, args.depth)


if __name__ == "__main__":
    main()

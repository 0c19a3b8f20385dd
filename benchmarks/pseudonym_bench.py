"""Threshold pseudonyms: what they cost a member and what a report waits for them.

    .venv/bin/python benchmarks/pseudonym_bench.py
    .venv/bin/python benchmarks/pseudonym_bench.py --reports 1000 --batch 10000

Four real node processes on 127.0.0.1, made by ``crosstrace testnet`` with the key
ceremony, fsync on. The headline, what a report waits for its pseudonym, is ``POST
/pseudonyms`` with one identifier never seen before, end to end through HTTP, one at a
time, ``--reports`` times (p50, p99; goal p99 < 50 ms); then one batch of ``--batch``
new identifiers in one request (goal for 10,000: < 5 s); then the same identifiers again
(from the member's cache). The arithmetic alone, per point and core (evaluations per
second per member), is ``benchmarks/oprf_bench.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.ops import processes  # noqa: E402
from node.ops.ports import free_port_block  # noqa: E402
from node.setup.config import load_config  # noqa: E402

CROSSTRACE = [sys.executable, str(REPO / "cli.py")]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phone(i: int, salt: int) -> str:
    return f"phone:+86 171 {salt % 10000:04d} {i % 10000:04d}"


def consortium(reports: int, batch: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="crosstrace-pseudonym-bench-"))
    try:
        p2p, api = free_port_block(4), free_port_block(4)
        subprocess.run(
            [
                *CROSSTRACE,
                "testnet",
                str(base / "net"),
                "--nodes",
                "4",
                "--p2p-port",
                str(p2p),
                "--api-port",
                str(api),
                "--report-quota",
                str(10 * (reports + 2 * batch)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        net = base / "net"
        processes.up(net)
        try:
            home = net / "node1"
            config = load_config(home / "config.toml")
            url = f"http://{config.api.listen}"
            token = (home / "token").read_text().strip()
            client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            salt = int(time.time()) % 10000
            # Warm up: connections between members, the first evaluation.
            client.post("/pseudonyms", json={"identifiers": [phone(9999, salt + 1)]})
            samples = []
            for i in range(reports):
                t0 = time.perf_counter()
                r = client.post("/pseudonyms", json={"identifiers": [phone(i, salt)]})
                samples.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                assert r.json()["from_cache"] == 0
            print(
                f"one new identifier per request (what a report waits for), {reports} requests, "
                f"one at a time: p50 {statistics.median(samples):.2f} ms, "
                f"p99 {percentile(samples, 0.99):.2f} ms, max {max(samples):.2f} ms"
            )
            identifiers = [phone(i, salt + 2) for i in range(batch)]
            t0 = time.perf_counter()
            r = client.post("/pseudonyms", json={"identifiers": identifiers})
            took = time.perf_counter() - t0
            r.raise_for_status()
            print(f"a batch of {batch} new identifiers in one request: {took:.2f} s")
            t0 = time.perf_counter()
            r = client.post("/pseudonyms", json={"identifiers": identifiers})
            cached = time.perf_counter() - t0
            assert r.json()["from_cache"] == batch
            print(f"the same {batch} again (all from the member's cache): {cached:.2f} s")
        finally:
            processes.down(net)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    consortium(args.reports, args.batch)


if __name__ == "__main__":
    main()

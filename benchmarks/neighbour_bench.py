"""A hostile neighbour against a local four-member consortium of real node processes:
what each attack of the "hostile neighbour" report costs a node, with honest traffic
going on.

    .venv/bin/python benchmarks/neighbour_bench.py
    .venv/bin/python benchmarks/neighbour_bench.py --node-code /path/to/older/checkout

``--node-code`` runs the nodes (and the commands that set them up and submit the honest
traffic) from another checkout of the project, so the same attacks measure an older
build; the attacks themselves are this checkout's (``node.testing.neighbour``). The
nodes run under an open-file limit of ``--nofile`` (soft and hard), as on a host with
the common default of 1,024.

Phases:
- ``bodies``: eight ``POST /txs`` bodies of 31 MiB at once to member 0: its peak and
  settled resident memory, the statuses;
- ``psi``: a 24 MiB body of short lines to ``POST /psi/runs`` naming no valid case:
  time to the refusal, peak memory, the longest wait of an honest ``GET /status``;
- ``slow``: ``--slow`` connections each sending a body a byte a second: how long the
  node keeps them, the longest wait of an honest request meanwhile, its peers;
- ``browser``: what a web page could send (``text/plain``, a foreign ``Host``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node.testing.neighbour import (  # noqa: E402
    PeakMemory,
    Probe,
    SlowBodies,
    concurrent_posts,
    json_junk_body,
    open_descriptors,
    rss_bytes,
)

MIB = 1024 * 1024


class Consortium:
    def __init__(self, directory: Path, code: Path, nofile: int, p2p: int, api: int) -> None:
        self.directory = directory
        self.code = code
        self.nofile = nofile
        self.api = api
        self.env = os.environ | {"PYTHONPATH": str(code)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cli("testnet", str(directory), "--p2p-port", str(p2p), "--api-port", str(api))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "import cli; cli.main()", *args]
        return subprocess.run(
            command, env=self.env, cwd=self.code, capture_output=True, text=True, check=check
        )

    def home(self, i: int) -> Path:
        return self.directory / f"node{i}"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.api + i}"

    def auth(self, i: int) -> dict[str, str]:
        """Member i's local user's token (none in a checkout from before users): the
        neighbour holds one, so the attacks reach past the token check."""
        token = self.home(i) / "token"
        if not token.exists():
            return {}
        return {"authorization": f"Bearer {token.read_text().strip()}"}

    def start(self) -> None:
        for i in range(4):
            log = (self.home(i) / "node.log").open("ab")
            command = [
                "prlimit",
                f"--nofile={self.nofile}:{self.nofile}",
                sys.executable,
                "-c",
                "import cli; cli.main()",
                "start",
                "--home",
                str(self.home(i)),
            ]
            self.procs.append(
                subprocess.Popen(command, env=self.env, cwd=self.code, stdout=log, stderr=log)
            )
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2, trust_env=False) as client:
            for i in range(4):
                while True:
                    try:
                        answer = client.get(f"{self.url(i)}/status", headers=self.auth(i))
                        if answer.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit(f"node{i} did not start: see {self.home(i)}/node.log")
                    time.sleep(0.2)

    def pid(self, i: int) -> int:
        # prlimit execs the node, so the child is the node itself.
        return self.procs[i].pid

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


class Honest:
    """Sample reports through member 1, one submission at a time, from a thread."""

    def __init__(self, net: Consortium) -> None:
        self.net = net
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Honest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            started = time.monotonic()
            done = self.net.cli(
                "submit", "--home", str(self.net.home(1)), "--timeout", "20",
                "sample", "--count", "2", "--first", str(1000 + 2 * k), check=False,
            )  # fmt: skip
            if done.returncode == 0:
                self.times.append(time.monotonic() - started)
            else:
                self.failures += 1
            k += 1
            self._stop.wait(0.2)

    def summary(self) -> str:
        if not self.times:
            return f"honest submissions: none committed, {self.failures} failed"
        return (
            f"honest submissions committed: {len(self.times)}, failed {self.failures}, "
            f"slowest {max(self.times):.1f} s (CLI start-up included)"
        )


def phase_bodies(net: Consortium) -> None:
    body = json_junk_body(31 * MIB)
    pid = net.pid(0)
    before = rss_bytes(pid)
    with Honest(net) as honest, PeakMemory(pid) as peak:
        statuses = concurrent_posts(f"{net.url(0)}/txs", body, 8, headers=net.auth(0))
    time.sleep(5)
    print(
        f"bodies: 8 x {len(body) / MIB:.1f} MiB POST /txs at once -> {sorted(map(str, statuses))}"
    )
    print(
        f"  resident memory: {before / MIB:.0f} MiB before, peak {peak.peak / MIB:.0f} MiB, "
        f"{rss_bytes(pid) / MIB:.0f} MiB 5 s after"
    )
    print(f"  {honest.summary()}")


def phase_psi(net: Consortium) -> None:
    body = b"1\n" * (12 * MIB)
    pid = net.pid(2)
    url = f"{net.url(2)}/psi/runs?case=NO-SUCH-CASE&with=bank-1&type=phone"
    probe = Probe(f"{net.url(2)}/status", headers=net.auth(2))
    with Honest(net) as honest, probe, PeakMemory(pid) as peak:
        started = time.monotonic()
        octets = "application/octet-stream"
        status = concurrent_posts(url, body, 1, content_type=octets, headers=net.auth(2))[0]
        took = time.monotonic() - started
    print(
        f"psi: {len(body) / MIB:.0f} MiB of short lines, no valid case -> {status} in {took:.2f} s"
    )
    print(
        f"  peak resident memory {peak.peak / MIB:.0f} MiB; honest GET /status on that node: "
        f"worst {probe.worst_s * 1000:.0f} ms, {len(probe.failures)} unanswered"
    )
    print(f"  {honest.summary()}")


def phase_slow(net: Consortium, count: int, hold_s: float) -> None:
    pid = net.pid(0)
    attack = SlowBodies("127.0.0.1", net.api, count, for_s=hold_s, headers=net.auth(0))
    probe = Probe(f"{net.url(0)}/status", timeout_s=20, headers=net.auth(0))
    with Honest(net) as honest, probe:
        attack.start()
        time.sleep(min(hold_s, 10))
        fds = open_descriptors(pid)
        attack.stop()
    cut = attack.cut_after
    kept = f"median {statistics.median(cut):.1f} s, longest {max(cut):.1f} s" if cut else "none cut"
    print(
        f"slow: {count} bodies a byte a second for up to {hold_s:.0f} s: {attack.opened} opened, "
        f"{attack.refused} refused; {len(cut)} cut by the node ({kept})"
    )
    print(
        f"  node's open descriptors at 10 s: {fds}; honest GET /status: worst "
        f"{probe.worst_s * 1000:.0f} ms, {probe.answered} answered, {len(probe.failures)} failed"
    )
    with httpx.Client(timeout=10, trust_env=False, headers=net.auth(0)) as client:
        peers = client.get(f"{net.url(0)}/status").json()["peers"]
    print(f"  peers connected afterwards: {sum(bool(p['connected']) for p in peers)} of 3")
    print(f"  {honest.summary()}")


def phase_browser(net: Consortium) -> None:
    case = {
        "case_id": "WEB-1",
        "purpose": "telecom_fraud",
        "justification": "opened by a web page",
        "scope": ["phone:+8613800138000"],
    }
    with httpx.Client(timeout=10, trust_env=False) as client:
        text = client.post(
            f"{net.url(0)}/cases", content=json.dumps(case), headers={"content-type": "text/plain"}
        )
        host = client.get(f"{net.url(0)}/status", headers={"host": "attacker.example:8600"})
    print(
        f"browser: text/plain POST /cases -> {text.status_code}; foreign Host -> {host.status_code}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--node-code", type=Path, default=REPO, help="checkout the nodes run from")
    parser.add_argument("--nofile", type=int, default=1024, help="the nodes' open-file limit")
    parser.add_argument("--slow", type=int, default=1100, help="slow-body connections")
    parser.add_argument("--hold", type=float, default=60.0, help="longest a slow body goes on, s")
    parser.add_argument("--p2p-port", type=int, default=27600)
    parser.add_argument("--api-port", type=int, default=9600)
    parser.add_argument(
        "--phase", action="append", choices=["bodies", "psi", "slow", "browser"],
        help="phases to run (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    phases = args.phase or ["bodies", "psi", "slow", "browser"]
    directory = Path(tempfile.mkdtemp(prefix="neighbour-"))
    net = Consortium(
        directory / "net", args.node_code.resolve(), args.nofile, args.p2p_port, args.api_port
    )
    print(f"four node processes from {args.node_code}, open-file limit {args.nofile}")
    try:
        net.start()
        for phase in phases:
            if phase == "bodies":
                phase_bodies(net)
            elif phase == "psi":
                phase_psi(net)
            elif phase == "slow":
                phase_slow(net, args.slow, args.hold)
            else:
                phase_browser(net)
    finally:
        net.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

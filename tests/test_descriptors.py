"""The open-file limit and the listener's descriptor reserve (``net.descriptors``).

The limit is per process, so what changes it runs in a subprocess: one raises a lowered
soft limit back to the hard one; one runs two members' transports under a soft limit of
128 while this process, a stranger, opens far more sockets to one of them than that.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from net.descriptors import DescriptorBudget, OpenFileLimit, open_descriptor_count

ROOT = Path(__file__).resolve().parent.parent
SOFT = 128
RESERVE = 64
STRANGERS = 200


def run_python(script: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def hard_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ------------------------------------------------------------------ the budget alone


class Table:
    """A fake descriptor table: ``others`` open besides the caller's sockets."""

    def __init__(self, others: int, limit: int) -> None:
        self.others = others
        self.limit = limit
        self.own = 0
        self.listings = 0

    def count(self) -> int:
        self.listings += 1
        return self.others + self.own


def test_the_budget_counts_the_callers_sockets_exactly_between_listings() -> None:
    table = Table(others=900, limit=1024)
    budget = DescriptorBudget(
        64, count=table.count, limit=lambda: table.limit, resample_every=1000, max_age_s=100
    )
    now = 0.0
    admitted = 0
    while True:
        table.own = admitted + 1  # the new socket is open when the check is made
        if budget.short(now, own=admitted + 1):
            break
        admitted += 1
        now += 0.001
    # 1024 - 900 - 64 = 60 sockets fit; the refusal was confirmed by a second listing.
    assert admitted == 60
    assert table.listings == 2
    assert budget.free() == 1024 - 961


def test_the_budget_notices_others_opening_descriptors_at_the_next_listing() -> None:
    table = Table(others=100, limit=1024)
    budget = DescriptorBudget(
        64, count=table.count, limit=lambda: table.limit, resample_every=4, max_age_s=100
    )
    assert not budget.short(0.0, own=1)
    table.others = 1000  # the store, the API, ... took them
    results = [budget.short(0.1 * k, own=1) for k in range(1, 5)]
    assert results == [False, False, False, True]  # the fourth check lists again


def test_no_reserve_or_no_count_means_never_short() -> None:
    assert not DescriptorBudget(0, count=lambda: 10**6, limit=lambda: 10).short(0.0, own=1)
    assert not DescriptorBudget(64, count=lambda: None, limit=lambda: 10).short(0.0, own=1)


def test_this_process_can_count_its_descriptors() -> None:
    before = open_descriptor_count()
    assert before is not None
    with socket.socket() as _, socket.socket() as _:
        assert open_descriptor_count() == before + 2


# ------------------------------------------------------------------ the process


@pytest.mark.timeout(30)
def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    if hard_limit() <= SOFT:
        pytest.skip("the hard open-file limit is too low to lower the soft one below it")
    child = run_python(
        f"""
        import json, resource
        from net.descriptors import raise_open_file_limit
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, ({SOFT}, hard))
        first = raise_open_file_limit()
        again = raise_open_file_limit()
        now = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(json.dumps([first.before, first.soft, first.hard, list(now), str(first),
                          str(again)]))
        """
    )
    out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    before, soft, hard, now, said, said_again = json.loads(out)
    assert (before, soft, hard, now) == (SOFT, hard_limit(), hard_limit(), [hard, hard])
    assert said == f"open-file limit raised from {SOFT} to {hard} (hard)"
    assert said_again == f"open-file limit {hard} (already the hard limit)"
    assert (
        str(OpenFileLimit(5, 5, 9, "not raised: no"))
        == "open-file limit 5 (hard 9): not raised: no"
    )


NODE = """
import json, resource, sys
import trio
from consensus.crypto import hash_bytes
from consensus.messages import Status, sign
from consensus.crypto import Signer
from net.descriptors import open_descriptor_count
from net.tcp import TcpTransport
from node.testing.cluster import local_genesis

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, hard))
CHAIN = "fd-test"
membership = local_genesis(4, CHAIN)[0].membership()
seeds = [hash_bytes("local-key", f"{{CHAIN}}/{{i}}".encode()) for i in range(4)]
LOCAL = "127.0.0.1"


def build(me, addresses, **options):
    return TcpTransport(me, seeds[me], membership, addresses, listen=(LOCAL, 0), **options)


async def main():
    async with trio.open_nursery() as nursery:
        t1 = build(1, [(LOCAL, 1)] * 4, descriptor_reserve={reserve}, max_inbound=1000,
                   max_unauthenticated=1000, handshake_timeout_s=60.0)
        port = await nursery.start(t1.run)
        t0 = build(0, [(LOCAL, 1), (LOCAL, port), (LOCAL, 1), (LOCAL, 1)])
        await nursery.start(t0.run)
        await t1.wait_connected(0)
        print(json.dumps({{"port": port}}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)  # the strangers are in
        stats = t1.tcp_stats
        with trio.fail_after(20):
            while True:
                handshakes = t1.statistics().unauthenticated_connections
                settled = stats.rejected_connections + stats.evicted_handshakes + handshakes
                if settled >= {strangers}:
                    break
                await trio.sleep(0.01)
        free = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - open_descriptor_count()
        files = []
        try:
            for _ in range({files}):
                files.append(open("/dev/null"))
        except OSError as exc:
            pass
        opened = len(files)
        for f in files:
            f.close()
        status = sign(Status, Signer(seeds[0]), CHAIN, view=0, view_active=True, height=7,
                      sender=0)
        t0.send_nowait(1, status)
        with trio.fail_after(10):
            got = await t1.receive()
        print(json.dumps({{
            "free": free, "opened": opened, "frame": got == (0, status),
            "rejected": stats.rejected_by_reason, "evicted": stats.evicted_by_reason,
            "handshakes": t1.statistics().unauthenticated_connections,
            "open": t1.statistics().descriptors_open,
            "limit": t1.statistics().descriptors_limit,
        }}), flush=True)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


@pytest.mark.timeout(60)
def test_strangers_cannot_take_the_descriptors_the_node_keeps_in_reserve() -> None:
    if hard_limit() <= SOFT:
        pytest.skip("the hard open-file limit is too low to lower the soft one below it")
    files = RESERVE - 8  # what the store might still want to open
    child = run_python(NODE.format(soft=SOFT, reserve=RESERVE, strangers=STRANGERS, files=files))
    assert child.stdout is not None and child.stdin is not None
    strangers: list[socket.socket] = []
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        port = json.loads(line)["port"]
        for _ in range(STRANGERS):  # each one silent, and held
            strangers.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        child.stdin.write("go\n")
        child.stdin.flush()
        report_line = child.stdout.readline()
        assert report_line, child.stderr.read() if child.stderr else ""
        report = json.loads(report_line)
    finally:
        for sock in strangers:
            sock.close()
        child.kill()
        child.communicate(timeout=10)
    print(f"under a soft limit of {SOFT} with a reserve of {RESERVE}: {report}")
    # The listener stopped adding sockets at the reserve: each one after that was refused,
    # or took the place of an older silent one...
    assert report["rejected"]["descriptors"] + report["evicted"]["displaced"] >= STRANGERS - SOFT
    assert report["handshakes"] < SOFT - RESERVE
    assert report["free"] >= RESERVE - 1
    assert report["limit"] == SOFT
    # ...so the node could still open files, and its member session carried on.
    assert report["opened"] == files
    assert report["frame"] is True

"""The operator commands against real node processes: ``cluster up|down|status``,
``status``, ``peers``, ``submit`` and ``demo``, and their one-line errors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import error_line, make_net, run
from click.testing import Result

from node.ops import processes
from node.ops.ports import free_port_block


@pytest.mark.timeout(90)
def test_a_running_cluster_is_driven_from_the_command_line(running: tuple[Path, int]) -> None:
    net, api = running
    again = run("cluster", "up", str(net))
    assert again.exit_code == 0
    assert again.output.count("already running") == 4

    committed = run(
        "submit",
        "--home",
        str(net / "node1"),
        "report",
        "phone:+86 138 0013 8000",
        "--category",
        "fraud_call",
        "--attr",
        "channel=voice",
        "--attr",
        "first_seen=2026-11-02",
    )
    assert committed.exit_code == 0, committed.output
    assert re.fullmatch(r"[0-9a-f]{64}  committed at height \d+\n", committed.output)

    linked = run(
        "submit",
        "--home",
        str(net / "node2"),
        "link",
        "phone:+8613800138000",
        "account:DE89370400440532013000",
        "--relation",
        "uses",
    )
    assert linked.exit_code == 0, linked.output
    samples = run("submit", "--home", str(net / "node3"), "sample", "--count", "5")
    assert samples.exit_code == 0, samples.output
    assert samples.output.count("committed at height") == 5

    status = run("status", "--home", str(net / "node0"))
    assert status.exit_code == 0, status.output
    assert "member   police-0 (#0) of chain local" in status.output
    assert "peers    3 of 3 connected" in status.output
    as_json = json.loads(run("status", "--url", f"http://127.0.0.1:{api}", "--json").output)
    assert as_json["height"] >= 2
    assert as_json["member"]["index"] == 0

    peers = run("peers", "--home", str(net / "node2"))
    assert peers.exit_code == 0, peers.output
    assert len(re.findall(r" up \((inbound|outbound)\)", peers.output)) == 3

    table = run("cluster", "status", str(net))
    assert table.exit_code == 0, table.output
    rows = table.output.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["node0", "node1", "node2", "node3"]
    assert all(" 3/3 " in row for row in rows), table.output

    stopped = run("cluster", "down", str(net))
    assert stopped.exit_code == 0, stopped.output
    assert stopped.output.count(": stopped (pid ") == 4
    for i in range(4):
        assert not (net / f"node{i}" / "node.pid").exists()
        log_lines = (net / f"node{i}" / "node.log").read_text().strip().splitlines()
        assert json.loads(log_lines[-1])["message"].startswith("stopped cleanly at height ")
    after = run("cluster", "status", str(net))
    assert after.exit_code == 1
    assert after.output.count("not running") == 4
    unreachable = run("status", "--home", str(net / "node0"))
    assert unreachable.exit_code == 1
    assert "no node answers at http://127.0.0.1:" in error_line(unreachable)


@pytest.mark.timeout(90)
def test_submit_refuses_bad_input_with_one_line(running: tuple[Path, int]) -> None:
    net, _ = running
    home = str(net / "node1")
    cases = [
        (["report", "phone:12", "--category", "fraud_call"], "not a valid phone number"),
        (["report", "gsm:+8613800138000", "--category", "fraud_call"], "unknown entity type"),
        (["report", "+8613800138000", "--category", "fraud_call"], "an entity is TYPE:VALUE"),
        (["report", "phone:+8613800138000", "--category", "arson"], "unknown category"),
        (
            ["report", "phone:+8613800138000", "--category", "other", "--attr", "X=1"],
            "--attr: an attribute key outside the schema is not one of the keys of category "
            "other: channel, confidence, first_seen, last_seen, source",
        ),
        (
            ["report", "phone:+8613800138000", "--category", "fraud_call", "--attr", "lure=prize"],
            "--attr: attribute lure is not one of the keys of category fraud_call: calls, "
            "channel, complaints, confidence, first_seen, last_seen, source, victims",
        ),
        (
            ["report", "phone:+8613800138000", "--category", "fraud_call", "--attr", "calls=007"],
            "--attr: attribute calls must be a whole number from 0 to 1000000",
        ),
        (
            [
                "report",
                "phone:+8613800138000",
                "--category",
                "money_mule",
                "--attr",
                "amount=48000.00 CNY",
            ],
            "--attr: attribute amount must be an amount above 0",
        ),
        (
            [
                "report",
                "phone:+8613800138000",
                "--category",
                "fraud_call",
                "--attr",
                "source=Li Wei of 12 Xinhua Rd",
            ],
            "--attr: attribute source must be one of "
            "victim_statement, customer_complaint, internal_monitoring, law_enforcement, "
            "partner_alert, automated_detection",
        ),
        (["link", "phone:+8613800138000", "phone:+86 138 0013 8000", "--relation", "uses"], "two"),
        (["link", "phone:+8613800138000", "ip:10.0.0.1", "--relation", "likes"], "relation"),
    ]
    for args, expected in cases:
        result = run("submit", "--home", home, *args)
        assert result.exit_code == 1, (args, result.output)
        assert expected in error_line(result), (args, result.output)
        assert "Xinhua" not in result.output and "007" not in result.output
    no_value = run("submit", "--home", home, "report", "phone:+8613800138000", "--category",
                   "other", "--attr", "Li Wei")  # fmt: skip
    assert no_value.exit_code == 2 and "expected KEY=VALUE" in no_value.output
    assert "Li Wei" not in no_value.output
    missing_category = run("submit", "--home", home, "report", "phone:+8613800138000")
    assert missing_category.exit_code == 2  # a usage error, from click
    no_member = run("submit", "--home", str(net), "sample")
    assert no_member.exit_code == 1
    assert "config.toml" in error_line(no_member)


def test_operator_commands_without_a_node_fail_with_one_line(tmp_path: Path) -> None:
    net, _ = make_net(tmp_path)
    status = run("status", "--home", str(net / "node0"))
    assert status.exit_code == 1
    assert "is it running?" in error_line(status)
    neither = run("status")
    assert neither.exit_code == 2
    assert "give --home DIR or --url URL" in neither.output
    missing = run("cluster", "up", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1
    assert "no such directory" in error_line(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_homes = run("cluster", "status", str(empty))
    assert no_homes.exit_code == 1
    assert "holds no member homes" in error_line(no_homes)
    (net / "node2" / "node.pid").write_text("not a pid\n")
    garbled = run("cluster", "status", str(net))
    assert garbled.exit_code == 1
    assert "node.pid: not a process id" in error_line(garbled)
    # A pid file naming a process that is gone is stale: removed, the node not running.
    (net / "node2" / "node.pid").write_text("999999999\n")
    stale = run("cluster", "status", str(net))
    assert stale.exit_code == 1
    assert stale.output.count("not running") == 4
    assert not (net / "node2" / "node.pid").exists()
    down = run("cluster", "down", str(net))
    assert down.exit_code == 0
    assert down.output.count("not running") == 4


@pytest.mark.timeout(60)
def test_cluster_up_reports_a_node_that_dies_at_start_up(tmp_path: Path) -> None:
    net, _ = make_net(tmp_path)
    (net / "node3" / "genesis.json").write_text("{not json")
    try:
        result = run("cluster", "up", str(net), "--timeout", "20")
        assert result.exit_code == 1
        assert "node3 exited during start-up; its log ends: Error: " in result.output
        assert "genesis.json" in result.output
        assert "node2: API ready" in result.output  # the others did start
    finally:
        processes.down(net, timeout_s=10)


def test_cluster_up_checks_every_config_before_starting_anything(tmp_path: Path) -> None:
    net, _ = make_net(tmp_path)
    config = net / "node3" / "config.toml"
    config.write_text(config.read_text().replace('level = "info"', 'level = "loud"'))
    result = run("cluster", "up", str(net))
    assert result.exit_code == 1
    assert "node3/config.toml: log.level: expected one of" in error_line(result)
    assert not any((net / f"node{i}" / "node.pid").exists() for i in range(4))


DEMO_MEMBERS = [
    ("police-0", 0), ("bank-1", 1), ("telecom-2", 2), ("bank-3", 3), ("telecom-4", 4),
    ("utility-5", 5),
]  # fmt: skip


def pseudonym_of(graph: dict[str, object], entity_type: str, relation: str) -> str:
    """The pseudonym of the ``entity_type`` entity at the source of a ``relation`` link."""
    edges = graph["edges"]
    assert isinstance(edges, list)
    name = relation.strip("->")
    for edge in edges:
        if edge["relation"] == name and edge["a"]["type"] == entity_type:
            return str(edge["a"]["pseudonym"])
    raise AssertionError(f"no {entity_type} {relation} link in the graph")


def eventually_ok(
    action: Callable[[], Result], good: Callable[[str], bool] = lambda _out: True
) -> str:
    """``action``'s output once it succeeds and ``good`` holds, within 20 s."""
    deadline = time.monotonic() + 20
    while True:
        result = action()
        if result.exit_code == 0 and good(result.output):
            return result.output
        if time.monotonic() > deadline:
            raise AssertionError(result.output)
        time.sleep(0.3)


@pytest.mark.timeout(180)
def test_demo_starts_a_consortium_shows_the_commits_and_uncovers_the_ring(tmp_path: Path) -> None:
    base = free_port_block(6, offsets=(0, 500))
    net = tmp_path / "demo"
    args = ["demo", str(net), "--txs", "7", "--p2p-port", str(base), "--api-port", str(base + 500)]
    try:
        first = run(*args)
        assert first.exit_code == 0, first.output
        assert "created a local consortium of 6 members" in first.output
        assert "7 committed in " in first.output
        assert "all 6 nodes hold the same block" in first.output
        assert f"crosstrace cluster down {net}" in first.output
        # It ends with police-0's console and its investigator's token.
        users = json.loads((net / "demo-users.json").read_text())
        tail = first.output.strip().splitlines()[-2:]
        assert tail == [
            f"  http://127.0.0.1:{base + 500}/console/",
            f"  token: {users['police-0']['investigator']}",
        ]
        rows = [line for line in first.output.splitlines() if line.startswith("http://")]
        assert len(rows) == 6
        assert len({row.split()[-1] for row in rows}) == 1  # one block hash
        # The investigation: six partners' records, a case approved by three, a trace
        # whose records come from three partners, and a graph that reaches both mules.
        assert "six partners report what each saw (18 records" in first.output
        assert "bank-3       approves: case active" in first.output
        # Each approver read the justification its own node received, checked against
        # the ledger, before approving; the purpose on the ledger is a category.
        assert "opens case RING-2026-001 on +86 170 2311 4587 for telecom_fraud" in first.output
        read = re.findall(r"(\S+) +reads the justification \(\d+ characters, from police-0\): "
                          r"it matches the commitment on the ledger", first.output)  # fmt: skip
        assert read == ["bank-1", "telecom-2", "bank-3"]
        trace = first.output.split("police-0 traces ")[1].split("the entities linked")[0]
        assert "6 records" in trace
        assert {"telecom-2", "police-0", "telecom-4", "utility-5"} <= set(trace.split())
        graph = first.output.split("the entities linked to it")[1]
        assert "entities (9):" in graph
        assert graph.count(" account ") >= 2
        assert "-transferred_to-> account" in graph
        dot = (net / "fraud-ring.dot").read_text()
        assert dot.startswith("digraph") and dot.count("->") == 10
        # Each partner kept the identifiers behind its records: the first mule, found in
        # the graph by its pseudonym only, is disclosed under the case once its
        # reporters' operators allow it (the default policy holds requests for them).
        assert first.output.count("their identifiers kept for disclosure") == 6
        found = run(
            "graph", "phone:+8617023114587", "--case", "RING-2026-001", "--depth", "3",
            "--format", "json", "--home", str(net / "node0"),
        )  # fmt: skip
        assert found.exit_code == 0, found.output
        mule = pseudonym_of(json.loads(found.output), "account", "-transferred_to->")
        asked = run("disclose", f"account:{mule}", "--case", "RING-2026-001", "--json",
                    "--home", str(net / "node0"))  # fmt: skip
        assert asked.exit_code == 0, asked.output
        request = json.loads(asked.output)
        for reporter in request["asked"]:
            home = net / f"node{[m for m, _ in DEMO_MEMBERS].index(reporter)}"
            eventually_ok(lambda h=home: run("disclosure", "allow", request["request_id"],
                                             "--home", str(h)))  # fmt: skip
        shown = eventually_ok(
            lambda: run("disclosure", "show", request["request_id"], "--home", str(net / "node0")),
            lambda out: "6217003320018845671" in out,
        )
        assert "allowed" in shown
        audit = run("audit", "--home", str(net / "node0"), "--case", "RING-2026-001")
        assert audit.exit_code == 0, audit.output
        # The demo's trace and two graph queries, and the graph query above.
        assert audit.output.count("police-0") == 4
        # Run again: the consortium exists and runs; the demo reuses it, its story and
        # its case.
        second = run(*args)
        assert second.exit_code == 0, second.output
        assert "created" not in second.output
        assert second.output.count("already running") == 6
        assert "the fraud-ring story is already on the ledger" in second.output
        assert "case RING-2026-001 is open and approved (3 approvals)" in second.output
    finally:
        processes.down(net, timeout_s=10)

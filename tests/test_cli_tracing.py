"""Cases, tracing queries and the audit trail from the command line, against a local
consortium of four real ``crosstrace start`` processes (``testnet`` + ``cluster up``):
the end-to-end path (a case opened, approved by k = 3 members, a trace, and its access
record on all four ledgers), every refusal as one line, and the output formats."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from cli_helpers import consortium_up
from click.testing import CliRunner, Result
from e2e_cluster import eventually

from cli import main
from node.client.http import ApiClient, ApiClientError, api_url_of_home

PHONE = "phone:+86 138 0013 8000"
ACCOUNT = "account:6222020200112233445"
DEVICE = "device:35-209900-176148-1"
WHY = "Fourteen complaints name this number.\nTwo victims, Li Na and Wang Fang, paid 48,000 CNY."
FREE_TEXT = "Caller 139.8765.4321 and Li Wei of 12 Xinhua Rd"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def error_line(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0].removeprefix("Error: ")


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with consortium_up(tmp_path_factory.mktemp("tracing")) as net:
        yield net


def home(net: Path, i: int) -> str:
    return str(net / f"node{i}")


def committed_on(net: Path, i: int, tx_id: str) -> bool:
    with ApiClient(api_url_of_home(net / f"node{i}"), timeout_s=5.0) as client:
        try:
            return bool(client.tx(tx_id)["status"] == "committed")
        except ApiClientError:
            return False


def open_and_approve(net: Path, case_id: str, *scope: str, expires_in: str = "1d") -> None:
    args = [f"--scope={s}" for s in scope]
    week_ago = iso(int(time.time() * 1000) - 7 * 86_400_000)
    opened = ok("case", "open", case_id, "--home", home(net, 0), "--purpose", "telecom_fraud",
                "--justification", WHY, *args, "--from", week_ago,
                "--expires-in", expires_in)  # fmt: skip
    assert f"case {case_id} opened at height " in opened
    for i in (1, 2, 3):
        ok("case", "approve", case_id, "--home", home(net, i))


@pytest.mark.timeout(120)
def test_a_case_approved_by_k_members_a_trace_and_its_access_record_on_all_four_ledgers(
    net: Path,
) -> None:
    ok("submit", "--home", home(net, 1), "report", PHONE, "--category", "fraud_call",
       "--attr", "complaints=14", "--attr", "source=customer_complaint")  # fmt: skip
    ok("submit", "--home", home(net, 2), "link", PHONE, ACCOUNT, "--relation", "uses")
    ok("submit", "--home", home(net, 3), "link", ACCOUNT, DEVICE, "--relation", "logged_in_from")

    week_ago = iso(int(time.time() * 1000) - 7 * 86_400_000)
    opened = ok("case", "open", "HZ-2026-0193", "--home", home(net, 0), "--purpose",
                "telecom_fraud", "--justification", WHY, f"--scope={PHONE}", f"--scope={ACCOUNT}",
                "--from", week_ago, "--expires-in", "30d")  # fmt: skip
    assert re.search(
        r"case HZ-2026-0193 opened at height \d+ \(tx [0-9a-f]{16}\); case "
        r"'HZ-2026-0193' is waiting for approval: 0 of 3 approvals",
        opened,
    )
    assert "once 3 members approve it: crosstrace case approve HZ-2026-0193" in opened

    # Before k approvals, a query is refused with the reason, as one line.
    pending = run("trace", PHONE, "--case", "HZ-2026-0193", "--home", home(net, 0))
    assert error_line(pending) == (
        "not_approved: case 'HZ-2026-0193' is waiting for approval: 0 of 3 approvals"
    )
    for i, n in ((1, 1), (2, 2), (3, 3)):
        approved = ok("case", "approve", "HZ-2026-0193", "--home", home(net, i))
        state = "is active until" if n == 3 else "is waiting for approval:"
        assert "case HZ-2026-0193 approved at height" in approved
        assert state in approved and f"{n} of 3 approvals" in approved

    answer = json.loads(
        ok("trace", PHONE, "--case", "HZ-2026-0193", "--home", home(net, 0), "--json")
    )
    assert [(r["kind"], r["member"]) for r in answer["records"]] == [
        ("report", "bank-1"),
        ("link", "telecom-2"),
    ]
    access = answer["access"]["tx_id"]
    for i in range(4):
        eventually(partial(committed_on, net, i, access), 15, f"access record on node{i}")

    text = ok("trace", PHONE, "--case", "HZ-2026-0193", "--home", home(net, 0), "--timing")
    assert f"trace of {PHONE} (phone " in text and "under case HZ-2026-0193" in text
    assert re.search(r"access recorded at height \d+ \(tx [0-9a-f]{16}\)  \[audit commit "
                     r"[0-9.]+ ms, query [0-9.]+ ms\]", text)  # fmt: skip
    assert re.search(
        r"\d+  \S+Z +bank-1 +report  fraud_call  complaints=14 source=customer_complaint", text
    ), text
    assert re.search(r"telecom-2 +link    phone [0-9a-f]{8} -uses-> account [0-9a-f]{8}", text)
    assert text.rstrip().endswith("2 records")

    audit = ok("audit", "--home", home(net, 3), "--case", "HZ-2026-0193")
    rows = [line for line in audit.splitlines() if " police-0 " in line]
    assert len(rows) == 2 and all(" trace " in row for row in rows)
    assert audit.rstrip().endswith("2 access records")


@pytest.mark.timeout(120)
def test_every_refusal_is_one_line_with_the_node_s_reason(net: Path) -> None:
    open_and_approve(net, "HZ-REF-1", PHONE)
    ok("case", "open", "HZ-REF-2", "--home", home(net, 0), "--purpose", "phishing",
       "--justification", WHY, f"--scope={PHONE}", "--from", "2026-01-01")  # fmt: skip
    node0 = ["--home", home(net, 0)]
    cases = [
        (["trace", PHONE, "--case", "NOPE"], "no_case: there is no case 'NOPE' on the ledger"),
        (["trace", PHONE, "--case", "HZ-REF-2"],
         "not_approved: case 'HZ-REF-2' is waiting for approval: 0 of 3 approvals"),
        (["graph", "phone:12", "--case", "HZ-REF-1"],
         "bad_identifier: entity: phone: the value is not a valid phone number"),
        (["history", "ab" * 32, "--case", "HZ-REF-1"],
         f"no_record: there is no transaction {'ab' * 8} on the ledger"),
        (["history", "xyz", "--case", "HZ-REF-1"], "bad_hex: tx_id must be 64 hex digits"),
        (["case", "show", "HZ-404"], "no_case: there is no case 'HZ-404' on the ledger"),
    ]  # fmt: skip
    for args, expected in cases:
        assert error_line(run(*args, *node0)) == expected, args
    out_of_scope = error_line(run("trace", DEVICE, "--case", "HZ-REF-1", *node0))
    assert re.fullmatch(
        r"out_of_scope: device [0-9a-f]{8} is not in the scope of case 'HZ-REF-1'", out_of_scope
    )
    bank = run("case", "open", "HZ-BANK", "--home", home(net, 1), "--purpose",
               "other_serious_crime", "--justification", WHY, f"--scope={PHONE}",
               "--from", "2026-01-01")  # fmt: skip
    assert error_line(bank) == (
        "forbidden_role: this node's member 'bank-1' does not hold the investigator role, "
        "which opening a case needs"
    )
    again = run("case", "approve", "HZ-REF-1", "--home", home(net, 2))
    assert re.fullmatch(
        r"already_approved: member 'telecom-2' already approved case 'HZ-REF-1' at height \d+",
        error_line(again),
    )
    # Expired: a case that lives a few seconds.
    expires = int(time.time() * 1000) + 4000
    ok("case", "open", "HZ-REF-3", "--home", home(net, 0), "--purpose", "identity_theft",
       "--justification", WHY, f"--scope={PHONE}", "--from", "2026-01-01",
       "--expires", iso(expires))  # fmt: skip
    for i in (1, 2, 3):
        ok("case", "approve", "HZ-REF-3", "--home", home(net, i))
    time.sleep(max(0.0, expires / 1000 - time.time()) + 0.1)
    expired = error_line(run("trace", PHONE, "--case", "HZ-REF-3", *node0))
    assert expired.startswith("expired: case 'HZ-REF-3' expired at 20")
    # Closed by the investigator: nothing more under it.
    closed = ok("case", "close", "HZ-REF-1", *node0)
    height = re.search(r"closed at height (\d+)", closed)
    assert height, closed
    assert error_line(run("trace", PHONE, "--case", "HZ-REF-1", *node0)) == (
        f"closed: case 'HZ-REF-1' was closed by 'police-0' at height {height[1]}"
    )
    # Mistakes the command itself catches are usage errors (exit 2) naming the option.
    bad_date = run("trace", PHONE, "--case", "HZ-REF-1", "--from", "yesterday", *node0)
    assert bad_date.exit_code == 2 and "--from" in bad_date.output
    both = run("case", "open", "X-1", *node0, "--purpose", "phishing", "--justification", WHY,
               f"--scope={PHONE}", "--from", "2026-01-01", "--expires", "2027-01-01",
               "--expires-in", "1d")  # fmt: skip
    assert both.exit_code == 2 and "give --expires or --expires-in, not both" in both.output
    # The old free-text purpose: refused before anything is sent, and not echoed back.
    free = run("case", "open", "X-2", *node0, "--purpose", FREE_TEXT, "--justification", WHY,
               f"--scope={PHONE}", "--from", "2026-01-01")  # fmt: skip
    assert free.exit_code == 2
    assert "Invalid value for '--purpose': must be one of telecom_fraud, " in free.output
    assert "the reasons go in --justification" in free.output
    assert "Li Wei" not in free.output and "8765" not in free.output
    for bad, reason in [(" ", "must not be empty"), ("x" * 2001, "at most 2000"),
                        ("a\x1bb", "control characters")]:  # fmt: skip
        refused = run("case", "open", "X-3", *node0, "--purpose", "phishing", "--justification",
                      bad, f"--scope={PHONE}", "--from", "2026-01-01")  # fmt: skip
        assert refused.exit_code == 2 and reason in refused.output, refused.output
    assert "X-2" not in ok("case", "list", *node0) and "X-3" not in ok("case", "list", *node0)


@pytest.mark.timeout(120)
def test_graph_history_cases_and_audit_outputs(net: Path, tmp_path: Path) -> None:
    submitted = ok("submit", "--home", home(net, 2), "report", DEVICE, "--category",
                   "suspicious_device")  # fmt: skip
    report_tx = submitted.split()[0]
    ok("submit", "--home", home(net, 1), "link", PHONE, ACCOUNT, "--relation", "uses")
    ok("submit", "--home", home(net, 3), "link", ACCOUNT, DEVICE, "--relation", "logged_in_from")
    open_and_approve(net, "HZ-OUT", PHONE, DEVICE)
    node1 = ["--home", home(net, 1)]
    # Queries under a case are its opener's (issue 14): police-0 asks, bank-1 is refused.
    node0 = ["--home", home(net, 0)]
    refused = error_line(run("graph", PHONE, "--case", "HZ-OUT", *node1))
    assert refused.startswith("not_your_case: case 'HZ-OUT' belongs to police-0"), refused

    text = ok("graph", PHONE, "--case", "HZ-OUT", "--depth", "2", *node0)
    assert f"graph of {PHONE} (phone " in text and "depth 2" in text
    assert re.search(r"depth 1  account [0-9a-f]{8}", text)
    assert re.search(r"depth 2  device [0-9a-f]{8}", text)
    assert re.search(r"account [0-9a-f]{8} -logged_in_from-> device [0-9a-f]{8}", text)

    dot_file = tmp_path / "ring.dot"
    wrote = ok("graph", PHONE, "--case", "HZ-OUT", "--format", "dot", "--out", str(dot_file),
               *node0)  # fmt: skip
    assert re.fullmatch(rf"wrote {re.escape(str(dot_file))}; access recorded at height \d+ "
                        r"\(tx [0-9a-f]{16}\)\n", wrote)  # fmt: skip
    dot = dot_file.read_text()
    assert dot.startswith("digraph trace {") and dot.rstrip().endswith("}")
    assert "uses" in dot and "logged_in_from" in dot
    as_json = json.loads(ok("graph", PHONE, "--case", "HZ-OUT", "--format", "json", *node0))
    assert {n["type"] for n in as_json["nodes"]} == {"phone", "account", "device"}

    history = ok("history", report_tx, "--case", "HZ-OUT", *node0)
    assert "record    report by telecom-2 at height" in history
    assert "about     report  suspicious_device, observed 20" in history
    assert re.search(r"links +link    account [0-9a-f]{8} -logged_in_from-> device", history)

    listed = ok("case", "list", *node1)
    assert re.search(r"HZ-OUT +active +3/3  police-0 +\S+Z +telecom_fraud", listed), listed
    assert "Wang Fang" not in listed
    shown = ok("case", "show", "HZ-OUT", *node1)
    assert "case      HZ-OUT: active" in shown and "approvals 3 of 3 needed" in shown
    assert "purpose   telecom_fraud" in shown
    # An approver's node holds the justification and checks it against the ledger.
    assert shown.rstrip().endswith(
        "justification  from police-0, matches the ledger:\n"
        "    Fourteen complaints name this number.\n"
        "    Two victims, Li Na and Wang Fang, paid 48,000 CNY."
    ), shown
    as_json = json.loads(ok("case", "show", "HZ-OUT", *node1, "--json"))
    assert as_json["justification"]["text"] == WHY
    assert as_json["justification"]["matches_commitment"] is True
    assert re.search(r"scope     phone [0-9a-f]{8}\n +device [0-9a-f]{8}", shown)
    assert json.loads(ok("case", "show", "HZ-OUT", *node1, "--json"))["state"] == "active"

    audit = json.loads(ok("audit", "--case", "HZ-OUT", "--member", "police-0", "--json", *node1))
    assert [r["query"] for r in audit["records"]] == ["graph", "graph", "graph", "history"]
    page = ok("audit", "--case", "HZ-OUT", "--limit", "2", *node1)
    more = re.search(r"more after --after (\d+:\d+)", page)
    assert more, page
    rest = ok("audit", "--case", "HZ-OUT", "--after", more[1], *node1)
    assert rest.rstrip().endswith("2 access records")
    only = ok("audit", "--case", "HZ-OUT", "--query", "history", *node1)
    assert only.rstrip().endswith("1 access record")

    for command in (["case"], ["case", "open"], ["trace"], ["graph"], ["history"], ["audit"]):
        assert "Example" in ok(*command, "--help"), command


@pytest.mark.timeout(60)
def test_tracing_commands_without_a_node_fail_with_one_line(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # discard: nothing answers HTTP there
    for args in (["trace", PHONE, "--case", "C-1"], ["case", "list"], ["audit"]):
        line = error_line(run(*args, "--url", url))
        assert line.startswith("no node answers at http://127.0.0.1:9"), line
    neither = run("audit")
    assert neither.exit_code == 2 and "give --home DIR or --url URL" in neither.output

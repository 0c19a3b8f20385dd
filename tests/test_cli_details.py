"""Private details from the command line, against real node processes: ``submit report
--detail ... --share-with ...`` and ``details TX``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cli_helpers import error_line, run
from click.testing import Result


def details_of(home: Path, tx: str, timeout_s: float = 15.0) -> Result:
    """``crosstrace details``, retried while the details are still on their way."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = run("details", "--home", str(home), tx)
        if result.exit_code == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


@pytest.mark.timeout(90)
def test_details_go_to_the_named_member_and_are_shown_there_only(
    running: tuple[Path, int],
) -> None:
    net, _api = running
    submitted = run(
        "submit",
        "--home",
        str(net / "node1"),
        "report",
        "phone:+86 138 0013 8000",
        "--category",
        "fraud_call",
        "--detail",
        "victim=Li Na, born 1961",
        "--detail",
        "note=called twice",
        "--share-with",
        "telecom-2",
    )
    assert submitted.exit_code == 0, submitted.output
    first, second = submitted.output.splitlines()
    match = re.fullmatch(r"([0-9a-f]{64})  committed at height \d+", first)
    assert match, submitted.output
    assert second == "  details kept off the ledger, shared with bank-1, telecom-2"
    tx = match.group(1)

    shown = details_of(net / "node2", tx)
    assert shown.exit_code == 0, shown.output
    assert "  victim: Li Na, born 1961" in shown.output
    assert "  note: called twice" in shown.output
    assert "matches  yes" in shown.output and "from     bank-1" in shown.output
    mine = details_of(net / "node1", tx)
    assert "shared   bank-1, telecom-2" in mine.output

    for home in ("node0", "node3"):
        refused = run("details", "--home", str(net / home), tx)
        assert refused.exit_code == 1
        assert "not_entitled" in error_line(refused)
    # The ledger has a commitment only.
    on_ledger = run("status", "--home", str(net / "node3"))
    assert on_ledger.exit_code == 0
    for home in ("node0", "node1", "node2", "node3"):
        assert b"Li Na" not in (net / home / "data" / "data.mdb").read_bytes()

    linked = run(
        "submit",
        "--home",
        str(net / "node2"),
        "link",
        "phone:+8613800138000",
        "account:DE89370400440532013000",
        "--relation",
        "uses",
        "--detail",
        "evidence=call records of 3 May",
    )
    assert linked.exit_code == 0, linked.output
    # By default the investigators get them: police-0 here.
    assert linked.output.splitlines()[1].endswith("shared with police-0, telecom-2")
    link_tx = linked.output.split()[0]
    assert "  evidence: call records of 3 May" in details_of(net / "node0", link_tx).output


@pytest.mark.timeout(90)
def test_sharing_mistakes_are_one_line_and_nothing_is_submitted(
    running: tuple[Path, int],
) -> None:
    net, _api = running
    home = str(net / "node1")
    base = ("submit", "--home", home, "report", "phone:+8613800138000", "--category", "phishing")
    unknown = run(*base, "--detail", "victim=Li Na", "--share-with", "police-0,bnak-1")
    line = error_line(unknown)
    assert "--share-with" in line and "'bnak-1'" in line and "bank-1" in line
    alone = run(*base, "--share-with", "police-0")
    assert "--share-with" in error_line(alone) and "--detail" in error_line(alone)
    no_value = run(*base, "--detail", "victim")
    assert "KEY=VALUE" in error_line(no_value)
    bad_key = run(*base, "--detail", "Victim Name=Li Na")
    assert "lower-case" in error_line(bad_key) and "Li Na" not in bad_key.output
    for result in (unknown, alone, no_value, bad_key):
        assert result.exit_code == 1
    status = run("status", "--home", home, "--json")
    assert '"height": 0' in status.output  # nothing reached the ledger

"""Disclosure from the command line, against a local consortium of four real
``crosstrace start`` processes (``testnet`` + ``cluster up``): two members report a
number (their ``submit`` hands the node the identifier), police opens and the others
approve a case, ``crosstrace disclose`` asks, the member with ``policy = "auto"``
answers at once, the queueing one's operator denies, ``disclosure show`` gives the
identifier, and neither a ledger file nor a log line of any member holds it."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import make_net, run
from e2e_cluster import eventually

from node.client.pseudonyms import author_for_home
from node.identifiers.normalize import normalize
from node.ops import processes

PHONE = "phone:+86 138 0013 8000"
OTHER = "phone:+86 139 0000 1111"
NUMBER = normalize("phone", "+86 138 0013 8000")


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    net, _api = make_net(tmp_path_factory.mktemp("disclosure"))
    config = net / "node1" / "config.toml"
    text = config.read_text()
    if "[disclosure]" in text:
        text = text.replace('policy = "queue"', 'policy = "auto"')
    else:
        text += '\n[disclosure]\npolicy = "auto"\n'
    config.write_text(text)
    try:
        ok("cluster", "up", str(net))
        yield net
    finally:
        processes.down(net, timeout_s=10)


def home(net: Path, i: int) -> str:
    return str(net / f"node{i}")


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


@pytest.mark.timeout(180)
def test_disclose_answered_denied_and_never_on_a_ledger_or_in_a_log(net: Path) -> None:
    for i in (1, 2):
        ok("submit", "--home", home(net, i), "report", PHONE, "--category", "fraud_call",
           "--attr", "complaints=3")  # fmt: skip
    ok("submit", "--home", home(net, 3), "report", OTHER, "--category", "fraud_call")
    week_ago = iso(int(time.time() * 1000) - 7 * 86_400_000)
    ok("case", "open", "HZ-7", "--home", home(net, 0), "--purpose", "telecom_fraud",
       "--justification", "complaints", f"--scope={PHONE}", "--from", week_ago,
       "--expires-in", "1d")  # fmt: skip
    for i in (1, 2, 3):
        ok("case", "approve", "HZ-7", "--home", home(net, i))
    # The pseudonyms as police-0's running node evaluates them with the others.
    author = author_for_home(net / "node0")
    pseudonym, other = (
        ref.pseudonym.hex()
        for ref in author.entities([("phone", "+86 138 0013 8000"), ("phone", "+86 139 0000 1111")])
    )

    refused = run("disclose", f"phone:{other}", "--case", "HZ-7", "--home", home(net, 0))
    assert refused.exit_code == 1
    assert "out_of_scope: the entity is neither in the scope of case 'HZ-7'" in refused.output

    asked = as_json("disclose", f"phone:{pseudonym}", "--case", "HZ-7", "--home", home(net, 0))
    request_id = asked["request_id"]
    assert sorted(asked["asked"]) == ["bank-1", "telecom-2"]  # bank-3 reported no such thing

    def held() -> bool:
        pending = as_json("disclosure", "pending", "--home", home(net, 2))
        return [d["request_id"] for d in pending["disclosures"]] == [request_id]

    eventually(held, 30, "the request in telecom-2's queue")
    ok("disclosure", "deny", request_id, "--reason", "no warrant", "--home", home(net, 2))

    def answered() -> bool:
        shown = as_json("disclosure", "show", request_id, "--home", home(net, 0))
        return len(shown["answers"]) == 2

    eventually(answered, 30, "both answers at police-0")
    text = ok("disclosure", "show", request_id, "--home", home(net, 0))
    assert f"bank-1: allowed  {NUMBER}" in text
    assert "telecom-2: denied  -  (no warrant)" in text

    processes.down(net, timeout_s=10)
    needles = (NUMBER.encode(), NUMBER.lstrip("+").encode())
    for i in range(4):
        for path in (net / f"node{i}" / "data").iterdir():
            if path.is_file():
                data = path.read_bytes()
                assert not any(n in data for n in needles), path
        log = (net / f"node{i}" / "node.log").read_bytes()
        assert not any(n in log for n in needles), f"node{i}/node.log"

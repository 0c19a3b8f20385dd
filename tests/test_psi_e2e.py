"""PSI end to end between the node processes of a local consortium (``testnet`` +
``cluster up``), over the real Noise channel, driven by the ``crosstrace psi`` commands:
the initiator's command prints the intersection, the answering node answers from the set
in its config, and both record the run on the ledger."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from cli import main
from node.client.http import ApiClient, api_url_of_home
from node.client.psi import PsiClient
from node.identifiers.normalize import normalize
from node.ledger.kinds import PsiRun
from node.ledger.transactions import decode_body, decode_tx
from node.ops import processes
from node.ops.ports import free_port_block
from node.ops.psi_setup import enable_answering, open_case

POLICE, BANK = 0, 1


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def phones(start: int, count: int) -> list[str]:
    return [
        f"+86 170 {i // 10000 % 10000:04d} {i % 10000:04d}" for i in range(start, start + count)
    ]


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[list[Path]]:
    base = free_port_block(4, offsets=(0, 500))
    net = tmp_path / "net"
    made = run("testnet", str(net), "--p2p-port", str(base), "--api-port", str(base + 500))
    assert made.exit_code == 0, made.output
    homes = [net / f"node{i}" for i in range(4)]
    theirs = phones(900, 150)  # 100 in common with ours below
    random.Random(1).shuffle(theirs)
    (homes[BANK] / "flagged.txt").write_text("\n".join(theirs) + "\n")
    enable_answering(homes[BANK], {"phone": Path("flagged.txt")})
    try:
        up = run("cluster", "up", str(net))
        assert up.exit_code == 0, up.output
        yield homes
    finally:
        processes.down(net, timeout_s=20)


@pytest.mark.timeout(180)
def test_two_member_processes_intersect_over_the_real_channel(
    consortium: list[Path], tmp_path: Path
) -> None:
    homes = consortium
    case_tx = open_case(homes, "HZ-PSI-1", opener=POLICE, approvers=[POLICE, BANK, 2])
    ours = phones(0, 1000)
    random.Random(2).shuffle(ours)
    given = tmp_path / "ours.txt"
    given.write_text("\n".join(ours) + "\n")
    out = tmp_path / "common.txt"
    bank_name = f"bank-{BANK}"

    done = run(
        "psi",
        "--home",
        str(homes[POLICE]),
        "--case",
        "HZ-PSI-1",
        "--with",
        bank_name,
        "--input",
        str(given),
        "--type",
        "phone",
        "--out",
        str(out),
    )
    assert done.exit_code == 0, done.output
    in_common = [p for p in ours if p in set(phones(900, 150))]
    assert out.read_text().splitlines() == [normalize("phone", p) for p in in_common]
    assert len(in_common) == 100
    assert "100 in common (ours 1,000, theirs 150); recorded at height" in done.output
    assert (out.stat().st_mode & 0o777) == 0o600

    # The answering node's view: the same run, completed, with its own result.
    with PsiClient(api_url_of_home(homes[BANK])) as bank:
        [answered] = bank.runs()["runs"]
        result = bank.run(answered["run_id"])
    assert (result["role"], result["state"], result["result_size"]) == (
        "responder",
        "completed",
        100,
    )
    assert sorted(result["intersection"]) == sorted(normalize("phone", p) for p in in_common)
    shown = run("psi-runs", "--home", str(homes[BANK]))
    assert shown.exit_code == 0 and "responder" in shown.output and "100 in common" in shown.output
    with ApiClient(api_url_of_home(homes[BANK])) as client:
        metrics = {
            sample.name: sample.value
            for family in text_string_to_metric_families(client.metrics())
            for sample in family.samples
        }
    assert metrics["crosstrace_psi_answered_total"] == 1
    assert metrics["crosstrace_psi_completed_total"] == 1

    # Both records on the ledger, on every node; no identifier in them.
    with PsiClient(api_url_of_home(homes[POLICE])) as police:
        asked = police.run(answered["run_id"])
    for record_of in (asked, result):
        with ApiClient(api_url_of_home(homes[3])) as other:
            tx = other.tx(record_of["record"]["tx_id"])
        body = decode_body(decode_tx(bytes.fromhex(tx["tx"])))
        assert isinstance(body, PsiRun)
        assert (body.initiator, body.responder, body.case_tx) == ("police-0", bank_name, case_tx)
        assert (body.initiator_size, body.responder_size, body.result_size) == (1000, 150, 100)
        assert body.outcome == "completed"

    # Bad input: every malformed line by number, nothing sent, nothing recorded.
    bad = tmp_path / "bad.txt"
    bad.write_text("+86 170 0000 0001\nnot a phone\n\n12\n+86 170 0000 0001\n")
    refused = run(
        "psi",
        "--home",
        str(homes[POLICE]),
        "--case",
        "HZ-PSI-1",
        "--with",
        bank_name,
        "--input",
        str(bad),
        "--type",
        "phone",
    )
    assert refused.exit_code == 1
    assert "2 lines are not phone identifiers: line 2: " in refused.output
    assert "; line 4: " in refused.output and "not a phone" not in refused.output
    with PsiClient(api_url_of_home(homes[POLICE])) as police:
        assert len(police.runs()["runs"]) == 1


@pytest.mark.timeout(180)
def test_a_member_the_case_does_not_name_is_refused(consortium: list[Path], tmp_path: Path) -> None:
    open_case(consortium, "HZ-PSI-2", opener=POLICE, approvers=[POLICE, 2, 3])
    given = tmp_path / "ours.txt"
    given.write_text("+86 170 0000 0001\n")
    refused = run(
        "psi",
        "--home",
        str(consortium[POLICE]),
        "--case",
        "HZ-PSI-2",
        "--with",
        f"bank-{BANK}",
        "--input",
        str(given),
        "--type",
        "phone",
    )
    assert refused.exit_code == 1
    assert "not_named: case 'HZ-PSI-2' does not name member 'bank-1'" in refused.output

"""``crosstrace start`` as real processes on 127.0.0.1: start-up checks, the mesh, and a
clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import token_headers
from click.testing import CliRunner
from metrics_helpers import sample_value

from cli import main

EXE = str(Path(sys.executable).parent / "crosstrace")


def make_testnet(tmp_path: Path) -> tuple[Path, int]:
    base = 20000 + random.Random(f"{os.getpid()}/{tmp_path}").randrange(0, 19000)
    result = CliRunner().invoke(
        main,
        ["testnet", str(tmp_path / "net"), "--p2p-port", str(base), "--api-port", str(base + 500)],
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "net", base + 500


def signed_reports(home: Path, count: int) -> list[str]:
    from node.ledger.kinds import Report
    from node.ledger.transactions import encode_tx, make_tx
    from node.setup.genesis import load_genesis
    from node.setup.keys import load_key
    from node.testing.dealer import TEST_KEY, keyed_ref

    genesis = load_genesis(home / "genesis.json")
    signer = load_key(home / "node_key.json", None).signer()
    member = next(m for m in genesis.members if m.public_key == signer.public_key)
    now = int(time.time() * 1000)
    out = []
    for i in range(count):
        body = Report(
            subject=keyed_ref(TEST_KEY, "phone", f"+86 138 0013 {i:04d}"),
            category="fraud_call",
            attributes=(),
            case_id=None,
            observed_ms=now - 1000,
            details_commitment=None,
        )
        tx = make_tx(signer, genesis.chain_id, member.name, "report", body, i + 1, now)
        out.append(encode_tx(tx).hex())
    return out


def wait_for(path: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{content}")


@pytest.mark.timeout(90)
def test_four_daemons_commit_through_the_api_and_stop_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    import httpx

    net, api_base = make_testnet(tmp_path)
    procs = []
    logs = []
    try:
        for i in range(4):
            log = tmp_path / f"node{i}.log"
            logs.append(log)
            with log.open("w") as err:
                procs.append(
                    subprocess.Popen(
                        [EXE, "start", "--home", str(net / f"node{i}")],
                        stderr=err,
                        stdout=subprocess.DEVNULL,
                    )
                )
        for i, log in enumerate(logs):
            wait_for(log, "started: height 0")
            for j in range(4):
                if j != i:
                    wait_for(log, f"member {i}: connected to member {j}")
        txs = signed_reports(net / "node1", 50)
        with httpx.Client(timeout=30) as client:
            answer = client.post(
                f"http://127.0.0.1:{api_base}/txs?wait=true&timeout=20",
                json={"txs": txs},
                headers=token_headers(net / "node0"),
            )
            assert answer.status_code == 200, answer.text
            heights = []
            for i in range(4):
                for _ in range(200):
                    status = client.get(
                        f"http://127.0.0.1:{api_base + i}/status",
                        headers=token_headers(net / f"node{i}"),
                    ).json()
                    if status["height"] >= 1:
                        break
                    time.sleep(0.05)
                heights.append(status["height"])
                assert all(p["connected"] for p in status["peers"]), status
            metrics = client.get(f"http://127.0.0.1:{api_base}/metrics").text
            assert sample_value(metrics, "crosstrace_txs_committed_total") == 50
        assert min(heights) >= 1
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=20) == 0
        tips = set()
        for i, log in enumerate(logs):
            lines = [json.loads(line) for line in log.read_text().splitlines()]
            assert lines[-1]["message"].startswith("stopped cleanly at height ")
            assert all(line["level"] in {"info", "warning"} for line in lines)
            tips.add(lines[-1]["message"])
            verified = CliRunner().invoke(
                main,
                [
                    "verify-ledger",
                    str(net / f"node{i}" / "data"),
                    "--genesis",
                    str(net / f"node{i}" / "genesis.json"),
                    "-q",
                ],
            )
            assert verified.exit_code == 0, verified.output
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def start_once(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "start", "--home", str(home)], capture_output=True, text=True, timeout=30
    )


def test_start_up_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    net, _ = make_testnet(tmp_path)
    home = net / "node1"
    config = (home / "config.toml").read_text()

    (home / "config.toml").write_text(config.replace('name = "bank-1"', 'name = "nobody"'))
    proc = start_once(home)
    assert proc.returncode == 1
    assert "node.name 'nobody' is not a member of chain 'local'" in proc.stderr
    assert "Traceback" not in proc.stderr

    (home / "config.toml").write_text(config)
    (home / "node_key.json").write_bytes((net / "node2" / "node_key.json").read_bytes())
    proc = start_once(home)
    assert proc.returncode == 1 and "not the key the genesis lists" in proc.stderr

    (home / "config.toml").write_text(config + "\n[p2p]\nlisten = 'nowhere'\n")
    proc = start_once(home)
    assert proc.returncode == 1 and "config.toml" in proc.stderr

    (home / "config.toml").write_text(config)
    (net / "node1" / "genesis.json").write_text("{")
    proc = start_once(home)
    assert proc.returncode == 1 and "genesis.json" in proc.stderr
    assert "Traceback" not in proc.stderr

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
from click.testing import CliRunner

from cli import main

EXE = str(Path(sys.executable).parent / "crosstrace")


def make_testnet(tmp_path: Path) -> Path:
    base = 20000 + random.Random(os.getpid()).randrange(0, 20000)
    result = CliRunner().invoke(
        main, ["testnet", str(tmp_path / "net"), "--p2p-port", str(base), "--api-port", "9"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "net"


def wait_for(path: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{content}")


@pytest.mark.timeout(90)
def test_four_daemons_connect_and_stop_cleanly_on_sigterm(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
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
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=20) == 0
        for log in logs:
            lines = [json.loads(line) for line in log.read_text().splitlines()]
            assert lines[-1]["message"] == "stopped cleanly at height 0"
            assert all(line["level"] in {"info", "warning"} for line in lines)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def start_once(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "start", "--home", str(home)], capture_output=True, text=True, timeout=30
    )


def test_start_up_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    net = make_testnet(tmp_path)
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

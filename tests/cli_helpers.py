"""Driving the ``crosstrace`` command in process, and a local consortium of real node
processes made with ``testnet`` for the command tests."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from cli import main
from node.ops.ports import free_port_block


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def make_net(tmp_path: Path) -> tuple[Path, int]:
    base = free_port_block(4, offsets=(0, 500))
    net = tmp_path / "net"
    result = run("testnet", str(net), "--p2p-port", str(base), "--api-port", str(base + 500))
    assert result.exit_code == 0, result.output
    return net, base + 500


def error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]

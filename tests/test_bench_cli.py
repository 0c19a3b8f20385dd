"""``crosstrace bench`` runs end to end on a short clock and prints every figure; its
options are checked. (The figures themselves are measured by running it, not here.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main


@pytest.mark.timeout(120)
def test_a_short_bench_commits_and_prints_every_figure(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--duration",
            "3",
            "--rate",
            "200",
            "--batch",
            "20",
            "--dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"Ed25519 verification here: [\d,]+/s per core; bound [\d,]+ tx/s", out)
    phases = re.findall(
        r"  (max|rate): .*; committed ([\d,]+) tx/s \(([\d,]+) in [\d.]+ s\) = \d+% of", out
    )
    assert [p[0] for p in phases] == ["max", "rate"], out
    assert all(int(p[2].replace(",", "")) > 0 for p in phases), out
    assert len(re.findall(r"commit latency p50 \d+ ms, p95 \d+ ms, p99 \d+ ms", out)) == 2
    assert re.search(r"view changes \d+; refused 0,", out)
    assert len(re.findall(r"driver: [\d.]+ CPU-s, requests started late by p50 \d+ ms", out)) == 2
    assert re.search(r"nodes: peak RSS (\d+ / ){3}\d+ MiB", out), out
    # The consortium was kept where asked, and stopped.
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [f"node{i}" for i in range(4)]
    assert not any((tmp_path / "c" / f"node{i}" / "node.pid").exists() for i in range(4))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "3"], "must be between 4 and 16"),
        (["--duration", "0"], "must be between 1 and 3600"),
        (["--rate", "0"], "must be between 1 and 100000"),
        (["--batch", "5000"], "must be between 1 and 1000"),
        (["--phase", "fast"], "'fast' is not one of"),
    ],
)
def test_bench_options_are_checked(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bench_refuses_an_existing_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "exists; give a new directory" in result.output

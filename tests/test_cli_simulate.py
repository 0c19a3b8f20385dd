"""``crosstrace simulate`` as operators and testers use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["simulate", *args])
    return result.exit_code, result.output


def test_same_seed_prints_the_same_summary_and_exits_zero() -> None:
    first = run("--nodes", "4", "--blocks", "60", "--seed", "7")
    second = run("--nodes", "4", "--blocks", "60", "--seed", "7")
    assert first == second
    code, out = first
    assert code == 0
    assert "committed blocks: 60 on every honest replica" in out
    assert "messages sent:" in out and "Prepare" in out and "Commit" in out
    assert "commit latency:   p50" in out
    assert out.rstrip().endswith("result: safe")


def test_equivocating_byzantine_members_stay_safe_and_live() -> None:
    code, out = run("--nodes", "7", "--byzantine", "2", "--fault", "equivocate", "--blocks", "30")
    assert code == 0, out
    assert "view changes:     " in out and "(highest view 0)" not in out
    assert "result: safe" in out


def test_f_plus_one_twins_exit_non_zero_with_a_trace() -> None:
    code, out = run("--nodes", "4", "--byzantine", "2", "--fault", "twins")
    assert code == 1
    assert "VIOLATION of agreement" in out
    assert "replay with --seed 0" in out
    assert "<- n" in out  # the trace of deliveries
    assert out.rstrip().endswith("result: violated")


def test_bad_arguments_are_one_clear_line_and_exit_two() -> None:
    code, out = run("--nodes", "3")
    assert code == 2 and "a consortium has 4 to 128 members" in out
    code, out = run("--drop", "1.5")
    assert code == 2 and "must be in [0, 1)" in out
    code, out = run("--nodes", "4", "--byzantine", "4")
    assert code == 2 and "Byzantine count must be below" in out
    code, out = run("--fault", "gremlins")
    assert code == 2 and "gremlins" in out


def test_help_has_an_example() -> None:
    code, out = run("--help")
    assert code == 0 and "crosstrace simulate --nodes 4 --blocks 200 --seed 7" in out


def test_the_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "crosstrace"
    proc = subprocess.run(
        [str(exe), "simulate", "--nodes", "4", "--blocks", "5", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "result: safe" in proc.stdout


def test_explore_runs_random_schedules_and_schedule_replays_one() -> None:
    code, out = run("--explore", "3", "--seed", "40")
    assert code == 0, out
    assert "explored 3 schedules from 40: 0 violated an invariant" in out
    first = run("--schedule", "41")
    assert first == run("--schedule", "41")
    assert first[0] == 0 and "result: safe" in first[1]

"""``crosstrace bench`` runs end to end on a short clock and prints every figure of every
phase, with the delaying link proxy too; its options are checked; the driver counts
refusals and honours ``Retry-After``. (The figures themselves are measured by running
it, not here.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from node.ops.bench_drive import account
from node.ops.bench_http import Answer
from node.ops.bench_report import PhaseResult

N = r"[\d,]+"  # a figure as printed
MS = r"(?:[\d,]+|-)"  # a latency, or "-" when nothing was accepted
FOUR = r"(?:[\d,]+ / ){3}[\d,]+"  # one figure per node


def _rows(out: str, phase: str) -> str:
    """The table printed for ``phase``."""
    match = re.search(rf"^  {phase}:\n((?:    .*\n)+)", out, re.M)
    assert match, f"no table for {phase}:\n{out}"
    return match.group(1)


@pytest.mark.timeout(300)
def test_a_short_bench_runs_every_phase_and_prints_every_figure(tmp_path: Path) -> None:
    figures = tmp_path / "bench.json"
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
            "--json",
            str(figures),
            "--dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(rf"Ed25519 verification here: {N}/s per core; bound {N} tx/s", out)
    assert re.findall(r"^phase (\w+) ", out, re.M) == ["max", "rate", "overload"], out
    # Overload offers twice what max committed in this run.
    max_rate = int(
        re.search(rf"committed\s+({N}) tx/s", _rows(out, "max")).group(1).replace(",", "")
    )  # type: ignore[union-attr]
    overload = re.search(rf"^phase overload \(({N}) tx/s offered\)", out, re.M)
    assert overload, out
    assert abs(int(overload.group(1).replace(",", "")) - 2 * max_rate) <= 2, out
    assert max_rate > 0, out  # the consortium works; the other figures are only present
    for phase in ("max", "rate", "overload"):
        rows = _rows(out, phase)
        assert re.search(rf"committed\s+{N} tx/s \({N} in the window\) = \d+% of the bound", rows)
        assert re.search(rf"accepted: latency p50 / p95 / p99\s+{MS} / {MS} / {MS} ms", rows), rows
        assert re.search(rf"refused with 429\s+[\d.]+% \({N} of {N} sent; {N} Retry-After", rows)
        assert re.search(r"view changes\s+(\d+ / ){3}\d+ \(per node\)", rows), rows
        assert re.search(rf"peak RSS per node\s+{FOUR} MiB", rows), rows
        assert re.search(rf"CPU per committed tx per node\s+{FOUR} us", rows), rows
        assert re.search(r"driver\s+[\d.]+ CPU-s; requests started late by p50 \d+ ms", rows)
    goals = re.findall(r"^  (.*): (met|not met|not measured)(?: \[.*\])?$", out, re.M)
    assert [g[0].split(":")[0] for g in goals] == [
        "max",
        "rate",
        "overload",
        "peak RSS per node, every phase <= 200 MB",
        "CPU per committed tx per node <= 150 us",
    ], out
    assert all(verdict != "not measured" for _, verdict in goals), out
    doc = json.loads(figures.read_text())
    assert doc["bound_tx_per_s"] > 0 and len(doc["phases"]) == 3 and len(doc["goals"]) == 5
    for phase in doc["phases"]:
        assert set(phase["latency_ms"]) == {"p50", "p95", "p99"}
        assert len(phase["peak_rss_mib"]) == len(phase["cpu_us_per_tx"]) == 4
        for key in ("tx_per_s", "share_of_bound", "share_429", "view_changes", "send_lag_ms"):
            assert key in phase
    # The consortium was kept where asked, and stopped.
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [f"node{i}" for i in range(4)]
    assert not any((tmp_path / "c" / f"node{i}" / "node.pid").exists() for i in range(4))


@pytest.mark.timeout(240)
def test_a_bench_with_delayed_links_prints_the_round_trip(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["bench", "--link-delay", "20", "--phase", "rate", "--rate", "100", "--duration", "2"],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    trip = re.search(
        r"delaying 20 ms each way: round trip through one measured at ([\d.]+) ms", out
    )
    assert trip and 40 <= float(trip.group(1)) < 200, out
    rows = _rows(out, "rate")
    assert re.search(rf"committed\s+{N} tx/s \({N} in the window\)", rows), out
    assert re.search(rf"p50 / p95 / p99\s+{MS} / {MS} / {MS} ms", rows), rows
    assert re.search(
        r"^  link delay: rate p50 <= 4 round trips: .* = [\d.]+ round trips of", out, re.M
    )


def test_the_driver_counts_refusals_and_returns_retry_after() -> None:
    result = PhaseResult("rate", 100.0)
    rows = [
        {"accepted": True, "committed": True},
        {"accepted": True, "committed": False},
        {"accepted": False, "code": "full"},
    ]
    assert account(Answer(202, json.dumps({"results": rows}).encode()), 3, 50.0, result) is None
    assert result.latencies_ms == [50.0] and result.waited_ms == [50.0]
    assert result.refused_other == {"full": 1}
    # A 429 with its header: every transaction refused, the wait handed back.
    busy = json.dumps({"error": "overloaded", "retry_after": 2}).encode()
    assert account(Answer(429, busy, 2.0), 5, 10.0, result) == 2.0
    # A 429 that lists results: only the rows not accepted count as refused.
    listed = json.dumps({"error": "overloaded", "results": rows[:1] + rows[2:]}).encode()
    assert account(Answer(429, listed, None), 2, 10.0, result) == 1.0
    assert result.refused_429 == 6
    assert account(Answer(503, b'{"error": "busy"}', 1.0), 4, 1.0, result) == 1.0
    assert result.refused_busy == 4
    assert account(Answer(401, b'{"error": "unauthenticated"}'), 2, 1.0, result) is None
    assert result.refused_other["401 unauthenticated"] == 2
    # Every count reaches the JSON file as it is.
    figures = json.loads(json.dumps(result.figures()))
    assert figures["refused_other"] == {"full": 1, "401 unauthenticated": 2}
    assert (figures["refused_429"], figures["refused_busy"], figures["accepted"]) == (6, 4, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "3"], "must be between 4 and 16"),
        (["--duration", "0"], "must be between 1 and 3600"),
        (["--rate", "0"], "must be between 1 and 100000"),
        (["--overload-rate", "0"], "must be between 1 and 100000"),
        (["--batch", "5000"], "must be between 1 and 1000"),
        (["--link-delay", "-1"], "must be between 0 and 10000 ms"),
        (["--phase", "fast"], "'fast' is not one of"),
        (["--phase", "overload"], "overload without max needs --overload-rate"),
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

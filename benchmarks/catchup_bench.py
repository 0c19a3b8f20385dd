"""Catch-up benchmark: a member that missed a long chain reaches the tip by itself.

Issue 4 asks that "a node that was down for 100,000 blocks catches up without operator
action". This builds a consortium of four members on 127.0.0.1, writes ``--blocks``
certified blocks (1 to 5 signed report transactions each) into the stores of members
0-2 (``node.testing.chain_fixture``: the certificates and the stable checkpoint are signed with
the members' real keys, not produced by running consensus block by block), starts all
four as real ``crosstrace start`` processes with member 3's store empty, and measures
how long member 3 takes to hold the whole chain. Then it checks that the consortium still
commits (through member 3's API, and again with member 2 killed, which needs member 3's
votes) and that the members' blocks are equal at a sample of heights and at the tip.

    python benchmarks/catchup_bench.py                    # 100,000 blocks
    python benchmarks/catchup_bench.py --blocks 10000     # quicker
    python benchmarks/catchup_bench.py --profile out.prof # member 3 under cProfile
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from node.testing.chain_fixture import CatchupScenario, ScenarioError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100_000, help="chain length")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated chain")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the whole run")
    parser.add_argument(
        "--profile", type=Path, help="run member 3 under cProfile and write the stats here"
    )
    parser.add_argument("--keep", action="store_true", help="keep the consortium's directory")
    args = parser.parse_args()
    # SIGTERM (or SIGINT, which a shell ignores in background jobs) must still run the
    # finally below, or the four nodes outlive the benchmark.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)

    work = Path(tempfile.mkdtemp(prefix="catchup-bench-"))
    began = time.perf_counter()

    def report(line: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f} s] {line}", flush=True)

    profile = args.profile.absolute() if args.profile is not None else None
    scenario = CatchupScenario(
        work / "net", args.blocks, seed=args.seed, poll_s=0.25, profile=profile, report=report
    )
    try:
        result = scenario.run(args.timeout)
    except ScenarioError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        scenario.stop_all()
        if args.keep:
            print(f"consortium kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    mib = 2**20
    rows = [
        ("blocks", f"{result.blocks:,}"),
        ("transactions", f"{result.txs:,}"),
        ("generation", f"{result.generation_s:.1f} s"),
        ("member 3 API up after", f"{result.api_ready_s:.1f} s"),
        ("catch-up (spawn to tip)", f"{result.catchup_s:.1f} s"),
        ("catch-up rate", f"{result.blocks / result.catchup_s:,.0f} blocks/s"),
        ("peak RSS, member 3", f"{result.peak_rss_bytes / mib:.0f} MiB"),
        ("anonymous RSS, member 3 at tip", f"{result.anon_rss_bytes / mib:.0f} MiB"),
        ("peak RSS, members 0-2 (max)", f"{result.server_peak_rss_bytes / mib:.0f} MiB"),
        ("member 3 stable checkpoint at tip", f"{result.stable_at_tip:,}"),
        (
            "commit without member 2",
            f"{result.without_member_2_s:.1f} s (view {result.view_after})",
        ),
        ("heights compared", f"{len(result.compared_heights)} (tip {result.final_height:,})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if profile is not None:
        print(f"profile of member 3: {profile} (python -m pstats {profile})")
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

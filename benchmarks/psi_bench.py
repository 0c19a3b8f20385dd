"""PSI benchmark: two members of a local consortium intersect 100,000 identifiers each
(10% in common) as separate node processes over the real Noise channel; then the
``openmined-psi`` package (PyPI) on the same sets, in this process, for comparison.

Ours is timed as an operator sees it: ``crosstrace psi`` as a subprocess, from its start
(reading the file, the node normalising it) to the intersection written, the run's
ledger records committed on both sides included. The answering member's set is given
to its node beforehand (``PUT /psi/answer-sets``), which normalises it and hashes it to
the group once; that load is timed and printed apart. Every run still draws fresh
secret scalars. The four nodes run as ``crosstrace start`` processes (a quorum needs
three of four for the records); openmined-psi runs after they are stopped.

    python benchmarks/psi_bench.py                  # 100,000 x 100,000
    python benchmarks/psi_bench.py --size 20000     # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from node.client.http import api_url_of_home
from node.client.psi import PsiClient
from node.identifiers.normalize import normalize
from node.ops import processes
from node.ops.ports import free_port_block
from node.ops.psi_setup import enable_answering, open_case
from node.setup.provision import make_testnet

GOAL_S = 30.0
OPENMINED = "openmined.psi"  # the PyPI distribution; it installs private_set_intersection


def phones(start: int, count: int) -> list[str]:
    return [
        f"+86 170 {i // 10000 % 10000:04d} {i % 10000:04d}" for i in range(start, start + count)
    ]


def session_cpu_s(leaders: list[int]) -> float:
    """CPU seconds used so far by every process in the sessions of ``leaders`` (each
    node runs in a session of its own, with its PSI worker processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) in leaders:  # the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="identifiers per member")
    parser.add_argument("--overlap", type=float, default=0.10, help="share in common")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="the answering node does not prepare the next run ([psi] prepare = false)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the consortium's directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    common = int(args.size * args.overlap)
    ours = phones(0, args.size)
    theirs = phones(args.size - common, args.size)
    rng = random.Random(1)
    rng.shuffle(ours)
    rng.shuffle(theirs)
    expected = {normalize("phone", p) for p in set(ours) & set(theirs)}

    work = Path(tempfile.mkdtemp(prefix="psi-bench-"))
    net = work / "net"
    began = time.perf_counter()

    def report(line: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {line}", flush=True)

    figures: dict[str, Any] = {}
    try:
        base = free_port_block(4, offsets=(0, 500))
        _, homes = make_testnet(net, 4, p2p_base_port=base, api_base_port=base + 500)
        paths = [h.path for h in homes]
        enable_answering(paths[1], prepare=not args.cold)
        (work / "ours.txt").write_text("\n".join(ours) + "\n")
        theirs_bytes = ("\n".join(theirs) + "\n").encode()
        processes.up(net)
        report("4 node processes up")
        open_case(paths, "BENCH-PSI", opener=0, approvers=[0, 1, 2])
        report("case BENCH-PSI active, naming police-0 and bank-1")
        with PsiClient(api_url_of_home(paths[1])) as bank:
            t0 = time.perf_counter()
            bank.set_answer_set("phone", theirs_bytes)
            figures["answer_load_s"] = time.perf_counter() - t0
            report(f"bank-1's answer set loaded: {figures['answer_load_s']:.1f} s")
            figures["prepare_s"] = None
            if not args.cold:
                while not bank.runs()["answer_sets"]["phone"]["prepared"]:
                    time.sleep(0.1)
                figures["prepare_s"] = time.perf_counter() - t0 - figures["answer_load_s"]
                report(f"bank-1's next run prepared: {figures['prepare_s']:.1f} s")
        leaders = [pid for node in processes.member_homes(net) if (pid := node.pid())]
        figures["load_before"] = load()
        cpu_before = session_cpu_s(leaders)
        figures["ours"] = run_ours(paths[0], work, expected, report, figures)
        figures["nodes_cpu_s"] = session_cpu_s(leaders) - cpu_before
        figures["load_after"] = load()
    finally:
        processes.down(net, timeout_s=30)
        report("nodes stopped")
    figures["openmined"] = run_openmined(ours, theirs, expected, report)
    print_summary(args.size, common, figures)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    ok = figures["ours"]["correct"] and figures["openmined"].get("correct", True)
    return 0 if ok else 1


def run_ours(
    home: Path, work: Path, expected: set[str], report: Any, figures: dict[str, Any]
) -> dict[str, Any]:
    out = work / "common.txt"
    command = [
        str(Path(sys.executable).parent / "crosstrace"),
        "psi",
        "--home",
        str(home),
        "--case",
        "BENCH-PSI",
        "--with",
        "bank-1",
        "--input",
        str(work / "ours.txt"),
        "--type",
        "phone",
        "--out",
        str(out),
    ]
    start_cpu = os.times()
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"crosstrace psi failed: {done.stderr.strip()}")
    for line in done.stderr.strip().splitlines():
        report(f"crosstrace psi: {line}")
    report(f"crosstrace psi: {wall:.1f} s")
    found = set(out.read_text().splitlines())
    with PsiClient(api_url_of_home(home)) as police:
        [run] = police.runs()["runs"]
    children = os.times()
    return {
        "wall_s": wall,
        "found": len(found),
        "correct": found == expected,
        "timings": run["timings_s"],
        "cli_cpu_s": (children.children_user + children.children_system)
        - (start_cpu.children_user + start_cpu.children_system),
    }


def run_openmined(
    ours: list[str], theirs: list[str], expected: set[str], report: Any
) -> dict[str, Any]:
    try:
        import private_set_intersection.python as psi  # type: ignore[import-not-found]
    except ImportError as exc:
        reason = (
            f"not measured: {OPENMINED} is not installed in this environment ({exc}); "
            "`python -m pip install --group bench` installs it where PyPI has a wheel for "
            "this interpreter and platform (it has openmined_psi-2.0.6-cp311-cp311-"
            "manylinux_2_35_x86_64.whl, for CPython 3.11 on x86-64 Linux with glibc 2.35+)"
        )
        report(f"openmined-psi {reason}")
        return {"skipped": reason}
    client_items = [normalize("phone", p) for p in ours]
    server_items = [normalize("phone", p) for p in theirs]
    t0 = time.perf_counter()
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
    t1 = time.perf_counter()
    client = psi.client.CreateWithNewKey(True)
    request = client.CreateRequest(client_items)
    t2 = time.perf_counter()
    response = server.ProcessRequest(request)
    t3 = time.perf_counter()
    found = {client_items[i] for i in client.GetIntersection(setup, response)}
    t4 = time.perf_counter()
    report(f"openmined-psi {psi.__version__}: {t4 - t0:.1f} s in one process")
    return {
        "version": psi.__version__,
        "setup_s": t1 - t0,
        "request_s": t2 - t1,
        "process_s": t3 - t2,
        "intersect_s": t4 - t3,
        "wall_s": t4 - t0,
        "found": len(found),
        "correct": found == expected,
    }


def print_summary(size: int, common: int, f: dict[str, Any]) -> None:
    ours, om = f["ours"], f["openmined"]
    print()
    print(f"PSI of {size:,} x {size:,} phone numbers, {common:,} in common; {f['load_before']}")
    print(
        f"  crosstrace (2 member processes, Noise over TCP, Ed25519 group, records committed): "
        f"{ours['wall_s']:.1f} s wall, {ours['found']:,} found, "
        f"{'correct' if ours['correct'] else 'WRONG'}; goal {GOAL_S:g} s: "
        f"{'met' if ours['wall_s'] <= GOAL_S else 'not met'}"
    )
    timings = ", ".join(f"{k} {v:.1f}" for k, v in ours["timings"].items())
    print(f"    the initiating node's run, seconds from its start: {timings}")
    print(
        f"    CPU used by the four node processes and their workers during it: "
        f"{f['nodes_cpu_s']:.1f} s (the command itself: {ours['cli_cpu_s']:.1f} s)"
    )
    print(f"    the answering node's set load (normalise + hash, once): {f['answer_load_s']:.1f} s")
    if f["prepare_s"] is None:
        print("    the answering node blinded its set during the run (--cold: prepare = false)")
    else:
        print(
            f"    the answering node blinded its set for this run before it, while idle "
            f"(its own fresh scalar): {f['prepare_s']:.1f} s"
        )
    print(f"    after the run: {f['load_after']}")
    if "skipped" in om:
        print(f"  openmined-psi: {om['skipped']}")
    else:
        print(
            f"  openmined-psi {om['version']} (P-256, one process, no network, raw set): "
            f"{om['wall_s']:.1f} s wall (server setup {om['setup_s']:.1f}, client request "
            f"{om['request_s']:.1f}, server response {om['process_s']:.1f}, intersection "
            f"{om['intersect_s']:.1f}), {om['found']:,} found, "
            f"{'correct' if om['correct'] else 'WRONG'}"
        )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

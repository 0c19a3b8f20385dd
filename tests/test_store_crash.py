"""Crash safety with real processes: SIGKILL a writer at random moments, many times.

The child (``store_helpers.py`` run as a script) appends blocks, and groups of blocks,
of random sizes to a store whose map starts small, printing each height once it is
committed. After every kill the store must open without repair, pass
``verify_ledger`` (no partial block, indexes agree with the blocks, the tip record is
the last block), hold every height the child acknowledged, and never have gone back.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import CHAIN_ID, GENESIS_HASH, MEMBERSHIP

from node.store import LedgerStore
from node.verify_ledger import verify_ledger

CHILD = Path(__file__).with_name("store_helpers.py")
KILLS = 20


@pytest.mark.timeout(120)
def test_sigkill_never_leaves_a_partial_block(tmp_path: Path) -> None:
    rng = random.Random(1729)
    path = tmp_path / "ledger"
    tip = 0
    started = time.monotonic()
    for round_ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        # Now and then kill it while it is still starting (opening, creating the store).
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.3))
        child.kill()
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -9
        acknowledged = [int(line) for line in out.split() if line.isdigit()]

        report = verify_ledger(path, MEMBERSHIP)
        if report.chain_id is None and not (path / "data.mdb").exists():
            continue  # killed before it created anything
        assert report.ok, f"round {round_}: {report.fault}"
        assert report.tip_height >= tip, f"round {round_}: the tip went back"
        assert report.tip_height >= max(acknowledged, default=0), f"round {round_}: lost"
        tip = report.tip_height
        with LedgerStore.open(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH) as store:
            assert store.tip()[0] == tip
    assert tip > 0
    assert time.monotonic() - started < 60

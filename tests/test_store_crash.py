"""Crash safety and hostile conditions, with real processes.

SIGKILL a writer at random moments, many times: the child (``store_helpers.py`` run as
a script) appends blocks, and groups of blocks, of random sizes to a store whose map
starts small, printing each height once it is committed. After every kill the store
must open without repair, pass ``verify_ledger`` (no partial block, indexes agree with
the blocks, the tip record is the last block), hold every height the child
acknowledged, and never have gone back. Also: a full disk, a truncated data file
(which would make LMDB itself SIGBUS), and a map grown by another process.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import CHAIN_ID, GENESIS_HASH, MEMBERSHIP, fill, open_store, run_python

from node.ledger.store import LedgerStore
from node.ledger.verify import verify_ledger

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


def test_full_disk_is_a_store_error_and_leaves_a_consistent_store(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the data file's writes fail as a full disk would.
    code = """
import resource, signal
from store_helpers import CHAIN_ID, GENESIS_HASH, chain
from node.ledger.store import LedgerStore, StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
s = LedgerStore.open(sys.argv[1], chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH)
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
try:
    for _ in range(100):
        s.append_blocks(chain(1, 20, start=s.tip(), tx_size=1000))
except StoreError as exc:
    print("refused:", exc, s.tip()[0])
"""
    result = run_python(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: cannot write the ledger store"), result.stdout
    assert "Traceback" not in result.stderr
    committed = int(result.stdout.split()[-1])
    assert committed > 0
    report = verify_ledger(tmp_path, MEMBERSHIP)
    assert report.ok and report.tip_height == committed


def test_truncated_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        fill(s, 30, per_block=20)
    data = tmp_path / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    # In a child: were LMDB to touch a page past the end of the file, that is a SIGBUS.
    code = """
from store_helpers import CHAIN_ID, GENESIS_HASH
from node.ledger.store import LedgerStore, StoreCorruptError
try:
    LedgerStore.open(sys.argv[1], chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH)
except StoreCorruptError as exc:
    print("damaged:", exc)
"""
    result = run_python(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "damaged (its data file is truncated" in result.stdout, result.stdout


def test_growth_by_another_process_is_adopted(tmp_path: Path) -> None:
    with open_store(tmp_path, map_size=64 * 1024) as s:
        fill(s, 1)
        code = """
from store_helpers import CHAIN_ID, GENESIS_HASH, chain
from node.ledger.store import LedgerStore
s = LedgerStore.open(sys.argv[1], chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, map_size=65536)
s.append_blocks(chain(3, 200, start=s.tip(), tx_size=2000))
print(s.stats().map_size)
"""
        result = run_python(code, str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert s.tip()[0] == 4 and s.block(4) is not None
        fill(s, 1)
        assert s.stats().map_size >= int(result.stdout)

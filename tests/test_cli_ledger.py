"""``crosstrace verify-ledger`` on a ledger written by a real in-process cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from cluster_helpers import make_cluster, report_tx, submit_all
from store_helpers import tamper

from cli import main
from consensus.blocks import Block
from consensus.codec import encode_value
from node.ledger.layout import DB_BLOCKS, height_key
from node.setup.genesis import save_genesis


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, Path]:
    cluster = make_cluster(tmp_path / "cluster")
    now = int(time.time() * 1000)

    async def write_blocks() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await cluster.start(nursery)
                txs = [report_tx(cluster, 0, i, now) for i in range(40)]
                ids = await submit_all(cluster, txs)
                await cluster.runtime(0).wait_committed(ids[-1])
                await cluster.stop()
                nursery.cancel_scope.cancel()

    trio.run(write_blocks)
    genesis_file = tmp_path / "genesis.json"
    save_genesis(genesis_file, cluster.genesis)
    return cluster.data_dir(0), genesis_file


def verify(data: Path, genesis: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify-ledger", str(data), "--genesis", str(genesis)])
    return result.exit_code, result.output


def test_a_sound_ledger_verifies(ledger: tuple[Path, Path]) -> None:
    code, out = verify(*ledger)
    assert code == 0, out
    assert "ledger OK: chain local" in out and "40 transactions" in out


def test_a_tampered_block_is_reported_with_its_height(ledger: tuple[Path, Path]) -> None:
    data, genesis = ledger
    from node.ledger.store import LedgerStore

    with LedgerStore.open_existing(data) as store:
        block = store.block(1)
    assert block is not None
    forged = Block(block.header, (*block.txs[:-1], block.txs[-1] + b"x"))
    tamper(data, DB_BLOCKS, height_key(1), encode_value(forged))
    code, out = verify(data, genesis)
    assert code == 1
    assert "FAULT at height 1" in out


def test_another_chains_genesis_is_refused(ledger: tuple[Path, Path], tmp_path: Path) -> None:
    from node.testing.cluster import local_genesis

    data, _ = ledger
    other, _ = local_genesis(4, chain_id="elsewhere")
    other_file = tmp_path / "other.json"
    save_genesis(other_file, other)
    code, out = verify(data, other_file)
    assert code == 1 and "FAULT" in out


def test_missing_directory_and_bad_genesis_are_one_clear_line(tmp_path: Path) -> None:
    code, out = verify(tmp_path / "nope", tmp_path / "genesis.json")
    assert code == 1 and "no such ledger directory" in out
    (tmp_path / "data").mkdir()
    (tmp_path / "genesis.json").write_text("{not json")
    code, out = verify(tmp_path / "data", tmp_path / "genesis.json")
    assert code == 1 and "genesis.json" in out and "Traceback" not in out

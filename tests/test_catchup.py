"""Block sync end to end with real processes: a member that missed a long chain catches
up by itself, then votes again (issue 4; ``benchmarks/catchup_bench.py`` is the same run
at 100,000 blocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from replica_harness import PARAMS, Harness

from consensus.blocks import check_block_certificate
from consensus.events import MessageArrived, Timer
from consensus.messages import BlockResponse, CertifiedBatch
from node.ledger.authoring import sample_identifiers
from node.ledger.kinds import Report
from node.ledger.store import LedgerStore
from node.ledger.transactions import decode_body, decode_tx
from node.setup.provision import make_testnet
from node.testing.chain_fixture import (
    CHAIN_KEY,
    ENTITY_POOL,
    CatchupScenario,
    build_chain,
    data_dir_of,
)
from node.testing.dealer import KeyedPseudonyms, redeal_homes

BLOCKS = 2500


@pytest.mark.timeout(120)
def test_an_empty_member_catches_up_2500_blocks_and_then_votes(tmp_path: Path) -> None:
    lines: list[str] = []
    scenario = CatchupScenario(tmp_path / "net", BLOCKS, poll_s=0.1, report=lines.append)
    try:
        result = scenario.run(timeout_s=100)
    finally:
        scenario.stop_all()
    assert result.catchup_s < 40, lines
    # The others handed over their stable checkpoint, so member 3 could vote at once:
    # with member 2 killed, the last blocks needed its COMMITs, and no view change.
    assert result.stable_at_tip == BLOCKS
    assert result.final_height > BLOCKS + 1 and result.view_after == 0
    assert {1, BLOCKS, result.final_height} <= set(result.compared_heights)
    store = LedgerStore.open_existing(data_dir_of(scenario.homes[3]))
    try:
        assert store.tip()[0] == result.final_height
        last = store.certificate(result.final_height)
        assert last is not None and 3 in {sig.member for sig in last.signatures}
    finally:
        store.close()


def test_the_generated_chain_is_certified_and_linked(tmp_path: Path) -> None:
    _, homes = make_testnet(tmp_path / "net", 4)
    # The members are dealt the key the chain's pseudonyms are computed with offline.
    genesis, _ = redeal_homes([h.path for h in homes], CHAIN_KEY)
    summary = build_chain([h.path for h in homes], [0, 1], 25, seed=3)
    pool = set(KeyedPseudonyms(CHAIN_KEY).refs(sample_identifiers(ENTITY_POOL)))
    assert summary.stable_seq == 20
    membership = genesis.membership()
    tips = set()
    for member in (0, 1):
        store = LedgerStore.open_existing(data_dir_of(homes[member].path))
        try:
            parent = bytes(32)
            for block, cert in store.blocks_range(1, 25):
                check_block_certificate(membership, block, cert)
                assert block.header.parent_hash == parent and 1 <= len(block.txs) <= 5
                for tx in block.txs:
                    body = decode_body(decode_tx(tx))
                    assert isinstance(body, Report) and body.subject in pool
                parent = block.hash()
            tips.add(store.tip())
            assert store.consensus_records()  # the stable checkpoint a replica restores
        finally:
            store.close()
    assert tips == {(25, summary.tip_hash)}
    assert not (data_dir_of(homes[2].path) / "data.mdb").exists()


def fill(h: Harness, blocks: int, to: list[int]) -> None:
    for i in range(blocks * PARAMS.max_batch_txs):
        h.request(f"t{i}".encode(), to=to)
    h.deliver()


def test_a_replica_that_synced_from_far_behind_gets_the_stable_checkpoint_and_votes() -> None:
    h = Harness()
    h.crash(3)
    fill(h, 12, to=[0, 1, 2])
    assert h.heights()[:3] == [12] * 3 and h.replicas[0].low_watermark == 12
    h.restart(3)
    for i in range(4):
        h.fire(i, Timer.HEARTBEAT)
    h.deliver()
    assert h.heights()[3] == 12
    # Block sync alone brings no CHECKPOINT messages: the others hand over their proof.
    assert h.replicas[3].low_watermark == 12
    # Member 2 down: no quorum without member 3's votes, and no view change needed.
    h.crash(2)
    for i in range(PARAMS.max_batch_txs):
        h.request(f"after{i}".encode(), to=[0, 1, 3])
    h.deliver()
    assert [h.heights()[i] for i in (0, 1, 3)] == [13] * 3
    assert h.replicas[3].view == 0
    assert h.block_hashes(3) == h.block_hashes(0)


def test_a_long_sync_keeps_block_hashes_only_at_checkpoint_heights() -> None:
    h = Harness()
    h.crash(3)
    fill(h, 12, to=[0, 1, 2])
    h.restart(3)
    replica = h.replicas[3]
    replica.sync.observe(0, 12)
    replica.sync.start(0, 1, 12)
    entries = tuple(CertifiedBatch(b.to_batch(), c) for b, c in h.ledgers[0])
    h.step(3, MessageArrived(0, BlockResponse(entries)))
    assert replica.executed == 12 and replica.low_watermark == 0  # no checkpoint proof seen yet
    assert sorted(replica.block_hashes) == list(range(0, 13, PARAMS.checkpoint_interval))

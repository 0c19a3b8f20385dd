"""The LMDB ledger store and the offline ledger verifier, with real certificates."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import (
    CHAIN_ID,
    GENESIS_HASH,
    MEMBERSHIP,
    certify,
    chain,
    entity,
    fill,
    make_block,
    open_store,
    tamper,
)

from consensus.blocks import GENESIS_PARENT, Block, Certificate
from consensus.codec import encode_value
from node.ledger.env import DbSpec, decode_record
from node.ledger.layout import CASE_POSTING, LOC, TIP, encode_block, height_key, tx_slice
from node.ledger.store import (
    BlockIndex,
    BlockRejectedError,
    CasePosting,
    CaseRole,
    LedgerStore,
    Link,
    LinkRecord,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    TxIndex,
    tx_id,
)
from node.ledger.verify import VerifyProgress, verify_ledger


@pytest.fixture
def store(tmp_path: Path):
    with open_store(tmp_path / "ledger") as s:
        yield s


# -- writing and reading back ---------------------------------------------------------


def test_new_store_is_empty(store: LedgerStore) -> None:
    assert store.tip() == (0, GENESIS_PARENT)
    assert store.block(1) is None and store.certificate(1) is None
    assert store.blocks_range(1, 10) == []
    assert store.stats().entries["blocks"] == 0


def test_blocks_and_certificates_read_back(store: LedgerStore) -> None:
    blocks = chain(4, 3)
    for block, cert, index in blocks:
        store.append_block(block, cert, index)
    assert store.tip() == (4, blocks[-1][0].hash())
    for block, cert, _ in blocks:
        h = block.header.height
        assert store.block(h) == block
        assert store.block_bytes(h) == encode_value(block)
        assert store.certificate(h) == cert
        assert store.block_by_hash(block.hash()) == block
        assert store.height_of(block.hash()) == h
    assert store.block_by_hash(bytes(32)) is None
    assert [(b, c) for b, c in store.blocks_range(2, 3)] == [(b, c) for b, c, _ in blocks[1:3]]
    assert [b.header.height for b, _ in store.blocks_range(0, 99)] == [1, 2, 3, 4]
    assert len(store.raw_blocks_range(1, 4, max_bytes=1)) == 1
    assert store.raw_blocks_range(5, 9) == [] and store.raw_blocks_range(3, 2) == []


def test_store_survives_reopening(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        blocks = fill(s, 3)
    with open_store(tmp_path) as s:
        assert s.tip() == (3, blocks[-1][0].hash())
        fill(s, 2)
        assert s.tip()[0] == 5


def test_transaction_queries(store: LedgerStore) -> None:
    blocks = fill(store, 3, per_block=4)
    for block, _, _ in blocks:
        for i, tx in enumerate(block.txs):
            assert store.tx_location(tx_id(tx)) == (block.header.height, i)
            assert store.tx(tx_id(tx)) == tx
            assert store.tx_at(block.header.height, i) == tx
    assert store.tx(bytes(32)) is None and store.tx_location(bytes(32)) is None
    assert store.tx_at(2, 4) is None and store.tx_at(9, 0) is None
    assert store.txs_at([(3, 1), (1, 0)]) == [blocks[2][0].txs[1], blocks[0][0].txs[0]]
    with pytest.raises(StoreError):
        store.txs_at([(1, 99)])


def test_repeated_transaction_keeps_its_first_location(store: LedgerStore) -> None:
    first = fill(store, 1, per_block=2)[0][0]
    block, cert = make_block(2, first.hash(), [b"new", first.txs[1]])
    store.append_block(block, cert, BlockIndex.unindexed(block))
    assert store.tx_location(tx_id(first.txs[1])) == (1, 1)
    assert store.tx_location(tx_id(b"new")) == (2, 0)


def test_entity_postings_in_ledger_order_with_paging(store: LedgerStore) -> None:
    blocks = fill(store, 6, per_block=7)
    for n in range(50):
        key = entity(n)
        expected = [
            (block.header.height, i)
            for block, _, index in blocks
            for i, entry in enumerate(index.txs)
            if key in entry.entities
        ]
        assert store.entity_txs(key, limit=1000) == expected
        assert store.entity_tx_count(key) == len(expected)
        if len(expected) >= 3:
            assert store.entity_txs(key, limit=2) == expected[:2]
            assert store.entity_txs(key, limit=2, after=expected[1]) == expected[2:4]
            assert store.entity_txs(key, after=expected[-1]) == []
            # A position that is not a posting of its own starts at the next one.
            h, i = expected[0]
            assert store.entity_txs(key, after=(h - 1, 99))[0] == (h, i)
    key = entity(1)
    assert store.entity_txs(key, after=(-5, 0)) == store.entity_txs(key)
    assert store.entity_txs(key, after=(0, 2**40)) == store.entity_txs(key)
    assert store.entity_txs(key, after=(2**64, 0)) == []
    assert store.block(-1) is None and store.certificate(2**64) is None
    assert store.tx_at(-1, 0) is None and store.tx(b"") is None and store.height_of(b"x") is None
    assert store.blocks_range(-3, 2**70)[-1][0].header.height == 6
    assert store.entity_txs(b"\x01" + bytes(32)) == []
    assert store.entity_txs(b"") == [] and store.entity_tx_count(b"x" * 300) == 0


def test_links_from_both_ends(store: LedgerStore) -> None:
    a, b, c = entity(1), entity(2), entity(3)
    txs = [b"t0", b"t1", b"t2"]
    block, cert = make_block(1, GENESIS_PARENT, txs)
    index = BlockIndex(
        (
            TxIndex(tx_id(txs[0]), (a,), (Link(a, b, b"owns"), Link(a, c, b"calls"))),
            TxIndex(tx_id(txs[1]), (), (Link(c, a, b"pays"),)),  # endpoints posted anyway
            TxIndex(tx_id(txs[2]), (a,), (Link(a, a, b"alias"),)),
        )
    )
    store.append_block(block, cert, index)
    assert store.links_of(a) == [
        LinkRecord(b, b"owns", True, 1, 0),
        LinkRecord(c, b"calls", True, 1, 0),
        LinkRecord(c, b"pays", False, 1, 1),
        LinkRecord(a, b"alias", True, 1, 2),
    ]
    assert store.links_of(b) == [LinkRecord(a, b"owns", False, 1, 0)]
    assert store.entity_txs(c) == [(1, 0), (1, 1)]
    assert store.links_of(a, limit=1) == store.links_of(a)[:2]  # whole transactions
    assert store.links_of(a, after=(1, 0)) == store.links_of(a)[2:]
    assert store.links_of(entity(9)) == []


def test_nonce_index(store: LedgerStore) -> None:
    blocks = fill(store, 2, per_block=4)
    for _, _, index in blocks:
        for entry in index.txs:
            assert entry.nonce is not None
            assert store.nonce_used(*entry.nonce)
    assert not store.nonce_used("bank-0", 1)
    assert not store.nonce_used("", 1) and not store.nonce_used("bank-0", 2**64)


def test_case_index_by_role_in_ledger_order(store: LedgerStore) -> None:
    roles = [
        [(b"C-1", CaseRole.REPORT)],
        [(b"C-1", CaseRole.OPENED)],
        [(b"C-2", CaseRole.OPENED), (b"C-2", CaseRole.OPENED)],
        [(b"C-1", CaseRole.APPROVED)],
        [],
        [(b"C-1", CaseRole.CLOSED)],
    ]
    parent = GENESIS_PARENT
    for height in (1, 2):
        block, cert = make_block(height, parent, [b"%d-%d" % (height, i) for i in range(6)])
        entries = [TxIndex(tx_id(tx), cases=roles[i]) for i, tx in enumerate(block.txs)]
        store.append_block(block, cert, BlockIndex(tuple(entries)))
        parent = block.hash()
    assert store.case_postings(b"C-1", CaseRole.REPORT) == [(1, 0), (2, 0)]
    assert store.case_postings(b"C-1", CaseRole.APPROVED) == [(1, 3), (2, 3)]
    assert store.case_postings(b"C-1", CaseRole.APPROVED, after=(1, 3)) == [(2, 3)]
    assert store.case_postings(b"C-1", CaseRole.APPROVED, after=(1, -1)) == [(1, 3), (2, 3)]
    assert store.case_postings(b"C-1", CaseRole.APPROVED, after=(-1, 0), limit=1) == [(1, 3)]
    assert store.case_postings(b"C-1", CaseRole.APPROVED, after=(2**64, 0)) == []
    assert store.case_postings(b"C-1", CaseRole.ACCESS) == []
    assert store.case_postings(b"C-3", CaseRole.OPENED) == []
    assert store.case_postings(b"", CaseRole.OPENED) == []
    tip, postings = store.governance_postings()
    assert tip == 2
    assert postings == [
        CasePosting(b"C-1", role, height, index)
        for role, index in ((CaseRole.OPENED, 1), (CaseRole.APPROVED, 3), (CaseRole.CLOSED, 5))
        for height in (1, 2)
    ] + [CasePosting(b"C-2", CaseRole.OPENED, height, 2) for height in (1, 2)]
    _, closes = store.governance_postings(roles=(CaseRole.CLOSED,))
    assert [(p.case_key, p.height) for p in closes] == [(b"C-1", 1), (b"C-1", 2)]


def test_case_keys_and_roles_are_checked(store: LedgerStore) -> None:
    block, cert = make_block(1, GENESIS_PARENT, [b"tx"])
    for cases, problem in (
        ([(b"", CaseRole.OPENED)], "case key"),
        ([(b"x" * 257, CaseRole.OPENED)], "case key"),
        ([(b"C-1", 9)], "unknown case role"),
    ):
        index = BlockIndex((TxIndex(tx_id(b"tx"), cases=cases),))
        with pytest.raises(BlockRejectedError, match=problem):
            store.append_block(block, cert, index)
    assert store.tip()[0] == 0


# -- refusals ---------------------------------------------------------------------------


def test_other_chain_or_genesis_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path):
        pass
    with pytest.raises(StoreError, match=r"belongs to chain crosstrace-test \(genesis [0-9a-f]+"):
        LedgerStore.open(tmp_path, chain_id="other-chain", genesis_hash=GENESIS_HASH)
    with pytest.raises(StoreError, match="not crosstrace-test"):
        LedgerStore.open(tmp_path, chain_id=CHAIN_ID, genesis_hash=bytes(32))
    with open_store(tmp_path) as s:  # the refusals left it usable
        assert s.tip()[0] == 0


def test_a_store_of_the_previous_format_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path):
        pass
    # Version 4 is the last with shared-key pseudonyms: its ledgers are refused too.
    for old in (2, 4):
        tamper(tmp_path, b"meta", b"format_version", old.to_bytes(4, "big"))
        with pytest.raises(
            StoreError, match=f"has format version {old}, this build reads version 5"
        ):
            open_store(tmp_path)
    with pytest.raises(StoreError, match="one key every member held"):
        open_store(tmp_path)


def test_block_that_does_not_extend_the_tip_stores_nothing(store: LedgerStore) -> None:
    fill(store, 2)
    before = store.stats().entries
    tip = store.tip()
    good = chain(2, 3, start=tip)
    wrong_parent = chain(1, 3, start=(tip[0], bytes(32)))[0]
    gap = chain(1, 3, start=(tip[0] + 1, tip[1]))[0]
    replay = chain(1, 3, start=(tip[0] - 1, tip[1]))[0]
    other_chain_block, other_cert = make_block(3, tip[1], [b"x"], chain_id="other")
    other = (other_chain_block, other_cert, BlockIndex.unindexed(other_chain_block))
    for bad in (wrong_parent, gap, replay, other):
        with pytest.raises(BlockRejectedError):
            store.append_block(*bad)
    with pytest.raises(BlockRejectedError, match="block 4 has parent"):
        store.append_blocks([good[0], gap])  # atomic: the good first block goes too
    assert store.stats().entries == before and store.tip() == tip


def test_certificate_and_index_must_match_the_block(store: LedgerStore) -> None:
    block, cert, index = chain(1, 3)[0]
    _, other_cert, _ = chain(1, 4)[0]
    bad = [
        (block, other_cert, index),
        (block, replace(cert, height=2), index),
        (block, cert, BlockIndex(index.txs[:2])),
        (block, cert, BlockIndex((TxIndex(bytes(32)), *index.txs[1:]))),
        (block, cert, BlockIndex((TxIndex(index.txs[0].tx_id, (b"",)), *index.txs[1:]))),
        (block, cert, BlockIndex((TxIndex(index.txs[0].tx_id, nonce=("", 1)), *index.txs[1:]))),
    ]
    for item in bad:
        with pytest.raises(BlockRejectedError):
            store.append_block(*item)
    assert store.tip()[0] == 0


# -- map growth, full disk, damage -------------------------------------------------------


def test_map_full_in_the_middle_of_a_block_grows_the_map(tmp_path: Path) -> None:
    with open_store(tmp_path, map_size=64 * 1024) as s:
        fill(s, 1)
        errors: list[BaseException] = []
        stop = threading.Event()

        def read_while_growing() -> None:
            try:
                while not stop.is_set():
                    s.tip()
                    s.entity_txs(entity(1))
                    s.block(1)
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=read_while_growing)
        reader.start()
        try:
            big = fill(s, 2, per_block=300, tx_size=2000)  # ~1.2 MB for a 64 KiB map
        finally:
            stop.set()
            reader.join()
        assert errors == []
        stats = s.stats()
        assert stats.map_size >= 1024 * 1024 and stats.tip_height == 3
        assert s.block(3) == big[-1][0]
    assert verify_ledger(tmp_path, MEMBERSHIP).ok


def test_map_at_its_maximum_is_a_clear_error(tmp_path: Path) -> None:
    with open_store(tmp_path, map_size=64 * 1024, max_map_size=256 * 1024) as s:
        fill(s, 1)
        entries = s.stats().entries
        with pytest.raises(StoreFullError, match="configured maximum of 262144 bytes"):
            fill(s, 1, per_block=200, tx_size=2000)
        assert s.stats().entries == entries
        fill(s, 1)  # still usable for what fits
        assert s.tip()[0] == 2


def test_garbage_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        fill(s, 2)
    (tmp_path / "data.mdb").write_bytes(b"\x5a" * 16384)
    with pytest.raises(StoreCorruptError, match="damaged"):
        open_store(tmp_path)
    report = verify_ledger(tmp_path, MEMBERSHIP)
    assert not report.ok and report.fault is not None and report.fault.height is None


def test_damaged_pages_are_found_without_trusting_lmdb(tmp_path: Path) -> None:
    # Garbage inside B-tree pages can crash LMDB itself, so verify_ledger checks the
    # file's structure with py-lmdb's pure-Python walker before LMDB reads any page.
    with open_store(tmp_path) as s:
        fill(s, 30, per_block=20)
    data = bytearray((tmp_path / "data.mdb").read_bytes())
    for page in range(2, len(data) // 4096):  # keep both meta pages
        data[page * 4096 : page * 4096 + 64] = bytes(range(64))
    (tmp_path / "data.mdb").write_bytes(bytes(data))
    report = verify_ledger(tmp_path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height is None
    assert "LMDB structure is damaged" in report.fault.reason


def test_damaged_block_bytes_are_found_at_their_height(ledger) -> None:
    path, blocks = ledger
    data = bytearray((path / "data.mdb").read_bytes())
    tx = blocks[5][0].txs[2]
    at = data.find(tx)
    assert at > 0 and data.find(tx, at + 1) == -1
    data[at + 7] ^= 0xFF
    (path / "data.mdb").write_bytes(bytes(data))
    with open_store(path) as s:
        assert s.tx_at(6, 2) != tx
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 6
    assert "Merkle root" in report.fault.reason


def test_closed_and_read_only_stores_refuse_writes(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    fill(s, 1)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.tip()
    with LedgerStore.open_existing(tmp_path) as ro:
        assert ro.chain_id == CHAIN_ID and ro.genesis_hash == GENESIS_HASH
        assert ro.tip()[0] == 1
        with pytest.raises(StoreError, match="read-only"):
            fill(ro, 1)
    with pytest.raises(StoreError, match="no ledger store"):
        LedgerStore.open_existing(tmp_path / "missing")


# -- consensus log and checkpoint ---------------------------------------------------------


def test_consensus_log(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        assert s.consensus_records() == []
        s.append_consensus_records([b"view 1", b"prepare 1"])
        s.append_consensus_records([])
        s.append_consensus_records([b"commit 1"])
        assert s.consensus_records() == [b"view 1", b"prepare 1", b"commit 1"]
        s.compact_consensus_records([b"snapshot"])
        s.append_consensus_records([b"prepare 2"])
    with open_store(tmp_path) as s:
        assert s.consensus_records() == [b"snapshot", b"prepare 2"]
        s.compact_consensus_records([])
        assert s.consensus_records() == []


def test_stable_checkpoint(store: LedgerStore) -> None:
    assert store.stable_checkpoint() is None
    store.set_stable_checkpoint(100, b"proof")
    store.set_stable_checkpoint(200, b"")
    assert store.stable_checkpoint() == (200, b"")


# -- transaction positions ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 255, 256, 65535, 65536]), min_size=0, max_size=20))
def test_transaction_positions_for_every_msgpack_size_class(sizes: list[int]) -> None:
    txs = tuple(bytes([i % 251]) * size for i, size in enumerate(sizes))
    block, _ = make_block(1, GENESIS_PARENT, txs)
    data, table = encode_block(block)
    assert data == encode_value(block)
    for i, tx in enumerate(txs):
        assert tx_slice(memoryview(data), memoryview(table), i) == tx
    assert tx_slice(memoryview(data), memoryview(table), len(txs)) is None


def test_transaction_positions_past_16_and_65536_transactions() -> None:
    for count in (15, 16, 70_000):
        block, _ = make_block(1, GENESIS_PARENT, [b"ab"] * count)
        data, table = encode_block(block)
        assert tx_slice(memoryview(data), memoryview(table), count - 1) == b"ab"


# -- verify_ledger -----------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, list[tuple[Block, Certificate, BlockIndex]]]:
    with open_store(tmp_path) as s:
        blocks = fill(s, 8, per_block=6)
    return tmp_path, blocks


def test_verify_passes_a_sound_ledger_and_reports_progress(ledger) -> None:
    path, _ = ledger
    seen: list[VerifyProgress] = []
    report = verify_ledger(path, MEMBERSHIP, progress=seen.append)
    assert report.ok, report.fault
    assert (report.tip_height, report.blocks_checked, report.txs_checked) == (8, 8, 48)
    assert VerifyProgress("blocks", 8, 8) in seen
    phases = {"structure", "blocks", "entities", "links", "nonces", "cases"}
    assert {p.phase for p in seen} == phases


def test_verify_an_open_store_while_blocks_are_appended(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        fill(s, 100, per_block=2)
        more = chain(30, 2, start=s.tip())
        appended = threading.Semaphore(0)

        def append() -> None:
            for item in more:
                s.append_block(*item)
                appended.release()

        def progress(p: VerifyProgress) -> None:
            if p == VerifyProgress("blocks", 64, 100):  # between two read transactions
                for _ in range(5):
                    assert appended.acquire(timeout=10)

        writer = threading.Thread(target=append)
        writer.start()
        try:
            report = verify_ledger(s, MEMBERSHIP, progress=progress)
        finally:
            writer.join()
        assert report.ok, report.fault
        assert 105 <= report.tip_height <= 130
        assert verify_ledger(s, MEMBERSHIP).tip_height == 130


def test_a_sibling_store_can_keep_its_own_database(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        env = s.environment
        private = env.add_db(DbSpec(b"private"))
        env.write(lambda txn: txn.put(b"k", b"v", db=private))
        fill(s, 1)
    with open_store(tmp_path) as s:
        private = s.environment.add_db(DbSpec(b"private"))
        with s.environment.read() as txn:
            assert bytes(txn.get(b"k", db=private)) == b"v"
    assert verify_ledger(tmp_path, MEMBERSHIP).ok


def test_verify_rejects_another_chains_members(ledger) -> None:
    path, _ = ledger
    other = replace(MEMBERSHIP, chain_id="other")
    report = verify_ledger(path, other, structural=False)
    assert report.fault is not None and "not 'other'" in report.fault.reason


def test_verify_finds_a_tampered_block(ledger) -> None:
    path, blocks = ledger
    block = blocks[4][0]
    forged = Block(block.header, (b"forged", *block.txs[1:]))
    tamper(path, b"blocks", height_key(5), encode_value(forged))
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 5
    assert "Merkle root" in report.fault.reason
    assert report.blocks_checked == 4


def test_verify_finds_an_undecodable_block(ledger) -> None:
    path, _ = ledger
    tamper(path, b"blocks", height_key(3), b"\xc1")
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 3
    assert "does not decode" in report.fault.reason


def test_verify_finds_a_tampered_certificate(ledger) -> None:
    path, blocks = ledger
    cert = blocks[5][1]
    weak = replace(cert, signatures=cert.signatures[:2])
    tamper(path, b"certs", height_key(6), encode_value(weak))
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 6
    assert "quorum of 3" in report.fault.reason
    # Member 3's valid signature, claimed to be member 2's.
    sigs = certify(blocks[6][0], signers=(0, 1, 3)).signatures
    forged = replace(blocks[6][1], signatures=(*sigs[:2], replace(sigs[2], member=2)))
    tamper(path, b"certs", height_key(6), encode_value(cert))
    tamper(path, b"certs", height_key(7), encode_value(forged))
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 7
    assert "member 2 does not verify" in report.fault.reason


def test_verify_finds_a_broken_parent_link(ledger) -> None:
    path, blocks = ledger
    block = blocks[3][0]
    relinked = Block(replace(block.header, parent_hash=bytes(32)), block.txs)
    tamper(path, b"blocks", height_key(4), encode_value(relinked))
    report = verify_ledger(path, MEMBERSHIP)
    assert report.fault is not None and report.fault.height == 4
    assert "parent hash" in report.fault.reason


@pytest.mark.parametrize(
    ("db", "make", "height", "reason"),
    [
        (b"txs", lambda b: (tx_id(b[2][0].txs[3]), LOC.pack(3, 2)), 3, "maps transaction 3"),
        (b"txs", lambda b: (tx_id(b[2][0].txs[3]), None), 3, "missing from the transaction"),
        (b"txs", lambda b: (bytes(32), LOC.pack(6, 1)), 6, "maps 0000"),
        (b"hashes", lambda b: (b[1][0].hash(), height_key(3)), 2, "hash index"),
        (b"hashes", lambda b: (bytes(32), height_key(9)), 9, "hash index"),
        (b"txpos", lambda b: (height_key(5), bytes(48)), 5, "position table"),
        (b"certs", lambda b: (height_key(7), None), 7, "no commit certificate"),
        (b"meta", lambda b: (b"tip", TIP.pack(7, b[6][0].hash())), 7, "tip record says"),
        (b"entities", lambda b: (entity(1), LOC.pack(4, 99)), 4, "entity index posts"),
        (b"links", lambda b: (LOC.pack(2, 3) + b"\0\x07", b"\x01a\x01b"), 2, "not posted under"),
        (b"links", lambda b: (LOC.pack(9, 0) + b"\0\0", b"\x01a\x01b"), 9, "no stored transaction"),
        (b"nonces", lambda b: (b"\x01x" + bytes(8), LOC.pack(8, 6)), 8, "nonce index"),
        (b"cases", lambda b: (b"C-1", CASE_POSTING.pack(3, 4, 99)), 4, "where there is no"),
        (b"cases", lambda b: (b"C-1", CASE_POSTING.pack(7, 2, 0)), 2, "unknown role 7"),
    ],
)
def test_verify_finds_a_tampered_index(ledger, db, make, height, reason) -> None:
    path, blocks = ledger
    key, value = make(blocks)
    flags = {"dupsort": True, "dupfixed": True} if db in (b"entities", b"cases") else {}
    tamper(path, db, key, value, **flags)
    report = verify_ledger(path, MEMBERSHIP, structural=False)
    assert report.fault is not None, db
    assert report.fault.height == height, report.fault
    assert reason in report.fault.reason, report.fault


def test_verify_of_a_missing_store(tmp_path: Path) -> None:
    report = verify_ledger(tmp_path / "nothing", MEMBERSHIP)
    assert report.fault is not None and "no ledger store" in report.fault.reason


@given(st.binary(max_size=64))
def test_a_damaged_record_in_a_side_store_is_refused_with_its_store_named(data: bytes) -> None:
    """The pseudonym, disclosure and private stores read their records back with
    ``decode_record``: bytes that are not the record are ``StoreCorruptError``, never a
    crash deeper in; a record comes back equal."""
    from node.pseudonyms.store import EvaluationRecord

    record = EvaluationRecord(b"\1" * 16, "bank-1", "report", "", 3, "ok", 1_790_000_000_000)
    assert decode_record(EvaluationRecord, encode_value(record), "the x store") == record
    try:
        decoded = decode_record(EvaluationRecord, data, "the x store at /data")
    except StoreCorruptError as exc:
        assert str(exc).startswith("the x store at /data holds a damaged record: ")
    else:
        assert isinstance(decoded, EvaluationRecord)

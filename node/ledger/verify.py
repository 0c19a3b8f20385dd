"""Re-check a stored ledger from height 1, trusting nothing but the member list.

``verify_ledger`` walks every block and reports the first fault it finds, with the
height it belongs to and what exactly is wrong: a block that does not decode, a
broken parent link, a Merkle root or commit certificate that does not verify, a hash
or transaction index that disagrees with the blocks, index entries pointing nowhere,
or a tip record that is not the last block.

It reads in short read transactions of a few blocks each, so running it against a
live node does not pin old pages and make the data file grow. The optional LMDB
structural pass reads the data file directly, not through a snapshot, so it is only
meaningful for a store no process is writing to.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lmdb.verify

from consensus.blocks import GENESIS_PARENT, Block, Certificate, CertificateError
from consensus.blocks import check_block_certificate as check_certificate
from consensus.codec import DecodeError, decode_value
from consensus.membership import Membership
from node.ledger.env import Database, Environment, ReadTxn
from node.ledger.layout import (
    CASE_POSTING,
    DB_BLOCKS,
    DB_CASES,
    DB_CERTS,
    DB_ENTITIES,
    DB_HASHES,
    DB_LINKS,
    DB_META,
    DB_NONCES,
    DB_TXPOS,
    DB_TXS,
    LINK_KEY,
    LOC,
    LOC_SIZE,
    META_TIP,
    TIP,
    TXPOS,
    U64,
    CaseRole,
    decode_link,
    height_key,
    tx_id,
)
from node.ledger.store import LedgerStore, StoreError

CHUNK_BLOCKS = 64
CHUNK_ENTRIES = 50_000
_CASE_ROLES = frozenset(int(role) for role in CaseRole)


@dataclass(frozen=True)
class VerifyFault:
    height: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.height is None else f"height {self.height}: {self.reason}"


@dataclass(frozen=True)
class VerifyProgress:
    phase: str  # "structure", "blocks", "entities", "links", "nonces" or "cases"
    done: int
    total: int


@dataclass(frozen=True)
class VerifyReport:
    """``tip_height`` is the tip the store claims (or reached, for a live store);
    ``blocks_checked`` the blocks that passed, from height 1, before any fault."""

    chain_id: str | None
    tip_height: int
    blocks_checked: int
    txs_checked: int
    fault: VerifyFault | None

    @property
    def ok(self) -> bool:
        return self.fault is None


class _Fault(Exception):
    def __init__(self, height: int | None, reason: str) -> None:
        super().__init__(reason)
        self.fault = VerifyFault(height, reason)


Progress = Callable[[VerifyProgress], None]


def verify_ledger(
    source: str | os.PathLike[str] | LedgerStore,
    membership: Membership,
    *,
    progress: Progress | None = None,
    structural: bool = True,
) -> VerifyReport:
    """Verify a store against ``membership``; a bad store is a report, never an error.

    ``source`` is a data directory, or a store this process already has open (LMDB
    allows one open environment per file and process, so a node verifies its own
    store that way). The structural pass reads the file itself, so it runs only for a
    directory, and is meaningful only if no process is writing to it.
    """
    report = _progress_sink(progress)
    if isinstance(source, LedgerStore):
        return _verify(source, membership, report)
    if structural:
        report(VerifyProgress("structure", 0, 1))
        problem = _structure_problem(Path(source))
        if problem is not None:
            return VerifyReport(None, 0, 0, 0, VerifyFault(None, problem))
        report(VerifyProgress("structure", 1, 1))
    try:
        store = LedgerStore.open_existing(source)
    except StoreError as exc:
        return VerifyReport(None, 0, 0, 0, VerifyFault(None, str(exc)))
    with store:
        return _verify(store, membership, report)


def _verify(store: LedgerStore, membership: Membership, report: Progress) -> VerifyReport:
    checker = _Checker(store.environment, membership, report)
    try:
        if store.chain_id != membership.chain_id:
            raise _Fault(
                None, f"the store is for chain {store.chain_id!r}, not {membership.chain_id!r}"
            )
        checker.run()
    except _Fault as exc:
        return checker.report(store.chain_id, exc.fault)
    except StoreError as exc:
        return checker.report(store.chain_id, VerifyFault(checker.height, str(exc)))
    return checker.report(store.chain_id, None)


def _progress_sink(progress: Progress | None) -> Progress:
    return progress if progress is not None else (lambda _: None)


def _structure_problem(path: Path) -> str | None:
    if not (path / "data.mdb").is_file():
        return f"there is no ledger store at {path}"
    try:
        problems: list[str] = lmdb.verify.verify(str(path), subdir=True)  # type: ignore[no-untyped-call]
    except (lmdb.verify.VerifyError, OSError) as exc:
        return f"the data file cannot be checked: {exc}"
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"LMDB structure is damaged: {problems[0]}{more}"


class _Checker:
    def __init__(self, env: Environment, membership: Membership, report: Progress) -> None:
        self.env = env
        self.db = env.dbs
        self.membership = membership
        self.progress = report
        self.height: int | None = None  # the block being checked, for unexpected errors
        self.tip = 0  # the last block that passed
        self.claimed_tip = 0
        self.live_tip = 0  # the tip as the current read transaction sees it
        self.tip_hash = GENESIS_PARENT
        self.tx_counts = array("I", [0])  # tx_counts[h]: transactions in block h
        self.txs_checked = 0
        self.first_occurrences = 0

    def report(self, chain_id: str, fault: VerifyFault | None) -> VerifyReport:
        tip = max(self.tip, self.claimed_tip)
        return VerifyReport(chain_id, tip, self.tip, self.txs_checked, fault)

    def run(self) -> None:
        with self.env.read() as txn:
            self.claimed_tip, _ = _tip(txn, self.db[DB_META])
        while True:
            with self.env.read() as txn:
                more = self._check_blocks(txn, self.tip + 1, self.tip + CHUNK_BLOCKS)
                finished = not more and self._check_tip(txn)
            self.progress(VerifyProgress("blocks", self.tip, max(self.claimed_tip, self.tip)))
            if finished:
                break
        self.height = None
        self._scan(DB_ENTITIES, "entities", self._check_posting)
        self._scan(DB_LINKS, "links", self._check_link)
        self._scan(DB_NONCES, "nonces", self._check_nonce)
        self._scan(DB_CASES, "cases", self._check_case_posting)

    # -- blocks ---------------------------------------------------------------------

    def _check_blocks(self, txn: ReadTxn, first: int, last: int) -> bool:
        """Check blocks first..last; False once a height has no block."""
        for height in range(first, last + 1):
            data = txn.get(height_key(height), db=self.db[DB_BLOCKS])
            if data is None:
                return False
            self.height = height
            self._check_block(txn, height, bytes(data))
        return True

    def _check_block(self, txn: ReadTxn, height: int, data: bytes) -> None:
        try:
            block = decode_value(Block, data)
        except DecodeError as exc:
            raise _Fault(height, f"the block does not decode: {exc}") from None
        if block.header.height != height:
            raise _Fault(height, f"the block stored here says it is block {block.header.height}")
        if block.header.parent_hash != self.tip_hash:
            raise _Fault(
                height,
                f"parent hash {block.header.parent_hash.hex()[:16]}... is not the hash of "
                f"block {height - 1} ({self.tip_hash.hex()[:16]}...)",
            )
        cert_data = txn.get(height_key(height), db=self.db[DB_CERTS])
        if cert_data is None:
            raise _Fault(height, "the block has no commit certificate")
        try:
            cert = decode_value(Certificate, bytes(cert_data))
        except DecodeError as exc:
            raise _Fault(height, f"the commit certificate does not decode: {exc}") from None
        try:
            check_certificate(self.membership, block, cert)
        except CertificateError as exc:
            raise _Fault(height, f"the commit certificate does not verify: {exc}") from None
        block_hash = block.hash()
        indexed = txn.get(block_hash, db=self.db[DB_HASHES])
        if indexed is None or bytes(indexed) != height_key(height):
            raise _Fault(height, "the hash index does not map the block's hash to its height")
        self._check_txs(txn, height, block, memoryview(data))
        self.tx_counts.append(len(block.txs))
        self.txs_checked += len(block.txs)
        self.tip, self.tip_hash = height, block_hash

    def _check_txs(self, txn: ReadTxn, height: int, block: Block, data: memoryview) -> None:
        table = txn.get(height_key(height), db=self.db[DB_TXPOS])
        if table is None or len(table) != TXPOS.size * len(block.txs):
            raise _Fault(height, "the transaction position table is missing or has the wrong size")
        for i, tx in enumerate(block.txs):
            offset, size = TXPOS.unpack_from(table, i * TXPOS.size)
            if data[offset : offset + size] != tx:
                raise _Fault(height, f"the position table does not locate transaction {i}")
            tid = tx_id(tx)
            value = txn.get(tid, db=self.db[DB_TXS])
            where = f"transaction {i} (id {tid.hex()[:16]}...)"
            if value is None:
                raise _Fault(height, f"{where} is missing from the transaction index")
            loc = LOC.unpack(value)
            if loc == (height, i):
                self.first_occurrences += 1
            elif loc >= (height, i) or not self._holds(txn, loc, tid):
                # An earlier location is right only for a repeat of an earlier tx.
                raise _Fault(height, f"the transaction index maps {where} to {loc}")

    def _holds(self, txn: ReadTxn, loc: tuple[int, int], tid: bytes) -> bool:
        data = txn.get(height_key(loc[0]), db=self.db[DB_BLOCKS])
        table = txn.get(height_key(loc[0]), db=self.db[DB_TXPOS])
        if data is None or table is None or loc[1] >= len(table) // TXPOS.size:
            return False
        offset, size = TXPOS.unpack_from(table, loc[1] * TXPOS.size)
        return tx_id(bytes(data[offset : offset + size])) == tid

    def _check_tip(self, txn: ReadTxn) -> bool:
        """Check the tip record and index sizes once no block follows; False if the
        writer appended more blocks since they were last read."""
        if txn.get(height_key(self.tip + 1), db=self.db[DB_BLOCKS]) is not None:
            return False
        self.height = None
        meta_tip = _tip(txn, self.db[DB_META])
        if meta_tip != (self.tip, self.tip_hash):
            raise _Fault(
                meta_tip[0],
                f"the tip record says height {meta_tip[0]}, but the last block is {self.tip}",
            )
        for name in (DB_BLOCKS, DB_CERTS, DB_TXPOS):
            cursor = txn.cursor(self.db[name])
            if cursor.last() and U64.unpack(cursor.key())[0] > self.tip:
                stray = U64.unpack(cursor.key())[0]
                raise _Fault(stray, f"{name.decode()} holds an entry past the last block")
        if txn.stat(self.db[DB_HASHES])["entries"] != self.tip:
            for _, value in txn.cursor(self.db[DB_HASHES]):
                height = U64.unpack(value)[0]
                if not 1 <= height <= self.tip:
                    raise _Fault(height, "the hash index maps a hash to a block that is not stored")
            raise _Fault(None, "the hash index holds hashes of blocks that are not stored")
        if txn.stat(self.db[DB_TXS])["entries"] != self.first_occurrences:
            for tid, value in txn.cursor(self.db[DB_TXS]):
                loc = LOC.unpack(value)
                if not self._holds(txn, loc, bytes(tid)):
                    raise _Fault(
                        loc[0], f"the transaction index maps {bytes(tid).hex()[:16]}... to {loc}"
                    )
            raise _Fault(None, "the transaction index holds ids of transactions not stored")
        return True

    # -- secondary indexes ----------------------------------------------------------

    def _valid_loc(self, height: int, index: int) -> bool:
        if self.tip < height <= self.live_tip:
            return True  # in a block a live node committed after the block pass
        return 1 <= height <= self.tip and index < self.tx_counts[height]

    def _scan(
        self, name: bytes, phase: str, check: Callable[[ReadTxn, bytes, bytes], None]
    ) -> None:
        """Feed every (key, value) of a database to ``check``, in read transactions
        of bounded size (the cursor resumes from the last pair seen)."""
        db = self.db[name]
        with self.env.read() as txn:
            total = int(txn.stat(db)["entries"])
        done = 0
        last: tuple[bytes, bytes] | None = None
        while True:
            with self.env.read() as txn:
                self.live_tip = _tip(txn, self.db[DB_META])[0]
                cursor = txn.cursor(db)
                if last is None:
                    more = cursor.first()
                elif name in (DB_ENTITIES, DB_CASES):
                    more = cursor.set_range_dup(*last) and cursor.next()
                else:
                    more = cursor.set_range(last[0]) and cursor.next()
                n = 0
                while more and n < CHUNK_ENTRIES:
                    key, value = bytes(cursor.key()), bytes(cursor.value())
                    check(txn, key, value)
                    last = (key, value)
                    n += 1
                    more = cursor.next()
            done += n
            self.progress(VerifyProgress(phase, done, total))
            if not more:
                return

    def _check_posting(self, txn: ReadTxn, key: bytes, value: bytes) -> None:
        height, index = LOC.unpack(value)
        if not self._valid_loc(height, index):
            raise _Fault(
                height,
                f"the entity index posts {key.hex()[:16]}... at ({height}, {index}), "
                "where there is no transaction",
            )

    def _check_link(self, txn: ReadTxn, key: bytes, value: bytes) -> None:
        height, index, n = LINK_KEY.unpack(key)
        where = f"link {n} of transaction ({height}, {index})"
        if not self._valid_loc(height, index):
            raise _Fault(height, f"{where} belongs to no stored transaction")
        try:
            a, b, _ = decode_link(value)
        except ValueError as exc:
            raise _Fault(height, f"{where} is malformed: {exc}") from None
        postings = txn.cursor(self.db[DB_ENTITIES])
        loc = key[:LOC_SIZE]
        for end in (a, b):
            if not (postings.set_range_dup(end, loc) and bytes(postings.value()) == loc):
                raise _Fault(
                    height, f"{where} is not posted under its endpoint {end.hex()[:16]}..."
                )

    def _check_nonce(self, txn: ReadTxn, key: bytes, value: bytes) -> None:
        height, index = LOC.unpack(value)
        if not self._valid_loc(height, index):
            raise _Fault(
                height,
                f"the nonce index points to ({height}, {index}), where there is no transaction",
            )

    def _check_case_posting(self, txn: ReadTxn, key: bytes, value: bytes) -> None:
        case = key[:40].decode(errors="replace")
        if len(value) != CASE_POSTING.size:
            raise _Fault(None, f"the case index holds a malformed entry under case {case!r}")
        role, height, index = CASE_POSTING.unpack(value)
        if role not in _CASE_ROLES:
            raise _Fault(height, f"the case index files ({height}, {index}) in unknown role {role}")
        if not self._valid_loc(height, index):
            raise _Fault(
                height,
                f"the case index files ({height}, {index}) under case {case!r}, "
                "where there is no transaction",
            )


def _tip(txn: ReadTxn, meta: Database) -> tuple[int, bytes]:
    value = txn.get(META_TIP, db=meta)
    if value is None or len(value) != TIP.size:
        raise _Fault(None, "the tip record is missing or malformed")
    height, block_hash = TIP.unpack(value)
    return int(height), bytes(block_hash)

"""The ledger store: committed blocks, their certificates and every index, in LMDB.

One write transaction per call of ``append_block``/``append_blocks`` puts the blocks,
certificates, hash and transaction index, entity postings, links and the new tip, so
a reader (or a restart after SIGKILL) sees all of a block or none of it. Reads are
short read transactions that never wait for the writer. The key layout is described
in ``node.ledger.layout``.

The store trusts its caller for finality: it checks that a block extends the tip and
that the certificate and index belong to it, but verifying the commit signatures is
the job of whoever produced the pair (``node.ledger.verify`` re-checks everything).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from consensus.blocks import Block, Certificate
from consensus.codec import DecodeError, decode_value
from consensus.crypto import DIGEST_SIZE
from node.ledger.env import (
    DEFAULT_MAP_SIZE,
    DEFAULT_MAX_MAP_SIZE,
    DbSpec,
    Environment,
    ReadCursor,
    ReadTxn,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    WriteTxn,
)
from node.ledger.layout import (
    CASE_POSTING,
    DB_BLOCKS,
    DB_CASES,
    DB_CERTS,
    DB_CONSENSUS,
    DB_ENTITIES,
    DB_HASHES,
    DB_LINKS,
    DB_META,
    DB_NONCES,
    DB_TXPOS,
    DB_TXS,
    GOVERNANCE_ROLES,
    LINK_KEY,
    LOC,
    LOC_SIZE,
    MAX_CASE_KEY,
    MAX_ENTITY_KEY,
    MAX_HEIGHT,
    MAX_TX_INDEX,
    META_CHAIN_ID,
    META_CHECKPOINT,
    META_GENESIS,
    U64,
    BlockIndex,
    CasePosting,
    CaseRole,
    Link,
    LinkRecord,
    TxIndex,
    decode_link,
    height_key,
    loc_key,
    nonce_key,
    tx_id,
    tx_slice,
)
from node.ledger.write import (
    BlockRejectedError,
    append_records,
    claim_identity,
    prepare_block,
    put_blocks,
    read_tip,
)

__all__ = [
    "BlockIndex",
    "BlockRejectedError",
    "CasePosting",
    "CaseRole",
    "LedgerStore",
    "Link",
    "LinkRecord",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreStats",
    "TxIndex",
    "tx_id",
]

T = TypeVar("T")

SPECS = (
    DbSpec(DB_BLOCKS),
    DbSpec(DB_TXPOS),
    DbSpec(DB_HASHES),
    DbSpec(DB_CERTS),
    DbSpec(DB_TXS),
    DbSpec(DB_ENTITIES, dupsort=True, dupfixed=True),
    DbSpec(DB_LINKS),
    DbSpec(DB_NONCES),
    DbSpec(DB_CASES, dupsort=True, dupfixed=True),
    DbSpec(DB_META),
    DbSpec(DB_CONSENSUS),
)


@dataclass(frozen=True)
class StoreStats:
    entries: dict[str, int]
    db_bytes: dict[str, int]  # B-tree and overflow pages of each database
    bytes_on_disk: int
    file_size: int
    used_bytes: int
    map_size: int
    tip_height: int


class LedgerStore:
    """A node's committed ledger. Thread-safe; open one per data directory and process."""

    def __init__(self, env: Environment, chain_id: str, genesis_hash: bytes) -> None:
        self._env = env
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self._db = env.dbs

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        chain_id: str,
        genesis_hash: bytes,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        sync: bool = True,
    ) -> LedgerStore:
        """Open or create the store of ``chain_id`` in directory ``path``.

        ``sync=False`` skips fsync at commit: a power loss may then lose committed
        blocks, so it exists for tests and simulations only; a node keeps the default.
        """
        if not chain_id:
            raise ValueError("chain id must not be empty")
        env = Environment(
            Path(path), SPECS, map_size=map_size, max_map_size=max_map_size, sync=sync
        )
        try:
            env.write(lambda txn: claim_identity(env, txn, chain_id, genesis_hash))
        except BaseException:
            env.close()
            raise
        return cls(env, chain_id, genesis_hash)

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str], *, readonly: bool = True) -> LedgerStore:
        """Open a store whatever chain it belongs to (for offline tools)."""
        env = Environment(Path(path), SPECS, readonly=readonly)
        try:
            with env.read() as txn:
                chain = txn.get(META_CHAIN_ID, db=env.dbs[DB_META])
                genesis = txn.get(META_GENESIS, db=env.dbs[DB_META])
                if chain is None or genesis is None:
                    raise StoreCorruptError(f"{path} is not an initialised ledger store")
                return cls(env, bytes(chain).decode(errors="replace"), bytes(genesis))
        except BaseException:
            env.close()
            raise

    @property
    def environment(self) -> Environment:
        """The shared LMDB environment, for sibling stores that keep their own databases."""
        return self._env

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing blocks ---------------------------------------------------------------

    def append_block(self, block: Block, cert: Certificate, index: BlockIndex) -> None:
        """Commit one block atomically; ``BlockRejectedError`` if it does not fit."""
        self.append_blocks([(block, cert, index)])

    def append_blocks(self, items: Sequence[tuple[Block, Certificate, BlockIndex]]) -> None:
        """Commit consecutive blocks in one write transaction: all of them or none."""
        prepared = [prepare_block(self.chain_id, *item) for item in items]
        if prepared:
            self._env.write(lambda txn: put_blocks(txn, self._db, prepared))

    # -- reading blocks ---------------------------------------------------------------

    def tip(self) -> tuple[int, bytes]:
        """(height, hash) of the last committed block; (0, GENESIS_PARENT) when empty."""
        with self._env.read() as txn:
            return read_tip(txn, self._db[DB_META])

    def block_bytes(self, height: int) -> bytes | None:
        if not _is_height(height):
            return None
        with self._env.read() as txn:
            data = txn.get(height_key(height), db=self._db[DB_BLOCKS])
            return None if data is None else bytes(data)

    def block(self, height: int) -> Block | None:
        data = self.block_bytes(height)
        return None if data is None else _decode(Block, data, f"block {height}")

    def height_of(self, block_hash: bytes) -> int | None:
        if len(block_hash) != DIGEST_SIZE:
            return None
        with self._env.read() as txn:
            value = txn.get(block_hash, db=self._db[DB_HASHES])
            return None if value is None else int(U64.unpack(value)[0])

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        height = self.height_of(block_hash)
        return None if height is None else self.block(height)

    def certificate(self, height: int) -> Certificate | None:
        if not _is_height(height):
            return None
        with self._env.read() as txn:
            value = txn.get(height_key(height), db=self._db[DB_CERTS])
            data = None if value is None else bytes(value)
        return None if data is None else _decode(Certificate, data, f"certificate {height}")

    def raw_blocks_range(
        self, start: int, end: int, *, max_bytes: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Encoded (block, certificate) pairs for heights ``start..end`` inclusive, as
        stored, for serving catch-up. Stops at the tip, or once ``max_bytes`` is
        reached (always returning at least one block that exists)."""
        out: list[tuple[bytes, bytes]] = []
        size = 0
        with self._env.read() as txn:
            blocks = txn.cursor(self._db[DB_BLOCKS])
            certs = self._db[DB_CERTS]
            start, end = max(start, 1), min(end, MAX_HEIGHT)
            if start > end or not blocks.set_key(height_key(start)):
                return out
            for key, data in blocks:
                if U64.unpack(key)[0] > end:
                    break
                cert = txn.get(key, db=certs)
                if cert is None:
                    raise StoreCorruptError(f"block {U64.unpack(key)[0]} has no certificate")
                out.append((bytes(data), bytes(cert)))
                size += len(data) + len(cert)
                if max_bytes is not None and size >= max_bytes:
                    break
        return out

    def blocks_range(
        self, start: int, end: int, *, max_bytes: int | None = None
    ) -> list[tuple[Block, Certificate]]:
        """Decoded form of ``raw_blocks_range`` (``end`` is inclusive)."""
        pairs = self.raw_blocks_range(start, end, max_bytes=max_bytes)
        return [
            (_decode(Block, b, "block"), _decode(Certificate, c, "certificate")) for b, c in pairs
        ]

    # -- reading transactions and indexes --------------------------------------------

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        if len(tx_id) != DIGEST_SIZE:
            return None
        with self._env.read() as txn:
            value = txn.get(tx_id, db=self._db[DB_TXS])
            return None if value is None else _unpack_loc(value)

    def tx(self, tx_id: bytes) -> bytes | None:
        """The bytes of a committed transaction, or None if it is not in the ledger."""
        if len(tx_id) != DIGEST_SIZE:
            return None
        with self._env.read() as txn:
            value = txn.get(tx_id, db=self._db[DB_TXS])
            if value is None:
                return None
            return self._tx_at(txn, *_unpack_loc(value))

    def tx_at(self, height: int, index: int) -> bytes | None:
        with self._env.read() as txn:
            return self._tx_at(txn, height, index)

    def txs_at(self, locations: Sequence[tuple[int, int]]) -> list[bytes]:
        """Transactions at the given locations (in one read transaction)."""
        with self._env.read() as txn:
            out = []
            for height, index in locations:
                tx = self._tx_at(txn, height, index)
                if tx is None:
                    raise StoreError(f"there is no transaction at ({height}, {index})")
                out.append(tx)
            return out

    def _tx_at(self, txn: ReadTxn, height: int, index: int) -> bytes | None:
        if not _is_height(height):
            return None
        key = height_key(height)
        data = txn.get(key, db=self._db[DB_BLOCKS])
        table = txn.get(key, db=self._db[DB_TXPOS])
        if data is None or table is None:
            return None
        try:
            return tx_slice(data, table, index)
        except ValueError as exc:
            raise StoreCorruptError(f"block {height}: {exc}") from None

    def nonce_used(self, member: str, nonce: int) -> bool:
        """Whether a committed, counted transaction of ``member`` used ``nonce``."""
        try:
            key = nonce_key(member, nonce)
        except ValueError:
            return False
        with self._env.read() as txn:
            return txn.get(key, db=self._db[DB_NONCES]) is not None

    def nonces_used(self, keys: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of ``keys`` (member, nonce) ``nonce_used`` would answer True for, in one
        read transaction: a batch of transactions costs one transaction, not one each."""
        used: set[tuple[str, int]] = set()
        with self._env.read() as txn:
            db = self._db[DB_NONCES]
            for member, nonce in keys:
                try:
                    key = nonce_key(member, nonce)
                except ValueError:
                    continue
                if txn.get(key, db=db) is not None:
                    used.add((member, nonce))
        return used

    def entity_txs(
        self, entity_key: bytes, limit: int = 1000, after: tuple[int, int] | None = None
    ) -> list[tuple[int, int]]:
        """Locations of the transactions concerning an entity, in ledger order,
        starting after ``after`` (for paging), at most ``limit`` of them."""
        out: list[tuple[int, int]] = []
        if limit <= 0 or not 0 < len(entity_key) <= MAX_ENTITY_KEY:
            return out
        with self._env.read() as txn:
            cursor = txn.cursor(self._db[DB_ENTITIES])
            if not _seek_postings(cursor, entity_key, after):
                return out
            unpack = LOC.unpack
            for value in cursor.iternext_dup():
                out.append(unpack(value))
                if len(out) >= limit:
                    break
        return out

    def entity_tx_count(self, entity_key: bytes) -> int:
        if not 0 < len(entity_key) <= MAX_ENTITY_KEY:
            return 0
        with self._env.read() as txn:
            cursor = txn.cursor(self._db[DB_ENTITIES])
            return cursor.count() if cursor.set_key(entity_key) else 0

    def links_of(
        self, entity_key: bytes, limit: int = 1000, after: tuple[int, int] | None = None
    ) -> list[LinkRecord]:
        """Links with ``entity_key`` at either end, in ledger order, for transactions
        after ``after``; at most ``limit`` (all links of the last transaction read
        are returned, so page with ``after`` = the last record's location)."""
        out: list[LinkRecord] = []
        if limit <= 0 or not 0 < len(entity_key) <= MAX_ENTITY_KEY:
            return out
        with self._env.read() as txn:
            postings = txn.cursor(self._db[DB_ENTITIES])
            links = txn.cursor(self._db[DB_LINKS])
            if not _seek_postings(postings, entity_key, after):
                return out
            for loc in postings.iternext_dup():
                if not links.set_range(loc):
                    break
                for key, value in links:
                    if key[:LOC_SIZE] != loc:
                        break
                    height, index, _ = LINK_KEY.unpack(key)
                    out.extend(_link_records(entity_key, value, height, index))
                if len(out) >= limit:
                    break
        return out

    def case_postings(
        self,
        case_key: bytes,
        role: CaseRole,
        limit: int = 1000,
        after: tuple[int, int] | None = None,
    ) -> list[tuple[int, int]]:
        """Locations of the transactions that are ``role`` to a case, in ledger order,
        after ``after``, at most ``limit``."""
        out: list[tuple[int, int]] = []
        if limit <= 0 or not 0 < len(case_key) <= MAX_CASE_KEY:
            return out
        start = bytes((role,))
        if after is not None and after[0] >= 0:
            if after[0] > MAX_HEIGHT:
                return out
            start = CASE_POSTING.pack(role, after[0], min(max(after[1], 0), MAX_TX_INDEX))
        with self._env.read() as txn:
            cursor = txn.cursor(self._db[DB_CASES])
            if not cursor.set_range_dup(case_key, start):
                return out
            while len(out) < limit:
                value = cursor.value()
                code, height, index = CASE_POSTING.unpack(value)
                if code != role:
                    break
                if after is None or (height, index) > after:
                    out.append((int(height), int(index)))
                if not cursor.next_dup():
                    break
        return out

    def governance_postings(
        self, roles: Collection[CaseRole] = GOVERNANCE_ROLES
    ) -> tuple[int, list[CasePosting]]:
        """The tip height and, as of that tip, every posting in ``cases`` with one of
        the (leading) ``roles``, read in one transaction: what a case registry is
        rebuilt from without reading the records filed under cases."""
        last = max(roles)
        out: list[CasePosting] = []
        with self._env.read() as txn:
            tip, _ = read_tip(txn, self._db[DB_META])
            cursor = txn.cursor(self._db[DB_CASES])
            more = cursor.first()
            while more:
                key = bytes(cursor.key())
                while True:
                    code, height, index = CASE_POSTING.unpack(cursor.value())
                    if code > last:
                        break
                    if code in roles:
                        out.append(CasePosting(key, CaseRole(code), int(height), int(index)))
                    if not cursor.next_dup():
                        break
                # The least key above ``key``: skip its remaining postings at once.
                more = cursor.set_range(key + b"\0")
        return tip, out

    # -- consensus log and checkpoint -------------------------------------------------

    def append_consensus_records(self, records: Sequence[bytes]) -> None:
        """Append records to the replica's durable log in one fsync'd transaction."""
        if records:
            self._env.write(lambda txn: append_records(txn, self._db[DB_CONSENSUS], records))

    def append_records_and_blocks(
        self,
        records: Sequence[bytes],
        items: Sequence[tuple[Block, Certificate, BlockIndex]],
    ) -> None:
        """``append_consensus_records`` and ``append_blocks`` in one write transaction,
        so one fsync: both durable, or (a crash before the commit) neither."""
        prepared = [prepare_block(self.chain_id, *item) for item in items]

        def write(txn: WriteTxn) -> None:
            if records:
                append_records(txn, self._db[DB_CONSENSUS], records)
            if prepared:
                put_blocks(txn, self._db, prepared)

        self._env.write(write)

    def consensus_records(self) -> list[bytes]:
        with self._env.read() as txn:
            cursor = txn.cursor(self._db[DB_CONSENSUS])
            return [bytes(value) for _, value in cursor]

    def compact_consensus_records(self, records: Sequence[bytes]) -> None:
        """Replace the whole durable log with ``records`` atomically."""

        def replace(txn: WriteTxn) -> None:
            txn.drop(self._db[DB_CONSENSUS], delete=False)
            append_records(txn, self._db[DB_CONSENSUS], records)

        self._env.write(replace)

    def set_stable_checkpoint(self, height: int, proof: bytes) -> None:
        """Record the last stable checkpoint (its height and an opaque proof)."""
        value = U64.pack(height) + proof
        self._env.write(lambda txn: txn.put(META_CHECKPOINT, value, db=self._db[DB_META]))

    def stable_checkpoint(self) -> tuple[int, bytes] | None:
        with self._env.read() as txn:
            value = txn.get(META_CHECKPOINT, db=self._db[DB_META])
            if value is None:
                return None
            return int(U64.unpack_from(value)[0]), bytes(value[U64.size :])

    # -- housekeeping -----------------------------------------------------------------

    def stats(self) -> StoreStats:
        page = self._env.page_size()
        entries: dict[str, int] = {}
        db_bytes: dict[str, int] = {}
        with self._env.read() as txn:
            for name, db in self._db.items():
                st = txn.stat(db)
                entries[name.decode()] = st["entries"]
                pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                db_bytes[name.decode()] = pages * page
            tip_height, _ = read_tip(txn, self._db[DB_META])
        info = self._env.info()
        file = (self._env.path / "data.mdb").stat()
        return StoreStats(
            entries=entries,
            db_bytes=db_bytes,
            bytes_on_disk=file.st_blocks * 512,
            file_size=file.st_size,
            used_bytes=(info["last_pgno"] + 1) * page,
            map_size=info["map_size"],
            tip_height=tip_height,
        )


def _link_records(entity: bytes, value: memoryview, height: int, index: int) -> list[LinkRecord]:
    try:
        a, b, relation = decode_link(value)
    except ValueError:
        raise StoreCorruptError(f"a link of transaction ({height}, {index}) is malformed") from None
    out = []
    if a == entity:
        out.append(LinkRecord(b, relation, True, height, index))
    elif b == entity:
        out.append(LinkRecord(a, relation, False, height, index))
    return out


def _is_height(height: int) -> bool:
    return 0 <= height <= MAX_HEIGHT


def _seek_postings(cursor: ReadCursor, entity_key: bytes, after: tuple[int, int] | None) -> bool:
    """Position on the entity's first posting after ``after``; False if there is none."""
    if after is None:
        return bool(cursor.set_key(entity_key))
    # The first location that sorts after ``after``, kept inside the key's value range.
    height, index = after[0], after[1] + 1
    if height < 0:
        height, index = 0, 0
    if index > MAX_TX_INDEX:
        height, index = height + 1, 0
    if height > MAX_HEIGHT:
        return False
    return bool(cursor.set_range_dup(entity_key, loc_key(height, max(index, 0))))


def _unpack_loc(value: bytes | memoryview) -> tuple[int, int]:
    height, index = LOC.unpack(value)
    return int(height), int(index)


def _decode(cls: type[T], data: bytes, what: str) -> T:
    try:
        return decode_value(cls, data)
    except DecodeError as exc:
        raise StoreCorruptError(f"{what} in the ledger store does not decode: {exc}") from None

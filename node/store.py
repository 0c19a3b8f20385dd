"""The ledger store: committed blocks, their certificates and every index, in LMDB.

One write transaction per call of ``append_block``/``append_blocks`` puts the blocks,
certificates, hash and transaction index, entity postings, links and the new tip, so
a reader (or a restart after SIGKILL) sees all of a block or none of it. Reads are
short read transactions that never wait for the writer. The key layout is described
in ``node.store_layout``.

The store trusts its caller for finality: it checks that a block extends the tip and
that the certificate and index belong to it, but verifying the commit signatures is
the job of whoever produced the pair (``node.verify_ledger`` re-checks everything).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from consensus.blocks import GENESIS_PARENT, Block, Certificate
from consensus.codec import DecodeError, decode_value, encode_value
from node.store_env import (
    DEFAULT_MAP_SIZE,
    DEFAULT_MAX_MAP_SIZE,
    Database,
    DbSpec,
    Environment,
    ReadCursor,
    ReadTxn,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    WriteTxn,
)
from node.store_layout import (
    DB_BLOCKS,
    DB_CERTS,
    DB_CONSENSUS,
    DB_ENTITIES,
    DB_HASHES,
    DB_LINKS,
    DB_META,
    DB_NONCES,
    DB_TXPOS,
    DB_TXS,
    FORMAT_VERSION,
    LINK_KEY,
    LOC,
    LOC_SIZE,
    MAX_ENTITY_KEY,
    MAX_LINKS_PER_TX,
    MAX_RELATION,
    MAX_TX_INDEX,
    META_CHAIN_ID,
    META_CHECKPOINT,
    META_FORMAT,
    META_GENESIS,
    META_TIP,
    TIP,
    U32,
    U64,
    BlockIndex,
    Link,
    LinkRecord,
    TxIndex,
    decode_link,
    encode_block,
    encode_link,
    height_key,
    loc_key,
    nonce_key,
    tx_id,
    tx_slice,
)

__all__ = [
    "BlockIndex",
    "BlockRejectedError",
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
    DbSpec(DB_META),
    DbSpec(DB_CONSENSUS),
)


class BlockRejectedError(StoreError):
    """A block that does not extend the stored chain; nothing was written."""


@dataclass(frozen=True)
class StoreStats:
    entries: dict[str, int]
    bytes_on_disk: int
    file_size: int
    used_bytes: int
    map_size: int
    tip_height: int


@dataclass(frozen=True)
class _Prepared:
    """A block encoded and checked outside the write transaction, ready to put."""

    height: int
    parent_hash: bytes
    block_hash: bytes
    block_data: bytes
    txpos: bytes
    cert_data: bytes
    txs: list[tuple[bytes, bytes]]
    postings: list[tuple[bytes, bytes]]
    links: list[tuple[bytes, bytes]]
    nonces: list[tuple[bytes, bytes]]


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
            env.write(lambda txn: _claim_identity(env, txn, chain_id, genesis_hash))
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
                return cls(env, bytes(chain).decode(), bytes(genesis))
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
        prepared = [self._prepare(block, cert, index) for block, cert, index in items]
        if prepared:
            self._env.write(lambda txn: self._put_blocks(txn, prepared))

    def _prepare(self, block: Block, cert: Certificate, index: BlockIndex) -> _Prepared:
        header = block.header
        height = header.height
        if header.chain_id != self.chain_id:
            raise BlockRejectedError(
                f"block {height} belongs to chain {header.chain_id!r}, not {self.chain_id!r}"
            )
        if cert.height != height or cert.digest != header.batch_digest():
            raise BlockRejectedError(f"the certificate given with block {height} is not for it")
        if header.tx_count != len(block.txs) or len(block.txs) > MAX_TX_INDEX:
            raise BlockRejectedError(f"block {height}: header and body disagree on tx count")
        if len(index.txs) != len(block.txs):
            raise BlockRejectedError(
                f"block {height} has {len(block.txs)} transactions, its index {len(index.txs)}"
            )
        block_data, txpos = encode_block(block)
        txs: list[tuple[bytes, bytes]] = []
        postings: list[tuple[bytes, bytes]] = []
        links: list[tuple[bytes, bytes]] = []
        nonces: list[tuple[bytes, bytes]] = []
        for i, (tx, entry) in enumerate(zip(block.txs, index.txs, strict=True)):
            if entry.tx_id != tx_id(tx):
                raise BlockRejectedError(f"block {height}: index entry {i} has the wrong tx id")
            loc = loc_key(height, i)
            txs.append((entry.tx_id, loc))
            for key in _entities_of(entry, height, i):
                postings.append((key, loc))
            if entry.nonce is not None:
                try:
                    nonces.append((nonce_key(*entry.nonce), loc))
                except (ValueError, OverflowError) as exc:
                    raise BlockRejectedError(f"block {height}: tx {i}: {exc}") from None
            if len(entry.links) > MAX_LINKS_PER_TX:
                raise BlockRejectedError(f"block {height}: tx {i} has too many links")
            for n, link in enumerate(entry.links):
                if len(link.relation) > MAX_RELATION:
                    raise BlockRejectedError(f"block {height}: tx {i} has an oversized relation")
                links.append((LINK_KEY.pack(height, i, n), encode_link(*_link_fields(link))))
        return _Prepared(
            height=height,
            parent_hash=header.parent_hash,
            block_hash=block.hash(),
            block_data=block_data,
            txpos=txpos,
            cert_data=encode_value(cert),
            txs=txs,
            postings=postings,
            links=links,
            nonces=nonces,
        )

    def _put_blocks(self, txn: WriteTxn, blocks: list[_Prepared]) -> None:
        db = self._db
        tip_height, tip_hash = _read_tip(txn, db[DB_META])
        cursors = {name: txn.cursor(db[name]) for name in (DB_BLOCKS, DB_TXPOS, DB_CERTS)}
        txs = txn.cursor(db[DB_TXS])
        postings = txn.cursor(db[DB_ENTITIES])
        links = txn.cursor(db[DB_LINKS])
        nonces = txn.cursor(db[DB_NONCES])
        for block in blocks:
            if block.height != tip_height + 1:
                raise BlockRejectedError(
                    f"block {block.height} does not extend the tip at height {tip_height}"
                )
            if block.parent_hash != tip_hash:
                raise BlockRejectedError(
                    f"block {block.height} has parent {block.parent_hash.hex()[:16]}..., "
                    f"the block at height {tip_height} is {tip_hash.hex()[:16]}..."
                )
            key = height_key(block.height)
            # append=True reports a key that is not past the last one as False; with
            # the tip checked above that can only mean the files disagree with meta.
            ok = cursors[DB_BLOCKS].put(key, block.block_data, append=True)
            ok = ok and cursors[DB_TXPOS].put(key, block.txpos, append=True)
            ok = ok and cursors[DB_CERTS].put(key, block.cert_data, append=True)
            ok = ok and txn.put(block.block_hash, key, overwrite=False, db=db[DB_HASHES])
            if not ok:
                raise StoreCorruptError(
                    f"the ledger store already holds data for block {block.height} past its tip"
                )
            # A tx id seen before keeps its first location (replays are the transaction
            # layer's to refuse; a committed block cannot be refused here).
            txs.putmulti(block.txs, overwrite=False)
            nonces.putmulti(block.nonces, overwrite=False)
            _, added = postings.putmulti(block.postings, append=True)
            _, linked = links.putmulti(block.links, append=True)
            if added != len(block.postings) or linked != len(block.links):
                raise StoreCorruptError(
                    f"the ledger store already holds index entries for block {block.height}"
                )
            tip_height, tip_hash = block.height, block.block_hash
        txn.put(META_TIP, TIP.pack(tip_height, tip_hash), db=db[DB_META])

    # -- reading blocks ---------------------------------------------------------------

    def tip(self) -> tuple[int, bytes]:
        """(height, hash) of the last committed block; (0, GENESIS_PARENT) when empty."""
        with self._env.read() as txn:
            return _read_tip(txn, self._db[DB_META])

    def block_bytes(self, height: int) -> bytes | None:
        with self._env.read() as txn:
            data = txn.get(height_key(height), db=self._db[DB_BLOCKS])
            return None if data is None else bytes(data)

    def block(self, height: int) -> Block | None:
        data = self.block_bytes(height)
        return None if data is None else _decode(Block, data, f"block {height}")

    def height_of(self, block_hash: bytes) -> int | None:
        with self._env.read() as txn:
            value = txn.get(block_hash, db=self._db[DB_HASHES])
            return None if value is None else int(U64.unpack(value)[0])

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        height = self.height_of(block_hash)
        return None if height is None else self.block(height)

    def certificate(self, height: int) -> Certificate | None:
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
            if start > end or not blocks.set_key(height_key(max(start, 1))):
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
        with self._env.read() as txn:
            value = txn.get(tx_id, db=self._db[DB_TXS])
            return None if value is None else _unpack_loc(value)

    def tx(self, tx_id: bytes) -> bytes | None:
        """The bytes of a committed transaction, or None if it is not in the ledger."""
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
        except (ValueError, OverflowError):
            return False
        with self._env.read() as txn:
            return txn.get(key, db=self._db[DB_NONCES]) is not None

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

    # -- consensus log and checkpoint -------------------------------------------------

    def append_consensus_records(self, records: Sequence[bytes]) -> None:
        """Append records to the replica's durable log in one fsync'd transaction."""
        if records:
            self._env.write(lambda txn: _append_records(txn, self._db[DB_CONSENSUS], records))

    def consensus_records(self) -> list[bytes]:
        with self._env.read() as txn:
            cursor = txn.cursor(self._db[DB_CONSENSUS])
            return [bytes(value) for _, value in cursor]

    def compact_consensus_records(self, records: Sequence[bytes]) -> None:
        """Replace the whole durable log with ``records`` atomically."""

        def replace(txn: WriteTxn) -> None:
            txn.drop(self._db[DB_CONSENSUS], delete=False)
            _append_records(txn, self._db[DB_CONSENSUS], records)

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
        data_file = self._env.path / "data.mdb"
        with self._env.read() as txn:
            entries = {name.decode(): int(txn.stat(db)["entries"]) for name, db in self._db.items()}
            tip_height, _ = _read_tip(txn, self._db[DB_META])
        info = self._env.info()
        st = data_file.stat()
        return StoreStats(
            entries=entries,
            bytes_on_disk=st.st_blocks * 512,
            file_size=st.st_size,
            used_bytes=(info["last_pgno"] + 1) * self._env.page_size(),
            map_size=info["map_size"],
            tip_height=tip_height,
        )


def _claim_identity(env: Environment, txn: WriteTxn, chain_id: str, genesis: bytes) -> None:
    meta = env.dbs[DB_META]
    stored_chain = txn.get(META_CHAIN_ID, db=meta)
    if stored_chain is None:
        if txn.stat(env.dbs[DB_BLOCKS])["entries"]:
            raise StoreCorruptError(f"the ledger store at {env.path} has blocks but no identity")
        txn.put(META_CHAIN_ID, chain_id.encode(), db=meta)
        txn.put(META_GENESIS, genesis, db=meta)
        txn.put(META_FORMAT, U32.pack(FORMAT_VERSION), db=meta)
        txn.put(META_TIP, TIP.pack(0, GENESIS_PARENT), db=meta)
        return
    stored_genesis = txn.get(META_GENESIS, db=meta) or b""
    if stored_chain != chain_id.encode() or stored_genesis != genesis:
        raise StoreError(
            f"this data directory belongs to chain {stored_chain.decode(errors='replace')} "
            f"(genesis {stored_genesis.hex()[:16]}...), not {chain_id} "
            f"(genesis {genesis.hex()[:16]}...)"
        )
    version = txn.get(META_FORMAT, db=meta)
    if version is None or U32.unpack(version)[0] != FORMAT_VERSION:
        found = "none" if version is None else U32.unpack(version)[0]
        raise StoreError(
            f"the ledger store at {env.path} has format version {found}, "
            f"this build reads version {FORMAT_VERSION}"
        )


def _read_tip(txn: ReadTxn | WriteTxn, meta: Database) -> tuple[int, bytes]:
    value = txn.get(META_TIP, db=meta)
    if value is None or len(value) != TIP.size:
        raise StoreCorruptError("the ledger store has no valid tip record")
    height, block_hash = TIP.unpack(value)
    return int(height), bytes(block_hash)


def _entities_of(entry: TxIndex, height: int, index: int) -> list[bytes]:
    # Link endpoints are posted too: a link concerns both entities, and links_of
    # finds a link through its endpoints' postings.
    keys = dict.fromkeys(entry.entities)
    for link in entry.links:
        keys[link.a] = None
        keys[link.b] = None
    for key in keys:
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_ENTITY_KEY:
            raise BlockRejectedError(
                f"block {height}: tx {index} has an entity key that is not 1 to "
                f"{MAX_ENTITY_KEY} bytes"
            )
    return list(keys)


def _link_fields(link: Link) -> tuple[bytes, bytes, bytes]:
    return link.a, link.b, link.relation


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


def _seek_postings(cursor: ReadCursor, entity_key: bytes, after: tuple[int, int] | None) -> bool:
    """Position on the entity's first posting after ``after``; False if there is none."""
    if after is None:
        return bool(cursor.set_key(entity_key))
    start = loc_key(*after)
    if not cursor.set_range_dup(entity_key, start):
        return False
    if bytes(cursor.value()) == start:
        return bool(cursor.next_dup())
    return True


def _unpack_loc(value: bytes | memoryview) -> tuple[int, int]:
    height, index = LOC.unpack(value)
    return int(height), int(index)


def _append_records(txn: WriteTxn, db: Database, records: Sequence[bytes]) -> None:
    cursor = txn.cursor(db)
    start = U64.unpack(cursor.key())[0] + 1 if cursor.last() else 0
    items = [(U64.pack(start + i), bytes(record)) for i, record in enumerate(records)]
    cursor.putmulti(items, append=True)


def _decode(cls: type[T], data: bytes, what: str) -> T:
    try:
        return decode_value(cls, data)
    except DecodeError as exc:
        raise StoreCorruptError(f"{what} in the ledger store does not decode: {exc}") from None

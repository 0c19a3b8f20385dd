"""The write path of the ledger store: checking and encoding blocks, then putting them.

Everything that can be computed without the store (encodings, keys, the checks that a
certificate and an index belong to their block) happens in ``prepare_block``, before
the write transaction begins: the transaction stays short, and when a full map makes
``Environment.write`` run it again, nothing needs recomputing. ``put_blocks`` runs
inside the transaction and checks what only the store knows: the tip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.blocks import GENESIS_PARENT, Block, Certificate
from consensus.codec import encode_value
from node.ledger.env import (
    Database,
    Environment,
    ReadTxn,
    StoreCorruptError,
    StoreError,
    WriteTxn,
)
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
    FORMAT_VERSION,
    LINK_KEY,
    MAX_CASE_KEY,
    MAX_ENTITY_KEY,
    MAX_LINKS_PER_TX,
    MAX_RELATION,
    MAX_TX_INDEX,
    META_CHAIN_ID,
    META_FORMAT,
    META_GENESIS,
    META_TIP,
    TIP,
    U32,
    U64,
    BlockIndex,
    CaseRole,
    TxIndex,
    encode_block,
    encode_link,
    height_key,
    loc_key,
    nonce_key,
    tx_id,
)

Pairs = list[tuple[bytes, bytes]]


class BlockRejectedError(StoreError):
    """A block that does not extend the stored chain, or whose certificate or index is
    not its own; nothing was written."""


@dataclass(frozen=True)
class PreparedBlock:
    """A block encoded and checked outside the write transaction, ready to put."""

    height: int
    parent_hash: bytes
    block_hash: bytes
    block_data: bytes
    txpos: bytes
    cert_data: bytes
    txs: Pairs
    postings: Pairs
    links: Pairs
    nonces: Pairs
    cases: Pairs


def prepare_block(
    chain_id: str, block: Block, cert: Certificate, index: BlockIndex
) -> PreparedBlock:
    header = block.header
    height = header.height
    if header.chain_id != chain_id:
        raise BlockRejectedError(
            f"block {height} belongs to chain {header.chain_id!r}, not {chain_id!r}"
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
    txs: Pairs = []
    postings: Pairs = []
    links: Pairs = []
    nonces: Pairs = []
    cases: Pairs = []
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
            except ValueError as exc:
                raise BlockRejectedError(f"block {height}: tx {i}: {exc}") from None
        if len(entry.links) > MAX_LINKS_PER_TX:
            raise BlockRejectedError(f"block {height}: tx {i} has too many links")
        for n, link in enumerate(entry.links):
            if len(link.relation) > MAX_RELATION:
                raise BlockRejectedError(f"block {height}: tx {i} has an oversized relation")
            links.append((LINK_KEY.pack(height, i, n), encode_link(link.a, link.b, link.relation)))
        cases.extend(_cases_of(entry, height, i))
    return PreparedBlock(
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
        cases=cases,
    )


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


def _cases_of(entry: TxIndex, height: int, index: int) -> Pairs:
    out: Pairs = []
    for key, role in dict.fromkeys(entry.cases):
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_CASE_KEY:
            raise BlockRejectedError(
                f"block {height}: tx {index} has a case key that is not 1 to {MAX_CASE_KEY} bytes"
            )
        try:
            code = CaseRole(role)
        except ValueError:
            raise BlockRejectedError(
                f"block {height}: tx {index} has an unknown case role"
            ) from None
        out.append((key, CASE_POSTING.pack(code, height, index)))
    return out


def put_blocks(txn: WriteTxn, dbs: dict[bytes, Database], blocks: list[PreparedBlock]) -> None:
    """Put consecutive prepared blocks and the new tip; raise if they do not extend it."""
    tip_height, tip_hash = read_tip(txn, dbs[DB_META])
    blocks_c, txpos_c, certs_c = (txn.cursor(dbs[n]) for n in (DB_BLOCKS, DB_TXPOS, DB_CERTS))
    txs = txn.cursor(dbs[DB_TXS])
    postings = txn.cursor(dbs[DB_ENTITIES])
    links = txn.cursor(dbs[DB_LINKS])
    nonces = txn.cursor(dbs[DB_NONCES])
    cases = txn.cursor(dbs[DB_CASES])
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
        # append=True reports a key that is not past the last one as False; with the
        # tip checked above, that can only mean the data disagrees with the tip record.
        ok = blocks_c.put(key, block.block_data, append=True)
        ok = ok and txpos_c.put(key, block.txpos, append=True)
        ok = ok and certs_c.put(key, block.cert_data, append=True)
        ok = ok and txn.put(block.block_hash, key, overwrite=False, db=dbs[DB_HASHES])
        if not ok:
            raise StoreCorruptError(
                f"the ledger store already holds data for block {block.height}, past its tip"
            )
        # A tx id (or nonce) seen before keeps its first location: refusing replays is
        # the transaction layer's job, and a committed block cannot be refused here.
        txs.putmulti(block.txs, overwrite=False)
        nonces.putmulti(block.nonces, overwrite=False)
        _, added = postings.putmulti(block.postings, append=True)
        _, linked = links.putmulti(block.links, append=True)
        # Not appended: a case's postings sort by role first, so a new approval
        # lands before the reports already filed under the case.
        _, filed = cases.putmulti(block.cases)
        if added != len(block.postings) or linked != len(block.links) or filed != len(block.cases):
            raise StoreCorruptError(
                f"the ledger store already holds index entries for block {block.height}"
            )
        tip_height, tip_hash = block.height, block.block_hash
    txn.put(META_TIP, TIP.pack(tip_height, tip_hash), db=dbs[DB_META])


def read_tip(txn: ReadTxn | WriteTxn, meta: Database) -> tuple[int, bytes]:
    value = txn.get(META_TIP, db=meta)
    if value is None or len(value) != TIP.size:
        raise StoreCorruptError("the ledger store has no valid tip record")
    height, block_hash = TIP.unpack(value)
    return int(height), bytes(block_hash)


def claim_identity(env: Environment, txn: WriteTxn, chain_id: str, genesis: bytes) -> None:
    """Stamp a new store with its chain, or refuse a store that belongs to another."""
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
        why = ""
        if isinstance(found, int) and found < 5:
            why = (
                " (before version 5 pseudonyms were a keyed hash under one key every "
                "member held; this build makes them with the threshold function and "
                "cannot read those: start a new ledger from a genesis made with the key "
                "ceremony)"
            )
        raise StoreError(
            f"the ledger store at {env.path} has format version {found}, "
            f"this build reads version {FORMAT_VERSION}{why}"
        )


def append_records(txn: WriteTxn, db: Database, records: Sequence[bytes]) -> None:
    """Append to a sequence-numbered log (the consensus records)."""
    cursor = txn.cursor(db)
    start = U64.unpack(cursor.key())[0] + 1 if cursor.last() else 0
    items = [(U64.pack(start + i), bytes(record)) for i, record in enumerate(records)]
    cursor.putmulti(items, append=True)

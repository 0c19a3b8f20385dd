"""What the ledger store keeps, and the exact bytes of every key and value.

All integers are unsigned big-endian, so LMDB's bytewise key order is numeric order
and a cursor walks heights, and positions inside a block, in ledger order.

Named databases (one LMDB environment):

``blocks``    height u64 -> ``encode_value(Block)``
``txpos``     height u64 -> (offset u32, length u32) per transaction: where each
              transaction's bytes sit inside the stored block, so one transaction is
              a slice of the block instead of a decode of all of it
``hashes``    block hash -> height u64
``certs``     height u64 -> ``encode_value(Certificate)``
``txs``       tx id (32 bytes) -> location: height u64 + index u32
``entities``  entity key -> location, DUPSORT + DUPFIXED: each entity's postings are
              12-byte duplicates in ledger order, stored once per entity key
``links``     location + ordinal u16 -> link (a, b, relation); endpoints are always
              also posted under ``entities``, which is how ``links_of`` finds them
``nonces``    member name (u8 length + UTF-8) + nonce u64 -> location: replay checks
``cases``     case id (UTF-8) -> role u8 + location, DUPSORT + DUPFIXED: every
              transaction that names a case, by what it is to the case (``CaseRole``);
              the roles sort first, so a case's own transaction, approvals and closes
              are read without its (possibly many) reports and audit entries
``meta``      chain id, genesis hash, tip, stable checkpoint, format version
``consensus`` sequence u64 -> opaque durable consensus record

``entities`` and ``links`` deviate from one key per (entity, location) and a link
stored under both of its endpoints, on purpose. Tx ids and entity keys are random, so
every index entry rewrites a randomly placed B-tree page at commit, and writing and
fsyncing those pages is what bounds how fast blocks apply. A link stored once under
its own location is appended instead of scattered twice, and an entity's postings
share one key instead of repeating it: in a prototype at 200,000 transactions (two
entities and one link each) the two indexes took 62 + 98 bytes per transaction
instead of 187 + 307, with two fewer random page writes per transaction.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.blocks import Block
from consensus.codec import encode_value, pack, to_wire
from consensus.crypto import DIGEST_SIZE, hash_bytes

# 2: the ``cases`` index. A version 1 store lacks its entries, so it is refused rather
# than silently missing every case committed before the upgrade.
# 3: no free text in bodies: report attributes typed by the schema of
# ``node.ledger.attributes``, a case's purpose one of ``PURPOSES`` and its justification
# committed to (``Case.justification_commitment``). Version 2 ledgers hold bodies this
# build does not decode.
# 4: case, approve, close, access and psi bodies carry ``actor``, the acting user's
# pseudonymous id; version 3 bodies of those kinds do not decode.
# 5: pseudonyms are threshold OPRF outputs (``node.identifiers.oprf``), no longer a
# keyed hash under one shared key, and access bodies name their ``evaluation``; a
# ledger of shared-key pseudonyms cannot be read with the new function.
FORMAT_VERSION = 5

DB_BLOCKS = b"blocks"
DB_TXPOS = b"txpos"
DB_HASHES = b"hashes"
DB_CERTS = b"certs"
DB_TXS = b"txs"
DB_ENTITIES = b"entities"
DB_LINKS = b"links"
DB_NONCES = b"nonces"
DB_CASES = b"cases"
DB_META = b"meta"
DB_CONSENSUS = b"consensus"

META_CHAIN_ID = b"chain_id"
META_GENESIS = b"genesis_hash"
META_FORMAT = b"format_version"
META_TIP = b"tip"
META_CHECKPOINT = b"stable_checkpoint"

MAX_ENTITY_KEY = 255
# Admission caps every string at 256 characters and case ids are ASCII; LMDB keys may
# be up to 511 bytes.
MAX_CASE_KEY = 256
MAX_MEMBER_NAME = 255
MAX_RELATION = 255
MAX_LINKS_PER_TX = 0xFFFF
MAX_TX_INDEX = 0xFFFFFFFF
MAX_HEIGHT = 2**64 - 1

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
LOC = struct.Struct(">QI")
LINK_KEY = struct.Struct(">QIH")
TXPOS = struct.Struct(">II")
TIP = struct.Struct(f">Q{DIGEST_SIZE}s")
CASE_POSTING = struct.Struct(">BQI")

LOC_SIZE = LOC.size


def tx_id(tx: bytes) -> bytes:
    """The id of a transaction: the same definition as the transaction module's."""
    return hash_bytes("tx", tx)


@dataclass(frozen=True, slots=True)
class Link:
    """An edge the caller extracted from a transaction: ``a`` -[relation]-> ``b``."""

    a: bytes
    b: bytes
    relation: bytes


class CaseRole(enum.IntEnum):
    """What a transaction is to the case it names; the value is its byte in ``cases``.

    The order matters: a case's governance (its own transaction, approvals, closes)
    sorts before the records filed under it.
    """

    OPENED = 0
    APPROVED = 1
    CLOSED = 2
    REPORT = 3
    ACCESS = 4


GOVERNANCE_ROLES = (CaseRole.OPENED, CaseRole.APPROVED, CaseRole.CLOSED)


@dataclass(frozen=True, slots=True)
class CasePosting:
    """One entry of the ``cases`` index."""

    case_key: bytes
    role: CaseRole
    height: int
    index: int


@dataclass(frozen=True, slots=True)
class TxIndex:
    """What one transaction contributes to the indexes (the store never parses it).

    ``nonce`` is (member, nonce) for replay checks, None for a transaction the
    application does not count (one it refused, or a replay that reached a block).
    ``cases`` are the (case key, role) pairs it is posted under in ``cases``.
    """

    tx_id: bytes
    entities: Sequence[bytes] = ()
    links: Sequence[Link] = ()
    nonce: tuple[str, int] | None = None
    cases: Sequence[tuple[bytes, CaseRole]] = ()


@dataclass(frozen=True, slots=True)
class BlockIndex:
    """Index entries for a block, one ``TxIndex`` per transaction, in block order."""

    txs: Sequence[TxIndex]

    @staticmethod
    def unindexed(block: Block) -> BlockIndex:
        """Transaction ids only: for blocks whose transactions mention no entity."""
        return BlockIndex(tuple(TxIndex(tx_id(tx)) for tx in block.txs))


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A link as seen from one of its endpoints."""

    other: bytes
    relation: bytes
    outgoing: bool
    height: int
    index: int


def height_key(height: int) -> bytes:
    return U64.pack(height)


def loc_key(height: int, index: int) -> bytes:
    return LOC.pack(height, index)


def case_key(case_id: str) -> bytes:
    return case_id.encode()


def nonce_key(member: str, nonce: int) -> bytes:
    name = member.encode()
    if not 0 < len(name) <= MAX_MEMBER_NAME:
        raise ValueError(f"member name must be 1 to {MAX_MEMBER_NAME} bytes of UTF-8")
    if not 0 <= nonce < 2**64:
        raise ValueError("a nonce is an unsigned 64-bit integer")
    return bytes((len(name),)) + name + U64.pack(nonce)


def encode_link(a: bytes, b: bytes, relation: bytes) -> bytes:
    return bytes((len(a),)) + a + bytes((len(b),)) + b + relation


def decode_link(value: bytes | memoryview) -> tuple[bytes, bytes, bytes]:
    """Inverse of ``encode_link``; ``ValueError`` if the record is malformed."""
    data = bytes(value)
    a_len = data[0] if data else 0
    a_end = 1 + a_len
    if a_len == 0 or len(data) < a_end + 1:
        raise ValueError("link record is truncated")
    b_len = data[a_end]
    b_end = a_end + 1 + b_len
    if b_len == 0 or len(data) < b_end:
        raise ValueError("link record is truncated")
    return data[1:a_end], data[a_end + 1 : b_end], data[b_end:]


def _array_header_size(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def _bin_header_size(n: int) -> int:
    return 2 if n < 0x100 else 3 if n < 0x10000 else 5


def encode_block(block: Block) -> tuple[bytes, bytes]:
    """The canonical block bytes and their ``txpos`` table.

    The offsets follow from msgpack's fixed header sizes (a block is a 2-array of
    the header and the transaction array, each transaction a bin); the final length
    check catches any disagreement with the real encoder.
    """
    data = encode_value(block)
    pos = 1 + len(pack(to_wire(block.header))) + _array_header_size(len(block.txs))
    fields: list[int] = []
    for tx in block.txs:
        size = len(tx)
        pos += _bin_header_size(size)
        fields.append(pos)
        fields.append(size)
        pos += size
    if pos != len(data):
        raise AssertionError("transaction offsets disagree with the block encoding")
    return data, struct.pack(f">{len(fields)}I", *fields)


def tx_slice(block_data: memoryview, table: memoryview, index: int) -> bytes | None:
    """Transaction ``index`` cut out of a stored block, or None if out of range."""
    if not 0 <= index < len(table) // TXPOS.size:
        return None
    offset, size = TXPOS.unpack_from(table, index * TXPOS.size)
    if offset + size > len(block_data):
        raise ValueError(f"transaction {index} lies outside its block")
    return bytes(block_data[offset : offset + size])

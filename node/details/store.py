"""The private store: a member's private details, in an LMDB environment of its own.

Its own environment (by default ``<data_dir>/private``), not named databases in the
ledger's: the ledger files are what members copy, back up, verify and re-sync from each
other, so they must never hold a byte of private data, and deleting details must not
touch them. Growth, the one-thread write rule and error translation come from
``node.ledger.env``, as for the ledger.

Databases:

- ``details``: tx id -> ``PrivateRecord`` (salt, canonical details bytes, the member
  that sent them, when they were stored here, and, for the submitter's own copy only,
  the recipients it named). The recipients never go on the ledger: who shared with whom
  is itself sensitive, so only the submitter knows it.
- ``by_time``: u64be(stored_ms) || tx id -> empty, so retention reads the oldest first
  and stops at the first one to keep.
- ``outbox``: tx id || u16be(member index) -> u64be(stored_ms): deliveries to retry
  until the member acknowledges them or retention deletes the details.
- ``deleted``: tx id -> u64be(deleted_ms) || u64be(stored_ms): a tombstone, so the API
  can say "deleted by retention" rather than "never had it", and a late re-delivery is
  not stored again (which would restart the retention clock). 16 bytes and the id;
  nothing private.
- ``meta``: the chain id, so a private store is never opened under another chain.

Every write is one LMDB transaction: a record, its time index and its outbox entries
appear, and disappear, together.

Known limit: LMDB does not zero the pages a deletion frees; deleted bytes stay in the
file until the pages are reused. Erasing them for good needs a compacting copy
(``mdb_env_copy2`` with compaction) swapped in while the node is stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus.codec import encode_value
from node.ledger.env import (
    DbSpec,
    Environment,
    MiB,
    ReadTxn,
    WriteTxn,
    decode_record,
    open_for_chain,
)

DB_DETAILS = b"details"
DB_BY_TIME = b"by_time"
DB_OUTBOX = b"outbox"
DB_DELETED = b"deleted"
DB_META = b"meta"
SPECS = (
    DbSpec(DB_DETAILS),
    DbSpec(DB_BY_TIME),
    DbSpec(DB_OUTBOX),
    DbSpec(DB_DELETED),
    DbSpec(DB_META),
)
TX_ID = 32
DEFAULT_MAP_SIZE = 16 * MiB


@dataclass(frozen=True)
class PrivateRecord:
    salt: bytes
    details: bytes  # canonical encoding (``node.details.records.encode_details``)
    sender: str  # the member that signed the transaction and sent the details
    stored_ms: int  # wall-clock time it was stored here; retention counts from it
    shared_with: tuple[str, ...]  # the submitter's own copy only: whom it named


@dataclass(frozen=True)
class Deleted:
    tx_id: bytes
    stored_ms: int
    deleted_ms: int
    undelivered: tuple[int, ...]  # members that never acknowledged (submitter only)


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def _outbox_key(tx_id: bytes, member: int) -> bytes:
    return tx_id + member.to_bytes(2, "big")


class PrivateStore:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self._details = env.dbs[DB_DETAILS]
        self._by_time = env.dbs[DB_BY_TIME]
        self._outbox = env.dbs[DB_OUTBOX]
        self._deleted = env.dbs[DB_DELETED]

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        chain_id: str,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
    ) -> PrivateStore:
        env = open_for_chain(
            path,
            SPECS,
            meta_db=DB_META,
            chain_id=chain_id,
            what="the private store",
            map_size=map_size,
            sync=sync,
        )
        return cls(env)

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ writing

    def put(self, tx_id: bytes, record: PrivateRecord, outbox: Sequence[int] = ()) -> bool:
        """Store ``record`` (and the deliveries still owed, for the submitter's copy).
        False, and nothing written, if details for ``tx_id`` are already here or were
        deleted by retention."""
        data = encode_value(record)

        def put(txn: WriteTxn) -> bool:
            if txn.get(tx_id, db=self._deleted) is not None:
                return False
            if not txn.put(tx_id, data, db=self._details, overwrite=False):
                return False
            txn.put(_u64(record.stored_ms) + tx_id, b"", db=self._by_time)
            for member in outbox:
                txn.put(_outbox_key(tx_id, member), _u64(record.stored_ms), db=self._outbox)
            return True

        return self.env.write(put)

    def forget(self, tx_id: bytes) -> bool:
        """Remove details whose transaction was refused: no tombstone, as they never
        stood behind anything on the ledger."""

        def forget(txn: WriteTxn) -> bool:
            record = self._record(txn.get(tx_id, db=self._details))
            if record is None:
                return False
            txn.delete(tx_id, db=self._details)
            txn.delete(_u64(record.stored_ms) + tx_id, db=self._by_time)
            for key in self._outbox_keys(txn, tx_id):
                txn.delete(key, db=self._outbox)
            return True

        return self.env.write(forget)

    def acknowledge(self, tx_id: bytes, member: int) -> bool:
        """The member has the details (or refused them for good): stop retrying."""
        return self.env.write(lambda txn: txn.delete(_outbox_key(tx_id, member), db=self._outbox))

    def expire(self, cutoff_ms: int, now_ms: int, limit: int = 10_000) -> list[Deleted]:
        """Delete every record stored before ``cutoff_ms`` (at most ``limit`` per call,
        oldest first), its outbox entries with it, leaving tombstones."""

        def expire(txn: WriteTxn) -> list[Deleted]:
            gone: list[Deleted] = []
            cursor = txn.cursor(db=self._by_time)
            expired: list[bytes] = []
            for key in cursor.iternext(keys=True, values=False):
                if int.from_bytes(key[:8], "big") >= cutoff_ms or len(expired) >= limit:
                    break
                expired.append(bytes(key))
            for key in expired:
                stored_ms, tx_id = int.from_bytes(key[:8], "big"), key[8:]
                undelivered = tuple(
                    int.from_bytes(k[TX_ID:], "big") for k in self._outbox_keys(txn, tx_id)
                )
                for k in self._outbox_keys(txn, tx_id):
                    txn.delete(k, db=self._outbox)
                txn.delete(key, db=self._by_time)
                txn.delete(tx_id, db=self._details)
                txn.put(tx_id, _u64(now_ms) + _u64(stored_ms), db=self._deleted)
                gone.append(Deleted(tx_id, stored_ms, now_ms, undelivered))
            return gone

        return self.env.write(expire)

    # ------------------------------------------------------------------ reading

    def get(self, tx_id: bytes) -> PrivateRecord | None:
        with self.env.read() as txn:
            return self._record(txn.get(tx_id, db=self._details))

    def deleted(self, tx_id: bytes) -> tuple[int, int] | None:
        """(deleted_ms, stored_ms) if retention deleted the details of ``tx_id``."""
        with self.env.read() as txn:
            value = txn.get(tx_id, db=self._deleted)
            if value is None:
                return None
            return int.from_bytes(value[:8], "big"), int.from_bytes(value[8:16], "big")

    def outbox(self) -> list[tuple[bytes, int]]:
        """Every (tx id, member) delivery not yet acknowledged."""
        with self.env.read() as txn:
            cursor = txn.cursor(db=self._outbox)
            return [
                (bytes(k[:TX_ID]), int.from_bytes(k[TX_ID:], "big"))
                for k in cursor.iternext(keys=True, values=False)
            ]

    def pending_for(self, tx_id: bytes) -> list[int]:
        """Members that have not yet acknowledged the details of ``tx_id``."""
        with self.env.read() as txn:
            return [int.from_bytes(k[TX_ID:], "big") for k in self._outbox_keys(txn, tx_id)]

    def tx_ids(self) -> list[bytes]:
        """Every tx id with details here, oldest first."""
        with self.env.read() as txn:
            cursor = txn.cursor(db=self._by_time)
            return [bytes(k[8:]) for k in cursor.iternext(keys=True, values=False)]

    def count(self) -> int:
        with self.env.read() as txn:
            return int(txn.stat(self._details)["entries"])

    # ------------------------------------------------------------------ helpers

    def _outbox_keys(self, txn: ReadTxn | WriteTxn, tx_id: bytes) -> list[bytes]:
        cursor = txn.cursor(db=self._outbox)
        keys: list[bytes] = []
        if not cursor.set_range(tx_id):
            return keys
        for key in cursor.iternext(keys=True, values=False):
            if bytes(key[:TX_ID]) != tx_id:
                break
            keys.append(bytes(key))
        return keys

    def _record(self, value: bytes | memoryview | None) -> PrivateRecord | None:
        if value is None:
            return None
        return decode_record(PrivateRecord, value, f"the private store at {self.env.path}")

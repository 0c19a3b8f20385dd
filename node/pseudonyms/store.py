"""What a member remembers about pseudonym evaluations, in LMDB environments of their
own (``<data_dir>/pseudonyms`` and, for the cache, ``<data_dir>/pseudonyms/cache``),
never in the ledger's files. Counts and log are synced on every write; the cache is not
(a result lost in a crash is evaluated again), so a report does not wait for two syncs.

Databases:

- ``counts``: u32be(day) || kind || name -> u64be(points evaluated). ``kind`` is
  ``r`` (report evaluations asked by member ``name``) or ``q`` (query evaluations under
  case ``name``). An evaluator charges a request here *before* it evaluates, in the
  same write as the log record, so a crash can lose an answer but never an evaluation
  from the count.
- ``log``: u64be(time) || request id -> ``EvaluationRecord`` (who asked, for what, how
  many points, the outcome): what ``crosstrace audit`` shows.
- ``cache``: BLAKE2b-256(cache key, type || 0 || normalised value) -> ``CachedPseudonym``.
  A member's own results, so an identifier it already evaluated costs no evaluation
  (and no quota) again. Keyed with a random per-store key: the file never holds an
  identifier, though whoever holds the whole data directory can still test guesses,
  as they could with the member's own records.
- ``meta``: the chain id and the cache key.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from consensus.codec import encode_value
from node.ledger.env import (
    DbSpec,
    Environment,
    MiB,
    WriteTxn,
    decode_record,
    open_for_chain,
)

T = TypeVar("T")

DB_COUNTS = b"counts"
DB_LOG = b"log"
DB_CACHE = b"cache"
DB_META = b"meta"
SPECS = (DbSpec(DB_COUNTS), DbSpec(DB_LOG), DbSpec(DB_META))
CACHE_SPECS = (DbSpec(DB_CACHE), DbSpec(DB_META))
DEFAULT_MAP_SIZE = 64 * MiB
DAY_MS = 86_400_000
REPORT = b"r"
QUERY = b"q"
_CACHE_KEY = b"cache_key"
_CACHE_PERSON = b"ct-oprf-cache"


def day_of(ms: int) -> int:
    """The UTC day number of a time: quotas reset at midnight UTC on every member."""
    return ms // DAY_MS


@dataclass(frozen=True)
class EvaluationRecord:
    request_id: bytes
    requester: str
    purpose: str  # report | query
    case_id: str
    points: int
    outcome: str  # ok, or the refusal's code
    at_ms: int


@dataclass(frozen=True)
class CachedPseudonym:
    pseudonym: bytes
    evaluation: bytes  # the request id of the evaluation that produced it
    stored_ms: int


@dataclass(frozen=True)
class Usage:
    """One row of a day's counts: ``kind`` report (``name`` a member) or query (a case)."""

    day: int
    kind: str
    name: str
    points: int


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def _count_key(day: int, kind: bytes, name: str) -> bytes:
    return day.to_bytes(4, "big") + kind + name.encode()


class PseudonymStore:
    def __init__(self, env: Environment, cache_env: Environment) -> None:
        self.env = env
        self.cache_env = cache_env
        self._counts = env.dbs[DB_COUNTS]
        self._log = env.dbs[DB_LOG]
        self._cache = cache_env.dbs[DB_CACHE]
        meta = cache_env.dbs[DB_META]

        def cache_key(txn: WriteTxn) -> bytes:
            existing = txn.get(_CACHE_KEY, db=meta)
            if existing is not None:
                return bytes(existing)
            key = secrets.token_bytes(32)
            txn.put(_CACHE_KEY, key, db=meta)
            return key

        self._cache_key = cache_env.write(cache_key)

    @classmethod
    def open(
        cls, path: Path, *, chain_id: str, map_size: int = DEFAULT_MAP_SIZE, sync: bool = True
    ) -> PseudonymStore:
        env = open_for_chain(
            path,
            SPECS,
            meta_db=DB_META,
            chain_id=chain_id,
            what="the pseudonym store",
            map_size=map_size,
            sync=sync,
        )
        try:
            cache_env = open_for_chain(
                path / "cache",
                CACHE_SPECS,
                meta_db=DB_META,
                chain_id=chain_id,
                what="the pseudonym cache",
                map_size=map_size,
                sync=False,
            )
        except BaseException:
            env.close()
            raise
        return cls(env, cache_env)

    def close(self) -> None:
        self.cache_env.close()
        self.env.close()

    # ------------------------------------------------------------------ quotas

    def charge(
        self,
        day: int,
        kind: bytes,
        name: str,
        points: int,
        quota: int,
        record: EvaluationRecord,
    ) -> int | None:
        """Add ``points`` to the day's count for (kind, name) if that stays within
        ``quota`` and log ``record``; the new count, or None (nothing charged, the
        refusal still logged) when it would not."""
        key = _count_key(day, kind, name)

        def charge(txn: WriteTxn) -> int | None:
            value = txn.get(key, db=self._counts)
            used = 0 if value is None else int.from_bytes(value, "big")
            log_key = _u64(record.at_ms) + record.request_id
            if used + points > quota:
                refused = EvaluationRecord(**{**record.__dict__, "outcome": "over_quota"})
                txn.put(log_key, encode_value(refused), db=self._log)
                return None
            txn.put(key, _u64(used + points), db=self._counts)
            txn.put(log_key, encode_value(record), db=self._log)
            return used + points

        return self.env.write(charge)

    def log_refusal(self, record: EvaluationRecord) -> None:
        key = _u64(record.at_ms) + record.request_id
        data = encode_value(record)
        self.env.write(lambda txn: txn.put(key, data, db=self._log))

    def used(self, day: int, kind: bytes, name: str) -> int:
        with self.env.read() as txn:
            value = txn.get(_count_key(day, kind, name), db=self._counts)
        return 0 if value is None else int.from_bytes(value, "big")

    def usage(self, day: int) -> list[Usage]:
        prefix = day.to_bytes(4, "big")
        rows = []
        with self.env.read() as txn:
            cursor = txn.cursor(db=self._counts)
            if cursor.set_range(prefix):
                for key, value in cursor.iternext():
                    if not bytes(key).startswith(prefix):
                        break
                    kind = "report" if key[4:5] == REPORT else "query"
                    name = bytes(key[5:]).decode()
                    rows.append(Usage(day, kind, name, int.from_bytes(value, "big")))
        return rows

    def records(self, since_ms: int = 0, limit: int = 1000) -> list[EvaluationRecord]:
        """The most recent ``limit`` log records at or after ``since_ms``, oldest first."""
        out: list[EvaluationRecord] = []
        with self.env.read() as txn:
            cursor = txn.cursor(db=self._log)
            if not cursor.last():
                return out
            for key, value in cursor.iterprev():
                if int.from_bytes(key[:8], "big") < since_ms or len(out) >= limit:
                    break
                out.append(self._decode(EvaluationRecord, value))
        out.reverse()
        return out

    # ------------------------------------------------------------------ cache

    def cache_keys(self, items: Sequence[tuple[str, str]]) -> list[bytes]:
        return [
            hashlib.blake2b(
                entity_type.encode() + b"\0" + value.encode(),
                digest_size=32,
                key=self._cache_key,
                person=_CACHE_PERSON,
            ).digest()
            for entity_type, value in items
        ]

    def cached(self, keys: Sequence[bytes]) -> list[CachedPseudonym | None]:
        with self.cache_env.read() as txn:
            values = [txn.get(k, db=self._cache) for k in keys]
            return [None if v is None else self._decode(CachedPseudonym, v) for v in values]

    def remember(self, entries: Sequence[tuple[bytes, CachedPseudonym]]) -> None:
        encoded = [(k, encode_value(v)) for k, v in entries]

        def put(txn: WriteTxn) -> None:
            for key, data in encoded:
                txn.put(key, data, db=self._cache)

        if encoded:
            self.cache_env.write(put)

    def cache_size(self) -> int:
        with self.cache_env.read() as txn:
            return int(txn.stat(self._cache)["entries"])

    def forget_before(self, cutoff_ms: int) -> int:
        """Delete cached results stored before ``cutoff_ms`` (retention); how many."""

        def forget(txn: WriteTxn) -> int:
            old = [
                bytes(k)
                for k, v in txn.cursor(db=self._cache).iternext()
                if self._decode(CachedPseudonym, v).stored_ms < cutoff_ms
            ]
            for key in old:
                txn.delete(key, db=self._cache)
            return len(old)

        return self.cache_env.write(forget)

    def _decode(self, cls: type[T], value: bytes | memoryview) -> T:
        return decode_record(cls, value, f"the pseudonym store at {self.env.path}")

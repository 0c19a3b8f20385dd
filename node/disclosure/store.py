"""The disclosure store: clear identifiers and disclosure requests, in an LMDB
environment of its own (by default ``<data_dir>/disclosure``), never in the ledger's
files, which members copy and verify.

Databases:

- ``identifiers``: entity type code || pseudonym -> ``KeptIdentifier`` (the normalised
  identifier this member reported, when it was stored). Only the reporting member's own
  identifiers: ``node.disclosure.service`` keeps one only when this member's own
  transaction names the pseudonym and the identifier hashes to it.
- ``by_time``: u64be(stored_ms) || key -> empty, so retention reads the oldest first.
- ``requests``: request id -> ``RequestRecord``: a request this member made (with the
  answers, identifiers included, that it received) or one it was asked to answer.
- ``meta``: the chain id, so the store is never opened under another chain.

Retention (``expire``) deletes kept identifiers stored before the cutoff and blanks the
identifiers in received answers made before it; the records on the ledger stay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from consensus.codec import encode_value
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import entity_key
from node.ledger.env import (
    DbSpec,
    Environment,
    MiB,
    WriteTxn,
    decode_record,
    open_for_chain,
)

T = TypeVar("T")

DB_IDENTIFIERS = b"identifiers"
DB_BY_TIME = b"by_time"
DB_REQUESTS = b"requests"
DB_META = b"meta"
SPECS = (DbSpec(DB_IDENTIFIERS), DbSpec(DB_BY_TIME), DbSpec(DB_REQUESTS), DbSpec(DB_META))
DEFAULT_MAP_SIZE = 16 * MiB
ROLES = ("requester", "answerer")
# An answering member's state of a request: held for its operator, or answered.
ANSWERER_STATES = ("queued", "answered")


@dataclass(frozen=True)
class KeptIdentifier:
    identifier: str  # normalised, as pseudonymised
    stored_ms: int


@dataclass(frozen=True)
class Answer:
    """One member's answer as the requester holds it, or the answerer's own."""

    member: str
    outcome: str  # a ``node.ledger.kinds.DISCLOSURE_OUTCOMES`` word, or "wrong_identifier"
    reason: str
    identifier: str | None  # the checked identifier (requester side), until retention
    answered_ms: int
    answer_tx: bytes | None  # the answerer's ``disclosure_answer`` record (answerer side)


@dataclass(frozen=True)
class RequestRecord:
    request_id: bytes
    role: str  # requester | answerer
    case_id: str
    case_tx: bytes
    request_tx: bytes
    entity: EntityRef
    requester: str
    asked: tuple[str, ...]  # requester side: the reporting members asked
    answers: tuple[Answer, ...]
    state: str  # answerer side: queued | answered; requester side: open | complete
    created_ms: int


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


class DisclosureStore:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self._identifiers = env.dbs[DB_IDENTIFIERS]
        self._by_time = env.dbs[DB_BY_TIME]
        self._requests = env.dbs[DB_REQUESTS]

    @classmethod
    def open(
        cls, path: Path, *, chain_id: str, map_size: int = DEFAULT_MAP_SIZE, sync: bool = True
    ) -> DisclosureStore:
        env = open_for_chain(
            path,
            SPECS,
            meta_db=DB_META,
            chain_id=chain_id,
            what="the disclosure store",
            map_size=map_size,
            sync=sync,
        )
        return cls(env)

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ identifiers

    def keep(self, entity: EntityRef, identifier: str, now_ms: int) -> bool:
        """Keep the identifier behind ``entity``; False if one is already kept (its
        retention clock is not restarted)."""
        key = entity_key(entity)
        data = encode_value(KeptIdentifier(identifier, now_ms))

        def keep(txn: WriteTxn) -> bool:
            if not txn.put(key, data, db=self._identifiers, overwrite=False):
                return False
            txn.put(_u64(now_ms) + key, b"", db=self._by_time)
            return True

        return self.env.write(keep)

    def identifier(self, entity: EntityRef) -> KeptIdentifier | None:
        with self.env.read() as txn:
            value = txn.get(entity_key(entity), db=self._identifiers)
        return None if value is None else self._decode(KeptIdentifier, value)

    def identifier_count(self) -> int:
        with self.env.read() as txn:
            return int(txn.stat(self._identifiers)["entries"])

    # ------------------------------------------------------------------ requests

    def put_request(self, record: RequestRecord) -> None:
        data = encode_value(record)
        self.env.write(lambda txn: txn.put(record.request_id, data, db=self._requests))

    def request(self, request_id: bytes) -> RequestRecord | None:
        with self.env.read() as txn:
            value = txn.get(request_id, db=self._requests)
        return None if value is None else self._decode(RequestRecord, value)

    def requests(self) -> list[RequestRecord]:
        with self.env.read() as txn:
            cursor = txn.cursor(db=self._requests)
            values = [bytes(v) for v in cursor.iternext(keys=False, values=True)]
        records = [self._decode(RequestRecord, v) for v in values]
        return sorted(records, key=lambda r: r.created_ms)

    # ------------------------------------------------------------------ retention

    def expire(self, cutoff_ms: int) -> tuple[int, int]:
        """Delete kept identifiers stored before ``cutoff_ms`` and blank the identifiers
        of answers received before it: (identifiers deleted, answers blanked)."""

        def expire(txn: WriteTxn) -> tuple[int, int]:
            cursor = txn.cursor(db=self._by_time)
            old: list[bytes] = []
            for key in cursor.iternext(keys=True, values=False):
                if int.from_bytes(key[:8], "big") >= cutoff_ms:
                    break
                old.append(bytes(key))
            for key in old:
                txn.delete(key, db=self._by_time)
                txn.delete(key[8:], db=self._identifiers)
            blanked = 0
            rewrites: list[RequestRecord] = []
            for value in txn.cursor(db=self._requests).iternext(keys=False, values=True):
                record = self._decode(RequestRecord, bytes(value))
                answers = []
                changed = False
                for answer in record.answers:
                    if answer.identifier is not None and answer.answered_ms < cutoff_ms:
                        answer = dataclasses.replace(
                            answer, identifier=None, reason="deleted by retention"
                        )
                        changed = True
                        blanked += 1
                    answers.append(answer)
                if changed:
                    rewrites.append(dataclasses.replace(record, answers=tuple(answers)))
            for record in rewrites:
                txn.put(record.request_id, encode_value(record), db=self._requests)
            return len(old), blanked

        return self.env.write(expire)

    def _decode(self, cls: type[T], value: bytes | memoryview) -> T:
        return decode_record(cls, value, f"the disclosure store at {self.env.path}")

"""The case registry: which investigation cases the ledger holds, and what each one
authorises at a given time.

A case is the ``case`` transaction that opens it, and the ``approve`` and ``close``
transactions that name it. The rules, all decided from committed transactions and the
genesis alone, so every member reaches the same verdict:

- **Opening.** A case transaction counts only when its signer holds the investigator
  role (the police role of the consortium; admission already refuses anyone else). The
  first committed case transaction with an id owns that id; a later one with the same
  id is kept for its history but authorises nothing, and approvals given to it never
  count for the first.
- **Approval.** An ``approve`` counts towards the genesis ``case_approvals`` (k) when its
  signer holds the approver role and it names both the case's id and the exact id of
  its case transaction. Each member counts once, however often it approves. An approval
  counts wherever it sits in the ledger: it names the case transaction by hash, so it
  is consent to exactly that content even if it was ordered first. The opener may
  approve its own case like any approver; it counts only if it signs an ``approve``.
- **Closing.** A ``close`` naming the case's id and case transaction, signed by the
  opener or any other member with the investigator role, ends the case for good.
- **State at a time** ``now``: closed if a close counts; else expired once ``now`` has
  reached ``expires_ms``; else pending until k approvals count; else active. Approvals
  and closes count from the moment they are committed (``now`` only decides expiry), so
  a node whose clock lags the signer's never refuses a case the ledger shows approved.

The registry is rebuilt at start-up from the store's ``cases`` index (``load``), which
holds the locations of exactly these transactions, and is then kept current with
``apply_blocks`` as blocks commit; both paths read the same transactions in ledger
order, so they agree. It is not locked: apply blocks and query it from one thread (the
node's event loop), or guard it with a lock.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.blocks import Block
from consensus.codec import DecodeError
from node.identifiers.pseudonym import EntityRef
from node.ledger.env import StoreCorruptError
from node.ledger.kinds import Approve, Body, Case, Close
from node.ledger.layout import GOVERNANCE_ROLES, BlockIndex
from node.ledger.store import LedgerStore
from node.ledger.transactions import TxRejected, decode_body, decode_tx, tx_id
from node.setup.genesis import Genesis

OPENER_ROLE = "investigator"
APPROVER_ROLE = "approver"


class CaseState(enum.StrEnum):
    PENDING = "pending"  # waiting for approvals
    ACTIVE = "active"
    EXPIRED = "expired"
    CLOSED = "closed"


@dataclass(frozen=True)
class LedgerEntry:
    """Where a transaction sits in the ledger and who signed it, when."""

    tx_id: bytes
    member: str
    height: int
    index: int
    time_ms: int  # the signer's clock, within the admission skew of the committing node
    # The acting user's pseudonymous id, for what people do under a case (None: other kinds).
    actor: bytes | None = None

    @property
    def location(self) -> tuple[int, int]:
        return (self.height, self.index)


@dataclass(frozen=True)
class CaseRecord:
    """A committed case transaction."""

    opened: LedgerEntry
    body: Case

    @property
    def case_id(self) -> str:
        return self.body.case_id

    @property
    def tx_id(self) -> bytes:
        return self.opened.tx_id

    @property
    def opener(self) -> str:
        return self.opened.member

    def in_scope(self, entity: EntityRef) -> bool:
        return entity in self.body.scope

    def in_window(self, time_ms: int) -> bool:
        return self.body.window_start_ms <= time_ms <= self.body.window_end_ms


@dataclass(frozen=True)
class CaseStatus:
    """A case's state at one time, with the approvals that count and the reason."""

    case: CaseRecord
    state: CaseState
    approvals: tuple[LedgerEntry, ...]  # counted, in ledger order
    needed: int
    closed: LedgerEntry | None
    now_ms: int
    reason: str

    @property
    def active(self) -> bool:
        return self.state is CaseState.ACTIVE


def format_time_ms(ms: int) -> str:
    """UTC ISO 8601, to the millisecond only when there are milliseconds."""
    try:
        when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms after the epoch"
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


class CaseRegistry:
    """Every case on the ledger up to ``height``, with its approvals and closes."""

    def __init__(self, genesis: Genesis) -> None:
        self.needed = genesis.case_approvals
        self.height = 0
        self._roles = {m.name: frozenset(m.roles) for m in genesis.members}
        self._cases: dict[str, CaseRecord] = {}  # the owner of each id, in ledger order
        self._by_tx: dict[bytes, CaseRecord] = {}  # every case transaction, owner or not
        # Keyed by (case tx, case id) as the approve or close names them: either may be
        # committed before the case it names.
        self._approvals: dict[tuple[bytes, str], dict[str, LedgerEntry]] = {}
        self._closes: dict[tuple[bytes, str], list[LedgerEntry]] = {}

    @classmethod
    def load(cls, genesis: Genesis, store: LedgerStore) -> CaseRegistry:
        """The registry as of the store's tip, from the ``cases`` index alone."""
        registry = cls(genesis)
        tip, postings = store.governance_postings()
        locations = sorted({(p.height, p.index) for p in postings})
        for (height, index), data in zip(locations, store.txs_at(locations), strict=True):
            registry._apply_tx(height, index, data)
        registry.height = tip
        return registry

    def apply_blocks(self, blocks: Iterable[tuple[Block, BlockIndex]]) -> None:
        """Take in committed blocks, with the index the store was given for each
        (after ``store.append_blocks(items)``: ``apply_blocks((b, i) for b, _, i in items)``).

        Blocks at or below ``height`` are skipped (``load`` may already have read
        them); a gap raises ``ValueError``, since a missed block would leave the
        registry silently wrong. Only transactions the application counted (those
        with case postings) are read.
        """
        for block, index in blocks:
            height = block.header.height
            if height <= self.height:
                continue
            if height != self.height + 1:
                raise ValueError(f"block {height} does not follow block {self.height}")
            for i, entry in enumerate(index.txs):
                if any(role in GOVERNANCE_ROLES for _, role in entry.cases):
                    self._apply_tx(height, i, block.txs[i])
            self.height = height

    def _apply_tx(self, height: int, index: int, data: bytes) -> None:
        try:
            tx = decode_tx(data)
            body: Body = decode_body(tx)
        except (DecodeError, TxRejected) as exc:
            # Only transactions the application admitted are posted under a case.
            raise StoreCorruptError(
                f"the case index points to ({height}, {index}), which does not decode: {exc}"
            ) from None
        actor = body.actor if isinstance(body, Case | Approve | Close) else None
        entry = LedgerEntry(tx_id(data), tx.member, height, index, tx.time_ms, actor)
        roles = self._roles.get(tx.member, frozenset())
        match body:
            case Case() if OPENER_ROLE in roles:
                record = CaseRecord(entry, body)
                self._by_tx.setdefault(entry.tx_id, record)
                self._cases.setdefault(body.case_id, record)
            case Approve() if APPROVER_ROLE in roles:
                votes = self._approvals.setdefault((body.case_tx, body.case_id), {})
                votes.setdefault(entry.member, entry)
            case Close() if OPENER_ROLE in roles:
                self._closes.setdefault((body.case_tx, body.case_id), []).append(entry)

    # -- reading --------------------------------------------------------------------

    def case(self, case_id: str) -> CaseRecord | None:
        """The case that owns ``case_id``, if any."""
        return self._cases.get(case_id)

    def case_by_tx(self, case_tx: bytes) -> CaseRecord | None:
        """Any committed case transaction, including one whose id was already taken."""
        return self._by_tx.get(case_tx)

    def owns_id(self, record: CaseRecord) -> bool:
        return self._cases.get(record.case_id) is record

    def cases(self) -> tuple[CaseRecord, ...]:
        """The cases that own their ids, in ledger order."""
        return tuple(self._cases.values())

    def approvals(self, record: CaseRecord) -> tuple[LedgerEntry, ...]:
        """The approvals that count for ``record``: one per member, in ledger order."""
        if not self.owns_id(record):
            return ()
        votes = self._approvals.get((record.tx_id, record.case_id), {})
        return tuple(sorted(votes.values(), key=lambda e: e.location))

    def closure(self, record: CaseRecord) -> LedgerEntry | None:
        """The first close that counts for ``record``."""
        if not self.owns_id(record):
            return None
        closes = self._closes.get((record.tx_id, record.case_id), [])
        return min(closes, key=lambda e: e.location, default=None)

    def status(self, case_id: str, now_ms: int) -> CaseStatus | None:
        """The state of the case owning ``case_id`` at ``now_ms``; None if there is none."""
        record = self._cases.get(case_id)
        if record is None:
            return None
        approvals = self.approvals(record)
        closed = self.closure(record)
        k, n = self.needed, len(approvals)
        expires = format_time_ms(record.body.expires_ms)
        if closed is not None:
            state = CaseState.CLOSED
            reason = f"case {case_id!r} was closed by {closed.member!r} at height {closed.height}"
        elif now_ms >= record.body.expires_ms:
            state = CaseState.EXPIRED
            reason = f"case {case_id!r} expired at {expires}"
        elif n < k:
            state = CaseState.PENDING
            reason = f"case {case_id!r} is waiting for approval: {n} of {k} approvals"
        else:
            state = CaseState.ACTIVE
            reason = f"case {case_id!r} is active until {expires}: {n} of {k} approvals"
        return CaseStatus(record, state, approvals, k, closed, now_ms, reason)

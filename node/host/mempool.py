"""A bounded, fair pool of validated transactions awaiting consensus.

The pool is pure and synchronous: it does no I/O and never reads a clock. Every time it
needs (arrival, expiry) is passed in by the caller, so replicas and tests are
deterministic.

Life of a transaction
    ``add`` admits it (or rejects it with a machine-readable code). ``reap`` hands the
    next batch to the proposer and marks those entries *in flight*; they stay in the
    pool, and count against its limits, until ``remove_committed`` drops them. If a view
    change discards the proposal, ``requeue`` makes them reapable again. ``expire``
    drops entries that waited longer than a TTL, except in-flight ones, which may
    still commit.

Admission policy (checked in this order; the first failing rule is the reason)
    1. ``duplicate``: the tx id is already pending (queued or in flight), or is among
       the last ``committed_memory`` committed tx ids. That memory is a bounded FIFO, so
       it only catches *late* duplicates; the ledger's committed-tx index remains the
       authority on replays.
    2. ``too_large``: ``len(data) > max_tx_bytes``. Permanent: retrying cannot help.
       ``max_tx_bytes`` never exceeds one member's byte quota, so any transaction that is
       not too large fits into an empty share.
    3. ``member_quota``: the member would exceed its cap. While any *other* member has
       an entry in the pool the cap is its fair share, ``floor(max_share * max_txs)``
       transactions and ``floor(max_share * max_bytes)`` bytes. A member alone in the
       pool may borrow idle capacity up to ``capacity - one share`` (never less than one
       share): the pool is not left idle under light load, yet a newcomer always finds
       at least one full share free when it arrives.
    4. ``full``: the pool's total count or byte limit would be exceeded. Shares can sum
       to more than the capacity (more than ``1 / max_share`` active members), so a
       member within its share can still meet a full pool.

    An accepted transaction is NEVER evicted to make room: a submitter told "accepted"
    keeps that promise until the transaction commits or expires. Fairness therefore
    comes from refusing to let one member grow past its share while others are present,
    not from taking back what was admitted. A consequence is that a member who borrowed
    idle capacity while alone may stay over its share after others arrive; it then
    cannot add anything until it drops back under its share, and ``reap``'s round-robin
    drains every member at the same pace.

Batch policy
    ``reap`` takes one entry per member per round, members ordered by the age of their
    oldest queued entry, each member's entries in arrival order (the order of ``add``
    calls). A member whose next entry does not fit the remaining byte budget sits out
    the rest of that batch rather than have a later entry jump ahead of it. So with ``k``
    members each holding at least ``m`` queued entries, ``reap(k * m, ...)`` (with bytes
    to spare) returns exactly ``m`` from each, and no member can starve the others.

Complexity: ``add``, ``requeue`` (per id), ``remove_committed`` (per id) are O(log n);
``reap`` is O(b log n + M log M) for a batch of b from M members with queued entries;
``expire`` is O(e log n) for e heap items past the cutoff. The per-member queues and
the expiry order are heaps with lazy deletion, compacted once stale items outnumber the
live entries, so memory stays O(n).

Programming errors (a tx id that is not 32 bytes, a negative limit) raise
``ValueError``; ordinary conditions never raise.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

TX_ID_SIZE = 32

# Stale heap items below this many are never worth a rebuild.
_COMPACT_SLACK = 1024


class RejectReason(StrEnum):
    """Why ``add`` refused a transaction; the values are the stable wire/log codes."""

    DUPLICATE = "duplicate"
    TOO_LARGE = "too_large"
    MEMBER_QUOTA = "member_quota"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class AddResult:
    """The outcome of ``add``: accepted when ``reason`` is None."""

    reason: RejectReason | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


# Results carry no per-call data, so share one instance per outcome instead of
# allocating on the hot path.
ACCEPTED = AddResult()
_REJECTIONS = {reason: AddResult(reason) for reason in RejectReason}


@dataclass(frozen=True, slots=True)
class Entry:
    """A pooled transaction as the caller submitted it; ``data`` is opaque here."""

    tx_id: bytes
    member: str
    data: bytes
    arrival_ms: int

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class MempoolStats:
    """A snapshot; the mappings are read-only copies, unaffected by later changes."""

    count: int
    size_bytes: int
    in_flight: int
    per_member: Mapping[str, int]
    per_member_bytes: Mapping[str, int]
    rejected: Mapping[RejectReason, int]
    accepted_total: int
    committed_total: int
    expired_total: int


class _Record:
    """Mutable bookkeeping for one pending entry; never leaves this module."""

    __slots__ = ("entry", "in_flight", "seq")

    def __init__(self, entry: Entry, seq: int) -> None:
        self.entry = entry
        # A per-pool counter, not arrival_ms: it gives a strict arrival order even when
        # timestamps tie or go backwards, and tells a stale heap item from a live one
        # after the same tx id has left and been re-added.
        self.seq = seq
        self.in_flight = False


class Mempool:
    """See the module docstring for the admission, batch and expiry policy."""

    def __init__(
        self,
        max_txs: int,
        max_bytes: int,
        *,
        max_share: float = 0.25,
        max_tx_bytes: int | None = None,
        committed_memory: int | None = None,
    ) -> None:
        """``committed_memory`` defaults to ``2 * max_txs`` committed tx ids."""
        if max_txs < 1:
            raise ValueError("max_txs must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if not 0 < max_share <= 1:
            raise ValueError("max_share must be in (0, 1]")
        # Exact rational arithmetic so that e.g. 1/3 of 300 is 100, not 99.
        share = Fraction(max_share).limit_denominator(1_000_000)
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_share = max_share
        self.quota_txs = max(1, int(share * max_txs))
        self.quota_bytes = max(1, int(share * max_bytes))
        # A lone member may use all but one share, so the next member to arrive always
        # finds a full share free (see the module docstring).
        self.solo_txs = max(self.quota_txs, max_txs - self.quota_txs)
        self.solo_bytes = max(self.quota_bytes, max_bytes - self.quota_bytes)
        if max_tx_bytes is None:
            max_tx_bytes = self.quota_bytes
        if not 0 <= max_tx_bytes <= self.quota_bytes:
            raise ValueError(
                f"max_tx_bytes must be in [0, {self.quota_bytes}] (one member's byte share)"
            )
        self.max_tx_bytes = max_tx_bytes
        if committed_memory is None:
            committed_memory = 2 * max_txs
        if committed_memory < 0:
            raise ValueError("committed_memory must not be negative")
        self.committed_memory = committed_memory

        self._records: dict[bytes, _Record] = {}
        self._bytes = 0
        self._in_flight = 0
        # Members are keyed only while they hold an entry, so len() is "members present".
        self._member_count: dict[str, int] = {}
        self._member_bytes: dict[str, int] = {}
        # Queued (not in flight) entries per member as a min-heap of (seq, tx_id).
        # Entries that leave while queued are not searched for; their items go stale
        # and are skipped when they reach the top.
        self._queues: dict[str, list[tuple[int, bytes]]] = {}
        self._queue_items = 0
        # Queued entries by age, (arrival_ms, seq, tx_id); stale items are skipped too.
        self._expiry: list[tuple[int, int, bytes]] = []
        # Insertion-ordered, so popitem(last=False) evicts the oldest in O(1).
        self._committed: OrderedDict[bytes, None] = OrderedDict()
        self._next_seq = 0
        self._rejected = dict.fromkeys(RejectReason, 0)
        self._accepted_total = 0
        self._committed_total = 0
        self._expired_total = 0

    # -- queries -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._records

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def held_by(self, member: str) -> int:
        """How many of ``member``'s transactions are pending (queued or in flight)."""
        return self._member_count.get(member, 0)

    def get(self, tx_id: bytes) -> Entry | None:
        record = self._records.get(tx_id)
        return None if record is None else record.entry

    def is_in_flight(self, tx_id: bytes) -> bool:
        record = self._records.get(tx_id)
        return record is not None and record.in_flight

    def statistics(self) -> MempoolStats:
        return MempoolStats(
            count=len(self._records),
            size_bytes=self._bytes,
            in_flight=self._in_flight,
            per_member=MappingProxyType(dict(self._member_count)),
            per_member_bytes=MappingProxyType(dict(self._member_bytes)),
            rejected=MappingProxyType(dict(self._rejected)),
            accepted_total=self._accepted_total,
            committed_total=self._committed_total,
            expired_total=self._expired_total,
        )

    # -- admission ---------------------------------------------------------------------

    def add(self, tx_id: bytes, member: str, data: bytes, now_ms: int) -> AddResult:
        if len(tx_id) != TX_ID_SIZE:
            raise ValueError(f"tx id must be {TX_ID_SIZE} bytes, got {len(tx_id)}")
        if tx_id in self._records or tx_id in self._committed:
            return self._reject(RejectReason.DUPLICATE)
        size = len(data)
        if size > self.max_tx_bytes:
            return self._reject(RejectReason.TOO_LARGE)
        held = self._member_count.get(member, 0)
        held_bytes = self._member_bytes.get(member, 0)
        # "Alone" means no *other* member holds anything (the member itself may).
        alone = len(self._member_count) - (1 if held else 0) == 0
        cap_txs, cap_bytes = (
            (self.solo_txs, self.solo_bytes) if alone else (self.quota_txs, self.quota_bytes)
        )
        if held + 1 > cap_txs or held_bytes + size > cap_bytes:
            return self._reject(RejectReason.MEMBER_QUOTA)
        if len(self._records) + 1 > self.max_txs or self._bytes + size > self.max_bytes:
            return self._reject(RejectReason.FULL)

        entry = Entry(tx_id, member, data, now_ms)
        record = _Record(entry, self._next_seq)
        self._next_seq += 1
        self._records[tx_id] = record
        self._bytes += size
        self._member_count[member] = held + 1
        self._member_bytes[member] = held_bytes + size
        self._enqueue(record)
        self._accepted_total += 1
        return ACCEPTED

    def _reject(self, reason: RejectReason) -> AddResult:
        self._rejected[reason] += 1
        return _REJECTIONS[reason]

    # -- batching ----------------------------------------------------------------------

    def reap(self, max_txs: int, max_bytes: int) -> list[Entry]:
        """Mark and return the next batch; the entries stay pooled until committed."""
        if max_txs <= 0 or max_bytes < 0:
            return []
        heads: list[tuple[int, str]] = []
        for member in list(self._queues):
            head = self._queue_head(member)
            if head is None:
                # Drop empty queues here so departed members cost nothing next time.
                del self._queues[member]
            else:
                heads.append((head.seq, member))
        # Whoever has waited longest goes first in each round; ties are impossible
        # because seq is unique.
        heads.sort()
        active = [member for _, member in heads]
        batch: list[Entry] = []
        budget = max_bytes
        while active and len(batch) < max_txs:
            still_active: list[str] = []
            for member in active:
                if len(batch) >= max_txs:
                    break
                record = self._queue_head(member)
                if record is None:
                    continue
                if record.entry.size > budget:
                    # Sit out the rest of this batch: taking a later, smaller entry of
                    # the same member would break its arrival order.
                    continue
                heapq.heappop(self._queues[member])
                self._queue_items -= 1
                record.in_flight = True
                self._in_flight += 1
                batch.append(record.entry)
                budget -= record.entry.size
                still_active.append(member)
            active = still_active
        return batch

    def requeue(self, tx_ids: Iterable[bytes]) -> int:
        """Return in-flight entries to their queues (a view change dropped the proposal).

        They regain their original place in arrival order. Ids that are not in flight
        (unknown, committed, expired, or never reaped) are ignored; returns how many
        were requeued.
        """
        count = 0
        for tx_id in tx_ids:
            record = self._records.get(tx_id)
            if record is None or not record.in_flight:
                continue
            record.in_flight = False
            self._in_flight -= 1
            self._enqueue(record)
            count += 1
        self._maybe_compact()
        return count

    def _enqueue(self, record: _Record) -> None:
        entry = record.entry
        heapq.heappush(self._queues.setdefault(entry.member, []), (record.seq, entry.tx_id))
        self._queue_items += 1
        # Pushed again on every requeue: an item left from before the reap may still be
        # in the heap, but duplicates are harmless (the second one finds the entry gone).
        heapq.heappush(self._expiry, (entry.arrival_ms, record.seq, entry.tx_id))

    def _live_queued_record(self, seq: int, tx_id: bytes) -> _Record | None:
        record = self._records.get(tx_id)
        if record is None or record.seq != seq or record.in_flight:
            return None
        return record

    def _queue_head(self, member: str) -> _Record | None:
        queue = self._queues.get(member)
        while queue:
            seq, tx_id = queue[0]
            record = self._live_queued_record(seq, tx_id)
            if record is not None:
                return record
            heapq.heappop(queue)
            self._queue_items -= 1
        return None

    # -- removal -----------------------------------------------------------------------

    def remove_committed(self, tx_ids: Iterable[bytes]) -> list[Entry]:
        """Drop committed entries and remember their ids; returns the entries dropped.

        Every id is remembered, pooled or not: a tx committed from another primary's
        proposal must still be refused if a copy reaches this node late.
        """
        removed: list[Entry] = []
        for tx_id in tx_ids:
            record = self._records.get(tx_id)
            if record is not None:
                self._drop(record)
                removed.append(record.entry)
            self._remember_committed(tx_id)
        self._committed_total += len(removed)
        self._maybe_compact()
        return removed

    def expire(self, now_ms: int, ttl_ms: int) -> list[Entry]:
        """Drop queued entries older than ``ttl_ms`` (age > ttl), oldest first.

        In-flight entries are kept whatever their age, since they may still commit;
        they become expirable again once requeued.
        """
        if ttl_ms < 0:
            raise ValueError("ttl_ms must not be negative")
        cutoff = now_ms - ttl_ms
        expired: list[Entry] = []
        expiry = self._expiry
        while expiry and expiry[0][0] < cutoff:
            _, seq, tx_id = heapq.heappop(expiry)
            # In-flight entries lose their item here; requeue pushes a fresh one.
            record = self._live_queued_record(seq, tx_id)
            if record is not None:
                self._drop(record)
                expired.append(record.entry)
        self._expired_total += len(expired)
        self._maybe_compact()
        return expired

    def _drop(self, record: _Record) -> None:
        entry = record.entry
        del self._records[entry.tx_id]
        self._bytes -= entry.size
        if record.in_flight:
            self._in_flight -= 1
        member = entry.member
        left = self._member_count[member] - 1
        if left:
            self._member_count[member] = left
            self._member_bytes[member] -= entry.size
        else:
            del self._member_count[member]
            del self._member_bytes[member]
        # Its queue and expiry items are left to go stale; see _maybe_compact.

    def _remember_committed(self, tx_id: bytes) -> None:
        if self.committed_memory == 0:
            return
        committed = self._committed
        if tx_id in committed:
            committed.move_to_end(tx_id)
            return
        committed[tx_id] = None
        if len(committed) > self.committed_memory:
            committed.popitem(last=False)

    def _maybe_compact(self) -> None:
        # Each rebuild is O(n) and happens only after more than n stale items piled up
        # since the last one, so the cost is amortised O(1) per removal and heap memory
        # stays within about twice the live entries.
        limit = 2 * len(self._records) + _COMPACT_SLACK
        if self._queue_items > limit:
            queues: dict[str, list[tuple[int, bytes]]] = {}
            for record in self._records.values():
                if not record.in_flight:
                    queues.setdefault(record.entry.member, []).append(
                        (record.seq, record.entry.tx_id)
                    )
            for queue in queues.values():
                heapq.heapify(queue)
            self._queues = queues
            self._queue_items = sum(len(queue) for queue in queues.values())
        if len(self._expiry) > limit:
            self._expiry = [
                (record.entry.arrival_ms, record.seq, record.entry.tx_id)
                for record in self._records.values()
                if not record.in_flight
            ]
            heapq.heapify(self._expiry)

"""Client requests waiting for consensus, as the replica sees them.

In the paper a client sends its request to the primary (Castro and Liskov, section 4.1)
and the primary buffers requests while earlier ones are in progress, to multicast them
later as a group (section 4.2). Here every member's host hands each request to its own
replica (``RequestArrived``): the primary batches them into proposals, and a backup
keeps them to judge proposals by and to time the primary with (a backup "is waiting
for a request if it received a valid request and has not executed it", section 4.4).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from consensus.blocks import Batch
from consensus.crypto import hash_bytes
from consensus.params import Params

# The application's verdict on a request's content (the host's check, e.g. signatures).
RequestCheck = Callable[[bytes], bool]


def request_id(payload: bytes) -> bytes:
    """Matches the transaction id of the node layer: hash under the "tx" domain."""
    return hash_bytes("tx", payload)


@dataclass(frozen=True)
class PendingRequest:
    payload: bytes
    arrived_ms: int
    # Its place in this replica's arrival order (``liveness.RequestTimer`` judges by it
    # whether the primary passed it over).
    arrival: int = 0


class RequestQueue:
    """Pending requests in arrival order; the subset not yet in any proposal of the
    current view; and a bounded memory of committed ids, so that a late duplicate of a
    committed request is not proposed again."""

    def __init__(self, capacity: int, committed_memory: int) -> None:
        self.capacity = capacity
        self.committed_memory = committed_memory
        self.pending: OrderedDict[bytes, PendingRequest] = OrderedDict()
        self._unproposed: OrderedDict[bytes, None] = OrderedDict()
        self.in_flight: dict[bytes, int] = {}  # request id -> sequence it is proposed at
        self._committed: OrderedDict[bytes, None] = OrderedDict()
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self.pending)

    def is_committed(self, rid: bytes) -> bool:
        return rid in self._committed

    def add(self, rid: bytes, payload: bytes, now_ms: int) -> str | None:
        """None when queued (or already known); otherwise why it was refused."""
        if rid in self.pending or rid in self._committed:
            return None
        if len(self.pending) >= self.capacity:
            return "the consensus queue is full"
        self._arrivals += 1
        self.pending[rid] = PendingRequest(payload, now_ms, self._arrivals)
        if rid not in self.in_flight:
            self._unproposed[rid] = None
        return None

    def oldest(self) -> bytes | None:
        return next(iter(self.pending), None)

    def unproposed_count(self) -> int:
        return len(self._unproposed)

    def take_batch(self, max_txs: int, max_bytes: int, seq: int) -> list[bytes]:
        """Oldest unproposed requests, now marked as in flight at ``seq``."""
        out: list[bytes] = []
        size = 0
        while self._unproposed and len(out) < max_txs:
            rid = next(iter(self._unproposed))
            payload = self.pending[rid].payload
            if out and size + len(payload) > max_bytes:
                break
            del self._unproposed[rid]
            self.in_flight[rid] = seq
            out.append(payload)
            size += len(payload)
        return out

    def batch_acceptable(
        self, batch: Batch, params: Params, check_request: RequestCheck | None
    ) -> bool:
        """Whether a fresh proposal's batch is one this replica may vote for: within the
        size limits, no request twice, none already committed or proposed at another
        height, and each one the application accepts."""
        if len(batch.txs) > params.max_batch_txs or batch.size_bytes > params.max_batch_bytes:
            return False
        seen: set[bytes] = set()
        for tx in batch.txs:
            rid = request_id(tx)
            if rid in seen or len(tx) > params.max_request_bytes:
                return False
            if self.is_committed(rid):
                return False
            elsewhere = self.in_flight.get(rid)
            if elsewhere is not None and elsewhere != batch.height:
                return False
            # A request we hold already passed the check when it arrived.
            if rid not in self.pending and check_request is not None and not check_request(tx):
                return False
            seen.add(rid)
        return True

    def mark_in_flight(self, rids: Iterable[bytes], seq: int) -> None:
        for rid in rids:
            self.in_flight[rid] = seq
            self._unproposed.pop(rid, None)

    def reset_in_flight(self) -> None:
        """A new view: proposals of the old view no longer hold their requests."""
        self.in_flight.clear()
        self._unproposed = OrderedDict((rid, None) for rid in self.pending)

    def committed(self, rids: Iterable[bytes]) -> int | None:
        """Forget committed requests; returns the latest arrival number among those
        this replica held (None if it held none of them)."""
        newest: int | None = None
        for rid in rids:
            held = self.pending.pop(rid, None)
            if held is not None and (newest is None or held.arrival > newest):
                newest = held.arrival
            self._unproposed.pop(rid, None)
            self.in_flight.pop(rid, None)
            self._committed[rid] = None
        while len(self._committed) > self.committed_memory:
            self._committed.popitem(last=False)
        return newest

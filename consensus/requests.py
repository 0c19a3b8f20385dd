"""Client requests waiting for consensus, as the replica sees them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.crypto import hash_bytes


def request_id(payload: bytes) -> bytes:
    """Matches the transaction id of the node layer: hash under the "tx" domain."""
    return hash_bytes("tx", payload)


@dataclass(frozen=True)
class PendingRequest:
    payload: bytes
    arrived_ms: int


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
        self.pending[rid] = PendingRequest(payload, now_ms)
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

    def mark_in_flight(self, rids: Iterable[bytes], seq: int) -> None:
        for rid in rids:
            self.in_flight[rid] = seq
            self._unproposed.pop(rid, None)

    def reset_in_flight(self) -> None:
        """A new view: proposals of the old view no longer hold their requests."""
        self.in_flight.clear()
        self._unproposed = OrderedDict((rid, None) for rid in self.pending)

    def committed(self, rids: Iterable[bytes]) -> None:
        for rid in rids:
            self.pending.pop(rid, None)
            self._unproposed.pop(rid, None)
            self.in_flight.pop(rid, None)
            self._committed[rid] = None
        while len(self._committed) > self.committed_memory:
            self._committed.popitem(last=False)

"""Bookkeeping for block sync: who claims which height, and the one fetch in flight.

A peer's claim is only a hint: blocks are accepted after their certificates verify.
A peer that times out or serves a bad certificate loses its claim until it makes a new
one, so a lying peer costs one request, not a stall.
"""

from __future__ import annotations


class SyncTracker:
    def __init__(self) -> None:
        self.heights: dict[int, int] = {}
        self._fetching: tuple[int, int, int] | None = None  # peer, from, to
        self._turn = 0

    @property
    def busy(self) -> bool:
        return self._fetching is not None

    def observe(self, peer: int, height: int) -> None:
        if height > self.heights.get(peer, 0):
            self.heights[peer] = height

    def best_height(self) -> int:
        return max(self.heights.values(), default=0)

    def pick_peer(self, from_height: int, exclude: int) -> int | None:
        ahead = sorted(p for p, h in self.heights.items() if h >= from_height and p != exclude)
        if not ahead:
            return None
        self._turn += 1
        return ahead[self._turn % len(ahead)]

    def start(self, peer: int, from_height: int, to_height: int) -> None:
        self._fetching = (peer, from_height, to_height)

    def expects(self, peer: int) -> bool:
        return self._fetching is not None and self._fetching[0] == peer

    def finish(self) -> None:
        self._fetching = None

    def expire(self) -> None:
        if self._fetching is not None:
            self.distrust(self._fetching[0])
        self._fetching = None

    def distrust(self, peer: int) -> None:
        self.heights.pop(peer, None)

"""Checkpoint messages collected until a quorum agrees on one block hash."""

from __future__ import annotations

from consensus.messages import Checkpoint

# Per member, remember checkpoints at this many distinct sequence numbers: enough for a
# replica that catches up by block sync to find a quorum at a recent checkpoint.
_PER_MEMBER = 3


class CheckpointTracker:
    def __init__(self) -> None:
        self._by_seq: dict[int, dict[int, Checkpoint]] = {}

    def add(self, cp: Checkpoint) -> None:
        self._by_seq.setdefault(cp.seq, {})[cp.sender] = cp
        mine = sorted(s for s, by in self._by_seq.items() if cp.sender in by)
        for old in mine[:-_PER_MEMBER]:
            del self._by_seq[old][cp.sender]
            if not self._by_seq[old]:
                del self._by_seq[old]

    def has(self, cp: Checkpoint) -> bool:
        return self._by_seq.get(cp.seq, {}).get(cp.sender) == cp

    def stable_candidate(
        self, low: int, executed: int, quorum: int, own_hashes: dict[int, bytes]
    ) -> tuple[int, tuple[Checkpoint, ...]] | None:
        """The highest executed sequence above ``low`` with a quorum of matching
        checkpoints (and matching this replica's own block hash where it knows it)."""
        for seq in sorted(self._by_seq, reverse=True):
            if seq <= low or seq > executed:
                continue
            groups: dict[bytes, list[Checkpoint]] = {}
            for cp in self._by_seq[seq].values():
                groups.setdefault(cp.block_hash, []).append(cp)
            for block_hash, cps in groups.items():
                own = own_hashes.get(seq)
                if len(cps) >= quorum and own in (None, block_hash):
                    return seq, tuple(sorted(cps, key=lambda c: c.sender)[:quorum])
        return None

    def highest_seen(self, weak_quorum: int) -> int:
        """The highest sequence that at least ``weak_quorum`` members checkpointed."""
        for seq in sorted(self._by_seq, reverse=True):
            if len(self._by_seq[seq]) >= weak_quorum:
                return seq
        return 0

    def signers(self, seq: int) -> list[int]:
        return sorted(self._by_seq.get(seq, {}))

    def collect_garbage(self, low: int) -> None:
        self._by_seq = {s: by for s, by in self._by_seq.items() if s > low}

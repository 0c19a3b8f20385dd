"""The message log of the normal case: one slot per (view, sequence)."""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import Commit, Prepare, Proposal


@dataclass
class Slot:
    view: int
    seq: int
    created_ms: int
    proposal: Proposal | None = None
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False
    own_prepare: Prepare | None = None
    own_commit: Commit | None = None

    @property
    def digest(self) -> bytes | None:
        return None if self.proposal is None else self.proposal.pre_prepare.digest

    def matching_prepares(self) -> list[Prepare]:
        d = self.digest
        return [p for _, p in sorted(self.prepares.items()) if p.digest == d]

    def matching_commits(self) -> list[Commit]:
        d = self.digest
        return [c for _, c in sorted(self.commits.items()) if c.digest == d]


class MessageLog:
    def __init__(self) -> None:
        self.slots: dict[tuple[int, int], Slot] = {}

    def get(self, view: int, seq: int) -> Slot | None:
        return self.slots.get((view, seq))

    def slot(self, view: int, seq: int, now_ms: int) -> Slot:
        key = (view, seq)
        s = self.slots.get(key)
        if s is None:
            s = self.slots[key] = Slot(view, seq, now_ms)
        return s

    def in_view(self, view: int) -> list[Slot]:
        return sorted((s for s in self.slots.values() if s.view == view), key=lambda s: s.seq)

    def collect_garbage(self, low: int, view: int) -> None:
        """Forget slots at or below the stable checkpoint and slots of older views."""
        self.slots = {k: s for k, s in self.slots.items() if k[1] > low and k[0] >= view}

    def __len__(self) -> int:
        return len(self.slots)

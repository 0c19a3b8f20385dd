"""The message log of the normal case (Castro and Liskov, section 4.2): one slot per
(view, sequence number), holding the PRE-PREPARE with its batch, the PREPAREs and
COMMITs received, this replica's own votes, and the two predicates of the paper:
*prepared* (the pre-prepare and a quorum minus one matching PREPAREs) and
*committed-local* (prepared, and a quorum of matching COMMITs). Messages are kept
until a stable checkpoint covers them (section 4.3) or a new view leaves them behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import Commit, Prepare, Proposal

OwnMessage = Proposal | Prepare | Commit


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
        """PREPAREs for this slot's proposal, by sender."""
        digest = self.digest
        return [p for _, p in sorted(self.prepares.items()) if p.digest == digest]

    def matching_commits(self) -> list[Commit]:
        """COMMITs for this slot's proposal, by sender."""
        digest = self.digest
        return [c for _, c in sorted(self.commits.items()) if c.digest == digest]


class MessageLog:
    def __init__(self) -> None:
        self.slots: dict[tuple[int, int], Slot] = {}

    def get(self, view: int, seq: int) -> Slot | None:
        return self.slots.get((view, seq))

    def slot(self, view: int, seq: int, now_ms: int) -> Slot:
        """The slot for (view, seq), created empty at ``now_ms`` if there is none."""
        key = (view, seq)
        found = self.slots.get(key)
        if found is None:
            found = self.slots[key] = Slot(view, seq, now_ms)
        return found

    def in_view(self, view: int) -> list[Slot]:
        return sorted((s for s in self.slots.values() if s.view == view), key=lambda s: s.seq)

    def stuck_own_messages(
        self, view: int, executed: int, now_ms: int, min_age_ms: int, as_primary: bool
    ) -> list[OwnMessage]:
        """This replica's messages for slots of ``view`` that are at least
        ``min_age_ms`` old and neither committed nor executed: worth sending again, in
        case the network lost them (the primary's own proposals included)."""
        stuck: list[OwnMessage] = []
        for slot in self.in_view(view):
            if slot.committed or slot.seq <= executed or now_ms - slot.created_ms < min_age_ms:
                continue
            if as_primary and slot.proposal is not None:
                stuck.append(slot.proposal)
            if slot.own_prepare is not None:
                stuck.append(slot.own_prepare)
            if slot.own_commit is not None:
                stuck.append(slot.own_commit)
        return stuck

    def collect_garbage(self, low: int, view: int) -> None:
        """Forget slots at or below the stable checkpoint and slots of older views."""
        self.slots = {
            (slot_view, seq): slot
            for (slot_view, seq), slot in self.slots.items()
            if seq > low and slot_view >= view
        }

    def __len__(self) -> int:
        return len(self.slots)

"""Signing as this member, and the rule that keeps an honest member from equivocating.

PBFT's safety argument assumes that a non-faulty replica never sends two different
PRE-PREPAREs, PREPAREs or COMMITs for one view and sequence number (Castro and Liskov,
section 4.2: a backup accepts a pre-prepare only if it "has not accepted a pre-prepare
message for view v and sequence number n containing a different digest"). A replica
that crashes loses that memory unless it is durable, so every vote is persisted (as a
``VoteRecord``) in the same step that first signs it: the host writes records before it
sends anything, so no vote leaves that a restart could forget.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from consensus.crypto import Signer
from consensus.durable import VoteRecord
from consensus.messages import Commit, Prepare, PrePrepare, SignedMessage, sign
from consensus.outbox import Outbox

# (message kind, view, sequence number) -> the digest this member signed there.
VoteKey = tuple[str, int, int]

SignedT = TypeVar("SignedT", bound=SignedMessage)
VoteT = TypeVar("VoteT", PrePrepare, Prepare, Commit)


class Signatory:
    def __init__(
        self,
        member: int,
        signer: Signer,
        chain_id: str,
        outbox: Outbox,
        votes: dict[VoteKey, bytes],
    ) -> None:
        self.member = member
        self.chain_id = chain_id
        self._signer = signer
        self._outbox = outbox
        # Every vote signed above the stable checkpoint, as restored from durable state.
        self.votes = votes

    def sign(self, cls: type[SignedT], **values: Any) -> SignedT:
        """A message of ``cls`` from this member; for anything but votes."""
        message = sign(cls, self._signer, self.chain_id, sender=self.member, **values)
        return cast(SignedT, message)

    def sign_vote(self, cls: type[VoteT], view: int, seq: int, digest: bytes) -> VoteT | None:
        """Sign a PRE-PREPARE, PREPARE or COMMIT, or None when this member already
        signed a different digest for the same (kind, view, seq)."""
        key = (cls.KIND, view, seq)
        earlier = self.votes.get(key)
        if earlier is not None and earlier != digest:
            return None
        if earlier is None:
            self.votes[key] = digest
            self._outbox.persist(VoteRecord(cls.KIND, view, seq, digest))
        return self.sign(cls, view=view, seq=seq, digest=digest)

    def sequences_proposed(self, view: int) -> list[int]:
        """Sequence numbers this member signed a PRE-PREPARE for in ``view``."""
        return [
            seq
            for (kind, voted_view, seq) in self.votes
            if kind == PrePrepare.KIND and voted_view == view
        ]

    def forget_up_to(self, seq: int) -> None:
        """Garbage collection (section 4.3): this member never votes at or below its
        low watermark again, so the memory of those votes can go."""
        self.votes = {key: digest for key, digest in self.votes.items() if key[2] > seq}

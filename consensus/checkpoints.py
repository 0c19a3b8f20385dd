"""CHECKPOINT messages collected until a quorum agrees on one block hash (Castro and
Liskov, section 4.3, "Garbage Collection").

Every ``checkpoint_interval`` blocks a replica multicasts CHECKPOINT with the hash of
the block it just executed; the hash chain makes that one hash cover the whole history
(the paper's state digest). A quorum of CHECKPOINTs with the same hash at one height is
the proof that makes the checkpoint *stable*: the replica then moves its low watermark
there and discards the log at or below it (``Replica._advance_low_watermark``). The
same proofs travel in VIEW-CHANGE messages, and their signers are whom a replica that
fell behind asks for blocks when no one else claims the height (``consensus.sync``).
"""

from __future__ import annotations

from consensus.messages import Checkpoint
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.signatory import Signatory
from consensus.verifier import Verifier

# Per member, remember checkpoints at this many distinct sequence numbers: enough for a
# replica that catches up by block sync to find a quorum at a recent checkpoint.
_PER_MEMBER = 3


class CheckpointTracker:
    def __init__(
        self,
        *,
        params: Params,
        verifier: Verifier,
        signatory: Signatory,
        outbox: Outbox,
        stable_proof: tuple[Checkpoint, ...],
    ) -> None:
        self._params = params
        self._verifier = verifier
        self._signatory = signatory
        self._outbox = outbox
        self._by_seq: dict[int, dict[int, Checkpoint]] = {}  # seq -> sender -> message
        for checkpoint in stable_proof:
            self.add(checkpoint)
        # The last CHECKPOINT this replica sent.
        self.own: Checkpoint | None = None

    def send_own(self, seq: int, block_hash: bytes) -> None:
        """Multicast our CHECKPOINT for the block just executed at ``seq``."""
        checkpoint = self._signatory.sign(Checkpoint, seq=seq, block_hash=block_hash)
        self.own = checkpoint
        self.add(checkpoint)
        self._outbox.broadcast(checkpoint)

    def retransmit_own(self, low_watermark: int) -> None:
        """Resend our last CHECKPOINT while it is not stable: without a quorum at this
        checkpoint the window cannot move."""
        if self.own is not None and self.own.seq > low_watermark:
            self._outbox.broadcast(self.own)

    def receive(self, checkpoint: Checkpoint, low_watermark: int) -> bool:
        """Keep a peer's CHECKPOINT; False when it is stale, off the interval, known or
        invalid."""
        if (
            checkpoint.seq <= low_watermark
            or checkpoint.seq % self._params.checkpoint_interval
            or self.has(checkpoint)
        ):
            return False
        if not self._verifier.message(checkpoint):
            return False
        self.add(checkpoint)
        return True

    def add(self, checkpoint: Checkpoint) -> None:
        sender = checkpoint.sender
        self._by_seq.setdefault(checkpoint.seq, {})[sender] = checkpoint
        seqs_of_sender = sorted(
            seq for seq, by_sender in self._by_seq.items() if sender in by_sender
        )
        for old in seqs_of_sender[:-_PER_MEMBER]:
            del self._by_seq[old][sender]
            if not self._by_seq[old]:
                del self._by_seq[old]

    def has(self, checkpoint: Checkpoint) -> bool:
        return self._by_seq.get(checkpoint.seq, {}).get(checkpoint.sender) == checkpoint

    def stable_candidate(
        self, low: int, executed: int, quorum: int, own_hashes: dict[int, bytes]
    ) -> tuple[int, tuple[Checkpoint, ...]] | None:
        """The highest executed sequence above ``low`` with a quorum of matching
        checkpoints (and matching this replica's own block hash where it knows it)."""
        for seq in sorted(self._by_seq, reverse=True):
            if seq <= low or seq > executed:
                continue
            by_hash: dict[bytes, list[Checkpoint]] = {}
            for checkpoint in self._by_seq[seq].values():
                by_hash.setdefault(checkpoint.block_hash, []).append(checkpoint)
            for block_hash, checkpoints in by_hash.items():
                own = own_hashes.get(seq)
                if len(checkpoints) >= quorum and own in (None, block_hash):
                    proof = sorted(checkpoints, key=lambda c: c.sender)[:quorum]
                    return seq, tuple(proof)
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
        """Discard checkpoints at or below a new stable checkpoint."""
        self._by_seq = {seq: by_sender for seq, by_sender in self._by_seq.items() if seq > low}

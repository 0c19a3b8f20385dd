"""Block sync: how a replica that fell behind fetches certified blocks from its peers.

The paper leaves state transfer to a sketch (Castro and Liskov, end of section 4.4: "a
replica may be missing some request message m or a stable checkpoint ... It can obtain
missing information from another replica", for instance from one whose CHECKPOINT is in
the proof of the stable checkpoint). Here the state is the chain of blocks, and every
block carries its commit certificate, a quorum of COMMIT signatures, so a replica can
take blocks from anyone: it checks each certificate before executing the block, and
trusts a peer's claimed height only as a hint of whom to ask.

A replica asks when peers are ahead and the normal case is not bringing it there: its
heartbeat found it stalled, a STATUS or a weak quorum of CHECKPOINTs showed it more
than a window behind, or its stable checkpoint (from a NEW-VIEW or a restart) lies above its
last executed block. One fetch is in flight at a time. A peer that times out or serves
a bad certificate loses its claim until it makes a new one, so a lying peer costs one
request, not a stall. The host serves ``BlockRequest`` from its store; the replica
never sees one.
"""

from __future__ import annotations

from consensus.blocks import CertificateError
from consensus.checkpoints import CheckpointTracker
from consensus.events import Timer
from consensus.messages import BlockRequest, CertifiedBatch
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.signatory import Signatory
from consensus.verifier import Verifier


class BlockSync:
    def __init__(
        self,
        *,
        member: int,
        params: Params,
        verifier: Verifier,
        signatory: Signatory,
        outbox: Outbox,
        checkpoints: CheckpointTracker,
    ) -> None:
        self.member = member
        self.params = params
        self.verifier = verifier
        self._signatory = signatory
        self._outbox = outbox
        self._checkpoints = checkpoints
        # Peer -> the highest block height it claimed (in a STATUS or a CHECKPOINT).
        self.heights: dict[int, int] = {}
        self._fetching: tuple[int, int, int] | None = None  # peer, from, to
        self._turn = 0

    # ------------------------------------------------------------------ peers' claims

    def observe(self, peer: int, height: int) -> None:
        if height > self.heights.get(peer, 0):
            self.heights[peer] = height

    def best_height(self) -> int:
        return max(self.heights.values(), default=0)

    def distrust(self, peer: int) -> None:
        self.heights.pop(peer, None)

    def _pick_peer(self, from_height: int) -> int | None:
        """Peers claiming ``from_height`` in turn, so one slow peer is not asked always."""
        ahead = sorted(
            peer
            for peer, height in self.heights.items()
            if height >= from_height and peer != self.member
        )
        if not ahead:
            return None
        self._turn += 1
        return ahead[self._turn % len(ahead)]

    # ------------------------------------------------------------------ the fetch

    @property
    def busy(self) -> bool:
        return self._fetching is not None

    def start(self, peer: int, from_height: int, to_height: int) -> None:
        self._fetching = (peer, from_height, to_height)

    def maybe_fetch(self, executed: int, low_watermark: int, force: bool) -> None:
        """Ask one peer for the blocks after ``executed`` when peers are ahead and the
        normal case is not bringing us there (stalled, too far behind, or below a
        stable checkpoint); ``force`` when the caller already knows we are behind."""
        if self.busy:
            return
        target = max(self.best_height(), low_watermark)
        if target <= executed:
            return
        if not (force or executed < low_watermark or self.best_height() > executed):
            return
        peer = self._pick_peer(executed + 1)
        if peer is None:
            # No claim reaches that far, yet a quorum signed the stable checkpoint above
            # us: its signers executed that far (section 4.4's missing-state rule).
            signers = [s for s in self._checkpoints.signers(low_watermark) if s != self.member]
            if not signers:
                return
            peer = signers[executed % len(signers)]
        to_height = min(target, executed + self.params.sync_batch_blocks)
        self.start(peer, executed + 1, to_height)
        request = self._signatory.sign(BlockRequest, from_height=executed + 1, to_height=to_height)
        self._outbox.send(peer, request)
        self._outbox.set_timer(Timer.SYNC, self.params.view_timeout_ms)

    def timed_out(self) -> None:
        """The SYNC timer fired: the peer asked did not answer in time."""
        if self._fetching is not None:
            self.distrust(self._fetching[0])
        self._fetching = None

    def accept_response(self, peer: int) -> bool:
        """Whether a BlockResponse from ``peer`` answers the fetch in flight; if it
        does, the fetch is over."""
        if self._fetching is None or self._fetching[0] != peer:
            return False
        self._fetching = None
        self._outbox.cancel_timer(Timer.SYNC)
        return True

    def certifies(self, peer: int, entry: CertifiedBatch, next_height: int) -> bool:
        """Whether ``entry`` is the block at ``next_height`` with a valid commit
        certificate; a bad certificate costs ``peer`` its claim."""
        batch, cert = entry.batch, entry.certificate
        if batch.height != next_height or cert.height != batch.height:
            return False
        if batch.digest(self.verifier.membership.chain_id) != cert.digest:
            return False
        try:
            self.verifier.certificate(cert)
        except CertificateError:
            self.distrust(peer)
            return False
        return True

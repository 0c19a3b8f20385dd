"""What keeps a replica moving when the primary or the network fails it: the request
timer that suspects the primary, and the heartbeat.

The request timer is the paper's trigger for view changes (Castro and Liskov, section
4.4): "a backup is waiting for a request if it received a valid request and has not
executed it. A backup starts a timer when it receives a request and the timer is not
already running. It stops the timer when it is no longer waiting to execute the
request, but restarts it if at that point it is waiting to execute some other request."
Its timeout is the view-change timeout, so it doubles with each failed view change
(section 4.5.2). One addition: when the timer expires but blocks executed meanwhile,
the primary is slow, not faulty, and gets another timeout, up to ``max_view_timeout_ms``
in all for one request.

The heartbeat is not in the paper, which leaves out retransmission. Every
``heartbeat_ms`` a replica multicasts a signed STATUS (view, whether active, height)
and resends its own messages for work that is stuck (``Replica._retransmit``). A STATUS
tells its receiver who is ahead (block sync), who is below its stable checkpoint (it
gets the checkpoint proof) and who is in a view it has not entered (it asks for the
NEW-VIEW). A replica whose height did not move between two heartbeats tries block sync.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.events import Timer
from consensus.messages import Checkpoint, NewViewRequest, Status
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.requests import RequestQueue
from consensus.signatory import Signatory
from consensus.verifier import Verifier


class RequestTimer:
    def __init__(
        self,
        *,
        requests: RequestQueue,
        params: Params,
        outbox: Outbox,
        timeout_ms: Callable[[], int],
    ) -> None:
        self._requests = requests
        self._params = params
        self._outbox = outbox
        self._timeout_ms = timeout_ms
        # The request the timer waits for (the oldest pending when it was armed).
        self.target: bytes | None = None
        # Whether a block executed since the timer was armed.
        self.progress_since_armed = False

    def arm(self, view_active: bool) -> None:
        """Run the timer while a request waits, for the oldest one; stop it when none
        does."""
        if not view_active:
            return
        oldest = self._requests.oldest()
        if oldest is None:
            if self.target is not None:
                self.target = None
                self._outbox.cancel_timer(Timer.REQUEST)
        elif self.target is None:
            self.target = oldest
            self.progress_since_armed = False
            self._outbox.set_timer(Timer.REQUEST, self._timeout_ms())

    def block_executed(self) -> None:
        self.progress_since_armed = True

    def after_execution(self, view_active: bool) -> None:
        """Blocks executed: if the request waited for is among them, restart the clock
        for the request that is now the oldest."""
        if self.target is not None and self.target not in self._requests.pending:
            self.target = None
            self._outbox.cancel_timer(Timer.REQUEST)
        self.arm(view_active)

    def stop(self) -> None:
        """The replica left its view: nothing is waited for until it enters the next."""
        self.target = None
        self._outbox.cancel_timer(Timer.REQUEST)

    def expired(self, view_active: bool, now_ms: int) -> bool:
        """The REQUEST timer fired; True when the replica should suspect the primary."""
        target, self.target = self.target, None
        if not view_active:
            return False
        if target is None or target not in self._requests.pending:
            self.arm(view_active)
            return False
        waited_ms = now_ms - self._requests.pending[target].arrived_ms
        if self.progress_since_armed and waited_ms < self._params.max_view_timeout_ms:
            # Blocks commit, only not this request yet: a primary with a backlog is
            # slow, not faulty, and replacing it would only add a view change to the
            # backlog. The bound keeps a primary that censors one request from doing
            # so for longer than max_view_timeout_ms.
            self.target = target
            self.progress_since_armed = False
            self._outbox.set_timer(Timer.REQUEST, self._timeout_ms())
            return False
        # The oldest request waited a whole timeout with no progress at all (or too
        # long): the primary is silent, censoring, equivocating or cut off.
        return True


class Heartbeat:
    def __init__(
        self,
        *,
        member: int,
        params: Params,
        verifier: Verifier,
        signatory: Signatory,
        outbox: Outbox,
        executed: int,
    ) -> None:
        self.member = member
        self._params = params
        self._verifier = verifier
        self._signatory = signatory
        self._outbox = outbox
        # The latest valid STATUS of each peer.
        self.status_of: dict[int, Status] = {}
        # Peer -> when it last got our stable checkpoint's proof.
        self.proof_shared_at: dict[int, int] = {}
        self.executed_at_last_beat = executed

    def beat(self, view: int, view_active: bool, executed: int) -> bool:
        """Re-arm the heartbeat and multicast our STATUS; True when no block executed
        since the last beat."""
        self._outbox.set_timer(Timer.HEARTBEAT, self._params.heartbeat_ms)
        status = self._signatory.sign(Status, view=view, view_active=view_active, height=executed)
        self._outbox.broadcast(status)
        stalled = executed == self.executed_at_last_beat
        self.executed_at_last_beat = executed
        return stalled

    def receive(
        self,
        status: Status,
        view: int,
        view_active: bool,
        low_watermark: int,
        stable_proof: tuple[Checkpoint, ...],
        now_ms: int,
    ) -> bool:
        """Help a peer its STATUS shows behind us; False when the STATUS is our own or
        invalid."""
        if status.sender == self.member or not self._verifier.message(status):
            return False
        self.status_of[status.sender] = status
        if status.height < low_watermark:
            self._share_stable_proof(status.sender, stable_proof, now_ms)
        behind_view = status.view > view or (status.view == view and not view_active)
        if status.view_active and behind_view:
            request = self._signatory.sign(NewViewRequest, view=status.view)
            self._outbox.send(status.sender, request)
        return True

    def _share_stable_proof(
        self, peer: int, stable_proof: tuple[Checkpoint, ...], now_ms: int
    ) -> None:
        """Hand a peer below our stable checkpoint the quorum of CHECKPOINTs that proves
        it. Block sync brings blocks but no checkpoint messages: without this, a replica
        that caught up from far behind keeps its old low watermark, so the next proposals
        lie beyond its window and it cannot vote until a later checkpoint becomes stable
        or a view change carries one (the catch-up benchmark needed a view change to
        commit with another member down). At most once a heartbeat per peer."""
        last = self.proof_shared_at.get(peer)
        if last is not None and now_ms - last < self._params.heartbeat_ms:
            return
        self.proof_shared_at[peer] = now_ms
        for checkpoint in stable_proof:
            # Its own checkpoint too: a replica whose store was lost no longer has it.
            self._outbox.send(peer, checkpoint)

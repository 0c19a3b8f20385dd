"""What keeps a replica moving when the primary or the network fails it: the request
timer that suspects the primary, and the heartbeat.

The request timer is the paper's trigger for view changes (Castro and Liskov, section
4.4): "a backup is waiting for a request if it received a valid request and has not
executed it. A backup starts a timer when it receives a request and the timer is not
already running. It stops the timer when it is no longer waiting to execute the
request, but restarts it if at that point it is waiting to execute some other request."
Its timeout is the view-change timeout, so it doubles with each failed view change
(section 4.5.2).

The paper's rule suspects a primary that is merely slow: under a backlog (clients offer
more than the consortium commits) a backup's oldest request may wait out the primary's
whole queue, longer than any timeout, while blocks commit steadily, and replacing that
primary only adds a view change to the backlog. Patience bounded in time (as this
module had: more timeouts while blocks executed, up to ``max_view_timeout_ms`` for one
request) only moves the cliff: a backlog long enough still triggers it, which is what a
bulk upload from one bank did (issue 16; ``tests/test_simulator_liveness.py`` is the
simulator schedule). So slow is not faulty: a primary that commits blocks, however
slowly, is never suspected, and suspicion has two grounds only, both judged on the
oldest request this replica waits for:

* lack of progress: no block executed for a whole timeout while a request waited (a
  primary that is silent, cut off, or equivocating so that nothing commits); and
* censorship: a request that this replica received *after* it committed, and it still
  has not, ``censorship_grace_timeouts`` (2) whole timeouts later. A primary that
  proposes in arrival order passes a request over only by the skew between its
  arrival order and ours (network delay),
  and then commits it a block or two later; a backlog delays every request alike and
  passes none over. Under load the skew can approach a timeout (the primary checks a
  peer's gossip behind a backlog, or its admission drops it and the submitting member
  sends it again), hence the grace of two. A primary that leaves one client's requests
  out while it commits later ones is caught two timeouts after the first later request
  commits, whatever its backlog.

To judge censorship, each pending request carries its arrival number at this replica
(``RequestQueue``), and every executed block leaves a mark: the newest arrival among
the requests it committed that this replica held, and when. The oldest pending request
was passed over at the first mark newer than it. Marks are per view: a new primary is
judged only on what it commits.

What the rule assumes of the hosts: a request a backup holds reaches the primary about
as soon (a member that forwards requests, or gossip that does not refuse them, see
issue 16's admission), or the primary's other requests pass it over and it is taken for
censored. ``max_view_timeout_ms`` now only caps the doubling view-change timeout.

The heartbeat is not in the paper, which leaves out retransmission. Every
``heartbeat_ms`` a replica multicasts a signed STATUS (view, whether active, height)
and resends its own messages for work that is stuck (``Replica._retransmit``). A STATUS
tells its receiver who is ahead (block sync), who is below its stable checkpoint (it
gets the checkpoint proof) and who is in a view it has not entered (it asks for the
NEW-VIEW). A replica whose height did not move between two heartbeats tries block sync.
"""

from __future__ import annotations

from collections import deque
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
        # The request the timer waits for: the oldest pending one.
        self.target: bytes | None = None
        # When a block last executed, or when requests began to wait if later.
        self.progress_at = 0
        # (newest arrival number among the requests a block committed, when): rising in
        # both; a pending request was passed over at the first mark newer than it.
        self.passed_over: deque[tuple[int, int]] = deque()
        # Why the primary was last suspected, for the host's log.
        self.suspicion = ""
        # The longest a request waited here after a later one committed, seen when a
        # block executed: how close an honest but busy primary came to the grace.
        self.longest_passed_over_ms = 0

    def arm(self, view_active: bool, now_ms: int) -> None:
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
            # Requests begin to wait now (or the oldest committed, which was progress;
            # or a new view began, whose primary gets a whole timeout).
            self.progress_at = now_ms
            self.target = oldest
            self._forget_marks_below(oldest)
            self._set(now_ms)

    def block_executed(self, newest_arrival: int | None, now_ms: int) -> None:
        """A block executed; ``newest_arrival`` is the latest arrival number among the
        requests it committed that this replica held (None if it held none)."""
        self.progress_at = now_ms
        if self.target is None or newest_arrival is None:
            return  # nothing waits (or not in an active view): nothing was passed over
        if self.passed_over:
            waited = now_ms - self.passed_over[0][1]
            self.longest_passed_over_ms = max(self.longest_passed_over_ms, waited)
        if not self.passed_over or newest_arrival > self.passed_over[-1][0]:
            self.passed_over.append((newest_arrival, now_ms))

    def after_execution(self, view_active: bool, now_ms: int) -> None:
        """Blocks executed: if the request waited for is among them, wait for the one
        that is now the oldest."""
        if self.target is not None and self.target not in self._requests.pending:
            self.target = None
            self._outbox.cancel_timer(Timer.REQUEST)
        self.arm(view_active, now_ms)

    def stop(self) -> None:
        """The replica left its view: nothing is waited for until it enters the next,
        whose primary is judged only on what it commits."""
        self.target = None
        self.passed_over.clear()
        self._outbox.cancel_timer(Timer.REQUEST)

    def expired(self, view_active: bool, now_ms: int) -> bool:
        """The REQUEST timer fired; True when the replica should suspect the primary."""
        target = self.target
        if not view_active:
            return False
        if target is None or target not in self._requests.pending:
            self.target = None
            self.arm(view_active, now_ms)
            return False
        if now_ms >= self._deadline():
            # No block for a whole timeout while it waited, or requests received after
            # it committed a whole timeout ago while it did not: the primary is silent,
            # cut off, equivocating, or censoring.
            self.suspicion = self._why(now_ms)
            self.target = None
            return True
        # Blocks commit and nothing was passed over for long: slow, not faulty.
        self._set(now_ms)
        return False

    def _deadline(self) -> int:
        timeout = self._timeout_ms()
        deadline = self.progress_at + timeout
        if self.passed_over:
            grace = self._params.censorship_grace_timeouts * timeout
            deadline = min(deadline, self.passed_over[0][1] + grace)
        return deadline

    def _why(self, now_ms: int) -> str:
        timeout = self._timeout_ms()
        if now_ms >= self.progress_at + timeout:
            return f"no block executed for {now_ms - self.progress_at} ms while a request waited"
        passed_at = self.passed_over[0][1]
        return (
            f"a request waited {now_ms - passed_at} ms after a later one committed "
            f"(grace {self._params.censorship_grace_timeouts} x {timeout} ms)"
        )

    def _set(self, now_ms: int) -> None:
        self._outbox.set_timer(Timer.REQUEST, max(1, self._deadline() - now_ms))

    def _forget_marks_below(self, oldest: bytes) -> None:
        """Marks no newer than the oldest pending request pass over nothing pending:
        every request received later than it is newer still."""
        arrival = self._requests.pending[oldest].arrival
        while self.passed_over and self.passed_over[0][0] <= arrival:
            self.passed_over.popleft()


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

"""PBFT (Castro and Liskov) as a pure, synchronous state machine.

``Replica.step(event, now_ms)`` takes one event and returns the actions it causes, in
the order the host must carry them out (persist, send, apply, the rest). Nothing here
reads a clock, touches a socket or a disk, or draws randomness: ``now_ms`` is the time
the host observed the event, and only decides proposal timestamps.

``consensus.replica_core`` holds the state, the normal case (one batch per sequence
number: PRE-PREPARE, PREPARE, COMMIT), execution and checkpoints; this module adds
what keeps the protocol live: view changes, the heartbeat with retransmission, and
block sync for replicas that fell behind. Every vote this replica signs is recorded
(``VoteRecord``) before it can leave, so a restarted replica refuses to sign a
different digest for the same (kind, view, seq).
"""

from __future__ import annotations

from consensus.blocks import Batch, CertificateError
from consensus.durable import NewViewRecord, ViewChangeRecord, ViewRecord
from consensus.events import CancelTimer, Send, Timer
from consensus.messages import (
    BlockRequest,
    BlockResponse,
    NewView,
    NewViewRequest,
    PrePrepare,
    Proposal,
    Status,
    ViewChange,
)
from consensus.replica_core import ReplicaCore, RequestCheck
from consensus.viewchange import (
    InvalidViewMessage,
    NewViewPlan,
    check_new_view,
    check_view_change,
    plan_new_view,
)

__all__ = ["Replica", "RequestCheck"]

# Own VIEW-CHANGE messages kept for replicas that fall behind (see _help_a_replica_behind).
KEEP_PAST_VIEW_CHANGES = 8


class Replica(ReplicaCore):
    """A PBFT replica: ``step(event, now_ms) -> list[Action]``."""

    # ------------------------------------------------------------------ view change

    def _view_change_timeout(self) -> int:
        timeout = self.p.view_timeout_ms * (2 ** min(self.vc_attempts, 30))
        return int(min(timeout, self.p.max_view_timeout_ms))

    def _start_view_change(self, new_view: int) -> None:
        if new_view <= self.view and not (new_view == self.view and self.view_active):
            return
        self.view = new_view
        self.view_active = False
        self.request_timer_target = None
        self.batch_timer_set = False
        self.batch_due = False
        self._emit(CancelTimer(Timer.REQUEST))
        self._emit(CancelTimer(Timer.BATCH))
        prepared = tuple(c for s, c in sorted(self.prepared_certs.items()) if s > self.low)
        vc = self._sign(
            ViewChange,
            new_view=new_view,
            stable_seq=self.low,
            checkpoint_proof=self.stable_proof,
            prepared=prepared,
        )
        self.own_view_change = vc
        self.past_view_changes[new_view] = vc
        for old in sorted(self.past_view_changes)[:-KEEP_PAST_VIEW_CHANGES]:
            del self.past_view_changes[old]
        self._record(ViewRecord(new_view, False))
        self._record(ViewChangeRecord(vc))
        self._broadcast(vc)
        self.view_changes = {v: by for v, by in self.view_changes.items() if v >= new_view}
        self.view_changes.setdefault(new_view, {})[self.me] = vc
        self._emit(CancelTimer(Timer.VIEW_CHANGE))
        self.vc_timer_view = None
        self._start_view_change_timer()
        self._try_new_view()

    def _start_view_change_timer(self) -> None:
        """PBFT starts the timer for a new view only once a quorum asks for it. A
        replica alone in a higher view then waits for the others instead of racing
        ahead on its own timer, so honest replicas cannot leapfrog each other forever.
        A member asking for a later view counts too: it has left this one as well, and
        a replica whose primary is dead must be able to follow it (fuzz schedule 1598)."""
        if self.view_active or self.vc_timer_view == self.view:
            return
        asking = {s for v, by in self.view_changes.items() if v >= self.view for s in by}
        if len(asking) < self.m.quorum:
            return
        self.vc_timer_view = self.view
        self._set_timer(Timer.VIEW_CHANGE, self._view_change_timeout())
        self.vc_attempts += 1

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.new_view < self.view or (vc.new_view == self.view and self.view_active):
            self._help_a_replica_behind(vc)
            return
        known = self.view_changes.get(vc.new_view, {}).get(vc.sender)
        if known == vc:
            return
        try:
            check_view_change(self.verifier, vc, self.p.window)
        except InvalidViewMessage:
            return
        self.view_changes.setdefault(vc.new_view, {})[vc.sender] = vc
        self._join_higher_view()
        self._start_view_change_timer()
        self._try_new_view()

    def _help_a_replica_behind(self, vc: ViewChange) -> None:
        """A VIEW-CHANGE for a view we already left. If we acted on that view's NEW-VIEW,
        hand it over. If we asked for that view ourselves and moved on, resend that
        request: the sender may have lost ours in a crash and cannot gather a quorum
        for its view without it, while we wait in a later view that it cannot join
        (found by the schedule fuzzer, see test_regression_restart_loses_view_changes)."""
        if vc.sender == self.me or not self.m.is_member(vc.sender):
            return
        nv = self.new_view_msg
        if nv is not None and nv.view == vc.new_view == self.view and self.view_active:
            self._emit(Send(vc.sender, nv))
            return
        mine = self.past_view_changes.get(vc.new_view)
        if mine is None:
            return
        # Only a replica whose own STATUS says it is still stuck in that view gets help,
        # and at most once a heartbeat: two replicas that both left the view must not
        # answer each other's answers forever.
        status = self.status_of.get(vc.sender)
        if status is None or status.view != vc.new_view or status.view_active:
            return
        last = self.helped.get((vc.sender, vc.new_view))
        if last is not None and self.now - last < self.p.heartbeat_ms:
            return
        self.helped[(vc.sender, vc.new_view)] = self.now
        if len(self.helped) > 4 * self.m.n:
            oldest = min(self.helped, key=lambda k: self.helped[k])
            del self.helped[oldest]
        self._emit(Send(vc.sender, mine))

    def _join_higher_view(self) -> None:
        """PBFT's liveness rule: f+1 members asking for higher views include an honest
        one, so move to the smallest of those views rather than wait for a timeout."""
        highest: dict[int, int] = {}
        for view, by in self.view_changes.items():
            if view > self.view or (view == self.view and self.view_active):
                for sender in by:
                    if sender != self.me:
                        highest[sender] = max(highest.get(sender, 0), view)
        if len(highest) >= self.m.weak_quorum:
            target = sorted(highest.values())[-self.m.weak_quorum]
            self._start_view_change(max(target, self.view + (1 if self.view_active else 0)))

    def _try_new_view(self) -> None:
        v = self.view
        if self.view_active or self.m.primary(v) != self.me:
            return
        by = self.view_changes.get(v, {})
        if len(by) < self.m.quorum:
            return
        chosen = [by[self.me]] + [vc for s, vc in sorted(by.items()) if s != self.me]
        vcs = tuple(chosen[: self.m.quorum])
        plan = plan_new_view(v, vcs)
        proposals: list[Proposal] = []
        for seq, cert in plan.carried.items():
            batch = cert.batch if cert is not None else Batch(seq, self.now, ())
            pp = self._sign_vote(PrePrepare, v, seq, batch.digest(self.chain_id))
            if pp is None:
                return
            proposals.append(Proposal(pp, batch))
        nv = self._sign(NewView, view=v, view_changes=vcs, proposals=tuple(proposals))
        self._broadcast(nv)
        self._enter_view(nv, plan)

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self.view or (nv.view == self.view and self.view_active):
            return
        try:
            plan = check_new_view(self.verifier, nv, self.p.window)
        except InvalidViewMessage:
            return
        self._enter_view(nv, plan)

    def _enter_view(self, nv: NewView, plan: NewViewPlan) -> None:
        self.view = nv.view
        self.view_active = True
        self.new_view_msg = nv
        self._record(ViewRecord(nv.view, True))
        self._record(NewViewRecord(nv))
        self._emit(CancelTimer(Timer.VIEW_CHANGE))
        self.view_changes = {v: by for v, by in self.view_changes.items() if v > nv.view}
        for cp in plan.checkpoint_proof:
            self.checkpoints.add(cp)
        if plan.min_seq > self.low:
            self._advance_low(plan.min_seq, plan.checkpoint_proof)
        self.log.collect_garbage(self.low, self.view)
        self.requests.reset_in_flight()
        self.next_seq = max(plan.max_seq, self.low, self.executed) + 1
        self.batch_timer_set = False
        self.batch_due = False
        for proposal in nv.proposals:
            self._on_proposal(proposal, carried=plan.carried[proposal.pre_prepare.seq] is not None)
        self._arm_request_timer()
        self._maybe_sync()
        self._propose()

    def _on_new_view_request(self, req: NewViewRequest) -> None:
        nv = self.new_view_msg
        if nv is None or nv.view < req.view or not self.view_active:
            return
        if self._valid(req):
            self._emit(Send(req.sender, nv))

    # ------------------------------------------------------------------ heartbeat

    def _on_heartbeat(self) -> None:
        self._set_timer(Timer.HEARTBEAT, self.p.heartbeat_ms)
        status = self._sign(
            Status, view=self.view, view_active=self.view_active, height=self.executed
        )
        self._broadcast(status)
        stalled = self.executed == self.executed_at_heartbeat
        self.executed_at_heartbeat = self.executed
        self._retransmit()
        if stalled:
            self._maybe_sync()

    def _retransmit(self) -> None:
        """Resend this replica's own messages for work that is stuck, since the
        network may have lost them; receivers ignore exact duplicates cheaply."""
        if not self.view_active:
            if self.own_view_change is not None and self.own_view_change.new_view == self.view:
                self._broadcast(self.own_view_change)
            return
        if self.own_checkpoint is not None and self.own_checkpoint.seq > self.low:
            # Without a quorum at this checkpoint the window cannot move: resend it.
            self._broadcast(self.own_checkpoint)
        age = self.p.heartbeat_ms
        for slot in self.log.in_view(self.view):
            if slot.committed or slot.seq <= self.executed or self.now - slot.created_ms < age:
                continue
            if self.is_primary and slot.proposal is not None:
                self._broadcast(slot.proposal)
            if slot.own_prepare is not None:
                self._broadcast(slot.own_prepare)
            if slot.own_commit is not None:
                self._broadcast(slot.own_commit)

    def _on_status(self, status: Status) -> None:
        if status.sender == self.me or not self._valid(status):
            return
        self.status_of[status.sender] = status
        self.sync.observe(status.sender, status.height)
        if status.height < self.low:
            self._share_stable_proof(status.sender)
        behind_view = status.view > self.view or (status.view == self.view and not self.view_active)
        if status.view_active and behind_view:
            self._emit(Send(status.sender, self._sign(NewViewRequest, view=status.view)))
        if status.height > self.executed + self.p.window:
            self._maybe_sync(force=True)

    def _share_stable_proof(self, peer: int) -> None:
        """Hand a peer below our stable checkpoint the quorum of CHECKPOINTs that proves
        it. Block sync brings blocks but no checkpoint messages: without this, a replica
        that caught up from far behind keeps its old low watermark, so the next proposals
        lie beyond its window and it cannot vote until a later checkpoint becomes stable
        or a view change carries one (the catch-up benchmark needed a view change to
        commit with another member down). At most once a heartbeat per peer."""
        last = self.proof_shared.get(peer)
        if last is not None and self.now - last < self.p.heartbeat_ms:
            return
        self.proof_shared[peer] = self.now
        for cp in self.stable_proof:
            # Its own checkpoint too: a replica whose store was lost no longer has it.
            self._emit(Send(peer, cp))

    # ------------------------------------------------------------------ block sync

    def _maybe_sync(self, force: bool = False) -> None:
        """Fetch certified blocks when peers are ahead and the normal case is not
        bringing us there (stalled, too far behind, or below a stable checkpoint)."""
        if self.sync.busy:
            return
        target = max(self.sync.best_height(), self.low)
        if target <= self.executed:
            return
        if not (force or self.executed < self.low or self.sync.best_height() > self.executed):
            return
        peer = self.sync.pick_peer(self.executed + 1, exclude=self.me)
        if peer is None:
            signers = [s for s in self.checkpoints.signers(self.low) if s != self.me]
            if not signers:
                return
            peer = signers[self.executed % len(signers)]
        to = min(target, self.executed + self.p.sync_batch_blocks)
        self.sync.start(peer, self.executed + 1, to)
        self._emit(
            Send(peer, self._sign(BlockRequest, from_height=self.executed + 1, to_height=to))
        )
        self._set_timer(Timer.SYNC, self.p.view_timeout_ms)

    def _on_block_response(self, peer: int, resp: BlockResponse) -> None:
        if not self.sync.expects(peer):
            return
        self.sync.finish()
        self._emit(CancelTimer(Timer.SYNC))
        before = self.executed
        for entry in resp.entries:
            batch, cert = entry.batch, entry.certificate
            if batch.height <= self.executed:
                continue
            if batch.height != self.executed + 1 or cert.height != batch.height:
                break
            if batch.digest(self.chain_id) != cert.digest:
                break
            try:
                self.verifier.certificate(cert)
            except CertificateError:
                self.sync.distrust(peer)
                break
            self.ready[batch.height] = (batch, cert)
            self._execute_ready()
        if self.executed == before:
            # It claimed blocks it did not serve: ask someone else next time.
            self.sync.distrust(peer)
        self._maybe_sync(force=True)

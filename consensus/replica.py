"""PBFT (Castro and Liskov) as a pure, synchronous state machine.

``Replica.step(event, now_ms)`` takes one event and returns the actions it causes, in
the order the host must carry them out (persist, send, apply, the rest). Nothing here
reads a clock, touches a socket or a disk, or draws randomness: ``now_ms`` is the time
the host observed the event, and only decides proposal timestamps.

The normal case orders one batch per sequence number (PRE-PREPARE, PREPARE, COMMIT);
view changes, checkpoints and block sync are in the sections below. Every vote this
replica signs is recorded (``VoteRecord``) before it can leave, so a restarted replica
refuses to sign a different digest for the same (kind, view, seq).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.blocks import (
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CertificateError,
    CommitSignature,
)
from consensus.checkpoints import CheckpointTracker
from consensus.crypto import Signer
from consensus.durable import (
    DurableState,
    NewViewRecord,
    PreparedRecord,
    Record,
    StableRecord,
    ViewChangeRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Event,
    MessageArrived,
    Persist,
    RejectRequest,
    ReportEquivocation,
    RequestArrived,
    Send,
    SetTimer,
    Start,
    Timer,
    TimerFired,
    ordered,
)
from consensus.log import MessageLog, Slot
from consensus.membership import Membership
from consensus.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Commit,
    Message,
    NewView,
    NewViewRequest,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Proposal,
    SignedMessage,
    Status,
    ViewChange,
    sign,
)
from consensus.params import Params
from consensus.requests import RequestQueue, request_id
from consensus.sync import SyncTracker
from consensus.verifier import Verifier
from consensus.viewchange import (
    InvalidViewMessage,
    NewViewPlan,
    check_new_view,
    check_view_change,
    plan_new_view,
)

RequestCheck = Callable[[bytes], bool]


class Replica:
    def __init__(
        self,
        me: int,
        signer: Signer,
        membership: Membership,
        params: Params | None = None,
        *,
        durable: DurableState | None = None,
        tip_height: int = 0,
        tip_hash: bytes = GENESIS_PARENT,
        check_request: RequestCheck | None = None,
    ) -> None:
        if not membership.is_member(me) or membership.public_keys[me] != signer.public_key:
            raise ValueError(f"the signing key is not member {me}'s key")
        self.me = me
        self.signer = signer
        self.m = membership
        self.chain_id = membership.chain_id
        self.p = params or Params()
        self.check_request = check_request
        self.verifier = Verifier(membership)
        state = durable or DurableState()

        self.view = state.view
        self.view_active = state.view_active
        self.votes: dict[tuple[str, int, int], bytes] = dict(state.votes)
        self.prepared_certs: dict[int, PreparedCertificate] = dict(state.prepared)
        self.own_view_change = state.view_change
        self.new_view_msg = state.new_view
        self.low = state.stable_seq
        self.stable_proof = state.stable_proof
        self.executed = tip_height
        self.last_hash = tip_hash
        self.block_hashes: dict[int, bytes] = {tip_height: tip_hash}

        self.log = MessageLog()
        self.ready: dict[int, tuple[Batch, Certificate]] = {}
        self.checkpoints = CheckpointTracker()
        for cp in self.stable_proof:
            self.checkpoints.add(cp)
        self.view_changes: dict[int, dict[int, ViewChange]] = {}
        self.requests = RequestQueue(self.p.max_pending_requests, self.p.committed_memory)
        self.sync = SyncTracker()
        self.vc_attempts = 0
        self.vc_timer_view: int | None = None
        self.request_timer_target: bytes | None = None
        self.batch_timer_set = False
        self.executed_at_heartbeat = self.executed
        self.status_of: dict[int, Status] = {}
        self.own_checkpoint: Checkpoint | None = None
        self.next_seq = self._first_free_seq()
        if self.new_view_msg is not None and self.new_view_msg.view == self.view:
            for proposal in self.new_view_msg.proposals:
                self.log.slot(self.view, proposal.pre_prepare.seq, 0).proposal = proposal

        self._out: list[Action] = []
        self._records: list[Record] = []
        self.now = 0
        self.equivocations: list[ReportEquivocation] = []

    # ------------------------------------------------------------------ plumbing

    @property
    def primary(self) -> int:
        return self.m.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def high(self) -> int:
        return self.low + self.p.window

    def step(self, event: Event, now_ms: int) -> list[Action]:
        self.now = max(self.now, now_ms)
        self._out = []
        self._records = []
        match event:
            case MessageArrived(peer, message):
                self._on_message(peer, message)
            case RequestArrived(payload):
                self._on_request(payload)
            case TimerFired(timer):
                self._on_timer(timer)
            case Start():
                self._on_start()
        out = self._out
        if self._records:
            out.insert(0, Persist(tuple(self._records)))
        self._out, self._records = [], []
        return ordered(out)

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _broadcast(self, message: Message) -> None:
        self._emit(Broadcast(message))

    def _record(self, record: Record) -> None:
        self._records.append(record)

    def _sign(self, cls: type[Any], **values: Any) -> Any:
        return sign(cls, self.signer, self.chain_id, sender=self.me, **values)

    def _sign_vote(self, cls: type[Any], view: int, seq: int, digest: bytes) -> Any:
        """Sign a PRE-PREPARE, PREPARE or COMMIT unless it would contradict an earlier
        vote for the same (kind, view, seq): the guard behind "never equivocate"."""
        key = (cls.KIND, view, seq)
        earlier = self.votes.get(key)
        if earlier is not None and earlier != digest:
            return None
        if earlier is None:
            self.votes[key] = digest
            self._record(VoteRecord(cls.KIND, view, seq, digest))
        return self._sign(cls, view=view, seq=seq, digest=digest)

    def _first_free_seq(self) -> int:
        used = [s for (kind, v, s) in self.votes if kind == PrePrepare.KIND and v == self.view]
        top = max([self.executed, self.low, *used])
        if self.new_view_msg is not None and self.new_view_msg.view == self.view:
            top = max(top, *(p.pre_prepare.seq for p in self.new_view_msg.proposals), 0)
        return top + 1

    def _set_timer(self, timer: Timer, delay_ms: int) -> None:
        self._emit(SetTimer(timer, delay_ms))

    def _valid(self, message: SignedMessage) -> bool:
        return self.verifier.message(message)

    def _evidence(self, member: int, kind: str, view: int, seq: int) -> None:
        report = ReportEquivocation(member, kind, view, seq)
        if report not in self.equivocations:
            self.equivocations.append(report)
            self._emit(report)

    # ------------------------------------------------------------------ dispatch

    def _on_start(self) -> None:
        self._set_timer(Timer.HEARTBEAT, self.p.heartbeat_ms)
        vc = self.own_view_change
        if not self.view_active and vc is not None and vc.new_view == self.view:
            # Restarted in the middle of a view change: ask again for the same view.
            self.view_changes.setdefault(self.view, {})[self.me] = vc
            self._broadcast(vc)

    def _on_message(self, peer: int, message: Message) -> None:
        match message:
            case Proposal():
                self._on_proposal(message)
            case Prepare():
                self._on_prepare(message)
            case Commit():
                self._on_commit(message)
            case Checkpoint():
                self._on_checkpoint(message)
            case ViewChange():
                self._on_view_change(message)
            case NewView():
                self._on_new_view(message)
            case Status():
                self._on_status(message)
            case NewViewRequest():
                self._on_new_view_request(message)
            case BlockResponse():
                self._on_block_response(peer, message)
            case _:
                # BlockRequest is served by the host from its store; a bare
                # PrePrepare never travels without its batch.
                pass

    def _on_timer(self, timer: Timer) -> None:
        match timer:
            case Timer.BATCH:
                self.batch_timer_set = False
                self._propose(flush=True)
            case Timer.REQUEST:
                self._on_request_timeout()
            case Timer.VIEW_CHANGE:
                if not self.view_active:
                    self._start_view_change(self.view + 1)
            case Timer.HEARTBEAT:
                self._on_heartbeat()
            case Timer.SYNC:
                self.sync.expire()
                self._maybe_sync()

    # ------------------------------------------------------------------ requests

    def _on_request(self, payload: bytes) -> None:
        rid = request_id(payload)
        if len(payload) > self.p.max_request_bytes:
            self._emit(RejectRequest(rid, f"request of {len(payload)} bytes is too large"))
            return
        if self.requests.is_committed(rid) or rid in self.requests.pending:
            return
        if self.check_request is not None and not self.check_request(payload):
            self._emit(RejectRequest(rid, "request rejected by the application"))
            return
        refused = self.requests.add(rid, payload, self.now)
        if refused is not None:
            self._emit(RejectRequest(rid, refused))
            return
        self._arm_request_timer()
        self._propose()

    def _arm_request_timer(self) -> None:
        if not self.view_active:
            return
        oldest = self.requests.oldest()
        if oldest is None:
            if self.request_timer_target is not None:
                self.request_timer_target = None
                self._emit(CancelTimer(Timer.REQUEST))
        elif self.request_timer_target is None:
            self.request_timer_target = oldest
            self._set_timer(Timer.REQUEST, self._view_change_timeout())

    def _on_request_timeout(self) -> None:
        target, self.request_timer_target = self.request_timer_target, None
        if not self.view_active:
            return
        if target is not None and target in self.requests.pending:
            # The oldest request waited a whole timeout: the primary is silent,
            # censoring, equivocating or cut off. Replace it.
            self._start_view_change(self.view + 1)
        else:
            self._arm_request_timer()

    # ------------------------------------------------------------------ normal case

    def _propose(self, flush: bool = False) -> None:
        if not (self.view_active and self.is_primary):
            return
        while self.next_seq <= self.high and self.requests.unproposed_count():
            full = self.requests.unproposed_count() >= self.p.max_batch_txs
            if not (full or flush):
                if not self.batch_timer_set:
                    self.batch_timer_set = True
                    self._set_timer(Timer.BATCH, self.p.batch_delay_ms)
                return
            seq = self.next_seq
            txs = self.requests.take_batch(self.p.max_batch_txs, self.p.max_batch_bytes, seq)
            batch = Batch(seq, self.now, tuple(txs))
            pp = self._sign_vote(PrePrepare, self.view, seq, batch.digest(self.chain_id))
            if pp is None:  # cannot happen unless durable state was lost; stay safe
                return
            self.next_seq += 1
            proposal = Proposal(pp, batch)
            self.log.slot(self.view, seq, self.now).proposal = proposal
            self._broadcast(proposal)

    def _in_window(self, seq: int) -> bool:
        return self.low < seq <= self.high

    def _batch_acceptable(self, batch: Batch) -> bool:
        if len(batch.txs) > self.p.max_batch_txs or batch.size_bytes > self.p.max_batch_bytes:
            return False
        seen: set[bytes] = set()
        for tx in batch.txs:
            rid = request_id(tx)
            if rid in seen or len(tx) > self.p.max_request_bytes:
                return False
            if self.requests.is_committed(rid):
                return False
            elsewhere = self.requests.in_flight.get(rid)
            if elsewhere is not None and elsewhere != batch.height:
                return False
            if (
                rid not in self.requests.pending
                and self.check_request is not None
                and not self.check_request(tx)
            ):
                return False
            seen.add(rid)
        return True

    def _on_proposal(self, proposal: Proposal, carried: bool = False) -> None:
        pp = proposal.pre_prepare
        if pp.view != self.view or not self.view_active or pp.sender != self.primary:
            return
        if not self._in_window(pp.seq) or proposal.batch.height != pp.seq:
            return
        slot = self.log.slot(pp.view, pp.seq, self.now)
        if slot.proposal is not None:
            if slot.proposal.pre_prepare.digest != pp.digest and self._valid(pp):
                self._evidence(pp.sender, PrePrepare.KIND, pp.view, pp.seq)
            if slot.proposal.pre_prepare != pp or slot.own_prepare is not None or carried:
                return
        else:
            if not self._valid(pp) or proposal.batch.digest(self.chain_id) != pp.digest:
                return
            # A batch carried over by a NEW-VIEW may already be committed somewhere;
            # only fresh proposals are judged on their content.
            if not carried and not self._batch_acceptable(proposal.batch):
                return
        slot.proposal = proposal
        self.requests.mark_in_flight((request_id(tx) for tx in proposal.batch.txs), pp.seq)
        if not self.is_primary:
            prepare = self._sign_vote(Prepare, pp.view, pp.seq, pp.digest)
            if prepare is None:
                return
            slot.own_prepare = prepare
            slot.prepares[self.me] = prepare
            self._broadcast(prepare)
        self._check_prepared(slot)

    def _on_prepare(self, msg: Prepare) -> None:
        if msg.view != self.view or not self.view_active or not self._in_window(msg.seq):
            return
        if msg.sender == self.primary or not self.m.is_member(msg.sender):
            return
        slot = self.log.slot(msg.view, msg.seq, self.now)
        held = slot.prepares.get(msg.sender)
        if held is not None:
            if held.digest != msg.digest and self._valid(msg):
                self._evidence(msg.sender, Prepare.KIND, msg.view, msg.seq)
            return
        if not self._valid(msg):
            return
        slot.prepares[msg.sender] = msg
        self._check_prepared(slot)

    def _check_prepared(self, slot: Slot) -> None:
        if slot.prepared or slot.proposal is None:
            return
        primary = self.m.primary(slot.view)
        prepares = [p for p in slot.matching_prepares() if p.sender != primary]
        if len(prepares) < self.m.quorum - 1:
            return
        slot.prepared = True
        pp = slot.proposal.pre_prepare
        cert = PreparedCertificate(pp, tuple(prepares[: self.m.quorum - 1]), slot.proposal.batch)
        self.prepared_certs[slot.seq] = cert
        self._record(PreparedRecord(cert))
        commit = self._sign_vote(Commit, slot.view, slot.seq, pp.digest)
        if commit is None:
            return
        slot.own_commit = commit
        slot.commits[self.me] = commit
        self._broadcast(commit)
        self._check_committed(slot)

    def _on_commit(self, msg: Commit) -> None:
        if msg.view > self.view or not self._in_window(msg.seq):
            return
        if not self.m.is_member(msg.sender):
            return
        slot = self.log.get(msg.view, msg.seq)
        if slot is None:
            if msg.view != self.view:
                return
            slot = self.log.slot(msg.view, msg.seq, self.now)
        held = slot.commits.get(msg.sender)
        if held is not None:
            if held.digest != msg.digest and self._valid(msg):
                self._evidence(msg.sender, Commit.KIND, msg.view, msg.seq)
            return
        if not self._valid(msg):
            return
        slot.commits[msg.sender] = msg
        self._check_committed(slot)

    def _check_committed(self, slot: Slot) -> None:
        if slot.committed or not slot.prepared or slot.proposal is None:
            return
        commits = slot.matching_commits()
        if len(commits) < self.m.quorum:
            return
        slot.committed = True
        pp = slot.proposal.pre_prepare
        cert = Certificate(
            view=slot.view,
            height=slot.seq,
            digest=pp.digest,
            signatures=tuple(CommitSignature(c.sender, c.signature) for c in commits),
        )
        if slot.seq > self.executed:
            self.ready[slot.seq] = (slot.proposal.batch, cert)
            self._execute_ready()

    # ------------------------------------------------------------------ execution

    def _execute_ready(self) -> None:
        progressed = False
        while self.executed + 1 in self.ready:
            batch, cert = self.ready.pop(self.executed + 1)
            block = Block.from_batch(self.chain_id, batch, self.last_hash)
            self._emit(CommitBlock(block, cert))
            self.executed = batch.height
            self.last_hash = block.hash()
            self.block_hashes[self.executed] = self.last_hash
            self.requests.committed(request_id(tx) for tx in batch.txs)
            progressed = True
            if self.executed % self.p.checkpoint_interval == 0:
                self._send_checkpoint()
        if not progressed:
            return
        self.ready = {s: e for s, e in self.ready.items() if s > self.executed}
        if self.view_active:
            self.vc_attempts = 0
        if self.request_timer_target is not None and self.request_timer_target not in (
            self.requests.pending
        ):
            # Progress: restart the clock for the request that is now the oldest.
            self.request_timer_target = None
            self._emit(CancelTimer(Timer.REQUEST))
        self._arm_request_timer()
        self._try_stabilize()
        self._propose()

    # ------------------------------------------------------------------ checkpoints

    def _send_checkpoint(self) -> None:
        cp = self._sign(Checkpoint, seq=self.executed, block_hash=self.last_hash)
        self.own_checkpoint = cp
        self.checkpoints.add(cp)
        self._broadcast(cp)

    def _on_checkpoint(self, cp: Checkpoint) -> None:
        if cp.seq <= self.low or cp.seq % self.p.checkpoint_interval or self.checkpoints.has(cp):
            return
        if not self._valid(cp):
            return
        self.checkpoints.add(cp)
        self.sync.observe(cp.sender, cp.seq)
        self._try_stabilize()
        if self.checkpoints.highest_seen(self.m.weak_quorum) > self.executed + self.p.window:
            self._maybe_sync(force=True)

    def _try_stabilize(self) -> None:
        found = self.checkpoints.stable_candidate(
            self.low, self.executed, self.m.quorum, self.block_hashes
        )
        if found is None:
            return
        seq, proof = found
        self._advance_low(seq, proof)

    def _advance_low(self, seq: int, proof: tuple[Checkpoint, ...]) -> None:
        """Move the low watermark to a checkpoint a quorum signed and forget what lies
        at or below it (garbage collection)."""
        if seq <= self.low:
            return
        self.low, self.stable_proof = seq, proof
        self._record(StableRecord(seq, proof))
        self.log.collect_garbage(self.low, self.view)
        self.checkpoints.collect_garbage(self.low)
        self.prepared_certs = {s: c for s, c in self.prepared_certs.items() if s > seq}
        self.votes = {k: d for k, d in self.votes.items() if k[2] > seq}
        keep = min(self.low, self.executed)
        self.block_hashes = {s: h for s, h in self.block_hashes.items() if s >= keep}
        self.ready = {s: e for s, e in self.ready.items() if s > self.executed}
        self.next_seq = max(self.next_seq, self.low + 1)
        self._propose()

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
        """PBFT starts the timer for a new view only once a quorum asks for that view.
        A replica alone in a higher view then waits for the others instead of racing
        ahead on its own timer, so honest replicas cannot leapfrog each other forever."""
        if self.view_active or self.vc_timer_view == self.view:
            return
        if len(self.view_changes.get(self.view, {})) < self.m.quorum:
            return
        self.vc_timer_view = self.view
        self._set_timer(Timer.VIEW_CHANGE, self._view_change_timeout())
        self.vc_attempts += 1

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.new_view < self.view or (vc.new_view == self.view and self.view_active):
            # It missed the NEW-VIEW we acted on; hand it over.
            if (
                self.new_view_msg is not None
                and self.new_view_msg.view == self.view
                and vc.new_view == self.view
                and self.view_active
            ):
                self._emit(Send(vc.sender, self.new_view_msg))
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
        behind_view = status.view > self.view or (status.view == self.view and not self.view_active)
        if status.view_active and behind_view:
            self._emit(Send(status.sender, self._sign(NewViewRequest, view=status.view)))
        if status.height > self.executed + self.p.window:
            self._maybe_sync(force=True)

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

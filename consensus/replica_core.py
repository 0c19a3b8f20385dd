"""The replica's state, plumbing and normal case (see ``consensus.replica``).

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

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from consensus.blocks import (
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CommitSignature,
)
from consensus.checkpoints import CheckpointTracker
from consensus.crypto import Signer
from consensus.durable import (
    DurableState,
    PreparedRecord,
    Record,
    StableRecord,
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
    SetTimer,
    Start,
    Timer,
    TimerFired,
    ordered,
)
from consensus.log import MessageLog, Slot
from consensus.membership import Membership
from consensus.messages import (
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

RequestCheck = Callable[[bytes], bool]
MAX_EVIDENCE = 1024


class ReplicaCore:
    """State and the normal case; ``Replica`` adds view changes and catch-up."""

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
        self.past_view_changes: dict[int, ViewChange] = {}
        self.helped: dict[tuple[int, int], int] = {}
        self.proof_shared: dict[int, int] = {}  # peer -> when it last got our stable proof
        if state.view_change is not None:
            self.past_view_changes[state.view_change.new_view] = state.view_change
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
        # Whether a block was executed since the request timer was last set.
        self.progress_since_request_timer = False
        self.batch_timer_set = False
        # The batch delay has passed for the requests waiting to be proposed.
        self.batch_due = False
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
        # Evidence already reported, so each is reported once; bounded, since a Byzantine
        # member can produce fresh evidence forever.
        self.equivocations: OrderedDict[ReportEquivocation, None] = OrderedDict()

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
            self.equivocations[report] = None
            if len(self.equivocations) > MAX_EVIDENCE:
                self.equivocations.popitem(last=False)
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
            self.progress_since_request_timer = False
            self._set_timer(Timer.REQUEST, self._view_change_timeout())

    def _on_request_timeout(self) -> None:
        target, self.request_timer_target = self.request_timer_target, None
        if not self.view_active:
            return
        if target is not None and target in self.requests.pending:
            waited_ms = self.now - self.requests.pending[target].arrived_ms
            if self.progress_since_request_timer and waited_ms < self.p.max_view_timeout_ms:
                # Blocks commit, only not this request yet: a primary with a backlog
                # is slow, not faulty, and replacing it would only add a view change
                # to the backlog. The bound keeps a primary that censors one request
                # from doing so for longer than max_view_timeout_ms.
                self.request_timer_target = target
                self.progress_since_request_timer = False
                self._set_timer(Timer.REQUEST, self._view_change_timeout())
                return
            # The oldest request waited a whole timeout with no progress at all (or
            # too long): the primary is silent, censoring, equivocating or cut off.
            self._start_view_change(self.view + 1)
        else:
            self._arm_request_timer()

    # ------------------------------------------------------------------ normal case

    def _propose(self, flush: bool = False) -> None:
        if not (self.view_active and self.is_primary):
            return
        if flush:
            self.batch_due = True
        while self.next_seq <= self.high and self.requests.unproposed_count():
            if self.requests.unproposed_count() < self.p.max_batch_txs:
                if not self.batch_due:
                    if not self.batch_timer_set:
                        self.batch_timer_set = True
                        self._set_timer(Timer.BATCH, self.p.batch_delay_ms)
                    return
                if self.next_seq - 1 - self.executed >= self.p.pipeline_depth:
                    return  # proposed again when a block executes
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
        if not self.requests.unproposed_count():
            self.batch_due = False

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
            self.requests.committed(request_id(tx) for tx in batch.txs)
            progressed = True
            self.progress_since_request_timer = True
            if self.executed % self.p.checkpoint_interval == 0:
                # Only checkpoint heights are ever compared with other members' hashes;
                # keeping every height would grow with the length of a catch-up, during
                # which the low watermark, and so the pruning, stays put.
                self.block_hashes[self.executed] = self.last_hash
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

    # ------------------------------------------------------------------ provided by Replica

    def _start_view_change(self, new_view: int) -> None:
        raise NotImplementedError

    def _on_view_change(self, vc: ViewChange) -> None:
        raise NotImplementedError

    def _on_new_view(self, nv: NewView) -> None:
        raise NotImplementedError

    def _on_new_view_request(self, req: NewViewRequest) -> None:
        raise NotImplementedError

    def _on_status(self, status: Status) -> None:
        raise NotImplementedError

    def _on_heartbeat(self) -> None:
        raise NotImplementedError

    def _maybe_sync(self, force: bool = False) -> None:
        raise NotImplementedError

    def _on_block_response(self, peer: int, resp: BlockResponse) -> None:
        raise NotImplementedError

    def _view_change_timeout(self) -> int:
        raise NotImplementedError

"""The PBFT replica: ``Replica.step(event, now_ms) -> list[Action]``.

A step takes one event (a message, a client request, a timer, the start) and returns
the actions it causes, in the order the host must carry them out: persist, send, apply
committed blocks, the rest (``consensus.events`` says what the host must do with each).
``now_ms`` is the time the host observed the event; it only decides proposal timestamps
and how long things have waited. The package docstring maps the paper's sections onto
the modules; this one holds the protocol's steps themselves:

* Normal case (Castro and Liskov, section 4.2). The primary assigns the next sequence
  number to a batch and multicasts PRE-PREPARE with the batch beside it (``Proposal``);
  a backup that accepts it multicasts PREPARE. A replica with the pre-prepare and a
  quorum minus one matching PREPAREs from other members is *prepared* and multicasts
  COMMIT; with a quorum of matching COMMITs it is *committed-local*, and executes the
  batch as the next block once every lower sequence number has executed. The matching
  COMMITs are the block's certificate. The paper's quorum is 2f+1 of 3f+1; here it is
  ceil((n+f+1)/2) for any n, so two quorums still share an honest member.
* Checkpoints and garbage collection (section 4.3). Every ``checkpoint_interval``
  blocks a replica multicasts CHECKPOINT with the block hash; a quorum of matching
  CHECKPOINTs makes it stable, moves the low watermark h there and discards everything
  at or below it. Proposals are accepted only for h < seq <= H = h + ``window``.
* View change (section 4.4). Leaving a view (``_start_view_change``) and entering the
  next (``_enter_view``) change the replica's own state; gathering VIEW-CHANGEs, the
  NEW-VIEW rules and the view-change timer are ``ViewChanger``'s.
* Liveness and state transfer. The request timer and the heartbeat (``liveness``)
  decide when to suspect the primary and when to fetch blocks (``sync``).

The replica owns collaborators that keep their own bookkeeping and never call back
into it: ``Proposer`` (the primary's batching), ``ViewChanger``, ``CheckpointTracker``,
``BlockSync``, ``RequestTimer``, ``Heartbeat``, ``MessageLog``, ``RequestQueue`` and
``Signatory``, all writing to the replica's one ``Outbox``, so a step's actions come out
in the order they were decided. Every change to the state they share (the view, the
watermarks, the log, execution) happens here, in the sections below.
"""

from __future__ import annotations

from consensus.blocks import GENESIS_PARENT, Batch, Block, Certificate, CommitSignature
from consensus.checkpoints import CheckpointTracker
from consensus.crypto import Signer
from consensus.durable import DurableState, PreparedRecord, StableRecord, ViewRecord
from consensus.events import (
    Action,
    Event,
    MessageArrived,
    RequestArrived,
    Start,
    Timer,
    TimerFired,
)
from consensus.liveness import Heartbeat, RequestTimer
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
)
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.proposer import Proposer
from consensus.requests import RequestCheck, RequestQueue, request_id
from consensus.signatory import Signatory
from consensus.sync import BlockSync
from consensus.verifier import Verifier
from consensus.viewchange import NewViewPlan, ViewChanger

__all__ = ["Replica", "RequestCheck"]


class Replica:
    """One member's PBFT replica: ``step(event, now_ms) -> list[Action]``."""

    def __init__(
        self,
        member: int,
        signer: Signer,
        membership: Membership,
        params: Params | None = None,
        *,
        durable: DurableState | None = None,
        tip_height: int = 0,
        tip_hash: bytes = GENESIS_PARENT,
        check_request: RequestCheck | None = None,
    ) -> None:
        if not membership.is_member(member) or membership.public_keys[member] != signer.public_key:
            raise ValueError(f"the signing key is not member {member}'s key")
        self.member = member
        self.membership = membership
        self.chain_id = membership.chain_id
        self.params = params or Params()
        self.check_request = check_request
        self.verifier = Verifier(membership)
        state = durable or DurableState()
        self.outbox = Outbox()
        self.signatory = Signatory(member, signer, self.chain_id, self.outbox, dict(state.votes))

        # The view, and whether this replica takes part in it (False from the moment
        # it asks for this view until the NEW-VIEW arrives).
        self.view = state.view
        self.view_active = state.view_active
        # The low watermark h: the last stable checkpoint, and the quorum that proves it.
        self.low_watermark = state.stable_seq
        self.stable_proof = state.stable_proof
        # Prepared certificates above h, for this replica's next VIEW-CHANGE.
        self.prepared_certificates: dict[int, PreparedCertificate] = dict(state.prepared)
        self.executed = tip_height
        self.last_block_hash = tip_hash
        # Own block hashes at checkpoint heights, to compare with other members' CHECKPOINTs.
        self.block_hashes: dict[int, bytes] = {tip_height: tip_hash}
        # Committed batches waiting for every lower sequence number to execute.
        self.awaiting_execution: dict[int, tuple[Batch, Certificate]] = {}

        self.log = MessageLog()
        self.checkpoints = CheckpointTracker(
            params=self.params,
            verifier=self.verifier,
            signatory=self.signatory,
            outbox=self.outbox,
            stable_proof=self.stable_proof,
        )
        self.requests = RequestQueue(self.params.max_pending_requests, self.params.committed_memory)
        self.view_changer = ViewChanger(
            member=member,
            membership=membership,
            params=self.params,
            verifier=self.verifier,
            signatory=self.signatory,
            outbox=self.outbox,
            own_view_change=state.view_change,
            latest_new_view=state.new_view,
        )
        self.sync = BlockSync(
            member=member,
            params=self.params,
            verifier=self.verifier,
            signatory=self.signatory,
            outbox=self.outbox,
            checkpoints=self.checkpoints,
        )

        self.request_timer = RequestTimer(
            requests=self.requests,
            params=self.params,
            outbox=self.outbox,
            timeout_ms=self.view_changer.timeout_ms,
        )
        # The view this replica last asked for on its own suspicion, and why (for the
        # host's log); a view it joined after others is not in here.
        self.suspected: tuple[int, str] = (-1, "")
        self.heartbeat = Heartbeat(
            member=member,
            params=self.params,
            verifier=self.verifier,
            signatory=self.signatory,
            outbox=self.outbox,
            executed=self.executed,
        )
        self.proposer = Proposer(
            chain_id=self.chain_id,
            params=self.params,
            requests=self.requests,
            log=self.log,
            signatory=self.signatory,
            outbox=self.outbox,
            next_seq=self._first_free_seq(),
        )
        entered_by = self.view_changer.latest_new_view
        if entered_by is not None and entered_by.view == self.view:
            # Restarted in a view a NEW-VIEW started: its re-proposals are this view's.
            for proposal in entered_by.proposals:
                self.log.slot(self.view, proposal.pre_prepare.seq, 0).proposal = proposal

        self.now = 0

    @property
    def primary(self) -> int:
        return self.membership.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.member

    @property
    def high_watermark(self) -> int:
        return self.low_watermark + self.params.window

    def _first_free_seq(self) -> int:
        used = self.signatory.sequences_proposed(self.view)
        top = max([self.executed, self.low_watermark, *used])
        entered_by = self.view_changer.latest_new_view
        if entered_by is not None and entered_by.view == self.view:
            top = max(top, *(proposal.pre_prepare.seq for proposal in entered_by.proposals), 0)
        return top + 1

    # ------------------------------------------------------------------ step

    def step(self, event: Event, now_ms: int) -> list[Action]:
        self.now = max(self.now, now_ms)
        # Whatever a step that raised left behind is not this step's to return.
        self.outbox.clear()
        match event:
            case MessageArrived(peer, message):
                self._on_message(peer, message)
            case RequestArrived(payload, checked):
                self._on_request(payload, checked)
            case TimerFired(timer):
                self._on_timer(timer)
            case Start():
                self._on_start()
        return self.outbox.take()

    def _on_start(self) -> None:
        self.outbox.set_timer(Timer.HEARTBEAT, self.params.heartbeat_ms)
        self.view_changer.resume(self.view, self.view_active)

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
                self.view_changer.answer_new_view_request(message, self.view_active)
            case BlockResponse():
                self._on_block_response(peer, message)
            case _:
                # BlockRequest is served by the host from its store; a bare
                # PrePrepare never travels without its batch.
                pass

    def _on_timer(self, timer: Timer) -> None:
        match timer:
            case Timer.BATCH:
                self.proposer.batch_timer_fired()
                self._propose(flush=True)
            case Timer.REQUEST:
                if self.request_timer.expired(self.view_active, self.now):
                    self.suspected = (self.view + 1, self.request_timer.suspicion)
                    self._start_view_change(self.view + 1)
            case Timer.VIEW_CHANGE:
                if not self.view_active:
                    self._start_view_change(self.view + 1)
            case Timer.HEARTBEAT:
                self._on_heartbeat()
            case Timer.SYNC:
                self.sync.timed_out()
                self._maybe_sync()

    def _valid(self, message: SignedMessage) -> bool:
        return self.verifier.message(message)

    # ------------------------------------------------------------------ requests (4.1)

    def _on_request(self, payload: bytes, checked: bool = False) -> None:
        rid = request_id(payload)
        if len(payload) > self.params.max_request_bytes:
            self.outbox.reject_request(rid, f"request of {len(payload)} bytes is too large")
            return
        if self.requests.is_committed(rid) or rid in self.requests.pending:
            return
        if not checked and self.check_request is not None and not self.check_request(payload):
            self.outbox.reject_request(rid, "request rejected by the application")
            return
        refused = self.requests.add(rid, payload, self.now)
        if refused is not None:
            self.outbox.reject_request(rid, refused)
            return
        self.request_timer.arm(self.view_active, self.now)
        self._propose()

    # ------------------------------------------------------------------ normal case (4.2)

    def _propose(self, flush: bool = False) -> None:
        if self.view_active and self.is_primary:
            self.proposer.propose(self.view, self.high_watermark, self.executed, self.now, flush)

    def _in_window(self, seq: int) -> bool:
        return self.low_watermark < seq <= self.high_watermark

    def _on_proposal(self, proposal: Proposal, carried: bool = False) -> None:
        """Accept a PRE-PREPARE (with its batch) and, as a backup, PREPARE it. A
        ``carried`` proposal is one a NEW-VIEW re-proposes."""
        pre_prepare = proposal.pre_prepare
        view, seq = pre_prepare.view, pre_prepare.seq
        if view != self.view or not self.view_active or pre_prepare.sender != self.primary:
            return
        if not self._in_window(seq) or proposal.batch.height != seq:
            return
        slot = self.log.slot(view, seq, self.now)
        if slot.proposal is not None:
            held = slot.proposal.pre_prepare
            if held.digest != pre_prepare.digest and self._valid(pre_prepare):
                self.outbox.report_equivocation(pre_prepare.sender, PrePrepare.KIND, view, seq)
            if held != pre_prepare or slot.own_prepare is not None or carried:
                return
        else:
            if not self._valid(pre_prepare):
                return
            if proposal.batch.digest(self.chain_id) != pre_prepare.digest:
                return
            # A batch carried over by a NEW-VIEW may already be committed somewhere;
            # only fresh proposals are judged on their content.
            if not carried and not self.requests.batch_acceptable(
                proposal.batch, self.params, self.check_request
            ):
                return
        slot.proposal = proposal
        self.requests.mark_in_flight((request_id(tx) for tx in proposal.batch.txs), seq)
        if not self.is_primary:
            prepare = self.signatory.sign_vote(Prepare, view, seq, pre_prepare.digest)
            if prepare is None:
                return
            slot.own_prepare = prepare
            slot.prepares[self.member] = prepare
            self.outbox.broadcast(prepare)
        self._check_prepared(slot)

    def _on_prepare(self, prepare: Prepare) -> None:
        if prepare.view != self.view or not self.view_active or not self._in_window(prepare.seq):
            return
        if prepare.sender == self.primary or not self.membership.is_member(prepare.sender):
            return
        slot = self.log.slot(prepare.view, prepare.seq, self.now)
        held = slot.prepares.get(prepare.sender)
        if held is not None:
            if held.digest != prepare.digest and self._valid(prepare):
                self.outbox.report_equivocation(
                    prepare.sender, Prepare.KIND, prepare.view, prepare.seq
                )
            return
        if not self._valid(prepare):
            return
        slot.prepares[prepare.sender] = prepare
        self._check_prepared(slot)

    def _check_prepared(self, slot: Slot) -> None:
        """prepared(m, v, n, i): the pre-prepare and a quorum minus one matching
        PREPAREs from members other than the primary. Then COMMIT."""
        if slot.prepared or slot.proposal is None:
            return
        primary = self.membership.primary(slot.view)
        prepares = [prepare for prepare in slot.matching_prepares() if prepare.sender != primary]
        needed = self.membership.quorum - 1
        if len(prepares) < needed:
            return
        slot.prepared = True
        pre_prepare = slot.proposal.pre_prepare
        cert = PreparedCertificate(pre_prepare, tuple(prepares[:needed]), slot.proposal.batch)
        self.prepared_certificates[slot.seq] = cert
        self.outbox.persist(PreparedRecord(cert))
        commit = self.signatory.sign_vote(Commit, slot.view, slot.seq, pre_prepare.digest)
        if commit is None:
            return
        slot.own_commit = commit
        slot.commits[self.member] = commit
        self.outbox.broadcast(commit)
        self._check_committed(slot)

    def _on_commit(self, commit: Commit) -> None:
        # A COMMIT of an earlier view still completes a slot of that view while the log
        # holds it (until the next NEW-VIEW): the replica may have prepared there.
        if commit.view > self.view or not self._in_window(commit.seq):
            return
        if not self.membership.is_member(commit.sender):
            return
        slot = self.log.get(commit.view, commit.seq)
        if slot is None:
            if commit.view != self.view:
                return
            slot = self.log.slot(commit.view, commit.seq, self.now)
        held = slot.commits.get(commit.sender)
        if held is not None:
            if held.digest != commit.digest and self._valid(commit):
                self.outbox.report_equivocation(commit.sender, Commit.KIND, commit.view, commit.seq)
            return
        if not self._valid(commit):
            return
        slot.commits[commit.sender] = commit
        self._check_committed(slot)

    def _check_committed(self, slot: Slot) -> None:
        """committed-local(m, v, n, i): prepared, and a quorum of matching COMMITs (our
        own included), which become the block's certificate."""
        if slot.committed or not slot.prepared or slot.proposal is None:
            return
        commits = slot.matching_commits()
        if len(commits) < self.membership.quorum:
            return
        slot.committed = True
        cert = Certificate(
            view=slot.view,
            height=slot.seq,
            digest=slot.proposal.pre_prepare.digest,
            signatures=tuple(
                CommitSignature(commit.sender, commit.signature) for commit in commits
            ),
        )
        if slot.seq > self.executed:
            self.awaiting_execution[slot.seq] = (slot.proposal.batch, cert)
            self._execute_ready()

    def _execute_ready(self) -> None:
        """Execute committed batches in sequence order: each becomes the next block."""
        progressed = False
        while self.executed + 1 in self.awaiting_execution:
            batch, cert = self.awaiting_execution.pop(self.executed + 1)
            block = Block.from_batch(self.chain_id, batch, self.last_block_hash)
            self.outbox.commit_block(block, cert)
            self.executed = batch.height
            self.last_block_hash = block.hash()
            newest_arrival = self.requests.committed(request_id(tx) for tx in batch.txs)
            progressed = True
            self.request_timer.block_executed(newest_arrival, self.now)
            if self.executed % self.params.checkpoint_interval == 0:
                # Only checkpoint heights are ever compared with other members' hashes;
                # keeping every height would grow with the length of a catch-up, during
                # which the low watermark, and so the pruning, stays put.
                self.block_hashes[self.executed] = self.last_block_hash
                self.checkpoints.send_own(self.executed, self.last_block_hash)
        if not progressed:
            return
        self.awaiting_execution = {
            seq: entry for seq, entry in self.awaiting_execution.items() if seq > self.executed
        }
        if self.view_active:
            self.view_changer.progressed()
        self.request_timer.after_execution(self.view_active, self.now)
        self._try_stabilize()
        self._propose()

    # ------------------------------------------------------------------ checkpoints (4.3)

    def _on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if not self.checkpoints.receive(checkpoint, self.low_watermark):
            return
        self.sync.observe(checkpoint.sender, checkpoint.seq)
        self._try_stabilize()
        highest = self.checkpoints.highest_seen(self.membership.weak_quorum)
        if highest > self.executed + self.params.window:
            # f+1 members checkpointed beyond our window: at least one honest member is
            # that far ahead, and the normal case cannot bring us there.
            self._maybe_sync(force=True)

    def _try_stabilize(self) -> None:
        found = self.checkpoints.stable_candidate(
            self.low_watermark, self.executed, self.membership.quorum, self.block_hashes
        )
        if found is None:
            return
        seq, proof = found
        self._advance_low_watermark(seq, proof)

    def _advance_low_watermark(self, seq: int, proof: tuple[Checkpoint, ...]) -> None:
        """Move the low watermark to a checkpoint a quorum signed and forget what lies
        at or below it (garbage collection)."""
        if seq <= self.low_watermark:
            return
        self.low_watermark, self.stable_proof = seq, proof
        self.outbox.persist(StableRecord(seq, proof))
        self.log.collect_garbage(self.low_watermark, self.view)
        self.checkpoints.collect_garbage(self.low_watermark)
        self.prepared_certificates = {
            height: cert for height, cert in self.prepared_certificates.items() if height > seq
        }
        self.signatory.forget_up_to(seq)
        keep = min(self.low_watermark, self.executed)
        self.block_hashes = {
            height: block_hash for height, block_hash in self.block_hashes.items() if height >= keep
        }
        self.awaiting_execution = {
            height: entry
            for height, entry in self.awaiting_execution.items()
            if height > self.executed
        }
        self.proposer.next_seq = max(self.proposer.next_seq, self.low_watermark + 1)
        self._propose()

    # ------------------------------------------------------------------ view change (4.4)

    def _start_view_change(self, new_view: int) -> None:
        """Leave the current view for ``new_view``: stop taking part in the normal case
        and ask for the new view with a VIEW-CHANGE."""
        if new_view <= self.view and not (new_view == self.view and self.view_active):
            return
        self.view = new_view
        self.view_active = False
        self.request_timer.stop()
        self.proposer.stop()
        self.outbox.persist(ViewRecord(new_view, False))
        prepared = tuple(
            cert
            for seq, cert in sorted(self.prepared_certificates.items())
            if seq > self.low_watermark
        )
        self.view_changer.ask_for(new_view, self.low_watermark, self.stable_proof, prepared)
        self._try_new_view()

    def _on_view_change(self, view_change: ViewChange) -> None:
        if view_change.new_view < self.view or (
            view_change.new_view == self.view and self.view_active
        ):
            self.view_changer.help_a_replica_behind(
                view_change,
                self.view,
                self.view_active,
                self.heartbeat.status_of.get(view_change.sender),
                self.now,
            )
            return
        if not self.view_changer.collect(view_change):
            return
        target = self.view_changer.view_to_join(self.view, self.view_active)
        if target is not None:
            self._start_view_change(target)
        self.view_changer.arm_timer(self.view, self.view_active)
        self._try_new_view()

    def _try_new_view(self) -> None:
        """As the primary of the view we wait to enter: start it once a quorum asked."""
        if self.view_active or self.membership.primary(self.view) != self.member:
            return
        announced = self.view_changer.announce_new_view(self.view, self.now)
        if announced is not None:
            self._enter_view(*announced)

    def _on_new_view(self, new_view: NewView) -> None:
        if new_view.view < self.view or (new_view.view == self.view and self.view_active):
            return
        plan = self.view_changer.check(new_view)
        if plan is not None:
            self._enter_view(new_view, plan)

    def _enter_view(self, new_view: NewView, plan: NewViewPlan) -> None:
        """Enter the view a valid NEW-VIEW starts: adopt its stable checkpoint if it is
        ahead of ours, then take part in its re-proposals as in the normal case."""
        self.view = new_view.view
        self.view_active = True
        self.outbox.persist(ViewRecord(new_view.view, True))
        self.view_changer.entered(new_view)
        for checkpoint in plan.checkpoint_proof:
            self.checkpoints.add(checkpoint)
        if plan.min_seq > self.low_watermark:
            self._advance_low_watermark(plan.min_seq, plan.checkpoint_proof)
        self.log.collect_garbage(self.low_watermark, self.view)
        self.requests.reset_in_flight()
        self.proposer.restart_at(max(plan.max_seq, self.low_watermark, self.executed) + 1)
        for proposal in new_view.proposals:
            carried = plan.carried[proposal.pre_prepare.seq] is not None
            self._on_proposal(proposal, carried=carried)
        self.request_timer.arm(self.view_active, self.now)
        self._maybe_sync()
        self._propose()

    # ------------------------------------------------------------------ liveness

    def _on_heartbeat(self) -> None:
        stalled = self.heartbeat.beat(self.view, self.view_active, self.executed)
        self._retransmit()
        if stalled:
            self._maybe_sync()

    def _retransmit(self) -> None:
        """Resend this replica's own messages for work that is stuck, since the
        network may have lost them; receivers ignore exact duplicates cheaply."""
        if not self.view_active:
            self.view_changer.retransmit(self.view)
            return
        self.checkpoints.retransmit_own(self.low_watermark)
        for message in self.log.stuck_own_messages(
            self.view, self.executed, self.now, self.params.heartbeat_ms, self.is_primary
        ):
            self.outbox.broadcast(message)

    def _on_status(self, status: Status) -> None:
        if not self.heartbeat.receive(
            status, self.view, self.view_active, self.low_watermark, self.stable_proof, self.now
        ):
            return
        self.sync.observe(status.sender, status.height)
        if status.height > self.executed + self.params.window:
            self._maybe_sync(force=True)

    # ------------------------------------------------------------------ state transfer

    def _maybe_sync(self, force: bool = False) -> None:
        self.sync.maybe_fetch(self.executed, self.low_watermark, force)

    def _on_block_response(self, peer: int, response: BlockResponse) -> None:
        if not self.sync.accept_response(peer):
            return
        before = self.executed
        for entry in response.entries:
            if entry.batch.height <= self.executed:
                continue
            if not self.sync.certifies(peer, entry, self.executed + 1):
                break
            self.awaiting_execution[entry.batch.height] = (entry.batch, entry.certificate)
            self._execute_ready()
        if self.executed == before:
            # It claimed blocks it did not serve: ask someone else next time.
            self.sync.distrust(peer)
        self._maybe_sync(force=True)

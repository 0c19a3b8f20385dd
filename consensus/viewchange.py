"""View changes (Castro and Liskov, section 4.4) and their liveness rules (4.5.2).

When a replica's request timer expires (section 4.4, first paragraph; see
``Replica._on_request_timeout``) it stops taking part in the current view and
multicasts a VIEW-CHANGE for the next one. That message carries the proof of its last
stable checkpoint (the paper's C) and a prepared certificate, a PRE-PREPARE with a
quorum minus one matching PREPAREs, for every sequence number above it that prepared
at this replica (the paper's P). The primary of the new view gathers a quorum of
VIEW-CHANGEs, its own included, and multicasts a NEW-VIEW that re-proposes:

* min-s is the highest stable checkpoint among those VIEW-CHANGEs, and max-s the
  highest sequence number prepared in any of them;
* for every sequence number in (min-s, max-s], the batch prepared in the highest view
  among the quorum's certificates, or, where none prepared, an empty batch (the paper's
  null request).

Backups accept the NEW-VIEW only if recomputing that plan from the VIEW-CHANGEs inside
it gives the same proposals (``check_new_view``). This is the rule that keeps PBFT safe
across views (section 4.5.1): a batch that committed somewhere prepared at a quorum,
and that quorum shares an honest member with any quorum of VIEW-CHANGEs, so its batch
is carried into every later view.

This module holds the rules as pure functions (``check_view_change``,
``plan_new_view``, ``check_new_view``) and ``ViewChanger``, the replica's bookkeeping
for view changes: the VIEW-CHANGEs it gathered and sent, the NEW-VIEW it last acted on,
and the view-change timer with its doubling timeout. ``ViewChanger`` decides and sends;
the replica changes its own state (the view, its log, its watermarks) when it leaves a
view (``Replica._start_view_change``) or enters one (``Replica._enter_view``).

The liveness rules of section 4.5.2, as implemented here:

1. A replica arms its view-change timer only once a quorum asks for its view (or later
   ones), and the timeout doubles with every attempt until a block executes.
2. A replica that sees f+1 members ask for views above its own joins the smallest
   view among them without waiting for its own timeout (``view_to_join``).
3. A faulty member cannot force view changes on its own: one VIEW-CHANGE is not f+1.

Two additions beyond the paper keep replicas that lost messages from being stuck: a
replica that already acted on a NEW-VIEW hands it to members still asking for that
view, and one that moved past a view resends its VIEW-CHANGE for it to a member whose
STATUS says it is still stuck there (``help_a_replica_behind``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.blocks import Batch
from consensus.durable import NewViewRecord, ViewChangeRecord
from consensus.events import Timer
from consensus.membership import Membership
from consensus.messages import (
    Checkpoint,
    NewView,
    NewViewRequest,
    PreparedCertificate,
    PrePrepare,
    Proposal,
    Status,
    ViewChange,
)
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.signatory import Signatory
from consensus.verifier import Verifier

# Own VIEW-CHANGE messages kept for replicas that fall behind (see help_a_replica_behind).
KEEP_OWN_VIEW_CHANGES = 8

# ---------------------------------------------------------------------- the rules


class InvalidViewMessage(ValueError):
    """A VIEW-CHANGE or NEW-VIEW that does not prove what it claims; says why."""


def check_checkpoint_proof(
    verifier: Verifier, seq: int, proof: Sequence[Checkpoint]
) -> bytes | None:
    """The block hash a quorum vouched for at ``seq`` (None for the genesis point)."""
    if seq == 0:
        if proof:
            raise InvalidViewMessage("a checkpoint proof for sequence 0 must be empty")
        return None
    senders: set[int] = set()
    hashes = {checkpoint.block_hash for checkpoint in proof}
    if len(hashes) != 1:
        raise InvalidViewMessage(f"checkpoint proof for {seq} mixes block hashes")
    for checkpoint in proof:
        if checkpoint.seq != seq:
            raise InvalidViewMessage(f"checkpoint for {checkpoint.seq} in a proof for {seq}")
        if checkpoint.sender in senders:
            raise InvalidViewMessage(
                f"member {checkpoint.sender} appears twice in a checkpoint proof"
            )
        if not verifier.message(checkpoint):
            raise InvalidViewMessage(
                f"checkpoint signature of member {checkpoint.sender} is invalid"
            )
        senders.add(checkpoint.sender)
    if len(senders) < verifier.membership.quorum:
        raise InvalidViewMessage(f"checkpoint proof for {seq} has only {len(senders)} members")
    return hashes.pop()


def check_prepared(verifier: Verifier, cert: PreparedCertificate, before_view: int) -> None:
    """A prepared certificate (the paper's P_m): a PRE-PREPARE from its view's primary
    and a quorum minus one matching PREPAREs from other members."""
    membership = verifier.membership
    pre_prepare = cert.pre_prepare
    seq = pre_prepare.seq
    if pre_prepare.view >= before_view:
        raise InvalidViewMessage(f"prepared certificate from view {pre_prepare.view} is not older")
    if pre_prepare.sender != membership.primary(pre_prepare.view):
        raise InvalidViewMessage(f"pre-prepare for view {pre_prepare.view} not from its primary")
    if cert.batch.height != seq:
        raise InvalidViewMessage(f"batch height {cert.batch.height} != sequence {seq}")
    if cert.batch.digest(membership.chain_id) != pre_prepare.digest:
        raise InvalidViewMessage(f"batch does not match the digest prepared at {seq}")
    if not verifier.message(pre_prepare):
        raise InvalidViewMessage(f"pre-prepare signature at {seq} is invalid")
    senders: set[int] = set()
    matching = (pre_prepare.view, seq, pre_prepare.digest)
    for prepare in cert.prepares:
        if (prepare.view, prepare.seq, prepare.digest) != matching:
            raise InvalidViewMessage(f"prepare does not match the pre-prepare at {seq}")
        if prepare.sender == pre_prepare.sender or prepare.sender in senders:
            raise InvalidViewMessage(f"prepare at {seq} from the primary or a repeated member")
        if not verifier.message(prepare):
            raise InvalidViewMessage(f"prepare signature of member {prepare.sender} is invalid")
        senders.add(prepare.sender)
    if len(senders) < membership.quorum - 1:
        raise InvalidViewMessage(f"prepared certificate at {seq} has too few prepares")


def check_view_change(verifier: Verifier, view_change: ViewChange, window: int) -> None:
    if not verifier.membership.is_member(view_change.sender):
        raise InvalidViewMessage(f"view change from unknown member {view_change.sender}")
    if not verifier.message(view_change):
        raise InvalidViewMessage(f"view-change signature of member {view_change.sender} is invalid")
    stable_seq = view_change.stable_seq
    check_checkpoint_proof(verifier, stable_seq, view_change.checkpoint_proof)
    seqs: set[int] = set()
    for cert in view_change.prepared:
        seq = cert.pre_prepare.seq
        if not stable_seq < seq <= stable_seq + window:
            raise InvalidViewMessage(f"prepared sequence {seq} outside the sender's watermarks")
        if seq in seqs:
            raise InvalidViewMessage(f"two prepared certificates for sequence {seq}")
        seqs.add(seq)
        check_prepared(verifier, cert, view_change.new_view)


@dataclass(frozen=True)
class NewViewPlan:
    view: int
    min_seq: int  # min-s: the highest stable checkpoint among the quorum
    checkpoint_proof: tuple[Checkpoint, ...]
    max_seq: int  # max-s
    # For each sequence in (min_seq, max_seq]: the prepared batch that must be
    # re-proposed, or None where the new primary may propose any batch (nothing there
    # could have committed).
    carried: dict[int, PreparedCertificate | None]


def plan_new_view(view: int, view_changes: Sequence[ViewChange]) -> NewViewPlan:
    """What the NEW-VIEW for ``view`` must re-propose, from a quorum of VIEW-CHANGEs."""
    best = max(view_changes, key=lambda view_change: view_change.stable_seq)
    min_seq = best.stable_seq
    chosen: dict[int, PreparedCertificate] = {}
    for view_change in view_changes:
        for cert in view_change.prepared:
            seq = cert.pre_prepare.seq
            if seq <= min_seq:
                continue
            held = chosen.get(seq)
            if held is None or cert.pre_prepare.view > held.pre_prepare.view:
                chosen[seq] = cert
    max_seq = max(chosen, default=min_seq)
    carried = {seq: chosen.get(seq) for seq in range(min_seq + 1, max_seq + 1)}
    return NewViewPlan(view, min_seq, best.checkpoint_proof, max_seq, carried)


def check_new_view(verifier: Verifier, new_view: NewView, window: int) -> NewViewPlan:
    """The plan a valid NEW-VIEW follows; raises ``InvalidViewMessage`` otherwise."""
    membership = verifier.membership
    if new_view.sender != membership.primary(new_view.view):
        raise InvalidViewMessage(f"new view {new_view.view} not sent by its primary")
    if not verifier.message(new_view):
        raise InvalidViewMessage("new-view signature is invalid")
    senders: set[int] = set()
    for view_change in new_view.view_changes:
        if view_change.new_view != new_view.view:
            raise InvalidViewMessage(
                f"view change for {view_change.new_view} inside new view {new_view.view}"
            )
        if view_change.sender in senders:
            raise InvalidViewMessage(f"two view changes from member {view_change.sender}")
        check_view_change(verifier, view_change, window)
        senders.add(view_change.sender)
    if len(senders) < membership.quorum:
        raise InvalidViewMessage(
            f"new view carries {len(senders)} view changes, needs {membership.quorum}"
        )
    plan = plan_new_view(new_view.view, new_view.view_changes)
    expected = list(plan.carried)
    got = [proposal.pre_prepare.seq for proposal in new_view.proposals]
    if got != expected:
        raise InvalidViewMessage(
            f"new view proposes sequences {got[:5]}..., expected {expected[:5]}..."
        )
    for proposal in new_view.proposals:
        pre_prepare = proposal.pre_prepare
        seq = pre_prepare.seq
        if pre_prepare.view != new_view.view or pre_prepare.sender != new_view.sender:
            raise InvalidViewMessage(f"re-issued pre-prepare at {seq} has the wrong view or sender")
        batch = proposal.batch
        if batch.height != seq or batch.digest(membership.chain_id) != pre_prepare.digest:
            raise InvalidViewMessage(f"re-issued batch at {seq} does not match its digest")
        carried = plan.carried[seq]
        if carried is not None and carried.pre_prepare.digest != pre_prepare.digest:
            raise InvalidViewMessage(f"new view replaces the batch prepared at {seq}")
        if not verifier.message(pre_prepare):
            raise InvalidViewMessage(f"re-issued pre-prepare signature at {seq} is invalid")
    return plan


# ---------------------------------------------------------------------- the bookkeeping


class ViewChanger:
    """One replica's view-change bookkeeping. Every method takes the replica's current
    view (and whether it is active) as arguments and never changes them: moving between
    views is the replica's job."""

    def __init__(
        self,
        *,
        member: int,
        membership: Membership,
        params: Params,
        verifier: Verifier,
        signatory: Signatory,
        outbox: Outbox,
        own_view_change: ViewChange | None,
        latest_new_view: NewView | None,
    ) -> None:
        self.member = member
        self.membership = membership
        self.params = params
        self.verifier = verifier
        self._signatory = signatory
        self._outbox = outbox
        # The last VIEW-CHANGE this replica sent (durable: a restarted replica resends it).
        self.own_view_change = own_view_change
        # This replica's VIEW-CHANGE for each of the last few views it asked for.
        self.own_view_changes: dict[int, ViewChange] = {}
        if own_view_change is not None:
            self.own_view_changes[own_view_change.new_view] = own_view_change
        # Valid VIEW-CHANGEs gathered: view asked for -> sender -> message.
        self.received: dict[int, dict[int, ViewChange]] = {}
        # The NEW-VIEW this replica last entered a view by (durable).
        self.latest_new_view = latest_new_view
        # (member, view) -> when this replica last resent its VIEW-CHANGE for that view.
        self.helped_at: dict[tuple[int, int], int] = {}
        # View-change timers armed since a block last executed; the timeout doubles
        # with each (section 4.5.2).
        self.attempts = 0
        # The view the view-change timer is armed for, so it is armed once per view.
        self.timer_armed_for: int | None = None

    def timeout_ms(self) -> int:
        """The view-change timeout, doubled per attempt up to ``max_view_timeout_ms``;
        also the request timeout, so both back off together."""
        timeout = self.params.view_timeout_ms * (2 ** min(self.attempts, 30))
        return int(min(timeout, self.params.max_view_timeout_ms))

    def progressed(self) -> None:
        """A block executed in an active view: the next timeout starts from the base."""
        self.attempts = 0

    # ------------------------------------------------------------------ leaving a view

    def ask_for(
        self,
        new_view: int,
        stable_seq: int,
        stable_proof: tuple[Checkpoint, ...],
        prepared: tuple[PreparedCertificate, ...],
    ) -> None:
        """Sign, persist and multicast this replica's VIEW-CHANGE for ``new_view``, the
        view the replica just moved to (inactive)."""
        view_change = self._signatory.sign(
            ViewChange,
            new_view=new_view,
            stable_seq=stable_seq,
            checkpoint_proof=stable_proof,
            prepared=prepared,
        )
        self.own_view_change = view_change
        self.own_view_changes[new_view] = view_change
        for old in sorted(self.own_view_changes)[:-KEEP_OWN_VIEW_CHANGES]:
            del self.own_view_changes[old]
        self._outbox.persist(ViewChangeRecord(view_change))
        self._outbox.broadcast(view_change)
        self.received = {
            view: by_sender for view, by_sender in self.received.items() if view >= new_view
        }
        self.received.setdefault(new_view, {})[self.member] = view_change
        self._outbox.cancel_timer(Timer.VIEW_CHANGE)
        self.timer_armed_for = None
        self.arm_timer(new_view, view_active=False)

    def resume(self, view: int, view_active: bool) -> None:
        """After a restart in the middle of a view change: ask again for the same view."""
        own = self.own_view_change
        if not view_active and own is not None and own.new_view == view:
            self.received.setdefault(view, {})[self.member] = own
            self._outbox.broadcast(own)

    def retransmit(self, view: int) -> None:
        """Resend this replica's VIEW-CHANGE while the view it asks for has not begun."""
        own = self.own_view_change
        if own is not None and own.new_view == view:
            self._outbox.broadcast(own)

    def arm_timer(self, view: int, view_active: bool) -> None:
        """PBFT starts the timer for a new view only once a quorum asks for it. A
        replica alone in a higher view then waits for the others instead of racing
        ahead on its own timer, so honest replicas cannot leapfrog each other forever.
        A member asking for a later view counts too: it has left this one as well, and
        a replica whose primary is dead must be able to follow it (fuzz schedule 1598)."""
        if view_active or self.timer_armed_for == view:
            return
        asking = {
            sender
            for asked_view, by_sender in self.received.items()
            if asked_view >= view
            for sender in by_sender
        }
        if len(asking) < self.membership.quorum:
            return
        self.timer_armed_for = view
        self._outbox.set_timer(Timer.VIEW_CHANGE, self.timeout_ms())
        self.attempts += 1

    # ------------------------------------------------------------------ VIEW-CHANGE

    def collect(self, view_change: ViewChange) -> bool:
        """Keep a VIEW-CHANGE for the current or a later view; False when it is a
        duplicate or invalid."""
        by_sender = self.received.get(view_change.new_view, {})
        if by_sender.get(view_change.sender) == view_change:
            return False
        try:
            check_view_change(self.verifier, view_change, self.params.window)
        except InvalidViewMessage:
            return False
        self.received.setdefault(view_change.new_view, {})[view_change.sender] = view_change
        return True

    def view_to_join(self, view: int, view_active: bool) -> int | None:
        """PBFT's liveness rule: f+1 members asking for higher views include an honest
        one, so move to the smallest of those views rather than wait for a timeout."""
        highest: dict[int, int] = {}
        for asked_view, by_sender in self.received.items():
            if asked_view > view or (asked_view == view and view_active):
                for sender in by_sender:
                    if sender != self.member:
                        highest[sender] = max(highest.get(sender, 0), asked_view)
        weak_quorum = self.membership.weak_quorum
        if len(highest) < weak_quorum:
            return None
        target = sorted(highest.values())[-weak_quorum]
        return max(target, view + (1 if view_active else 0))

    def help_a_replica_behind(
        self,
        view_change: ViewChange,
        view: int,
        view_active: bool,
        sender_status: Status | None,
        now_ms: int,
    ) -> None:
        """A VIEW-CHANGE for a view we already left. If we acted on that view's NEW-VIEW,
        hand it over. If we asked for that view ourselves and moved on, resend that
        request: the sender may have lost ours in a crash and cannot gather a quorum
        for its view without it, while we wait in a later view that it cannot join
        (found by the schedule fuzzer, see test_regression_restart_loses_view_changes)."""
        sender, asked_view = view_change.sender, view_change.new_view
        if sender == self.member or not self.membership.is_member(sender):
            return
        entered_by = self.latest_new_view
        if entered_by is not None and entered_by.view == asked_view == view and view_active:
            self._outbox.send(sender, entered_by)
            return
        mine = self.own_view_changes.get(asked_view)
        if mine is None:
            return
        # Only a replica whose own STATUS says it is still stuck in that view gets help,
        # and at most once a heartbeat: two replicas that both left the view must not
        # answer each other's answers forever.
        if sender_status is None or sender_status.view != asked_view or sender_status.view_active:
            return
        last = self.helped_at.get((sender, asked_view))
        if last is not None and now_ms - last < self.params.heartbeat_ms:
            return
        self.helped_at[(sender, asked_view)] = now_ms
        if len(self.helped_at) > 4 * self.membership.n:
            oldest = min(self.helped_at, key=lambda key: self.helped_at[key])
            del self.helped_at[oldest]
        self._outbox.send(sender, mine)

    # ------------------------------------------------------------------ NEW-VIEW

    def announce_new_view(self, view: int, now_ms: int) -> tuple[NewView, NewViewPlan] | None:
        """As the primary of ``view`` (not yet active): once a quorum asked for it,
        sign the re-proposals the plan requires and multicast the NEW-VIEW."""
        by_sender = self.received.get(view, {})
        quorum = self.membership.quorum
        if len(by_sender) < quorum:
            return None
        # Our own VIEW-CHANGE first, then the others by member number.
        chosen = [by_sender[self.member]] + [
            view_change
            for sender, view_change in sorted(by_sender.items())
            if sender != self.member
        ]
        view_changes = tuple(chosen[:quorum])
        plan = plan_new_view(view, view_changes)
        proposals: list[Proposal] = []
        for seq, cert in plan.carried.items():
            batch = cert.batch if cert is not None else Batch(seq, now_ms, ())
            digest = batch.digest(self.membership.chain_id)
            pre_prepare = self._signatory.sign_vote(PrePrepare, view, seq, digest)
            if pre_prepare is None:
                return None
            proposals.append(Proposal(pre_prepare, batch))
        new_view = self._signatory.sign(
            NewView, view=view, view_changes=view_changes, proposals=tuple(proposals)
        )
        self._outbox.broadcast(new_view)
        return new_view, plan

    def check(self, new_view: NewView) -> NewViewPlan | None:
        """The plan of a valid NEW-VIEW, or None."""
        try:
            return check_new_view(self.verifier, new_view, self.params.window)
        except InvalidViewMessage:
            return None

    def entered(self, new_view: NewView) -> None:
        """The replica entered ``new_view.view``: remember (durably) the NEW-VIEW that
        started it, stop the view-change timer and forget requests for this view or
        earlier ones."""
        self.latest_new_view = new_view
        self._outbox.persist(NewViewRecord(new_view))
        self._outbox.cancel_timer(Timer.VIEW_CHANGE)
        self.received = {
            view: by_sender for view, by_sender in self.received.items() if view > new_view.view
        }

    def answer_new_view_request(self, request: NewViewRequest, view_active: bool) -> None:
        """A member that learnt from our STATUS that it is behind asks for the NEW-VIEW
        that started our view."""
        entered_by = self.latest_new_view
        if entered_by is None or entered_by.view < request.view or not view_active:
            return
        if self.verifier.message(request):
            self._outbox.send(request.sender, entered_by)

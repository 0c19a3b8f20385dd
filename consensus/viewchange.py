"""View change: validating VIEW-CHANGE and NEW-VIEW, and planning a new view.

Pure functions over messages. The rule that keeps PBFT safe across views lives in
``plan_new_view``: for every sequence number above the highest stable checkpoint, the
new primary must re-propose the batch prepared in the highest view among the quorum's
VIEW-CHANGE messages; a batch that may have committed was prepared by a quorum, which
shares an honest member with any quorum of VIEW-CHANGEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.messages import (
    Checkpoint,
    NewView,
    PreparedCertificate,
    ViewChange,
)
from consensus.verifier import Verifier


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
    hashes = {c.block_hash for c in proof}
    if len(hashes) != 1:
        raise InvalidViewMessage(f"checkpoint proof for {seq} mixes block hashes")
    for c in proof:
        if c.seq != seq:
            raise InvalidViewMessage(f"checkpoint for {c.seq} in a proof for {seq}")
        if c.sender in senders:
            raise InvalidViewMessage(f"member {c.sender} appears twice in a checkpoint proof")
        if not verifier.message(c):
            raise InvalidViewMessage(f"checkpoint signature of member {c.sender} is invalid")
        senders.add(c.sender)
    if len(senders) < verifier.membership.quorum:
        raise InvalidViewMessage(f"checkpoint proof for {seq} has only {len(senders)} members")
    return hashes.pop()


def check_prepared(verifier: Verifier, cert: PreparedCertificate, before_view: int) -> None:
    m = verifier.membership
    pp = cert.pre_prepare
    if pp.view >= before_view:
        raise InvalidViewMessage(f"prepared certificate from view {pp.view} is not older")
    if pp.sender != m.primary(pp.view):
        raise InvalidViewMessage(f"pre-prepare for view {pp.view} not from its primary")
    if cert.batch.height != pp.seq:
        raise InvalidViewMessage(f"batch height {cert.batch.height} != sequence {pp.seq}")
    if cert.batch.digest(m.chain_id) != pp.digest:
        raise InvalidViewMessage(f"batch does not match the digest prepared at {pp.seq}")
    if not verifier.message(pp):
        raise InvalidViewMessage(f"pre-prepare signature at {pp.seq} is invalid")
    senders: set[int] = set()
    for p in cert.prepares:
        if (p.view, p.seq, p.digest) != (pp.view, pp.seq, pp.digest):
            raise InvalidViewMessage(f"prepare does not match the pre-prepare at {pp.seq}")
        if p.sender == pp.sender or p.sender in senders:
            raise InvalidViewMessage(f"prepare at {pp.seq} from the primary or a repeated member")
        if not verifier.message(p):
            raise InvalidViewMessage(f"prepare signature of member {p.sender} is invalid")
        senders.add(p.sender)
    if len(senders) < m.quorum - 1:
        raise InvalidViewMessage(f"prepared certificate at {pp.seq} has too few prepares")


def check_view_change(verifier: Verifier, vc: ViewChange, window: int) -> None:
    if not verifier.membership.is_member(vc.sender):
        raise InvalidViewMessage(f"view change from unknown member {vc.sender}")
    if not verifier.message(vc):
        raise InvalidViewMessage(f"view-change signature of member {vc.sender} is invalid")
    check_checkpoint_proof(verifier, vc.stable_seq, vc.checkpoint_proof)
    seqs: set[int] = set()
    for cert in vc.prepared:
        s = cert.pre_prepare.seq
        if not vc.stable_seq < s <= vc.stable_seq + window:
            raise InvalidViewMessage(f"prepared sequence {s} outside the sender's watermarks")
        if s in seqs:
            raise InvalidViewMessage(f"two prepared certificates for sequence {s}")
        seqs.add(s)
        check_prepared(verifier, cert, vc.new_view)


@dataclass(frozen=True)
class NewViewPlan:
    view: int
    min_seq: int  # the highest stable checkpoint among the quorum
    checkpoint_proof: tuple[Checkpoint, ...]
    max_seq: int
    # For each sequence in (min_seq, max_seq]: the prepared batch that must be
    # re-proposed, or None where the new primary may propose any batch (nothing there
    # could have committed).
    carried: dict[int, PreparedCertificate | None]


def plan_new_view(view: int, view_changes: Sequence[ViewChange]) -> NewViewPlan:
    best = max(view_changes, key=lambda vc: vc.stable_seq)
    min_seq = best.stable_seq
    chosen: dict[int, PreparedCertificate] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            s = cert.pre_prepare.seq
            if s <= min_seq:
                continue
            held = chosen.get(s)
            if held is None or cert.pre_prepare.view > held.pre_prepare.view:
                chosen[s] = cert
    max_seq = max(chosen, default=min_seq)
    carried = {s: chosen.get(s) for s in range(min_seq + 1, max_seq + 1)}
    return NewViewPlan(view, min_seq, best.checkpoint_proof, max_seq, carried)


def check_new_view(verifier: Verifier, nv: NewView, window: int) -> NewViewPlan:
    m = verifier.membership
    if nv.sender != m.primary(nv.view):
        raise InvalidViewMessage(f"new view {nv.view} not sent by its primary")
    if not verifier.message(nv):
        raise InvalidViewMessage("new-view signature is invalid")
    senders: set[int] = set()
    for vc in nv.view_changes:
        if vc.new_view != nv.view:
            raise InvalidViewMessage(f"view change for {vc.new_view} inside new view {nv.view}")
        if vc.sender in senders:
            raise InvalidViewMessage(f"two view changes from member {vc.sender}")
        check_view_change(verifier, vc, window)
        senders.add(vc.sender)
    if len(senders) < m.quorum:
        raise InvalidViewMessage(f"new view carries {len(senders)} view changes, needs {m.quorum}")
    plan = plan_new_view(nv.view, nv.view_changes)
    expected = list(plan.carried)
    got = [p.pre_prepare.seq for p in nv.proposals]
    if got != expected:
        raise InvalidViewMessage(
            f"new view proposes sequences {got[:5]}..., expected {expected[:5]}..."
        )
    for proposal in nv.proposals:
        pp = proposal.pre_prepare
        if pp.view != nv.view or pp.sender != nv.sender:
            raise InvalidViewMessage(
                f"re-issued pre-prepare at {pp.seq} has the wrong view or sender"
            )
        if proposal.batch.height != pp.seq or proposal.batch.digest(m.chain_id) != pp.digest:
            raise InvalidViewMessage(f"re-issued batch at {pp.seq} does not match its digest")
        carried = plan.carried[pp.seq]
        if carried is not None and carried.pre_prepare.digest != pp.digest:
            raise InvalidViewMessage(f"new view replaces the batch prepared at {pp.seq}")
        if not verifier.message(pp):
            raise InvalidViewMessage(f"re-issued pre-prepare signature at {pp.seq} is invalid")
    return plan

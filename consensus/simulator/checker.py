"""Invariants checked after every step of a simulation."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.blocks import Block, Certificate, CertificateError
from consensus.membership import Membership
from consensus.messages import Commit, Message, NewView, Prepare, Proposal
from consensus.verifier import Verifier


@dataclass(frozen=True)
class Violation:
    invariant: str
    time_ms: int
    detail: str


class Checker:
    def __init__(self, membership: Membership, honest_members: set[int]) -> None:
        self.membership = membership
        self.honest = honest_members
        self.verifier = Verifier(membership, capacity=1 << 18)
        self.committed: dict[int, bytes] = {}  # height -> block hash, first honest commit
        self.signed: dict[tuple[int, str, int, int], bytes] = {}
        self.violation: Violation | None = None

    def fail(self, invariant: str, now: int, detail: str) -> None:
        if self.violation is None:
            self.violation = Violation(invariant, now, detail)

    def on_commit(
        self, now: int, instance: int, member: int, parent: bytes, block: Block, cert: Certificate
    ) -> None:
        if member not in self.honest:
            return
        h = block.header.height
        if block.header.parent_hash != parent:
            self.fail("certified", now, f"n{instance} block {h} does not link to its parent")
        if block.header.batch_digest() != cert.digest or cert.height != h:
            self.fail("certified", now, f"n{instance} block {h} does not match its certificate")
        try:
            self.verifier.certificate(cert)
        except CertificateError as exc:
            self.fail("certified", now, f"n{instance} block {h}: {exc}")
        block_hash = block.hash()
        first = self.committed.setdefault(h, block_hash)
        if first != block_hash:
            self.fail(
                "agreement",
                now,
                f"honest replicas committed different blocks at height {h}: "
                f"{first.hex()[:12]} and {block_hash.hex()[:12]} (n{instance})",
            )

    def on_send(self, now: int, instance: int, member: int, message: Message) -> None:
        """An honest member never signs two different votes for one (view, seq)."""
        if member not in self.honest:
            return
        votes: list[tuple[str, int, int, bytes]] = []
        match message:
            case Proposal(pp, _):
                votes.append((pp.KIND, pp.view, pp.seq, pp.digest))
            case NewView(view, _, proposals):
                votes.extend(
                    (p.pre_prepare.KIND, view, p.pre_prepare.seq, p.pre_prepare.digest)
                    for p in proposals
                )
            case Prepare() | Commit():
                votes.append((message.KIND, message.view, message.seq, message.digest))
        for kind, view, seq, digest in votes:
            first = self.signed.setdefault((member, kind, view, seq), digest)
            if first != digest:
                self.fail(
                    "no-equivocation",
                    now,
                    f"honest member {member} (n{instance}) signed two {kind} votes for "
                    f"view {view} seq {seq}",
                )

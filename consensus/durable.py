"""The replica's durable consensus state, as records the host persists before sending.

A restarted replica is rebuilt from the fold of these records plus the ledger tip; it
then never signs a vote that conflicts with one it signed before the crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.codec import Registry
from consensus.messages import Checkpoint, NewView, PreparedCertificate, ViewChange

RECORDS = Registry("durable record")


@RECORDS.register(1)
@dataclass(frozen=True)
class VoteRecord:
    """This replica signed a vote of ``kind`` for (view, seq) on ``digest``."""

    kind: str
    view: int
    seq: int
    digest: bytes


@RECORDS.register(2)
@dataclass(frozen=True)
class PreparedRecord:
    certificate: PreparedCertificate


@RECORDS.register(3)
@dataclass(frozen=True)
class ViewRecord:
    view: int
    active: bool


@RECORDS.register(4)
@dataclass(frozen=True)
class ViewChangeRecord:
    message: ViewChange


@RECORDS.register(5)
@dataclass(frozen=True)
class NewViewRecord:
    message: NewView


@RECORDS.register(6)
@dataclass(frozen=True)
class StableRecord:
    seq: int
    proof: tuple[Checkpoint, ...]


Record = VoteRecord | PreparedRecord | ViewRecord | ViewChangeRecord | NewViewRecord | StableRecord


@dataclass
class DurableState:
    view: int = 0
    view_active: bool = True
    votes: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    prepared: dict[int, PreparedCertificate] = field(default_factory=dict)
    view_change: ViewChange | None = None
    new_view: NewView | None = None
    stable_seq: int = 0
    stable_proof: tuple[Checkpoint, ...] = ()

    def apply(self, record: Record) -> None:
        match record:
            case VoteRecord(kind, view, seq, digest):
                self.votes[(kind, view, seq)] = digest
            case PreparedRecord(cert):
                self.prepared[cert.pre_prepare.seq] = cert
            case ViewRecord(view, active):
                self.view, self.view_active = view, active
            case ViewChangeRecord(message):
                self.view_change = message
            case NewViewRecord(message):
                self.new_view = message
            case StableRecord(seq, proof):
                if seq > self.stable_seq:
                    self.stable_seq, self.stable_proof = seq, proof
                    self.votes = {k: d for k, d in self.votes.items() if k[2] > seq}
                    self.prepared = {s: c for s, c in self.prepared.items() if s > seq}

    def apply_all(self, records: tuple[Record, ...] | list[Record]) -> None:
        for record in records:
            self.apply(record)

    def snapshot(self) -> list[Record]:
        """Records that rebuild this state; hosts use it to compact their log."""
        out: list[Record] = []
        if self.stable_seq:
            out.append(StableRecord(self.stable_seq, self.stable_proof))
        out.append(ViewRecord(self.view, self.view_active))
        if self.view_change is not None:
            out.append(ViewChangeRecord(self.view_change))
        if self.new_view is not None:
            out.append(NewViewRecord(self.new_view))
        out.extend(PreparedRecord(c) for _, c in sorted(self.prepared.items()))
        out.extend(VoteRecord(k[0], k[1], k[2], d) for k, d in sorted(self.votes.items()))
        return out

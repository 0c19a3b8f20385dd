"""PBFT protocol messages: frozen dataclasses with one canonical encoding each.

A signed message's signature covers ``signing_bytes(chain_id, kind, body)``, where the
body is the canonical encoding of every field but the signature. A PRE-PREPARE signs
only the batch digest; the batch travels beside it in a ``Proposal`` and the receiver
recomputes the digest, so certificates can quote a pre-prepare without its payload.

The paper's messages (Castro and Liskov), by section: PRE-PREPARE, PREPARE and COMMIT
(4.2, normal case), CHECKPOINT (4.3, garbage collection), VIEW-CHANGE and NEW-VIEW (4.4).
Client REQUEST and REPLY have no message here: requests reach replicas through their
hosts, and a block's commit certificate is the reply. The rest keep replicas live when
messages are lost: STATUS (the heartbeat), NEW-VIEW-REQUEST, and BLOCK-REQUEST with its
response (state transfer, ``consensus.sync``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from consensus.blocks import COMMIT_KIND, Batch, Certificate, commit_body
from consensus.codec import MAX_MESSAGE_BYTES, Registry, pack, to_wire
from consensus.crypto import Signer, signing_bytes
from consensus.membership import Membership

WIRE = Registry("consensus message")


class SignedMessage:
    """Mixin for messages carrying ``sender`` and ``signature`` as their last fields."""

    KIND: ClassVar[str]
    sender: int
    signature: bytes

    def body(self) -> bytes:
        values = to_wire(self)
        return pack(values[:-1])

    def verify(self, membership: Membership) -> bool:
        return membership.verify(self.sender, self.KIND, self.body(), self.signature)


def sign(cls: type[Any], signer: Signer, chain_id: str, **values: Any) -> Any:
    """Build and sign a message of ``cls`` from its field values (all but signature)."""
    unsigned = cls(**values, signature=b"")
    signature = signer.sign(signing_bytes(chain_id, cls.KIND, unsigned.body()))
    return cls(**values, signature=signature)


@WIRE.register(1)
@dataclass(frozen=True)
class PrePrepare(SignedMessage):
    KIND: ClassVar[str] = "pre-prepare"
    view: int
    seq: int
    digest: bytes
    sender: int
    signature: bytes


@WIRE.register(2)
@dataclass(frozen=True)
class Proposal:
    """A PRE-PREPARE with the batch it orders."""

    pre_prepare: PrePrepare
    batch: Batch


@WIRE.register(3)
@dataclass(frozen=True)
class Prepare(SignedMessage):
    KIND: ClassVar[str] = "prepare"
    view: int
    seq: int
    digest: bytes
    sender: int
    signature: bytes


@WIRE.register(4)
@dataclass(frozen=True)
class Commit(SignedMessage):
    # Same signed bytes as a certificate entry, so a certificate is just the COMMITs.
    KIND: ClassVar[str] = COMMIT_KIND
    view: int
    seq: int
    digest: bytes
    sender: int
    signature: bytes

    def body(self) -> bytes:
        return commit_body(self.view, self.seq, self.digest)


@WIRE.register(5)
@dataclass(frozen=True)
class Checkpoint(SignedMessage):
    """The hash of the block at ``seq``; the hash chain makes it cover all history."""

    KIND: ClassVar[str] = "checkpoint"
    seq: int
    block_hash: bytes
    sender: int
    signature: bytes


@dataclass(frozen=True)
class PreparedCertificate:
    """Proof that a batch prepared at (view, seq): its pre-prepare and q-1 PREPAREs."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]
    batch: Batch


@WIRE.register(6)
@dataclass(frozen=True)
class ViewChange(SignedMessage):
    KIND: ClassVar[str] = "view-change"
    new_view: int
    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    sender: int
    signature: bytes


@WIRE.register(7)
@dataclass(frozen=True)
class NewView(SignedMessage):
    KIND: ClassVar[str] = "new-view"
    view: int
    view_changes: tuple[ViewChange, ...]
    proposals: tuple[Proposal, ...]
    sender: int
    signature: bytes


@WIRE.register(8)
@dataclass(frozen=True)
class Status(SignedMessage):
    """Heartbeat: lets a lagging or restarted replica learn that it is behind."""

    KIND: ClassVar[str] = "status"
    view: int
    view_active: bool
    height: int
    sender: int
    signature: bytes


@WIRE.register(9)
@dataclass(frozen=True)
class NewViewRequest(SignedMessage):
    KIND: ClassVar[str] = "new-view-request"
    view: int
    sender: int
    signature: bytes


@WIRE.register(10)
@dataclass(frozen=True)
class BlockRequest(SignedMessage):
    """Ask for committed blocks [from_height, to_height]; served by the host's store."""

    KIND: ClassVar[str] = "block-request"
    from_height: int
    to_height: int
    sender: int
    signature: bytes


@dataclass(frozen=True)
class CertifiedBatch:
    batch: Batch
    certificate: Certificate


@WIRE.register(11)
@dataclass(frozen=True)
class BlockResponse:
    """Unsigned: every entry carries its own commit certificate, checked on receipt."""

    entries: tuple[CertifiedBatch, ...]


Message = (
    PrePrepare
    | Proposal
    | Prepare
    | Commit
    | Checkpoint
    | ViewChange
    | NewView
    | Status
    | NewViewRequest
    | BlockRequest
    | BlockResponse
)


def encode_message(message: Message) -> bytes:
    return WIRE.encode(message)


def decode_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Strictly decode one message; raises ``codec.DecodeError`` with the reason."""
    message: Message = WIRE.decode(data, max_bytes)
    return message


def message_kind(message: Message) -> str:
    return type(message).__name__


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]

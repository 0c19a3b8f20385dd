"""Everything one member sends another: consensus messages, transaction gossip and
private details.

Frames share the consensus message tags; the node's own frames use tags from 100 up, so
one strict decoder covers the whole wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import MAX_MESSAGE_BYTES, Registry
from consensus.messages import WIRE, Message

FRAMES = Registry("frame")
for _tag, _cls in WIRE.items():
    FRAMES.register(_tag)(_cls)


@FRAMES.register(100)
@dataclass(frozen=True)
class TxGossip:
    """Transactions a member admitted, passed on so every member can propose them and
    notice a primary that leaves them out. Best effort: may be dropped under load."""

    txs: tuple[bytes, ...]


# Sizes of the private-details frames, fixed here so the decoder enforces them (the
# node layer, ``node.private_details``, gives the details bytes their meaning).
TX_ID_SIZE = 32
SALT_SIZE = 32
MAX_DETAILS_BYTES = 64 * 1024
# What a recipient answers: the first two end the sender's retries with success, the
# others with a refusal that retrying cannot change (the check is a pure function of
# the committed transaction, the sender and the bytes).
DETAILS_ACK_STATUSES = ("stored", "expired", "mismatch", "not_signer", "no_commitment")


@FRAMES.register(101)
@dataclass(frozen=True)
class PrivateDetails:
    """A report's private details for one entitled member, from the member that signed
    the transaction: the salt and the canonical details bytes whose commitment the
    transaction carries. Sent only to the recipients the submitter named, never
    gossiped; not droppable (a full queue resets the connection, counted and logged)
    and re-sent until a ``DetailsAck`` arrives."""

    tx_id: bytes
    salt: bytes
    details: bytes

    def __post_init__(self) -> None:
        if len(self.tx_id) != TX_ID_SIZE:
            raise ValueError(f"tx_id must be {TX_ID_SIZE} bytes, got {len(self.tx_id)}")
        if len(self.salt) != SALT_SIZE:
            raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(self.salt)}")
        if not 1 <= len(self.details) <= MAX_DETAILS_BYTES:
            raise ValueError(f"details must be 1 to {MAX_DETAILS_BYTES} bytes")


@FRAMES.register(102)
@dataclass(frozen=True)
class DetailsAck:
    """A recipient's answer to ``PrivateDetails``: ``status`` is one of
    ``DETAILS_ACK_STATUSES``."""

    tx_id: bytes
    status: str

    def __post_init__(self) -> None:
        if len(self.tx_id) != TX_ID_SIZE:
            raise ValueError(f"tx_id must be {TX_ID_SIZE} bytes, got {len(self.tx_id)}")
        if self.status not in DETAILS_ACK_STATUSES:
            raise ValueError(f"status must be one of {', '.join(DETAILS_ACK_STATUSES)}")


# A private-set-intersection message (``node.psi_protocol`` owns the body's encoding):
# the envelope only fixes the run it belongs to and bounds its size. A run is bulk work
# that its initiator can repeat, so the frame is not droppable but also never flooded:
# a run sends at most a few dozen frames each way.
PSI_RUN_ID_SIZE = 16
MAX_PSI_BODY = 1024 * 1024


@FRAMES.register(160)
@dataclass(frozen=True)
class PsiFrame:
    run_id: bytes
    body: bytes

    def __post_init__(self) -> None:
        if len(self.run_id) != PSI_RUN_ID_SIZE:
            raise ValueError(f"run_id must be {PSI_RUN_ID_SIZE} bytes, got {len(self.run_id)}")
        if not 1 <= len(self.body) <= MAX_PSI_BODY:
            raise ValueError(f"body must be 1 to {MAX_PSI_BODY} bytes")


# A disclosure request (``node.disclosure``) names its committed ``disclosure_request``
# transaction; the answer carries the clear identifier to the requesting member only.
DISCLOSURE_REQUEST_ID_SIZE = 16
DISCLOSURE_OUTCOMES = ("allowed", "denied", "unknown", "outside_scope")
MAX_DISCLOSED_IDENTIFIER = 256
MAX_DISCLOSURE_REASON = 512


@FRAMES.register(170)
@dataclass(frozen=True)
class DisclosureAsk:
    """To a member that reported the entity: answer the request committed as
    ``request_tx``. Re-sent by the requester until an answer arrives."""

    request_id: bytes
    request_tx: bytes

    def __post_init__(self) -> None:
        if len(self.request_id) != DISCLOSURE_REQUEST_ID_SIZE:
            raise ValueError(f"request_id must be {DISCLOSURE_REQUEST_ID_SIZE} bytes")
        if len(self.request_tx) != TX_ID_SIZE:
            raise ValueError(f"request_tx must be {TX_ID_SIZE} bytes")


@FRAMES.register(171)
@dataclass(frozen=True)
class DisclosureReply:
    """The answer, to the requesting member only: the identifier when ``allowed``, else
    empty, with the reason for a refusal."""

    request_id: bytes
    outcome: str
    identifier: str
    reason: str

    def __post_init__(self) -> None:
        if len(self.request_id) != DISCLOSURE_REQUEST_ID_SIZE:
            raise ValueError(f"request_id must be {DISCLOSURE_REQUEST_ID_SIZE} bytes")
        if self.outcome not in DISCLOSURE_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(DISCLOSURE_OUTCOMES)}")
        if (self.outcome == "allowed") != bool(self.identifier):
            raise ValueError("an allowed answer carries the identifier, a refusal none")
        if len(self.identifier) > MAX_DISCLOSED_IDENTIFIER:
            raise ValueError(f"identifier is at most {MAX_DISCLOSED_IDENTIFIER} characters")
        if len(self.reason) > MAX_DISCLOSURE_REASON:
            raise ValueError(f"reason is at most {MAX_DISCLOSURE_REASON} characters")


Frame = (
    Message | TxGossip | PrivateDetails | DetailsAck | PsiFrame | DisclosureAsk | DisclosureReply
)


def encode_frame(frame: Frame) -> bytes:
    return FRAMES.encode(frame)


def decode_frame(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Frame:
    """Strict: raises ``consensus.codec.DecodeError`` naming what is wrong."""
    frame: Frame = FRAMES.decode(data, max_bytes)
    return frame


def is_droppable(frame: Frame) -> bool:
    """Gossip may be shed under overload; consensus traffic may not be shed silently."""
    return isinstance(frame, TxGossip)

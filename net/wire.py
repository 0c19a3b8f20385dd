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


# Threshold pseudonyms (``node.pseudonyms``): a member asks others to evaluate the OPRF
# on blinded points; each answers with its share's evaluations and a proof, or a
# refusal with the reason. The requester retries elsewhere on its own timer, so neither
# frame is droppable-critical, but neither is gossip: both go to one member.
EVAL_REQUEST_ID_SIZE = 16
MAX_EVAL_POINTS = 10_000
EVAL_POINT_SIZE = 32
EVAL_PURPOSES = ("report", "query")
# ``ok`` carries the points and the proof; every other outcome is a refusal whose reason
# the requester shows its caller (quota and case refusals are policy, not faults).
EVAL_OUTCOMES = (
    "ok",
    "over_quota",
    "no_case",
    "not_your_case",
    "case_inactive",
    "bad_request",
    "busy",
)
MAX_EVAL_REASON = 512
MAX_EVAL_CASE_ID = 64


def _check_points(points: tuple[bytes, ...], what: str) -> None:
    if len(points) > MAX_EVAL_POINTS:
        raise ValueError(f"{what}: at most {MAX_EVAL_POINTS} points, got {len(points)}")
    for i, point in enumerate(points):
        if len(point) != EVAL_POINT_SIZE:
            raise ValueError(f"{what}[{i}] must be {EVAL_POINT_SIZE} bytes, got {len(point)}")


@FRAMES.register(180)
@dataclass(frozen=True)
class EvalRequest:
    """Evaluate your share on ``points`` (blinded; you learn nothing of the
    identifiers) for ``purpose``; ``indices`` is the evaluating set (1-based genesis
    positions, you among them), which fixes your Lagrange weight. ``height`` is the
    requester's ledger height, so a case it sees is judged once you see it too."""

    request_id: bytes
    purpose: str
    case_id: str
    height: int
    indices: tuple[int, ...]
    points: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.request_id) != EVAL_REQUEST_ID_SIZE:
            raise ValueError(f"request_id must be {EVAL_REQUEST_ID_SIZE} bytes")
        if self.purpose not in EVAL_PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(EVAL_PURPOSES)}")
        if (self.purpose == "query") != bool(self.case_id):
            raise ValueError("a query evaluation names its case, a report evaluation none")
        if len(self.case_id) > MAX_EVAL_CASE_ID:
            raise ValueError(f"case_id is at most {MAX_EVAL_CASE_ID} characters")
        if self.height < 0:
            raise ValueError("height must not be negative")
        if not 2 <= len(self.indices) <= 64 or len(set(self.indices)) != len(self.indices):
            raise ValueError("indices must be 2 to 64 distinct member positions")
        if any(i < 1 or i > 64 for i in self.indices):
            raise ValueError("indices are 1-based member positions, at most 64")
        if not self.points:
            raise ValueError("points must not be empty")
        _check_points(self.points, "points")


@FRAMES.register(181)
@dataclass(frozen=True)
class EvalReply:
    """The answer to one ``EvalRequest``: on ``ok`` one point per requested point and
    the batched DLEQ proof (``challenge``, ``response``); otherwise no points and the
    reason."""

    request_id: bytes
    outcome: str
    reason: str
    points: tuple[bytes, ...]
    challenge: bytes
    response: bytes

    def __post_init__(self) -> None:
        if len(self.request_id) != EVAL_REQUEST_ID_SIZE:
            raise ValueError(f"request_id must be {EVAL_REQUEST_ID_SIZE} bytes")
        if self.outcome not in EVAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(EVAL_OUTCOMES)}")
        if len(self.reason) > MAX_EVAL_REASON:
            raise ValueError(f"reason is at most {MAX_EVAL_REASON} characters")
        _check_points(self.points, "points")
        if self.outcome == "ok":
            if not self.points or len(self.challenge) != 32 or len(self.response) != 32:
                raise ValueError("an ok reply carries points and a 32-byte challenge and response")
        elif self.points or self.challenge or self.response:
            raise ValueError("a refusal carries no points and no proof")


Frame = (
    Message
    | TxGossip
    | PrivateDetails
    | DetailsAck
    | PsiFrame
    | DisclosureAsk
    | DisclosureReply
    | EvalRequest
    | EvalReply
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

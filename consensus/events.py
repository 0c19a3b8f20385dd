"""What goes into ``Replica.step`` (events) and what comes out (actions).

The host carries out the actions of one step in this order: persist (durably, before
anything else), send, apply committed blocks, then everything else. ``Replica.step``
already returns them in that order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consensus.blocks import Block, Certificate
from consensus.durable import Record
from consensus.messages import Message


class Timer(enum.Enum):
    BATCH = "batch"  # the primary flushes a partial batch
    REQUEST = "request"  # a pending request waited too long: suspect the primary
    VIEW_CHANGE = "view-change"  # no NEW-VIEW arrived in time: try the next view
    HEARTBEAT = "heartbeat"  # status, retransmission and lag detection
    SYNC = "sync"  # a block request went unanswered


@dataclass(frozen=True)
class Start:
    """First event after construction or restart."""


@dataclass(frozen=True)
class RequestArrived:
    payload: bytes


@dataclass(frozen=True)
class MessageArrived:
    peer: int  # the authenticated member the transport received it from
    message: Message


@dataclass(frozen=True)
class TimerFired:
    timer: Timer


Event = Start | RequestArrived | MessageArrived | TimerFired


@dataclass(frozen=True)
class Persist:
    records: tuple[Record, ...]


@dataclass(frozen=True)
class Send:
    to: int
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """To every member but the sender."""

    message: Message


@dataclass(frozen=True)
class CommitBlock:
    block: Block
    certificate: Certificate


@dataclass(frozen=True)
class SetTimer:
    timer: Timer
    delay_ms: int


@dataclass(frozen=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True)
class RejectRequest:
    request_id: bytes
    reason: str


@dataclass(frozen=True)
class ReportEquivocation:
    """Two validly signed, conflicting messages of one member: evidence."""

    member: int
    kind: str
    view: int
    seq: int


Action = (
    Persist
    | Send
    | Broadcast
    | CommitBlock
    | SetTimer
    | CancelTimer
    | RejectRequest
    | ReportEquivocation
)

_ORDER = {Persist: 0, Send: 1, Broadcast: 1, CommitBlock: 2}


def ordered(actions: list[Action]) -> list[Action]:
    """Stable sort into persist -> send -> apply -> the rest."""
    return sorted(actions, key=lambda a: _ORDER.get(type(a), 3))

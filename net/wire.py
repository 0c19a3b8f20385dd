"""Everything one member sends another: consensus messages plus transaction gossip.

Frames share the consensus message tags; gossip uses tags from 100 up, so one strict
decoder covers the whole wire.
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


Frame = Message | TxGossip


def encode_frame(frame: Frame) -> bytes:
    return FRAMES.encode(frame)


def decode_frame(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Frame:
    """Strict: raises ``consensus.codec.DecodeError`` naming what is wrong."""
    frame: Frame = FRAMES.decode(data, max_bytes)
    return frame


def is_droppable(frame: Frame) -> bool:
    """Gossip may be shed under overload; consensus traffic may not be shed silently."""
    return isinstance(frame, TxGossip)

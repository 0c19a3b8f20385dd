"""What goes into ``Replica.step`` (events) and what comes out (actions): the contract
between the pure replica and the host that runs it.

The replica does no I/O. A host (``node.host.runtime.NodeRuntime`` in a node,
``consensus.simulator.runner.Simulation`` in the simulator, ``tests.replica_harness``
in scenario tests) feeds it events and carries out the actions each step returns, in
the order ``step`` returns them, which is always:

1. ``Persist``: at most one, first. Durable before anything below happens.
2. ``Send`` and ``Broadcast``: in the order given.
3. ``CommitBlock``: in the order given, which is height order.
4. Everything else (``SetTimer``, ``CancelTimer``, ``RejectRequest``,
   ``ReportEquivocation``): in the order given; for timers the order matters, since a
   step may cancel a timer and then set it again.

A host may gather the actions of several steps and carry them out together, provided it
keeps this order across all of them: every record of the group durable before any of
the group's messages leaves. The node runtime does so, with one fsync per round of up to
``MAX_EVENTS_PER_ROUND`` events.

Why this order. Persist before send: a message may carry a vote, and the record of that
vote must survive a crash, or the restarted replica could sign a different digest for
the same (kind, view, seq) and so equivocate. Send before apply is not needed for
safety: it keeps the slow block writes from delaying the votes the other members are
waiting for. The rest has no duty towards the first three.

Crashes. After a restart the host builds a new replica from the fold of every record it
persisted (``consensus.durable.DurableState``) and from its ledger's tip, and gives it
``Start``. Whatever the host did not finish is recovered by the protocol: messages not
sent are as if the network lost them (the replica retransmits its own stuck messages on
its heartbeat), blocks not applied are fetched again by block sync, and timers start
over (none survive a restart; ``Start`` arms the heartbeat and the rest are armed as the
replica needs them).
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


# ---------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """The first event a newly built replica gets, at start-up and after every restart:
    it arms the heartbeat and, in the middle of a view change, asks again for the view."""


@dataclass(frozen=True)
class RequestArrived:
    """A client request the host admitted (the node runtime: validated by the
    application and accepted by the mempool, whether submitted locally or gossiped by
    another member: members gossip what is submitted to them, so every replica normally
    gets every request).

    ``checked`` says the host already ran a check at least as strict as the replica's
    ``check_request`` on this payload (the node runtime's admission does, in a worker
    thread and in batches), so the replica does not run it again on its own thread.
    A request not so marked is checked here as before."""

    payload: bytes
    checked: bool = False


@dataclass(frozen=True)
class MessageArrived:
    """A consensus message from another member, decoded but otherwise unchecked: the
    replica verifies signatures and content itself. The host serves ``BlockRequest``
    from its own store instead of passing it on (the replica would ignore it)."""

    peer: int  # the authenticated member the transport received it from
    message: Message


@dataclass(frozen=True)
class TimerFired:
    """The deadline of the latest ``SetTimer`` for ``timer`` passed, and no
    ``CancelTimer`` came after it."""

    timer: Timer


Event = Start | RequestArrived | MessageArrived | TimerFired


# ---------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Persist:
    """Append ``records``, in this order, to the replica's durable log, and make them
    durable (fsync) before carrying out any other action of the step.

    Must not be dropped, reordered or retried past a failure: a host that cannot write
    must stop rather than send. If the host crashes before the write is durable, none of
    the step's messages may have left; the restarted replica then behaves as if the step
    never happened. The host may replace its log with ``DurableState.snapshot()`` of the
    records folded so far (the node runtime compacts so when the log grows long and a
    ``StableRecord`` arrives)."""

    records: tuple[Record, ...]


@dataclass(frozen=True)
class Send:
    """Send ``message`` to member ``to``, after the step's ``Persist`` is durable.

    Best effort: the host may drop, delay, duplicate or reorder it (the node runtime's
    transports never block, and discard frames when a peer's queue is full; the
    simulator drops at random). The protocol recovers by retransmission, so the host
    need not retry. A crash before it leaves is a lost message."""

    to: int
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """``Send`` ``message`` to every member but this one; the same duties, per member."""

    message: Message


@dataclass(frozen=True)
class CommitBlock:
    """Apply a final block: store it with its certificate as the next block of the
    ledger, after this step's sends. Heights are consecutive, and the host must store
    them in order and serve them, with their certificates, to ``BlockRequest``s.

    Must not be dropped while the host runs: the replica has moved on to the next
    height. If the host crashes before the block is stored, the restarted replica
    starts from the ledger's real tip and fetches the missing blocks from its peers
    (even when its durable stable checkpoint lies above that tip). Each height comes
    once: a replica executes in order from the tip it was built with."""

    block: Block
    certificate: Certificate


@dataclass(frozen=True)
class SetTimer:
    """Arm the one timer of kind ``timer`` to fire ``delay_ms`` from now, replacing its
    earlier deadline if it was armed; when it is due, step ``TimerFired(timer)``.

    Timers are not durable: after a restart the host has none armed."""

    timer: Timer
    delay_ms: int


@dataclass(frozen=True)
class CancelTimer:
    """Disarm the timer of kind ``timer`` if it is armed; a ``TimerFired`` for it must
    not follow unless a later ``SetTimer`` arms it again."""

    timer: Timer


@dataclass(frozen=True)
class RejectRequest:
    """This replica will not order the request ``request_id`` (too large, refused by
    the application's check, or the queue is full); ``reason`` says which. Informational:
    the node runtime logs it and the simulator ignores it. The host may drop it."""

    request_id: bytes
    reason: str


@dataclass(frozen=True)
class ReportEquivocation:
    """Evidence: ``member`` validly signed two different digests for one (kind, view,
    seq). The replica already acted on it (it keeps the first); the host records it for
    the operators (the node runtime counts and logs it; the simulator collects it). The
    host may drop it. Each report comes at most once, within a bounded memory."""

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

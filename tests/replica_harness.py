"""A hand-driven cluster for scenario tests: every delivery and timer is explicit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.blocks import Block, Certificate
from consensus.crypto import Signer
from consensus.durable import DurableState
from consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Event,
    MessageArrived,
    Persist,
    ReportEquivocation,
    RequestArrived,
    Send,
    SetTimer,
    Start,
    Timer,
    TimerFired,
)
from consensus.membership import Membership
from consensus.messages import BlockRequest, BlockResponse, CertifiedBatch, Message
from consensus.params import Params
from consensus.replica import Replica

CHAIN = "test-chain"
PARAMS = Params(checkpoint_interval=2, window=4, max_batch_txs=3, view_timeout_ms=1000)

Filter = Callable[[int, int, Message], bool]


def signers(n: int) -> list[Signer]:
    return [Signer(bytes([i + 1]) * 32) for i in range(n)]


@dataclass
class Harness:
    n: int = 4
    params: Params = PARAMS
    now: int = 0
    outbox: list[tuple[int, int, Message]] = field(default_factory=list)
    sent: list[tuple[int, int, Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = signers(self.n)
        self.membership = Membership(CHAIN, tuple(k.public_key for k in self.keys))
        self.durable = [DurableState() for _ in range(self.n)]
        self.ledgers: list[list[tuple[Block, Certificate]]] = [[] for _ in range(self.n)]
        self.timers: list[dict[Timer, int]] = [{} for _ in range(self.n)]
        self.evidence: list[ReportEquivocation] = []
        self.down: set[int] = set()
        self.replicas = [self._replica(i, DurableState()) for i in range(self.n)]
        for i in range(self.n):
            self.step(i, Start())

    def _replica(self, i: int, durable: DurableState) -> Replica:
        ledger = self.ledgers[i]
        tip = ledger[-1][0].hash() if ledger else bytes(32)
        return Replica(
            i,
            self.keys[i],
            self.membership,
            self.params,
            durable=durable,
            tip_height=len(ledger),
            tip_hash=tip,
        )

    def step(self, i: int, event: Event) -> list[Action]:
        if i in self.down:
            return []
        actions = self.replicas[i].step(event, self.now)
        for action in actions:
            match action:
                case Persist(records):
                    self.durable[i].apply_all(records)
                case Send(to, message):
                    self._queue(i, to, message)
                case Broadcast(message):
                    for j in range(self.n):
                        if j != i:
                            self._queue(i, j, message)
                case CommitBlock(block, cert):
                    self.ledgers[i].append((block, cert))
                case SetTimer(timer, delay):
                    self.timers[i][timer] = self.now + delay
                case CancelTimer(timer):
                    self.timers[i].pop(timer, None)
                case ReportEquivocation():
                    self.evidence.append(action)
        return actions

    def _queue(self, src: int, dst: int, message: Message) -> None:
        self.outbox.append((src, dst, message))
        self.sent.append((src, dst, message))

    def request(self, payload: bytes, to: list[int] | None = None) -> None:
        for i in to if to is not None else range(self.n):
            self.step(i, RequestArrived(payload))

    def deliver(self, keep: Filter | None = None, rounds: int = 10_000) -> int:
        """Deliver queued messages (and those they cause) in order; ``keep`` decides
        which ones the network lets through. Returns how many were delivered."""
        delivered = 0
        while self.outbox and rounds:
            rounds -= 1
            src, dst, message = self.outbox.pop(0)
            if dst in self.down or (keep is not None and not keep(src, dst, message)):
                continue
            delivered += 1
            if isinstance(message, BlockRequest):  # the host serves these from its store
                entries = self.ledgers[dst][message.from_height - 1 : message.to_height]
                response = BlockResponse(tuple(CertifiedBatch(b.to_batch(), c) for b, c in entries))
                self._queue(dst, src, response)
                continue
            self.step(dst, MessageArrived(src, message))
        return delivered

    def fire(self, i: int, timer: Timer) -> None:
        """Fire a timer as if its deadline passed (time moves to the deadline)."""
        deadline = self.timers[i].pop(timer)
        self.now = max(self.now, deadline)
        self.step(i, TimerFired(timer))

    def crash(self, i: int) -> None:
        self.down.add(i)
        self.outbox = [m for m in self.outbox if m[1] != i]

    def restart(self, i: int, durable: DurableState | None = None) -> None:
        self.down.discard(i)
        self.timers[i] = {}
        state = self.durable[i] if durable is None else durable
        self.replicas[i] = self._replica(i, state)
        self.step(i, Start())

    def heights(self) -> list[int]:
        return [len(ledger) for ledger in self.ledgers]

    def block_hashes(self, i: int) -> list[bytes]:
        return [b.hash() for b, _ in self.ledgers[i]]

"""What one ``Replica.step`` asks of the host, gathered while the step runs.

The replica and its collaborators (``consensus.viewchange.ViewChanger``,
``consensus.sync.BlockSync``, ``consensus.signatory.Signatory``) all write to the one
outbox of their replica, so the actions of a step come out in the order they were
decided. ``take`` then puts every durable record into one leading ``Persist`` and sorts
the rest into the order the host must follow (``consensus.events.ordered``).
"""

from __future__ import annotations

from collections import OrderedDict

from consensus.blocks import Block, Certificate
from consensus.durable import Record
from consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Persist,
    RejectRequest,
    ReportEquivocation,
    Send,
    SetTimer,
    Timer,
    ordered,
)
from consensus.messages import Message

# Equivocation evidence remembered so each is reported once; bounded, since a Byzantine
# member can produce fresh evidence forever.
MAX_REPORTED_EQUIVOCATIONS = 1024


class Outbox:
    def __init__(self) -> None:
        self._actions: list[Action] = []
        self._records: list[Record] = []
        self._reported: OrderedDict[ReportEquivocation, None] = OrderedDict()

    def persist(self, record: Record) -> None:
        self._records.append(record)

    def send(self, to: int, message: Message) -> None:
        self._actions.append(Send(to, message))

    def broadcast(self, message: Message) -> None:
        self._actions.append(Broadcast(message))

    def commit_block(self, block: Block, certificate: Certificate) -> None:
        self._actions.append(CommitBlock(block, certificate))

    def set_timer(self, timer: Timer, delay_ms: int) -> None:
        self._actions.append(SetTimer(timer, delay_ms))

    def cancel_timer(self, timer: Timer) -> None:
        self._actions.append(CancelTimer(timer))

    def reject_request(self, request_id: bytes, reason: str) -> None:
        self._actions.append(RejectRequest(request_id, reason))

    def report_equivocation(self, member: int, kind: str, view: int, seq: int) -> None:
        """Report evidence against ``member``, unless it was reported already."""
        report = ReportEquivocation(member, kind, view, seq)
        if report not in self._reported:
            self._reported[report] = None
            if len(self._reported) > MAX_REPORTED_EQUIVOCATIONS:
                self._reported.popitem(last=False)
            self._actions.append(report)

    def clear(self) -> None:
        self._actions, self._records = [], []

    def take(self) -> list[Action]:
        """The step's actions in the order the host must carry them out; empties the
        outbox for the next step."""
        actions = self._actions
        if self._records:
            actions.insert(0, Persist(tuple(self._records)))
        self.clear()
        return ordered(actions)

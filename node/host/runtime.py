"""The node runtime: drives the pure replica with real time, a transport and a store.

One task owns the replica. It takes the events that are ready (frames, submissions,
due timers), steps the replica through each, and carries out all resulting actions in
the fixed order persist (fsync) -> send -> apply committed blocks -> answer clients.
Disk work (LMDB commits with fsync) runs in a worker thread so the event loop keeps
receiving. Channels are bounded:

* events (frames and submissions) -> replica: ``EVENT_QUEUE``; when full, the network
  receive task waits, which back-pressures peers (their queues to us fill and reset);
* block requests -> block server: ``SERVE_QUEUE``; when full, the request is dropped
  (the requester times out and asks another member);
* transaction gossip -> admission: ``GOSSIP_BACKLOG_BYTES`` per sending member; when
  full, that member's gossip is dropped (gossip may be). Admission checks signatures,
  far slower than reading a frame, so it runs in its own task, one frame per member in
  turn: a member flooding bad gossip cannot hold up consensus messages or other
  members' gossip (the primary learns of transactions submitted elsewhere only so).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from consensus.blocks import Block, Certificate
from consensus.crypto import Signer
from consensus.durable import RECORDS, DurableState, Record, StableRecord
from consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Event,
    MessageArrived,
    Persist,
    RejectRequest,
    ReportEquivocation,
    RequestArrived,
    Send,
    SetTimer,
    Start,
    Timer,
    TimerFired,
)
from consensus.membership import Membership
from consensus.messages import BlockRequest, BlockResponse, CertifiedBatch
from consensus.params import Params
from consensus.replica import Replica
from net.transport import Transport
from net.wire import (
    DetailsAck,
    DisclosureAsk,
    DisclosureReply,
    PrivateDetails,
    PsiFrame,
    TxGossip,
)
from node.host.latency import LatencyHistogram
from node.host.mempool import Mempool
from node.ledger.application import Application
from node.ledger.interface import Ledger
from node.ledger.layout import BlockIndex
from node.ledger.transactions import TxRejected

log = logging.getLogger("crosstrace.node")

EVENT_QUEUE = 8192
SERVE_QUEUE = 16
MAX_EVENTS_PER_ROUND = 512
GOSSIP_BATCH = 256
# How often submitted transactions are gossiped: each frame costs a Noise seal, a
# frame and a worker-thread trip at every peer, so frames carry what gathered meanwhile.
GOSSIP_INTERVAL_S = 0.01
GOSSIP_BACKLOG_BYTES = 4 * 1024 * 1024
COMPACT_EVERY_RECORDS = 20_000
MEMPOOL_TTL_MS = 10 * 60 * 1000
EXPIRY_CHECK_S = 1.0


_MEMPOOL_REFUSALS = {
    "duplicate": "this transaction is already pending or committed",
    "too_large": "the transaction is larger than one member's share of the mempool",
    "member_quota": "this member already holds its fair share of the mempool; retry later",
    "full": "the mempool is full; retry later",
}


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class SubmitResult:
    tx_id: bytes
    accepted: bool
    code: str = "accepted"
    message: str = ""


@dataclass
class RuntimeStats:
    steps: int = 0
    rounds: int = 0
    blocks_committed: int = 0
    txs_committed: int = 0
    equivocations: int = 0
    gossip_shed: int = 0  # gossip frames dropped on a member's full admission backlog
    # Every latency goes into the histogram (constant memory); the most recent samples
    # are also kept as they are, for benchmarks and tests.
    commit_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    commit_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class NodeRuntime:
    def __init__(
        self,
        *,
        member: int,
        signer: Signer,
        membership: Membership,
        params: Params,
        ledger: Ledger,
        transport: Transport,
        application: Application,
        mempool: Mempool,
        clock_ms: Callable[[], int] = wall_clock_ms,
        mempool_ttl_ms: int = MEMPOOL_TTL_MS,
    ) -> None:
        self.member = member
        self.signer = signer
        self.membership = membership
        self.params = params
        self.ledger = ledger
        self.transport = transport
        self.app = application
        self.mempool = mempool
        self.clock_ms = clock_ms
        self.mempool_ttl_ms = mempool_ttl_ms
        # Called on the event loop with each group of blocks just stored, before the
        # clients waiting for their transactions are woken: state derived from the
        # ledger (the case registry) is current by the time a client hears of a commit.
        self.on_blocks_stored: list[Callable[[Sequence[tuple[Block, BlockIndex]]], None]] = []
        self.stats = RuntimeStats()
        self.durable = DurableState()
        self._durable_records = 0
        self.replica: Replica | None = None
        self._timers: dict[Timer, float] = {}
        self._events_in, self._events_out = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._serve_in, self._serve_out = trio.open_memory_channel[tuple[int, BlockRequest]](
            SERVE_QUEUE
        )
        self._gossip: list[bytes] = []
        self._gossip_backlog: dict[int, deque[TxGossip]] = {}
        self._gossip_backlog_bytes: dict[int, int] = {}
        self._gossip_arrived = trio.Event()
        self._waiters: dict[bytes, trio.Event] = {}
        self._waiting: dict[bytes, int] = {}
        self._submitted_at: dict[bytes, float] = {}
        self._height_changed = trio.Event()
        self.started = trio.Event()
        # Private details and PSI runs bypass consensus: their services
        # (``node.details.service``, ``node.psi.service``) register here, each for its own
        # frame types (a handler must not block: it queues and returns).
        self.frame_handlers: dict[type, Callable[[int, Any], None]] = {}

    # ------------------------------------------------------------------ public API

    @property
    def height(self) -> int:
        return self.replica.executed if self.replica is not None else self.ledger.tip()[0]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._restore()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._serve_loop)
            nursery.start_soon(self._gossip_loop)
            nursery.start_soon(self._admission_loop)
            nursery.start_soon(self._expiry_loop)
            self.started.set()
            task_status.started()
            await self._drive()

    async def submit(self, tx_bytes: bytes) -> SubmitResult:
        """Validate, admit to the mempool and hand to consensus; gossip to the others."""
        [result] = await self.submit_batch([tx_bytes])
        return result

    async def submit_batch(self, txs: Sequence[bytes]) -> list[SubmitResult]:
        """``submit`` for many transactions, with one trip to the worker thread."""
        now = self.clock_ms()
        checked = await trio.to_thread.run_sync(self.app.check_batch, list(txs), now)
        results: list[SubmitResult] = []
        for tx_bytes, outcome in zip(txs, checked, strict=True):
            try:
                if isinstance(outcome, TxRejected):
                    raise outcome
                validated = self.app.accept(outcome)
            except TxRejected as exc:
                results.append(SubmitResult(b"", False, str(exc.code), exc.message))
                continue
            added = self.mempool.add(validated.tx_id, validated.tx.member, tx_bytes, now)
            if not added.accepted:
                reason = str(added.reason)
                refusal = _MEMPOOL_REFUSALS.get(reason, reason)
                results.append(SubmitResult(validated.tx_id, False, reason, refusal))
                continue
            self._submitted_at[validated.tx_id] = trio.current_time()
            await self._events_in.send(RequestArrived(tx_bytes))
            self._gossip.append(tx_bytes)
            results.append(SubmitResult(validated.tx_id, True))
        return results

    async def wait_committed(self, tx_id: bytes) -> None:
        """Return once ``tx_id`` is in the ledger; cancel it (a timeout) to give up."""
        if self.ledger.tx_location(tx_id) is not None:
            return
        event = self._waiters.setdefault(tx_id, trio.Event())
        self._waiting[tx_id] = self._waiting.get(tx_id, 0) + 1
        try:
            await event.wait()
        finally:
            # The last waiter to give up forgets the transaction, so clients that time
            # out on transactions that never commit cannot grow this table.
            left = self._waiting.pop(tx_id, 1) - 1
            if left:
                self._waiting[tx_id] = left
            elif not event.is_set():
                self._waiters.pop(tx_id, None)

    async def wait_height(self, height: int) -> None:
        """Until blocks up to ``height`` are stored (consensus executes a block before
        the worker thread has written it, so ``self.height`` may be ahead)."""
        while self.ledger.tip()[0] < height:
            await self._height_changed.wait()

    # ------------------------------------------------------------------ start-up

    async def _restore(self) -> None:
        encoded = await trio.to_thread.run_sync(self.ledger.consensus_records)
        for data in encoded:
            self.durable.apply(RECORDS.decode(data))
        self._durable_records = len(encoded)
        height, tip_hash = self.ledger.tip()
        self.replica = Replica(
            self.member,
            self.signer,
            self.membership,
            self.params,
            # The stable checkpoint may lie above the ledger tip when the node stopped
            # between persisting and applying; the replica then fetches the gap.
            durable=copy.deepcopy(self.durable),
            tip_height=height,
            tip_hash=tip_hash,
            check_request=self.app.check_proposed,
        )
        log.info(
            "member %d restored: height %d, view %d%s",
            self.member,
            height,
            self.durable.view,
            "" if self.durable.view_active else " (view change in progress)",
        )
        await self._events_in.send(Start())

    # ------------------------------------------------------------------ tasks

    async def _receive_loop(self) -> None:
        while True:
            try:
                src, frame = await self.transport.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if not self.membership.is_member(src):
                continue
            if isinstance(
                frame, PrivateDetails | DetailsAck | PsiFrame | DisclosureAsk | DisclosureReply
            ):
                handler = self.frame_handlers.get(type(frame))
                if handler is not None:
                    handler(src, frame)
            elif isinstance(frame, TxGossip):
                self._queue_gossip(src, frame)
            elif isinstance(frame, BlockRequest):
                try:
                    self._serve_in.send_nowait((src, frame))
                except trio.WouldBlock:
                    log.debug("block server busy; dropping a request from %d", src)
            else:
                await self._events_in.send(MessageArrived(src, frame))

    def _queue_gossip(self, src: int, gossip: TxGossip) -> None:
        size = sum(len(tx) for tx in gossip.txs)
        backlog = self._gossip_backlog.setdefault(src, deque())
        held = self._gossip_backlog_bytes.get(src, 0)
        if backlog and held + size > GOSSIP_BACKLOG_BYTES:
            self.stats.gossip_shed += 1
            return
        backlog.append(gossip)
        self._gossip_backlog_bytes[src] = held + size
        self._gossip_arrived.set()

    async def _admission_loop(self) -> None:
        while True:
            while not any(self._gossip_backlog.values()):
                self._gossip_arrived = trio.Event()
                await self._gossip_arrived.wait()
            await self._admit_gossip(self._take_gossip())

    def _take_gossip(self) -> list[bytes]:
        """Up to ``GOSSIP_BATCH`` transactions, a frame from each member in turn: one
        trip to the worker thread for many small frames, and no member crowds out the
        others."""
        txs: list[bytes] = []
        while len(txs) < GOSSIP_BATCH and any(self._gossip_backlog.values()):
            for src, backlog in self._gossip_backlog.items():
                if backlog:
                    gossip = backlog.popleft()
                    self._gossip_backlog_bytes[src] -= sum(len(tx) for tx in gossip.txs)
                    txs.extend(gossip.txs)
        return txs

    async def _admit_gossip(self, txs: list[bytes]) -> None:
        now = self.clock_ms()
        checked = await trio.to_thread.run_sync(self.app.check_batch, txs, now)
        for tx_bytes, result in zip(txs, checked, strict=True):
            if isinstance(result, TxRejected):
                continue
            try:
                validated = self.app.accept(result)
            except TxRejected:
                continue
            added = self.mempool.add(validated.tx_id, validated.tx.member, tx_bytes, now)
            if added.accepted:
                await self._events_in.send(RequestArrived(tx_bytes))

    async def _expiry_loop(self) -> None:
        """Drop transactions that waited too long (never proposed, or stranded by a
        client that went away mid-submission), so the mempool cannot silt up."""
        while True:
            await trio.sleep(EXPIRY_CHECK_S)
            expired = self.mempool.expire(self.clock_ms(), self.mempool_ttl_ms)
            if expired:
                log.info(
                    "%d transactions left the mempool unconfirmed after %d s",
                    len(expired),
                    self.mempool_ttl_ms // 1000,
                )

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(GOSSIP_INTERVAL_S)
            if not self._gossip:
                continue
            batch, self._gossip = self._gossip[:GOSSIP_BATCH], self._gossip[GOSSIP_BATCH:]
            frame = TxGossip(tuple(batch))
            for peer in range(self.membership.n):
                if peer != self.member:
                    self.transport.send_nowait(peer, frame)

    async def _serve_loop(self) -> None:
        async for src, req in self._serve_out:
            if req.sender != src or not req.verify(self.membership):
                continue
            last = min(req.to_height, req.from_height + self.params.sync_batch_blocks - 1)
            rows = await trio.to_thread.run_sync(self.ledger.blocks_range, req.from_height, last)
            entries = tuple(CertifiedBatch(block.to_batch(), cert) for block, cert in rows)
            self.transport.send_nowait(src, BlockResponse(entries))

    async def _drive(self) -> None:
        assert self.replica is not None
        while True:
            events = await self._next_events()
            actions: list[Action] = []
            now = self.clock_ms()
            view_before = self.replica.view
            for event in events:
                actions.extend(self.replica.step(event, now))
            if self.replica.view != view_before:
                log.warning(
                    "view change: view %d -> %d (primary of the new view: member %d) at "
                    "height %d, %d requests pending",
                    view_before,
                    self.replica.view,
                    self.replica.view % self.membership.n,
                    self.replica.executed,
                    len(self.replica.requests.pending),
                )
            self.stats.steps += len(events)
            self.stats.rounds += 1
            await self._carry_out(actions)

    async def _next_events(self) -> list[Event]:
        due = self._due_timers()
        if due:
            return due
        deadline = min(self._timers.values(), default=math.inf)
        events: list[Event] = []
        with trio.move_on_at(deadline):
            events.append(await self._events_out.receive())
        while len(events) < MAX_EVENTS_PER_ROUND:
            try:
                events.append(self._events_out.receive_nowait())
            except trio.WouldBlock:
                break
        return events + self._due_timers()

    def _due_timers(self) -> list[Event]:
        now = trio.current_time()
        due = [t for t, at in self._timers.items() if at <= now]
        for timer in due:
            del self._timers[timer]
        return [TimerFired(t) for t in sorted(due, key=lambda t: t.value)]

    # ------------------------------------------------------------------ actions

    async def _carry_out(self, actions: Sequence[Action]) -> None:
        records: list[Record] = []
        commits: list[tuple[Block, Certificate]] = []
        for action in actions:
            if isinstance(action, Persist):
                records.extend(action.records)
            elif isinstance(action, CommitBlock):
                commits.append((action.block, action.certificate))
        if records:
            await self._persist(records)
        for action in actions:
            match action:
                case Send(to, message):
                    self.transport.send_nowait(to, message)
                case Broadcast(message):
                    for peer in range(self.membership.n):
                        if peer != self.member:
                            self.transport.send_nowait(peer, message)
        if commits:
            await self._apply(commits)
        for action in actions:
            match action:
                case SetTimer(timer, delay_ms):
                    self._timers[timer] = trio.current_time() + delay_ms / 1000
                case CancelTimer(timer):
                    self._timers.pop(timer, None)
                case RejectRequest(rid, reason):
                    log.info("consensus refused request %s: %s", rid.hex()[:12], reason)
                case ReportEquivocation():
                    self.stats.equivocations += 1
                    log.warning("equivocation evidence: %s", action)

    async def _persist(self, records: list[Record]) -> None:
        encoded = [RECORDS.encode(r) for r in records]
        await trio.to_thread.run_sync(self.ledger.append_consensus_records, encoded)
        self.durable.apply_all(records)
        self._durable_records += len(encoded)
        if self._durable_records > COMPACT_EVERY_RECORDS and any(
            isinstance(r, StableRecord) for r in records
        ):
            snapshot = [RECORDS.encode(r) for r in self.durable.snapshot()]
            await trio.to_thread.run_sync(self.ledger.compact_consensus_records, snapshot)
            self._durable_records = len(snapshot)

    async def _apply(self, commits: list[tuple[Block, Certificate]]) -> None:
        indexes = self.app.index_blocks([block for block, _ in commits])
        indexed: list[tuple[Block, Certificate, BlockIndex]] = [
            (block, cert, index) for (block, cert), index in zip(commits, indexes, strict=True)
        ]
        await trio.to_thread.run_sync(self.ledger.append_blocks, indexed)
        if self.on_blocks_stored:
            stored = [(block, index) for block, _cert, index in indexed]
            for hook in self.on_blocks_stored:
                hook(stored)
        now = trio.current_time()
        for _block, _cert, index in indexed:
            self.stats.blocks_committed += 1
            self.stats.txs_committed += len(index.txs)
            tx_ids = [entry.tx_id for entry in index.txs]
            self.mempool.remove_committed(tx_ids)
            for tx_id in tx_ids:
                started = self._submitted_at.pop(tx_id, None)
                if started is not None:
                    latency_ms = (now - started) * 1000
                    self.stats.commit_latency.observe(latency_ms)
                    self.stats.commit_latency_ms.append(latency_ms)
                waiter = self._waiters.pop(tx_id, None)
                if waiter is not None:
                    waiter.set()
        self._height_changed.set()
        self._height_changed = trio.Event()

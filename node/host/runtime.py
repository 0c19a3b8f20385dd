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
from consensus.durable import DurableState, Record
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
from consensus.messages import BlockRequest, BlockResponse, CertifiedBatch, Proposal
from consensus.params import Params
from consensus.replica import Replica
from net.transport import Transport
from net.wire import (
    DetailsAck,
    DisclosureAsk,
    DisclosureReply,
    EvalReply,
    EvalRequest,
    PrivateDetails,
    PsiFrame,
    TxGossip,
)
from node.host.admission import Admission, AdmissionPolicy, RefuseReason
from node.host.gossip import ChecksUnderWay, GossipBacklog, stale_submissions
from node.host.latency import LatencyHistogram
from node.host.mempool import Mempool
from node.host.persistence import Persistence
from node.ledger.application import Application
from node.ledger.interface import Ledger
from node.ledger.layout import BlockIndex
from node.ledger.transactions import TxRejected, ValidatedTx
from node.ledger.transactions import tx_id as transaction_id
from node.refusals import Busy

log = logging.getLogger("crosstrace.node")

EVENT_QUEUE = 8192
SERVE_QUEUE = 16
MAX_EVENTS_PER_ROUND = 512
GOSSIP_BATCH = 256
# How often submitted transactions are gossiped: each frame costs a Noise seal, a
# frame and a worker-thread trip at every peer, so frames carry what gathered meanwhile.
GOSSIP_INTERVAL_S = 0.01
GOSSIP_BACKLOG_BYTES = 4 * 1024 * 1024
# Votes and the blocks committed in the same round go to disk in one transaction.
PERSIST_BLOCKS_WITH_VOTES = True
MEMPOOL_TTL_MS = 10 * 60 * 1000
EXPIRY_CHECK_S = 1.0
# Transactions submitted here and still pending a quarter of the view timeout after
# they were accepted are sent to the primary again, every quarter: see
# ``_regossip_stale``.
REGOSSIP_FRACTION_OF_VIEW_TIMEOUT = 0.25


_MEMPOOL_REFUSALS = {
    "duplicate": "this transaction is already pending or committed",
    "too_large": "the transaction is larger than one member's share of the mempool",
    "member_quota": "this member already holds its fair share of the mempool; retry later",
    "full": "the mempool is full; retry later",
}


_BUSY_MESSAGES = {
    RefuseReason.SHARE: "the node holds what it can commit for now and this member is past "
    "its fair share",
    RefuseReason.CAPACITY: "the mempool is full",
    RefuseReason.LAGGING: "the node is behind with checking what the other members sent",
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
    regossiped: int = 0  # transactions submitted here and gossiped again, still pending
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
        admission: AdmissionPolicy | None = None,
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
        # What this node commits per second and so how much it takes in
        # (node.host.admission); trio's clock, which starts with the run.
        self.admission = Admission(
            admission or AdmissionPolicy(), membership.n, mempool.max_txs, now_s=0.0
        )
        # Called on the event loop with each group of blocks just stored, before the
        # clients waiting for their transactions are woken: state derived from the
        # ledger (the case registry) is current by the time a client hears of a commit.
        self.on_blocks_stored: list[Callable[[Sequence[tuple[Block, BlockIndex]]], None]] = []
        self.stats = RuntimeStats()
        self.persistence = Persistence(ledger, application)
        self.replica: Replica | None = None
        self._timers: dict[Timer, float] = {}
        self._events_in, self._events_out = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._serve_in, self._serve_out = trio.open_memory_channel[tuple[int, BlockRequest]](
            SERVE_QUEUE
        )
        self._gossip: list[bytes] = []
        self._gossip_in = GossipBacklog(GOSSIP_BACKLOG_BYTES)
        self._being_checked = 0  # transactions of submit_batch calls under way
        self._waiters: dict[bytes, trio.Event] = {}
        self._waiting: dict[bytes, int] = {}
        self._submitted_at: dict[bytes, float] = {}
        self._height_changed = trio.Event()
        self.started = trio.Event()
        self._checks = ChecksUnderWay()
        # Private details and PSI runs bypass consensus: their services
        # (``node.details.service``, ``node.psi.service``) register here, each for its own
        # frame types (a handler must not block: it queues and returns).
        self.frame_handlers: dict[type, Callable[[int, Any], None]] = {}

    # ------------------------------------------------------------------ public API

    @property
    def durable(self) -> DurableState:
        """The replica's state as it is on disk."""
        return self.persistence.durable

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
            nursery.start_soon(self._regossip_loop)
            self.started.set()
            task_status.started()
            await self._drive()

    async def submit(self, tx_bytes: bytes) -> SubmitResult:
        """Validate, admit to the mempool and hand to consensus; gossip to the others."""
        [result] = await self.submit_batch([tx_bytes])
        return result

    async def submit_batch(
        self, txs: Sequence[bytes], *, bounded: bool = False
    ) -> list[SubmitResult]:
        """``submit`` for many transactions, with one trip to the worker thread.

        ``bounded`` (a client's ``POST /txs``): the whole batch is first weighed against
        the admission bound as this member's, before any signature is checked, and
        refused with ``Busy`` (nothing kept) past it. The node's own records (audit,
        PSI, disclosure) are not bounded: they are few, and a query waits for them."""
        if bounded:
            self.refuse_if_busy(len(txs))
        self._being_checked += len(txs)
        try:
            return await self._submit_checked(txs)
        finally:
            self._being_checked -= len(txs)

    async def _submit_checked(self, txs: Sequence[bytes]) -> list[SubmitResult]:
        now = self.clock_ms()
        checked = await trio.to_thread.run_sync(
            self.app.check_batch, list(txs), now, self.app.known_forms(txs)
        )
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
            await self._events_in.send(RequestArrived(tx_bytes, checked=True))
            self._gossip.append(tx_bytes)
            results.append(SubmitResult(validated.tx_id, True))
        return results

    def refuse_if_busy(self, count: int) -> None:
        """Raise ``Busy`` unless ``count`` more transactions of this member are within
        the admission bound (``node.host.admission``); the API also asks with a count of
        1 before it parses a request's body, so a refused client costs no parsing."""
        own = self.app.genesis.members[self.member].name
        gossip = self.gossip_unchecked
        decision = self.admission.decide(
            self.mempool.held_by(own) + self._being_checked,
            self._being_checked + gossip + len(self.mempool),
            count,
            trio.current_time(),
            unchecked_gossip=self.gossip_lag,
        )
        if decision.reason is not None:
            raise Busy(
                "overloaded",
                _BUSY_MESSAGES[decision.reason]
                + "; nothing was kept, send the same request again after retry_after seconds",
                {"reason": str(decision.reason)},
                retry_after_s=decision.retry_after_s,
            )

    @property
    def gossip_unchecked(self) -> int:
        """Peers' gossiped transactions waiting for this node's check: work it holds as
        much as its mempool's, and the part that grows when the node falls behind."""
        return self._gossip_in.unchecked

    @property
    def gossip_lag(self) -> int:
        """The unchecked gossip that makes this node's own clients wait (``lagging``)."""
        return self._gossip_in.lag(self.admission.policy.lag_limit_txs, self.membership.n - 1)

    @property
    def waiting_clients(self) -> int:
        """Transactions some client waits on (``wait_committed``)."""
        return len(self._waiting)

    async def wait_committed(self, tx_id: bytes) -> None:
        """Return once ``tx_id`` is in the ledger; cancel it (a timeout) to give up."""
        # A transaction still in the mempool is not committed yet (it leaves the pool
        # in ``_apply`` only after its block is stored, and its waiters are woken
        # then), so the ledger is asked only about the others: one read less per
        # transaction for every client that waits.
        if tx_id not in self.mempool and self.ledger.tx_location(tx_id) is not None:
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
        await trio.to_thread.run_sync(self.persistence.restore)
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
                frame,
                PrivateDetails
                | DetailsAck
                | PsiFrame
                | DisclosureAsk
                | DisclosureReply
                | EvalRequest
                | EvalReply,
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
                if isinstance(frame, Proposal) and self._from_the_primary(src, frame):
                    await self._precheck(frame.batch.txs)
                await self._events_in.send(MessageArrived(src, frame))

    def _from_the_primary(self, src: int, proposal: Proposal) -> bool:
        """Only the current primary's own proposals are worth checking ahead: anyone
        else's the replica drops unread, so checking them would let a member make this
        node verify signatures for nothing."""
        replica = self.replica
        sender = proposal.pre_prepare.sender
        return (
            replica is not None
            and src == sender == replica.primary
            and proposal.pre_prepare.view == replica.view
        )

    async def _precheck(self, txs: Sequence[bytes]) -> None:
        """Check, in a worker thread, the transactions of a proposal that this node has
        not checked yet (the primary proposes what was submitted to it before its gossip
        arrives here), so that the replica judges the proposal from checked forms on the
        event loop instead of verifying signatures there; the gossip of the same
        transactions later finds them checked too. Frames keep their order: the next one
        waits for this."""
        ids = [transaction_id(tx) for tx in txs]
        await self._checks.wait_for(ids)
        unknown = [(i, tx) for i, tx in zip(ids, txs, strict=True) if self.app.checked(i) is None]
        if unknown:
            with self._checks.checking([i for i, _ in unknown]):
                forms = await trio.to_thread.run_sync(
                    self.app.check_unclocked, [tx for _, tx in unknown]
                )
            self.app.remember(forms)

    def _queue_gossip(self, src: int, gossip: TxGossip) -> None:
        if not self._gossip_in.put(src, gossip):
            self.stats.gossip_shed += 1

    async def _admission_loop(self) -> None:
        while True:
            await self._gossip_in.wait()
            await self._admit_gossip(self._gossip_in.take(GOSSIP_BATCH))

    async def _admit_gossip(self, txs: list[bytes]) -> None:
        now = self.clock_ms()
        ids = [transaction_id(tx) for tx in txs]
        # Copies of what is held already (sent again, ``_regossip_stale``) cost a hash;
        # so does gossip that arrives after the proposal holding it committed (often:
        # a proposal is sent at once, gossip every few milliseconds).
        committed = self.replica.requests.is_committed if self.replica else lambda _: False
        fresh = [k for k, i in enumerate(ids) if i not in self.mempool and not committed(i)]
        if len(fresh) < len(ids):
            txs, ids = [txs[k] for k in fresh], [ids[k] for k in fresh]
        await self._checks.wait_for(ids)
        known = [self.app.checked(i) for i in ids]
        with self._checks.checking([i for i, f in zip(ids, known, strict=True) if f is None]):
            checked = await trio.to_thread.run_sync(self.app.check_batch, txs, now, known)
        self.app.remember(r if isinstance(r, ValidatedTx) else None for r in checked)
        for tx_bytes, result in zip(txs, checked, strict=True):
            if isinstance(result, TxRejected):
                continue
            if result.tx_id in self.mempool:
                continue  # twice in one batch
            # A peer's gossip gets the same bound, with slack (node.host.admission);
            # past it the transaction is dropped here and counted, never queued.
            member = result.tx.member
            if not self.admission.decide(
                self.mempool.held_by(member),
                len(self.mempool),
                1,
                trio.current_time(),
                gossip=True,
            ).admitted:
                continue
            try:
                validated = self.app.accept(result)
            except TxRejected:
                continue
            added = self.mempool.add(validated.tx_id, validated.tx.member, tx_bytes, now)
            if added.accepted:
                await self._events_in.send(RequestArrived(tx_bytes, checked=True))

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

    @property
    def regossip_after_s(self) -> float:
        return self.params.view_timeout_ms / 1000 * REGOSSIP_FRACTION_OF_VIEW_TIMEOUT

    async def _regossip_loop(self) -> None:
        previous = trio.current_time()
        while True:
            await trio.sleep(self.regossip_after_s)
            now = trio.current_time()
            self._regossip_stale(now, previous)
            previous = now

    def _regossip_stale(self, now: float, previous: float) -> None:
        """Send the primary again each transaction submitted here that is still pending
        ``regossip_after_s`` (a quarter of the view timeout) after it was accepted, and
        every ``regossip_after_s`` after that. Gossip is sent once and a peer may drop
        it (a full queue, its bound); a request the backups hold and the primary lacks
        is passed over by the ones it commits and taken for censored a view timeout
        later (``consensus.liveness``), and the client told "accepted" is owed its
        commit. Only the primary needs it; one that holds it drops the copy for the
        cost of a hash. Forgets the submissions that left the pool without committing
        (expired), which have no latency to measure."""
        after = self.regossip_after_s
        replica = self.replica
        primary = None if replica is None else replica.primary
        gone, again = stale_submissions(self._submitted_at, self.mempool, now, previous, after)
        for tx_id in gone:
            del self._submitted_at[tx_id]
        if primary is None or primary == self.member or not again:
            return
        self.stats.regossiped += len(again)
        for start in range(0, len(again), GOSSIP_BATCH):
            self.transport.send_nowait(
                primary, TxGossip(tuple(again[start : start + GOSSIP_BATCH]))
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
                    "height %d, %d requests pending; %s",
                    view_before,
                    self.replica.view,
                    self.replica.view % self.membership.n,
                    self.replica.executed,
                    len(self.replica.requests.pending),
                    self._why_view_changed(),
                )
            self.stats.steps += len(events)
            self.stats.rounds += 1
            await self._carry_out(actions)

    def _why_view_changed(self) -> str:
        assert self.replica is not None
        view, reason = self.replica.suspected
        if view == self.replica.view:
            return reason
        return "not suspected here: f + 1 others moved, or a view change timed out"

    async def _next_events(self) -> list[Event]:
        """What arrived, then the timers that are due: a replica back from a long stall
        (a slow fsync here) first sees the votes that came meanwhile, so it does not take
        its own stall for the primary's and suspect it (``consensus.liveness``)."""
        deadline = min(self._timers.values(), default=math.inf)
        events: list[Event] = []
        if deadline > trio.current_time():
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
        stored: list[tuple[Block, Certificate, BlockIndex]] | None = None
        if records and commits and PERSIST_BLOCKS_WITH_VOTES:
            # The round's votes and blocks in one write transaction: one fsync, not two.
            # The blocks are then durable before the votes leave, which is more than
            # safety asks for, never less; the indexing this puts before the sends is
            # cheap next to an fsync and a second trip to a worker thread.
            stored = await self.persistence.persist(records, commits)
        elif records:
            await self.persistence.persist(records)
        for action in actions:
            match action:
                case Send(to, message):
                    self.transport.send_nowait(to, message)
                case Broadcast(message):
                    for peer in range(self.membership.n):
                        if peer != self.member:
                            self.transport.send_nowait(peer, message)
        if commits:
            await self._apply(commits, stored)
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

    async def _apply(
        self,
        commits: list[tuple[Block, Certificate]],
        already_stored: list[tuple[Block, Certificate, BlockIndex]] | None = None,
    ) -> None:
        """Store ``commits`` (unless ``persist`` did: ``already_stored``) and answer
        for them."""
        indexed = already_stored
        if indexed is None:
            indexed = await self.persistence.store_blocks(commits)
        self.app.forget_indexed([index for _block, _cert, index in indexed])
        if self.on_blocks_stored:
            stored = [(block, index) for block, _cert, index in indexed]
            for hook in self.on_blocks_stored:
                hook(stored)
        now = trio.current_time()
        self.admission.committed(sum(len(index.txs) for _b, _c, index in indexed), now)
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

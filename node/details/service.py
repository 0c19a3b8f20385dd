"""Delivering private details to the members entitled to them, and keeping them.

One service per node, running in the node's nursery beside the runtime
(``await nursery.start(service.run)``). It takes the ``PrivateDetails`` and
``DetailsAck`` frames from the runtime's receive loop (``runtime.frame_handlers``: the
handler only queues, on a bounded inbox) and owns the private store.

Submitting (``submit_with_details``). The local API hands over a transaction signed by
this node's member (a report or a link with its details, or a case with its written
justification), with the salt, the details and the recipients the submitter named
(default: the members with the investigator role; for a case the API names the members
that approve cases, ``records.case_recipients``; the submitter is always one). The
commitment in the transaction must match, then the record and one outbox entry per
other recipient are written in one LMDB transaction before the transaction is
submitted; if consensus refuses it, they are removed again. The recipients are stored
with the submitter's copy only, never on the ledger: who shared with whom is sensitive
in itself.

Delivering. Every outbox entry is sent as a ``PrivateDetails`` frame straight to that
member over its Noise session, never gossiped and never to anyone else. The frame is
not droppable: a full per-peer queue resets the connection (counted, logged) rather than
dropping it silently, and in any case the entry stays in the outbox, re-sent with
capped exponential backoff (sooner when the member reconnects), until the member
acknowledges it or retention deletes the details. After the first attempt, re-sending
waits until the transaction is committed here: before that, there is nothing a
recipient could check the details against. At most ``SENDS_PER_PEER`` frames go to one
member per tick, and none to a member the transport knows to be disconnected, so a
member that is down does not fill its send queue with copies.

Receiving. A recipient keeps details only if (a) the sending member is the member that
signed the transaction and (b) their commitment matches the committed transaction's
(``node.details.records.check_delivery``). Then it stores them and acknowledges;
otherwise it logs and counts the refusal (``rejected[reason]``), stores nothing, and
answers with the reason, which ends the sender's retries. Details that arrive before
the transaction is committed here wait in a bounded in-memory pending area (per sending
member: ``PENDING_PER_MEMBER`` frames and ``PENDING_BYTES_PER_MEMBER`` bytes, for
``pending_ttl_s``) and are checked as soon as the block that holds it is stored. Nothing
is acknowledged before it is stored, so what a full pending area refuses, or a restart
forgets, comes again from the sender's outbox: the pending area never needs to be
durable. The signer check comes before any lookup of what is held, so a member cannot
learn from the answers whether this node received another member's details.

Retention. Every ``retention_check_s`` the records stored more than ``retention_ms``
ago are deleted with their outbox entries (the commitment stays on the ledger, which is
never touched), each deletion logged with the tx id and the age, and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from consensus.codec import DecodeError
from net.transport import Transport
from net.wire import DetailsAck, PrivateDetails
from node.details.records import (
    Details,
    UnknownMembers,
    check_delivery,
    committed_commitment,
    decode_details,
    encode_details,
    matches,
    resolve_recipients,
)
from node.details.store import Deleted, PrivateRecord, PrivateStore
from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime, SubmitResult
from node.ledger.store import LedgerStore
from node.ledger.transactions import TxRejected, decode_tx, tx_id
from node.refusals import Conflict, Invalid, NotFound, Rejected
from node.setup.genesis import Genesis

log = logging.getLogger("crosstrace.private")

DAY_MS = 24 * 3600 * 1000
INBOX_FRAMES = 1024
SENDS_PER_PEER = 16
PENDING_PER_MEMBER = 256
PENDING_BYTES_PER_MEMBER = 4 * 1024 * 1024
TICK_S = 0.5
RETRY_BASE_S = 1.0
RETRY_CAP_S = 30.0
RETENTION_CHECK_S = 60.0
PENDING_TTL_S = 600.0
EXPIRE_BATCH = 1000  # deletions per write transaction
# Statuses after which a recipient holds the details, or never will by retrying.
HELD = ("stored", "expired")
REFUSALS = ("mismatch", "not_signer", "no_commitment")


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PrivateStats:
    shared: int = 0  # details this member submitted and shares
    stored: int = 0  # details received, checked and stored
    sent: int = 0  # PrivateDetails frames sent, retries included
    acknowledged: int = 0  # deliveries a recipient confirmed
    refused: int = 0  # deliveries a recipient refused for good
    deleted: int = 0  # records deleted by retention
    # Deliveries this node refused or could not take: mismatch, not_signer,
    # no_commitment (refused for good), pending_full, pending_expired, inbox_full
    # (the sender will send them again).
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PrivateStatistics:
    stats: PrivateStats
    held: int  # records in the private store
    outbox: int  # deliveries not yet acknowledged
    pending: int  # received details waiting for their transaction to commit


@dataclass(frozen=True)
class DetailsView:
    tx_id: bytes
    details: dict[str, str]
    salt: bytes
    sender: str
    stored_ms: int
    commitment: bytes | None  # on the ledger; None while not committed here
    height: int | None
    matches: bool | None  # None while the transaction is not committed here
    shared_with: tuple[str, ...]  # the submitter's copy only
    undelivered: tuple[str, ...]  # of those, the members that have not acknowledged


@dataclass
class _Attempt:
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class _Held:
    frame: PrivateDetails
    arrived: float


class PrivateDetailsService:
    def __init__(
        self,
        runtime: NodeRuntime,
        ledger: LedgerStore,
        store: PrivateStore,
        genesis: Genesis,
        *,
        retention_ms: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
        tick_s: float = TICK_S,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
        retention_check_s: float = RETENTION_CHECK_S,
        pending_ttl_s: float = PENDING_TTL_S,
    ) -> None:
        if retention_ms <= 0:
            raise ValueError("retention_ms must be positive")
        self.runtime = runtime
        self.ledger = ledger
        self.store = store
        self.genesis = genesis
        self.me = runtime.member
        self.name = genesis.members[self.me].name
        self.retention_ms = retention_ms
        self.clock_ms = clock_ms
        self.tick_s = tick_s
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.retention_check_s = retention_check_s
        self.pending_ttl_s = pending_ttl_s
        self.stats = PrivateStats()
        self._index = {m.name: i for i, m in enumerate(genesis.members)}
        self._outbox: dict[tuple[bytes, int], _Attempt] = {}
        self._pending: dict[tuple[int, bytes], _Held] = {}
        self._pending_bytes: dict[int, int] = {}
        self._sessions: dict[int, int] = {}
        self._kick = trio.Event()
        self._blocks_stored = trio.Event()
        self._inbox_in, self._inbox_out = trio.open_memory_channel[
            tuple[int, PrivateDetails | DetailsAck]
        ](INBOX_FRAMES)
        runtime.frame_handlers[PrivateDetails] = self._on_frame
        runtime.frame_handlers[DetailsAck] = self._on_frame
        runtime.on_blocks_stored.append(lambda _blocks: self._blocks_stored.set())

    @property
    def transport(self) -> Transport:
        return self.runtime.transport

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Deliveries owed from before a restart start again at once.
        for key in await trio.to_thread.run_sync(self.store.outbox):
            self._outbox[key] = _Attempt()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._inbox_loop)
            nursery.start_soon(self._commit_loop)
            nursery.start_soon(self._delivery_loop)
            nursery.start_soon(self._retention_loop)
            task_status.started()

    def statistics(self) -> PrivateStatistics:
        return PrivateStatistics(
            stats=self.stats,
            held=self.store.count(),
            outbox=len(self._outbox),
            pending=len(self._pending),
        )

    # ------------------------------------------------------------------ submitting

    async def submit_with_details(
        self,
        tx_bytes: bytes,
        salt: bytes,
        details: Details,
        recipients: Sequence[str] | None = None,
    ) -> tuple[SubmitResult, tuple[str, ...]]:
        """Keep the details, submit the transaction, deliver them once it is accepted.
        Returns the submission result and the recipients (this member included)."""
        new_tx, shared_with = self._check_share(tx_bytes, salt, details, recipients)
        record = PrivateRecord(
            salt, encode_details(details), self.name, self.clock_ms(), shared_with
        )
        others = [self._index[n] for n in shared_with if n != self.name]
        if not await trio.to_thread.run_sync(self.store.put, new_tx, record, others):
            raise Conflict("already_shared", "details for this transaction are already held")
        result = await self.runtime.submit(tx_bytes)
        if not result.accepted and result.code != "duplicate":
            # Nothing on the ledger will stand behind them: take them back.
            await trio.to_thread.run_sync(self.store.forget, new_tx)
            return result, shared_with
        self.stats.shared += 1
        # Only now do the deliveries start: details of a refused transaction go nowhere.
        for member in others:
            self._outbox[(new_tx, member)] = _Attempt()
        self._kick.set()
        log.info(
            "private details of tx %s kept; sharing with %d other members",
            new_tx.hex()[:16],
            len(others),
        )
        return result, shared_with

    def _check_share(
        self, tx_bytes: bytes, salt: bytes, details: Details, recipients: Sequence[str] | None
    ) -> tuple[bytes, tuple[str, ...]]:
        """The tx id and the recipients, or a refusal saying why not."""
        try:
            tx = decode_tx(tx_bytes)
            member, committed = committed_commitment(tx_bytes)
        except (DecodeError, TxRejected):
            raise Invalid("malformed", "the transaction does not decode") from None
        if tx.member != self.name:
            raise Rejected(
                "not_own",
                f"the transaction is signed by {member!r}; this node shares only the details "
                f"of {self.name!r}'s transactions, as recipients accept them from the signer only",
            )
        if committed is None:
            raise Rejected("no_commitment", "the transaction commits to no details")
        if not matches(salt, encode_details(details), committed):
            raise Rejected(
                "mismatch", "the details and salt do not match the transaction's commitment"
            )
        try:
            wanted = resolve_recipients(self.genesis, self.name, recipients)
        except UnknownMembers as exc:
            raise Invalid("unknown_member", str(exc)) from None
        return tx_id(tx_bytes), wanted

    # ------------------------------------------------------------------ reading

    def lookup(self, wanted: bytes) -> DetailsView:
        """The details of ``wanted`` held here, or ``NotFound`` with the reason as its code."""
        record = self.store.get(wanted)
        tx_bytes = self.ledger.tx(wanted)
        committed: bytes | None = None
        if tx_bytes is not None:
            _, committed = committed_commitment(tx_bytes)
        if record is None:
            raise self._not_held(wanted, tx_bytes is not None, committed)
        location = self.ledger.tx_location(wanted)
        undelivered = tuple(self.genesis.members[m].name for m in self.store.pending_for(wanted))
        return DetailsView(
            tx_id=wanted,
            details=decode_details(record.details).as_dict(),
            salt=record.salt,
            sender=record.sender,
            stored_ms=record.stored_ms,
            commitment=committed,
            height=None if location is None else location[0],
            matches=None if tx_bytes is None else matches(record.salt, record.details, committed),
            shared_with=record.shared_with,
            undelivered=undelivered,
        )

    def _not_held(self, wanted: bytes, on_ledger: bool, committed: bytes | None) -> NotFound:
        gone = self.store.deleted(wanted)
        if gone is not None:
            deleted_ms, stored_ms = gone
            days = (deleted_ms - stored_ms) / DAY_MS
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(deleted_ms / 1000))
            return NotFound(
                "deleted",
                f"deleted by retention on {when}, {days:.1f} days after they were stored; "
                "the commitment stays on the ledger",
            )
        if any(key[1] == wanted for key in self._pending):
            return NotFound(
                "pending", "details arrived, but the transaction is not committed here yet"
            )
        if not on_ledger:
            return NotFound("not_found", "no committed transaction with this id is known")
        if committed is None:
            return NotFound("no_commitment", "the transaction commits to no private details")
        return NotFound(
            "not_entitled",
            "this node holds no details for the transaction: its member is not among the "
            "recipients the submitter named, or they have not arrived yet",
        )

    # ------------------------------------------------------------------ frames

    def _on_frame(self, src: int, frame: PrivateDetails | DetailsAck) -> None:
        try:
            self._inbox_in.send_nowait((src, frame))
        except trio.WouldBlock:
            # The sender's outbox sends the details again; a lost ack means a resend,
            # which is acknowledged again.
            self._reject("inbox_full", src, frame.tx_id)
        except trio.ClosedResourceError:
            pass

    async def _inbox_loop(self) -> None:
        async for src, frame in self._inbox_out:
            if isinstance(frame, PrivateDetails):
                await self._receive(src, frame)
            else:
                await self._acknowledged(src, frame)

    async def _receive(self, src: int, frame: PrivateDetails) -> None:
        tx_bytes = self.ledger.tx(frame.tx_id)
        if tx_bytes is None:
            self._hold(src, frame)
            return
        sender = self.genesis.members[src].name
        status = check_delivery(tx_bytes, sender, frame.salt, frame.details)
        if status == "stored":
            record = PrivateRecord(frame.salt, frame.details, sender, self.clock_ms(), ())
            if await trio.to_thread.run_sync(self.store.put, frame.tx_id, record):
                self.stats.stored += 1
                log.info("private details of tx %s from %s stored", frame.tx_id.hex()[:16], sender)
            elif self.store.deleted(frame.tx_id) is not None:
                status = "expired"  # retention deleted them here; they are not taken back
        else:
            self._reject(status, src, frame.tx_id)
        self.transport.send_nowait(src, DetailsAck(frame.tx_id, status))

    def _hold(self, src: int, frame: PrivateDetails) -> None:
        key = (src, frame.tx_id)
        size = len(frame.details)
        old = self._pending.pop(key, None)
        held = self._pending_bytes.get(src, 0) - (len(old.frame.details) if old else 0)
        count = sum(1 for member, _ in self._pending if member == src)
        if count >= PENDING_PER_MEMBER or held + size > PENDING_BYTES_PER_MEMBER:
            self._pending_bytes[src] = held
            self._reject("pending_full", src, frame.tx_id)
            return
        self._pending[key] = _Held(frame, trio.current_time())
        self._pending_bytes[src] = held + size

    async def _commit_loop(self) -> None:
        """Check held details whenever blocks are stored; expire the ones held too long."""
        while True:
            with trio.move_on_after(max(self.tick_s, 1.0)):
                await self._blocks_stored.wait()
            self._blocks_stored = trio.Event()
            if self._pending:
                await self.recheck_pending()
            else:
                await trio.lowlevel.checkpoint()

    async def recheck_pending(self) -> None:
        now = trio.current_time()
        for key, held in list(self._pending.items()):
            src, wanted = key
            if self.ledger.tx_location(wanted) is not None:
                self._unhold(key)
                await self._receive(src, held.frame)
            elif now - held.arrived > self.pending_ttl_s:
                self._unhold(key)
                self._reject("pending_expired", src, wanted)

    def _unhold(self, key: tuple[int, bytes]) -> None:
        held = self._pending.pop(key, None)
        if held is not None:
            self._pending_bytes[key[0]] -= len(held.frame.details)

    async def _acknowledged(self, src: int, ack: DetailsAck) -> None:
        key = (ack.tx_id, src)
        if key not in self._outbox:
            return  # a duplicate ack, or one for a delivery retention ended
        await trio.to_thread.run_sync(self.store.acknowledge, ack.tx_id, src)
        self._outbox.pop(key, None)
        who = self.genesis.members[src].name
        if ack.status in HELD:
            self.stats.acknowledged += 1
            log.info("%s holds the private details of tx %s", who, ack.tx_id.hex()[:16])
        else:
            self.stats.refused += 1
            log.warning(
                "%s refused the private details of tx %s: %s",
                who,
                ack.tx_id.hex()[:16],
                ack.status,
            )

    def _reject(self, reason: str, src: int, wanted: bytes) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        # A refusal for good says something is wrong with the sender; the others are
        # load, counted, and retried by the sender: not worth a line each.
        level = logging.WARNING if reason in REFUSALS else logging.DEBUG
        log.log(
            level,
            "private details of tx %s from %s not stored: %s",
            wanted.hex()[:16],
            self.genesis.members[src].name,
            reason,
        )

    # ------------------------------------------------------------------ delivering

    async def _delivery_loop(self) -> None:
        while True:
            with trio.move_on_after(self.tick_s):
                await self._kick.wait()
            self._kick = trio.Event()
            self.deliver_due()
            await trio.lowlevel.checkpoint()

    def deliver_due(self) -> None:
        """Send every outbox entry that is due, a bounded number per member."""
        now = trio.current_time()
        connected = self._connected_members()
        sent: dict[int, int] = {}
        for key, attempt in list(self._outbox.items()):
            wanted, member = key
            if attempt.next_at > now or sent.get(member, 0) >= SENDS_PER_PEER:
                continue
            if connected is not None and member not in connected:
                continue
            if attempt.attempts and self.ledger.tx_location(wanted) is None:
                continue  # sent once already; again only when recipients can check it
            record = self.store.get(wanted)
            if record is None:  # taken back or deleted meanwhile
                self._outbox.pop(key, None)
                continue
            self.transport.send_nowait(member, PrivateDetails(wanted, record.salt, record.details))
            self.stats.sent += 1
            sent[member] = sent.get(member, 0) + 1
            attempt.attempts += 1
            attempt.next_at = now + min(
                self.retry_cap_s, self.retry_base_s * 2.0 ** min(attempt.attempts - 1, 30)
            )

    def _connected_members(self) -> set[int] | None:
        """Members with a session now (None when the transport cannot tell); a member
        that reconnected since the last look gets its deliveries retried at once."""
        peers = peer_statistics(self.runtime)
        if peers is None:
            return None
        for member, peer in peers.items():
            if peer.sessions != self._sessions.get(member, peer.sessions):
                for (_, m), attempt in self._outbox.items():
                    if m == member:
                        attempt.next_at = 0.0
            self._sessions[member] = peer.sessions
        return {m for m, p in peers.items() if p.connected}

    # ------------------------------------------------------------------ retention

    async def _retention_loop(self) -> None:
        while True:
            gone = await self.run_retention()
            if len(gone) < EXPIRE_BATCH:
                await trio.sleep(self.retention_check_s)

    async def run_retention(self) -> list[Deleted]:
        """Delete what is older than the retention period; log and count each."""
        now = self.clock_ms()
        gone = await trio.to_thread.run_sync(
            self.store.expire, now - self.retention_ms, now, EXPIRE_BATCH
        )
        for deleted in gone:
            self.stats.deleted += 1
            for member in deleted.undelivered:
                self._outbox.pop((deleted.tx_id, member), None)
            never = ", ".join(self.genesis.members[m].name for m in deleted.undelivered)
            log.info(
                "private details of tx %s deleted by retention, %.1f days after they were stored%s",
                deleted.tx_id.hex(),
                (now - deleted.stored_ms) / DAY_MS,
                f"; never delivered to {never}" if never else "",
            )
        return gone

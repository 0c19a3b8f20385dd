"""Disclosure of the clear identifier behind an entity, under a case.

One service per node, in the node's nursery beside the runtime
(``await nursery.start(service.run)``). It takes the ``DisclosureAsk`` and
``DisclosureReply`` frames from the runtime's receive loop (the handler only queues on a
bounded inbox) and owns the disclosure store (``node.disclosure.store``).

Keeping (``keep_identifiers``). After the node accepted a report or link, the
submitting tools hand it the (type, pseudonym, normalised identifier) of each entity
they reported. The node keeps one only if the identifier is in normal form, hashes to
the pseudonym (this member's own evaluation, normally from the cache its report
filled), and one of this member's own transactions, committed or waiting in the
mempool, names that entity. The identifier is
never logged.

Requesting (``request``). The case must be active on this node's ledger and the entity
within its reach: in its scope, or at most ``max_depth`` links from an entity in its
scope (``reach``, by default breadth first over the ledger's link index; the API may
pass another checker). The members to ask are those whose committed reports and links
name the entity (this member aside); none is a refusal, and nothing is recorded or
sent. Otherwise the ``disclosure_request`` record (case, case tx, request id, entity;
the signer is the requester; never an identifier) is committed first, then a
``DisclosureAsk`` goes to each reporting member over its Noise session, re-sent every
``resend_s`` until that member answers.

Answering. A member that receives an ask reads the request's committed transaction
(an ask for a request not committed here yet is ignored: it comes again), checks that
the sender signed it, and decides: ``unknown`` when it keeps no identifier for the
entity, ``outside_scope`` (with the reason) when the case is not active or the entity is
out of reach as its own ledger shows, else by ``policy``: ``auto`` allows at once,
``queue`` holds the request for the operator (``pending``, ``allow``, ``deny``). Each
answer is recorded on the ledger (``disclosure_answer``: request id, request tx,
requester, outcome; the signer is the answerer; never the identifier) and then sent as a
``DisclosureReply`` to the requesting member only. A repeated ask gets the same reply
again, never a second record.

Checking. The requester takes a reply only from a member it asked, once per member, and
takes an ``allowed`` identifier only if it gives the requested pseudonym (evaluated
under the case, like a query); a wrong one is refused (outcome ``wrong_identifier``),
logged with the member that sent it (never the identifier), and not kept.

Retention. Every ``retention_check_s`` kept identifiers and received identifiers older
than ``retention_ms`` are deleted; the ledger records stay.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from net.transport import Transport
from net.wire import DisclosureAsk, DisclosureReply
from node.disclosure.reach import Reach, decoded, disclosure_reporters, ledger_reach, names
from node.disclosure.store import Answer, DisclosureStore, RequestRecord
from node.host.runtime import NodeRuntime
from node.identifiers.normalize import EntityType, NormalizationError, normalize
from node.identifiers.pseudonym import EntityRef
from node.ledger.cases import CaseRecord, CaseRegistry
from node.ledger.kinds import (
    DISCLOSURE_REQUEST_ID_SIZE,
    DisclosureAnswer,
    DisclosureRequest,
)
from node.ledger.store import LedgerStore
from node.ledger.transactions import (
    encode_tx,
    make_tx,
)
from node.pseudonyms.service import PseudonymService, Purpose
from node.refusals import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    Rejected,
    Unavailable,
)
from node.setup.genesis import Genesis
from node.setup.users import NODE_ACTOR

log = logging.getLogger("crosstrace.disclosure")

DAY_MS = 24 * 3600 * 1000
POLICIES = ("auto", "queue")
INBOX_FRAMES = 1024
RESEND_S = 2.0
RECORD_TIMEOUT_S = 30.0
RETENTION_CHECK_S = 60.0
WRONG = "wrong_identifier"


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class DisclosureStats:
    requested: int = 0
    asked: int = 0  # asks sent, resends included
    answered: dict[str, int] = field(default_factory=dict)  # by this member, by outcome
    received: dict[str, int] = field(default_factory=dict)  # by outcome, wrong ones included
    kept: int = 0  # identifiers this member reported, kept
    deleted: int = 0  # identifiers deleted by retention


@dataclass(frozen=True)
class KeepResult:
    entity: EntityRef
    kept: bool
    reason: str  # kept | already_kept | not_reported | not_normalised | mismatch


class DisclosureService:
    def __init__(
        self,
        runtime: NodeRuntime,
        ledger: LedgerStore,
        genesis: Genesis,
        store: DisclosureStore,
        *,
        pseudonyms: PseudonymService | None,
        policy: str = "queue",
        retention_ms: int,
        reach: Reach | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        resend_s: float = RESEND_S,
        record_timeout_s: float = RECORD_TIMEOUT_S,
        retention_check_s: float = RETENTION_CHECK_S,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        if retention_ms <= 0:
            raise ValueError("retention_ms must be positive")
        self.runtime = runtime
        self.ledger = ledger
        self.genesis = genesis
        self.store = store
        self.pseudonyms = pseudonyms
        self.policy = policy
        self.retention_ms = retention_ms
        self.reach = reach or ledger_reach(ledger)
        self.clock_ms = clock_ms
        self.resend_s = resend_s
        self.record_timeout_s = record_timeout_s
        self.retention_check_s = retention_check_s
        self.me = runtime.member
        self.name = genesis.members[self.me].name
        self.stats = DisclosureStats()
        self._index = {m.name: i for i, m in enumerate(genesis.members)}
        self._lock = trio.Lock()  # one read-modify-write of a request record at a time
        self._answering: set[bytes] = set()
        self.registry = CaseRegistry.load(genesis, ledger)
        runtime.on_blocks_stored.append(self.registry.apply_blocks)
        self._inbox_in, self._inbox_out = trio.open_memory_channel[
            tuple[int, DisclosureAsk | DisclosureReply]
        ](INBOX_FRAMES)
        runtime.frame_handlers[DisclosureAsk] = self._on_frame
        runtime.frame_handlers[DisclosureReply] = self._on_frame
        self._nursery: trio.Nursery | None = None

    @property
    def transport(self) -> Transport:
        return self.runtime.transport

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._inbox_loop)
            nursery.start_soon(self._resend_loop)
            nursery.start_soon(self._retention_loop)
            task_status.started()

    # ------------------------------------------------------------------ keeping

    async def keep_identifiers(
        self, items: Sequence[tuple[str, bytes, str, bytes | None]]
    ) -> list[KeepResult]:
        """(type, pseudonym, normalised identifier, optional tx id) of each entity this
        member reported; see the module docstring for when one is kept."""
        pseudonyms = self._need_pseudonyms()
        results = []
        for entity_type, pseudo, identifier, tx in items:
            try:
                entity = EntityRef(entity_type, pseudo)
            except ValueError as exc:
                raise Invalid("bad_entity", str(exc)) from None
            results.append(await self._keep(pseudonyms, entity, identifier, tx))
        return results

    async def _keep(
        self,
        pseudonyms: PseudonymService,
        entity: EntityRef,
        identifier: str,
        tx: bytes | None,
    ) -> KeepResult:
        try:
            normal = normalize(EntityType(entity.type), identifier) == identifier
        except (NormalizationError, ValueError):
            normal = False
        if not normal:
            return KeepResult(entity, False, "not_normalised")
        evaluated = await pseudonyms.refs([(entity.type, identifier)], Purpose.report())
        if evaluated.refs[0] != entity:
            return KeepResult(entity, False, "mismatch")
        if not self._reported_here(entity, tx):
            return KeepResult(entity, False, "not_reported")
        kept = await trio.to_thread.run_sync(self.store.keep, entity, identifier, self.clock_ms())
        if kept:
            self.stats.kept += 1
        return KeepResult(entity, kept, "kept" if kept else "already_kept")

    def _reported_here(self, entity: EntityRef, tx: bytes | None) -> bool:
        if tx is not None:
            entry = self.runtime.mempool.get(tx)
            found = None if entry is None else decoded(entry.data)
            if found is not None and found[0].member == self.name and names(found[1], entity):
                return True
        return self.name in disclosure_reporters(self.ledger, entity)

    # ------------------------------------------------------------------ requesting

    async def request(
        self, case_id: str, entity: EntityRef, actor: bytes = NODE_ACTOR
    ) -> RequestRecord:
        """Check, record and send a request (``actor``: the requesting user, recorded);
        the record as kept here."""
        self._need_pseudonyms()  # without them no answer could be checked
        if "investigator" not in self.genesis.members[self.me].roles:
            raise Forbidden("not_investigator", f"{self.name!r} has no investigator role")
        case = self._active_case(case_id)
        refusal = self.reach(case, entity)
        if refusal is not None:
            raise Forbidden("out_of_scope", refusal)
        asked = tuple(m for m in disclosure_reporters(self.ledger, entity) if m != self.name)
        if not asked:
            raise NotFound(
                "no_reporter", "no other member's committed report or link names this entity"
            )
        request_id = secrets.token_bytes(DISCLOSURE_REQUEST_ID_SIZE)
        now = self.clock_ms()
        body = DisclosureRequest(case_id, case.tx_id, request_id, entity, now, actor)
        request_tx = await self._record(DisclosureRequest.kind, body)
        record = RequestRecord(
            request_id, "requester", case_id, case.tx_id, request_tx, entity, self.name, asked,
            (), "open", now,
        )  # fmt: skip
        await trio.to_thread.run_sync(self.store.put_request, record)
        self.stats.requested += 1
        log.info(
            "disclosure request %s under case %s: asking %s",
            request_id.hex(),
            case_id,
            ", ".join(asked),
        )
        self._send_asks(record)
        return record

    def _active_case(self, case_id: str) -> CaseRecord:
        status = self.registry.status(case_id, self.clock_ms())
        if status is None:
            raise NotFound("no_case", f"there is no case {case_id!r} on the ledger")
        if not status.active:
            raise Forbidden(str(status.state), status.reason)
        return status.case

    def _send_asks(self, record: RequestRecord) -> None:
        answered = {a.member for a in record.answers}
        for member in record.asked:
            if member in answered:
                continue
            ask = DisclosureAsk(record.request_id, record.request_tx)
            self.transport.send_nowait(self._index[member], ask)
            self.stats.asked += 1

    async def _resend_loop(self) -> None:
        while True:
            await trio.sleep(self.resend_s)
            for record in await trio.to_thread.run_sync(self.store.requests):
                if record.role != "requester" or record.state != "open":
                    continue
                # Asked again only while the case is active: an answerer would refuse now.
                status = self.registry.status(record.case_id, self.clock_ms())
                if status is not None and status.active and status.case.tx_id == record.case_tx:
                    self._send_asks(record)

    # ------------------------------------------------------------------ reading

    def view(self, request_id: bytes) -> RequestRecord:
        record = self.store.request(request_id)
        if record is None:
            raise NotFound("not_found", "this node knows no disclosure request with this id")
        return record

    def views(self) -> list[RequestRecord]:
        return self.store.requests()

    def pending(self) -> list[RequestRecord]:
        """Requests held for this node's operator."""
        return [r for r in self.store.requests() if r.role == "answerer" and r.state == "queued"]

    async def allow(self, request_id: bytes, actor: bytes = NODE_ACTOR) -> RequestRecord:
        return await self._decide(request_id, "allowed", "allowed by the operator", actor)

    async def deny(
        self, request_id: bytes, reason: str = "", actor: bytes = NODE_ACTOR
    ) -> RequestRecord:
        return await self._decide(request_id, "denied", reason or "denied by the operator", actor)

    async def _decide(
        self, request_id: bytes, outcome: str, reason: str, actor: bytes
    ) -> RequestRecord:
        record = self.store.request(request_id)
        if record is None or record.role != "answerer":
            raise NotFound("not_found", "no disclosure request waits here with this id")
        if record.state != "queued" or request_id in self._answering:
            raise Conflict("answered", "this request was already answered")
        if outcome == "allowed":
            # The case may have closed or expired while the request waited.
            problem = self._scope_problem(record.case_id, record.entity, record.case_tx)
            if problem is not None:
                outcome, reason = "outside_scope", problem
        self._answering.add(request_id)
        try:
            return await self._answer(record, outcome, reason, actor)
        finally:
            self._answering.discard(request_id)

    # ------------------------------------------------------------------ frames

    def _on_frame(self, src: int, frame: DisclosureAsk | DisclosureReply) -> None:
        try:
            self._inbox_in.send_nowait((src, frame))
        except trio.WouldBlock:
            log.debug("disclosure inbox full; a frame from member %d dropped", src)
        except trio.ClosedResourceError:
            pass

    async def _inbox_loop(self) -> None:
        async for src, frame in self._inbox_out:
            try:
                if isinstance(frame, DisclosureAsk):
                    await self._on_ask(src, frame)
                else:
                    await self._on_reply(src, frame)
            except (Rejected, Unavailable) as exc:
                log.warning("disclosure frame from member %d not handled: %s", src, exc)

    async def _on_ask(self, src: int, ask: DisclosureAsk) -> None:
        sender = self.genesis.members[src].name
        record = self.store.request(ask.request_id)
        if record is not None:
            if record.role == "answerer" and record.requester == sender and record.answers:
                self._reply(record, record.answers[0])  # the same answer again
            return
        if ask.request_id in self._answering:
            return
        data = self.ledger.tx(ask.request_tx)
        found = None if data is None else decoded(data)
        if found is None:
            return  # not committed here yet: the requester asks again
        tx, body = found
        if (
            not isinstance(body, DisclosureRequest)
            or tx.member != sender
            or body.request_id != ask.request_id
        ):
            log.warning(
                "disclosure ask %s from %s does not match its ledger record: ignored",
                ask.request_id.hex(),
                sender,
            )
            return
        record = RequestRecord(
            body.request_id, "answerer", body.case_id, body.case_tx, ask.request_tx,
            body.entity, sender, (), (), "queued", self.clock_ms(),
        )  # fmt: skip
        kept = self.store.identifier(body.entity)
        problem = self._scope_problem(body.case_id, body.entity, body.case_tx)
        if kept is None:
            outcome, reason = "unknown", "this member keeps no identifier for the entity"
        elif problem is not None:
            outcome, reason = "outside_scope", problem
        elif self.policy == "auto":
            outcome, reason = "allowed", "allowed by policy"
        else:
            await trio.to_thread.run_sync(self.store.put_request, record)
            log.info(
                "disclosure request %s from %s under case %s queued for the operator",
                body.request_id.hex(),
                sender,
                body.case_id,
            )
            return
        self._answering.add(body.request_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._answer_quietly, record, outcome, reason)

    def _scope_problem(
        self, case_id: str, entity: EntityRef, case_tx: bytes | None = None
    ) -> str | None:
        status = self.registry.status(case_id, self.clock_ms())
        if status is None:
            return f"there is no case {case_id!r} on this member's ledger"
        if case_tx is not None and status.case.tx_id != case_tx:
            return f"case {case_id!r} on this member's ledger is another case transaction"
        if not status.active:
            return status.reason
        return self.reach(status.case, entity)

    async def _answer_quietly(self, record: RequestRecord, outcome: str, reason: str) -> None:
        try:
            await self._answer(record, outcome, reason)
        except (Rejected, Unavailable) as exc:
            log.error("disclosure request %s not answered: %s", record.request_id.hex(), exc)
        finally:
            self._answering.discard(record.request_id)

    async def _answer(
        self, record: RequestRecord, outcome: str, reason: str, actor: bytes = NODE_ACTOR
    ) -> RequestRecord:
        """Record the answer on the ledger, keep it, then send it to the requester."""
        now = self.clock_ms()
        body = DisclosureAnswer(
            record.request_id, record.request_tx, record.requester, outcome, now, actor
        )
        answer_tx = await self._record(DisclosureAnswer.kind, body)
        answer = Answer(self.name, outcome, reason, None, now, answer_tx)
        record = dataclasses.replace(record, answers=(answer,), state="answered")
        await trio.to_thread.run_sync(self.store.put_request, record)
        self.stats.answered[outcome] = self.stats.answered.get(outcome, 0) + 1
        # Not the reason: an operator's words stay out of the log.
        log.info(
            "disclosure request %s from %s answered: %s",
            record.request_id.hex(),
            record.requester,
            outcome,
        )
        self._reply(record, answer)
        return record

    def _reply(self, record: RequestRecord, answer: Answer) -> None:
        identifier = ""
        if answer.outcome == "allowed":
            kept = self.store.identifier(record.entity)
            if kept is None:  # deleted by retention since
                return
            identifier = kept.identifier
        reply = DisclosureReply(record.request_id, answer.outcome, identifier, answer.reason[:512])
        self.transport.send_nowait(self._index[record.requester], reply)

    async def _on_reply(self, src: int, reply: DisclosureReply) -> None:
        sender = self.genesis.members[src].name
        async with self._lock:
            record = self.store.request(reply.request_id)
            if record is None or record.role != "requester" or sender not in record.asked:
                log.warning(
                    "disclosure answer from %s for a request it was not asked: ignored", sender
                )
                return
            if any(a.member == sender for a in record.answers):
                return  # a repeated answer
            # Another member's words: no control characters reach a terminal or a log.
            reason = "".join(c for c in reply.reason if c.isprintable())
            outcome, identifier = reply.outcome, None
            if outcome == "allowed":
                if await self._hashes_to(reply.identifier, record.entity, record.case_id):
                    identifier = reply.identifier
                else:
                    outcome = WRONG
                    reason = (
                        f"{sender} sent an identifier that does not hash to the requested "
                        "pseudonym: refused"
                    )
                    log.warning(
                        "disclosure request %s: %s sent an identifier that does not hash to "
                        "the requested pseudonym; refused, not kept",
                        reply.request_id.hex(),
                        sender,
                    )
            answer = Answer(sender, outcome, reason, identifier, self.clock_ms(), None)
            answers = (*record.answers, answer)
            state = "complete" if len(answers) == len(record.asked) else "open"
            record = dataclasses.replace(record, answers=answers, state=state)
            await trio.to_thread.run_sync(self.store.put_request, record)
        self.stats.received[outcome] = self.stats.received.get(outcome, 0) + 1
        log.info("disclosure request %s: %s answered %s", reply.request_id.hex(), sender, outcome)

    async def _hashes_to(self, identifier: str, entity: EntityRef, case_id: str) -> bool:
        """Whether ``identifier`` is the one behind ``entity``: evaluated like a query
        under the case (the evaluators check the case is active and ours)."""
        try:
            if normalize(EntityType(entity.type), identifier) != identifier:
                return False
        except (NormalizationError, ValueError):
            return False
        pseudonyms = self._need_pseudonyms()
        try:
            evaluated = await pseudonyms.refs([(entity.type, identifier)], Purpose.query(case_id))
        except Refusal as exc:
            log.warning("a disclosed identifier could not be checked: %s", exc.message)
            return False
        return evaluated.refs[0] == entity

    # ------------------------------------------------------------------ helpers

    def _need_pseudonyms(self) -> PseudonymService:
        if self.pseudonyms is None or not self.pseudonyms.ready:
            raise Unavailable(
                "no_pseudonym_share",
                "this node has no share of the pseudonym key, so it cannot check identifiers",
            )
        return self.pseudonyms

    async def _record(self, kind: str, body: DisclosureRequest | DisclosureAnswer) -> bytes:
        """Sign, submit and wait for the commit of this member's record; its tx id."""
        nonce = secrets.randbelow(2**63 - 1) + 1
        tx = make_tx(
            self.runtime.signer,
            self.genesis.chain_id,
            self.name,
            kind,
            body,
            nonce,
            self.clock_ms(),
        )
        [submitted] = await self.runtime.submit_batch([encode_tx(tx)])
        if not submitted.accepted:
            raise Rejected(
                submitted.code, f"the node refused the {kind} record: {submitted.message}"
            )
        with trio.move_on_after(self.record_timeout_s):
            await self.runtime.wait_committed(submitted.tx_id)
        if self.ledger.tx_location(submitted.tx_id) is None:
            raise Unavailable(
                "not_committed",
                f"the {kind} record was not committed within {self.record_timeout_s:g} s",
            )
        return submitted.tx_id

    # ------------------------------------------------------------------ retention

    async def _retention_loop(self) -> None:
        while True:
            await self.run_retention()
            await trio.sleep(self.retention_check_s)

    async def run_retention(self) -> tuple[int, int]:
        now = self.clock_ms()
        deleted, blanked = await trio.to_thread.run_sync(self.store.expire, now - self.retention_ms)
        self.stats.deleted += deleted
        if deleted or blanked:
            log.info("retention deleted %d kept identifiers and %d received ones", deleted, blanked)
        return deleted, blanked

"""The node's side of cases and tracing queries: what the local API calls.

``TracingService`` owns the node's case registry (rebuilt from the store at start-up,
then kept current by a hook the runtime calls on the event loop after each group of
blocks is stored) and acts as the node's member: it signs ``case``, ``approve``,
``close`` and ``access`` transactions with the node key and submits them through the
runtime like any client. A case carries its purpose as one of ``PURPOSES`` and only a
commitment to its written justification; the caller (``node.api.tracing``) makes the
commitment and passes ``open_case`` a ``submit`` that keeps and shares the
justification with the case transaction (``node.details``, a sibling this package does
not import).

A query (``answer``) runs in this order, so nobody learns anything without leaving a
trace:

1. the identifier, given in the clear by the local caller, is normalised here and
   pseudonymised by the threshold evaluation (``node.pseudonyms``) under the case,
   which the evaluating members check is active and this member's (the clear value
   goes no further; the evaluators see a blinded point);
2. the query is authorised against the case (``Tracer.authorise``); a refusal says why;
3. an ``access`` transaction (who, case, query, subject pseudonym, the evaluation's
   id, time) is submitted
   and the service waits, up to ``commit_timeout_s``, until it is committed; if it is
   refused or not committed in time, the query is not answered;
4. only then does the query run, in a worker thread (it reads only the store).

Every mistake or refusal is one of the project's refusals (``node.refusals``: invalid,
forbidden, not found, conflict, rejected, unavailable) with a stable code and a message
that never quotes an identifier the caller sent. Not thread-safe: call it from the
node's event loop only, like the registry it holds.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from consensus.codec import MAX_UINT
from consensus.crypto import DIGEST_SIZE
from node.host.runtime import NodeRuntime, SubmitResult
from node.identifiers.normalize import EntityType, NormalizationError, normalize
from node.identifiers.pseudonym import EntityRef
from node.identifiers.screen import find_raw_identifier
from node.ledger.cases import (
    APPROVER_ROLE,
    OPENER_ROLE,
    CaseRecord,
    CaseRegistry,
    CaseState,
    CaseStatus,
)
from node.ledger.kinds import (
    KIND_ROLES,
    NODE_ACTOR,
    PURPOSES,
    Access,
    Approve,
    Body,
    Case,
    Close,
)
from node.ledger.store import LedgerStore
from node.ledger.transactions import MAX_SCOPE, MAX_STRING_CHARS, encode_tx, make_tx
from node.pseudonyms.service import PseudonymService, Purpose
from node.refusals import Conflict, Forbidden, Invalid, NotFound, Rejected, Unavailable
from node.setup.genesis import Genesis
from node.tracing.queries import Grant, Refusal, RefusalCode, TimeWindow, Tracer

ENTITY_TYPES = tuple(t.value for t in EntityType)
# The refusal codes of an inactive case, as ``Tracer.authorise`` words them.
_STATE_CODES = {
    CaseState.PENDING: RefusalCode.NOT_APPROVED.value,
    CaseState.EXPIRED: RefusalCode.EXPIRED.value,
    CaseState.CLOSED: RefusalCode.CLOSED.value,
}
DEFAULT_COMMIT_TIMEOUT_S = 10.0
R = TypeVar("R")
# Submits a signed transaction (and whatever goes with it) in the runtime's place.
Submit = Callable[[bytes], Awaitable[SubmitResult]]
log = logging.getLogger("crosstrace.tracing")


@dataclass(frozen=True)
class Committed:
    """A transaction the service submitted, and where it landed (None: not yet)."""

    tx_id: bytes
    location: tuple[int, int] | None

    @property
    def committed(self) -> bool:
        return self.location is not None


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent on each step of one answered query."""

    authorise_ms: float
    audit_ms: float  # submitting the access record and waiting for its commit
    query_ms: float  # running the query and rendering its answer


@dataclass(frozen=True)
class Answer(Generic[R]):
    grant: Grant
    result: R
    access: Committed
    timings: Timings


def case_id_problem(case_id: object) -> str | None:
    """Why ``case_id`` cannot name a case, or None."""
    if not isinstance(case_id, str) or not case_id:
        return "case_id must be a non-empty string"
    if len(case_id) > MAX_STRING_CHARS:
        return f"case_id has {len(case_id)} characters, at most {MAX_STRING_CHARS}"
    try:
        Close(case_id, bytes(32))  # the body type holds the one rule for case ids
    except ValueError as exc:
        return str(exc)
    if find_raw_identifier(case_id, structured=True) is not None:
        return "case_id seems to contain a raw identifier; case ids must not"
    return None


def check_purpose(purpose: object) -> str:
    """A case's purpose: one of ``PURPOSES`` (the reasons go in its justification)."""
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        raise Invalid(
            "bad_purpose",
            f"purpose must be one of {', '.join(PURPOSES)}; the reasons for the case go in "
            "its justification, which only the approvers receive",
        )
    return purpose


def check_case_id(case_id: object) -> str:
    problem = case_id_problem(case_id)
    if problem is not None:
        raise Invalid("bad_case_id", problem)
    assert isinstance(case_id, str)
    return case_id


def identifier_parts(text: object, where: str) -> tuple[str, str]:
    """``TYPE:VALUE`` -> (entity type, raw value), if it has that shape (the value is
    normalised later, with the pseudonym key); ``where`` names it in the refusal."""
    if not isinstance(text, str):
        raise Invalid("bad_identifier", f"{where} must be a string TYPE:VALUE")
    entity_type, sep, raw = text.partition(":")
    if not sep or not raw.strip():
        raise Invalid(
            "bad_identifier",
            f"{where} must be TYPE:VALUE with TYPE one of {', '.join(ENTITY_TYPES)}",
        )
    entity_type = entity_type.strip().lower()
    if entity_type not in ENTITY_TYPES:
        raise Invalid(
            "bad_identifier",
            f"{where}: the part before ':' is not an entity type; one of {', '.join(ENTITY_TYPES)}",
        )
    return entity_type, raw


def normalised_items(texts: Sequence[object], where: Sequence[str]) -> list[tuple[str, str]]:
    """``TYPE:VALUE`` texts -> (entity type, normalised value); ``where`` names each in
    a refusal, which never quotes the value."""
    items = []
    for text, at in zip(texts, where, strict=True):
        entity_type, raw = identifier_parts(text, at)
        try:
            items.append((entity_type, normalize(EntityType(entity_type), raw)))
        except NormalizationError as exc:
            raise Invalid("bad_identifier", f"{at}: {redact(str(exc), raw)}") from None
    return items


def redact(message: str, raw: str) -> str:
    """A normalisation error without the value it quotes (``node.identifiers.normalize`` shows the
    input, which is right on the submitter's own terminal and wrong in an API answer)."""
    shown = raw if len(raw) <= 64 else raw[:61] + "..."
    return message.replace(repr(shown), "the value")


class TracingService:
    def __init__(
        self,
        runtime: NodeRuntime,
        store: LedgerStore,
        genesis: Genesis,
        pseudonyms: PseudonymService | None,
        *,
        commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.genesis = genesis
        self.pseudonyms = pseudonyms
        self.commit_timeout_s = commit_timeout_s
        self.clock_ms = clock_ms or runtime.clock_ms
        member = genesis.members[runtime.member]
        self.member = member.name
        self.roles = frozenset(member.roles)
        self.registry = CaseRegistry.load(genesis, store)
        self.tracer = Tracer(store, self.registry)

    @classmethod
    def attach(
        cls,
        runtime: NodeRuntime,
        store: LedgerStore,
        genesis: Genesis,
        pseudonyms: PseudonymService | None,
        **options: Any,
    ) -> TracingService:
        """The service, with its registry loaded and kept current by ``runtime``.

        Loading and hooking happen with no await in between, so no block can fall
        between them; a block both read by ``load`` and passed to the hook is skipped.
        """
        service = cls(runtime, store, genesis, pseudonyms, **options)
        runtime.on_blocks_stored.append(service.registry.apply_blocks)
        return service

    # -- identifiers ----------------------------------------------------------------

    async def entities(
        self, texts: Sequence[object], where: Sequence[str], purpose: Purpose
    ) -> tuple[list[EntityRef], bytes]:
        """``TYPE:VALUE`` in the clear -> entity references (type and pseudonym), and the
        id of the evaluation that gave them."""
        items = normalised_items(texts, where)
        if self.pseudonyms is None:
            raise Unavailable(
                "no_pseudonym_share",
                "this node runs without the pseudonym service, so it cannot pseudonymise "
                "identifiers",
            )
        evaluated = await self.pseudonyms.refs(items, purpose)
        return list(evaluated.refs), evaluated.evaluation

    async def entity(self, text: object, where: str, case_id: str) -> tuple[EntityRef, bytes]:
        """One identifier, pseudonymised for a query under ``case_id``: the case must be
        active here and this member's (the evaluating members check it again)."""
        check_case_id(case_id)
        status = self.status(case_id)
        if status is None:
            raise Forbidden(
                RefusalCode.NO_CASE.value, f"there is no case {case_id!r} on the ledger"
            )
        if status.case.opener != self.member:
            raise Forbidden(
                "not_your_case",
                f"case {case_id!r} belongs to {status.case.opener}; members query only "
                "under their own cases",
            )
        if not status.active:
            raise Forbidden(_STATE_CODES[status.state], status.reason)
        refs, evaluation = await self.entities([text], [where], Purpose.query(case_id))
        return refs[0], evaluation

    # -- cases ----------------------------------------------------------------------

    def status(self, case_id: str) -> CaseStatus | None:
        return self.registry.status(case_id, self.clock_ms())

    def statuses(self) -> list[CaseStatus]:
        now = self.clock_ms()
        out = []
        for record in self.registry.cases():
            status = self.registry.status(record.case_id, now)
            assert status is not None  # the registry lists the cases that own their ids
            out.append(status)
        return out

    def _require_role(self, role: str, doing: str) -> None:
        if role not in self.roles:
            raise Forbidden(
                "forbidden_role",
                f"this node's member {self.member!r} does not hold the {role} role, "
                f"which {doing} needs",
            )

    def _existing(self, case_id: str) -> CaseStatus:
        status = self.status(check_case_id(case_id))
        if status is None:
            raise NotFound("no_case", f"there is no case {case_id!r} on the ledger")
        return status

    async def open_case(
        self,
        case_id: str,
        purpose: str,
        justification_commitment: bytes,
        scope: Sequence[object],
        window: TimeWindow,
        expires_ms: int,
        *,
        submit: Submit | None = None,
        actor: bytes = NODE_ACTOR,
    ) -> Committed:
        """Sign and submit a case transaction once every check passed; ``submit`` (by
        default the runtime's) is called with the signed transaction only then, so the
        caller keeps the justification's details of a case that goes to consensus only.
        ``actor`` is the acting user's pseudonymous id (here and in every change and
        query below); ``NODE_ACTOR`` when the node acts on its own."""
        self._require_role(OPENER_ROLE, "opening a case")
        check_case_id(case_id)
        check_purpose(purpose)
        if len(justification_commitment) != DIGEST_SIZE:
            raise Invalid("bad_request", f"justification_commitment must be {DIGEST_SIZE} bytes")
        taken = self.registry.case(case_id)
        if taken is not None:
            raise Conflict(
                "case_exists",
                f"case {case_id!r} is already on the ledger (opened by {taken.opener!r} "
                f"at height {taken.opened.height})",
            )
        if not 1 <= len(scope) <= MAX_SCOPE:
            raise Invalid(
                "bad_scope", f"scope must list 1 to {MAX_SCOPE} entities, got {len(scope)}"
            )
        refs: dict[EntityRef, int] = {}
        # The scope is pseudonymised as this member's report: the case is not active
        # yet, and naming suspects is what a report does.
        scope_refs, _ = await self.entities(
            scope, [f"scope[{i}]" for i in range(len(scope))], Purpose.report()
        )
        for i, ref in enumerate(scope_refs):
            if ref in refs:
                raise Invalid("bad_scope", f"scope[{refs[ref]}] and scope[{i}] are the same entity")
            refs[ref] = i
        now = self.clock_ms()
        if expires_ms <= now:
            raise Invalid("bad_expiry", "expires_ms must be in the future")
        try:
            body = Case(
                case_id,
                purpose,
                justification_commitment,
                tuple(refs),
                window.start_ms,
                window.end_ms,
                expires_ms,
                actor,
            )
        except ValueError as exc:
            raise Invalid("bad_request", str(exc)) from None
        return await self._submit(body, now, submit)

    async def approve(self, case_id: str, actor: bytes = NODE_ACTOR) -> Committed:
        self._require_role(APPROVER_ROLE, "approving a case")
        status = self._existing(case_id)
        self._check_open(status)
        mine = [e for e in status.approvals if e.member == self.member]
        if mine:
            raise Conflict(
                "already_approved",
                f"member {self.member!r} already approved case {case_id!r} at height "
                f"{mine[0].height}",
            )
        return await self._submit(Approve(case_id, status.case.tx_id, actor), self.clock_ms())

    async def close(self, case_id: str, actor: bytes = NODE_ACTOR) -> Committed:
        self._require_role(OPENER_ROLE, "closing a case")
        status = self._existing(case_id)
        if status.state is CaseState.CLOSED:
            raise Conflict("case_closed", status.reason)
        return await self._submit(Close(case_id, status.case.tx_id, actor), self.clock_ms())

    @staticmethod
    def _check_open(status: CaseStatus) -> None:
        if status.state is CaseState.CLOSED:
            raise Conflict("case_closed", status.reason)
        if status.state is CaseState.EXPIRED:
            raise Conflict("case_expired", status.reason)

    # -- queries --------------------------------------------------------------------

    async def answer(
        self,
        case_id: str,
        query: str,
        subject: EntityRef | bytes,
        window: TimeWindow | None,
        run: Callable[[Grant], R],
        *,
        in_thread: bool = True,
        actor: bytes = NODE_ACTOR,
        evaluation: bytes = b"",
    ) -> Answer[R]:
        """Authorise, record the access through consensus, then ``run(grant)``.

        ``run`` goes to a worker thread when ``in_thread`` (it must then read only the
        store, never the registry); otherwise it runs here, on the event loop.
        """
        started = time.perf_counter()
        check_case_id(case_id)
        if not KIND_ROLES[Access.kind] & self.roles:
            needed = " or ".join(sorted(KIND_ROLES[Access.kind]))
            raise Forbidden(
                "forbidden_role",
                f"this node's member {self.member!r} holds neither role ({needed}) needed "
                "to sign the access record a query leaves, so it answers no queries",
            )
        now = self.clock_ms()
        decision = self.tracer.authorise(case_id, query, subject, now, window)
        if isinstance(decision, Refusal):
            kind = NotFound if decision.code is RefusalCode.NO_RECORD else Forbidden
            raise kind(decision.code.value, decision.message)
        grant = decision
        authorised = time.perf_counter()
        access = await self._submit(
            Access(case_id, query, grant.entity, now, actor, evaluation), now
        )
        if not access.committed:
            raise Unavailable(
                "audit_timeout",
                f"the access record {access.tx_id.hex()[:16]} was not committed within "
                f"{self.commit_timeout_s:g} s (is a quorum of members running?); "
                "the query is not answered until it is",
                {"access_tx": access.tx_id.hex()},
            )
        audited = time.perf_counter()
        result = await trio.to_thread.run_sync(run, grant) if in_thread else run(grant)
        done = time.perf_counter()
        timings = Timings(
            (authorised - started) * 1000, (audited - authorised) * 1000, (done - audited) * 1000
        )
        return Answer(grant, result, access, timings)

    # -- submitting -----------------------------------------------------------------

    def sign(self, body: Body, now_ms: int) -> bytes:
        # Any unused nonce will do; a random 63-bit one needs no state across restarts.
        nonce = secrets.randbelow(MAX_UINT >> 1) + 1
        tx = make_tx(
            self.runtime.signer,
            self.genesis.chain_id,
            self.member,
            body.kind,
            body,
            nonce,
            now_ms,
        )
        return encode_tx(tx)

    async def _submit(self, body: Body, now_ms: int, submit: Submit | None = None) -> Committed:
        """Sign ``body``, submit it (through ``submit`` if given) and wait up to
        ``commit_timeout_s`` for the commit."""
        tx = self.sign(body, now_ms)
        if submit is None:
            [result] = await self.runtime.submit_batch([tx])
        else:
            result = await submit(tx)
        if not result.accepted:
            # Rejected for what is wrong with the transaction (a raw identifier in a
            # case id, say), unavailable for a node that cannot take it now (a full mempool).
            message = f"the node refused the {body.kind} transaction: {result.code}: "
            message += result.message
            if result.code in ("full", "member_quota", "too_large"):
                raise Unavailable("node_busy", message)
            raise Rejected("rejected", message)
        with trio.move_on_after(self.commit_timeout_s):
            await self.runtime.wait_committed(result.tx_id)
        return Committed(result.tx_id, self.store.tx_location(result.tx_id))

    def case_of(self, committed: Committed, case_id: str) -> CaseRecord | None:
        """The case ``committed`` opened, if it owns its id (a case with the same id
        may have been committed first by another investigator)."""
        record = self.registry.case(case_id)
        return record if record is not None and record.tx_id == committed.tx_id else None

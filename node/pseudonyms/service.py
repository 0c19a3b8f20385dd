"""Threshold pseudonyms over the secure channel: both sides of an evaluation.

One service per node, in the node's nursery beside the runtime
(``await nursery.start(service.run)``). It takes ``EvalRequest`` and ``EvalReply``
frames from the runtime's receive loop (the handler only queues on a bounded inbox; a
request that finds it full is answered ``busy`` at once) and owns the pseudonym store.

**Asking** (``refs``). Identifiers arrive normalised. Those this member evaluated
before come from its cache. The others are hashed to the group and blinded with a fresh
scalar each (``node.identifiers.oprf``); this member evaluates its own share and asks
t - 1 others, chosen among members that did not fail it recently, to evaluate theirs
on the same blinded points (one ``EvalRequest`` per 10,000 points). Every answer's
batched proof is checked against the evaluator's public share from the genesis: a
member that answers wrongly is named in the log and the metrics and another is asked;
one that does not answer within ``timeout_s`` or is busy is skipped for a while.
A refusal on policy grounds (quota, case) is the caller's refusal: asking elsewhere
would only spend quota there too. The results are combined, unblinded, hashed into
pseudonyms and remembered.

**Answering.** A request is judged by ``node.pseudonyms.policy`` (for a query, after
this node's ledger reached the requester's height, waiting at most ``case_wait_s``, so
a case just approved there is seen here), charged to its quota *before* the share is
used, then evaluated in a worker thread with a proof bound to the request
(``context``), and answered to the requester only.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from net.wire import MAX_EVAL_POINTS, EvalReply, EvalRequest
from node.host.latency import LatencyHistogram
from node.host.runtime import NodeRuntime, wall_clock_ms
from node.identifiers import oprf
from node.identifiers.group import InvalidPoint
from node.identifiers.pseudonym import EntityRef
from node.ledger.cases import CaseRegistry
from node.ledger.store import LedgerStore
from node.pseudonyms.offload import (
    blind,
    input_points,
    join,
    maybe_threaded,
    threaded,
    threaded_pairs,
)
from node.pseudonyms.policy import Decision, charge, judge_case
from node.pseudonyms.store import CachedPseudonym, EvaluationRecord, PseudonymStore
from node.refusals import Forbidden, Invalid, Unavailable
from node.setup.genesis import Genesis
from node.setup.shares import PseudonymShare

log = logging.getLogger(__name__)

INBOX_FRAMES = 256
RETENTION_CHECK_S = 3600.0
TIMEOUT_S = 5.0
CASE_WAIT_S = 3.0
# A member that failed us (silent, busy, a wrong proof) is asked again after this long.
COOLDOWN_S = 30.0
# Evaluations answered at once; more wait in the inbox.
MAX_ANSWERING = 8
POLICY_OUTCOMES = frozenset({"over_quota", "no_case", "not_your_case", "case_inactive"})
MAX_REQUEST_ITEMS = 100_000
# Points per ``EvalRequest``: a batch goes out as several requests, so the evaluator
# works on them in parallel threads and the requester checks their proofs in parallel;
# each costs a fixed few multiplications and one synced quota write more.
REQUEST_POINTS = min(2_500, MAX_EVAL_POINTS)


@dataclass(frozen=True)
class Purpose:
    """Why an identifier is evaluated: ``report`` (anything this member reports) or
    ``query`` under one of this member's active cases."""

    kind: str
    case_id: str = ""

    @classmethod
    def report(cls) -> Purpose:
        return cls("report")

    @classmethod
    def query(cls, case_id: str) -> Purpose:
        return cls("query", case_id)


@dataclass(frozen=True)
class Evaluated:
    """The references in the order asked, and the id of the evaluation that produced
    them (the first request's; a query's ``access`` record names it). For results that
    all came from the cache, the evaluation that first produced the first of them."""

    refs: tuple[EntityRef, ...]
    evaluation: bytes
    from_cache: int


@dataclass
class PseudonymStats:
    evaluated: Counter[tuple[str, str]] = field(default_factory=Counter)  # (member, purpose)
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # (member, outcome)
    asked: Counter[str] = field(default_factory=Counter)  # outcome of our own requests
    wrong_proofs: Counter[str] = field(default_factory=Counter)  # member
    unanswered: Counter[str] = field(default_factory=Counter)  # member
    cache_hits: int = 0
    cache_misses: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass
class _Pending:
    expected: frozenset[int]
    replies: dict[int, EvalReply] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)


class _Retry(Exception):
    """The evaluator set failed us in a way another set may not."""


def context_of(chain_id: str, request: EvalRequest, requester: int, evaluator: int) -> bytes:
    """What an evaluation's proof is bound to: the chain, the request and both parties."""
    parts = [
        chain_id.encode(),
        request.request_id,
        request.purpose.encode(),
        request.case_id.encode(),
        bytes(request.indices),
        requester.to_bytes(1, "big"),
        evaluator.to_bytes(1, "big"),
    ]
    return b"".join(len(p).to_bytes(2, "big") + p for p in parts)


class PseudonymService:
    def __init__(
        self,
        runtime: NodeRuntime,
        ledger: LedgerStore,
        genesis: Genesis,
        store: PseudonymStore,
        share: PseudonymShare | None,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        timeout_s: float = TIMEOUT_S,
        case_wait_s: float = CASE_WAIT_S,
        cooldown_s: float = COOLDOWN_S,
        retention_ms: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.genesis = genesis
        self.store = store
        self.share = share
        self.clock_ms = clock_ms
        self.timeout_s = timeout_s
        self.case_wait_s = case_wait_s
        self.cooldown_s = cooldown_s
        self.retention_ms = retention_ms
        self.me = runtime.member
        self.index = self.me + 1
        self.name = genesis.members[self.me].name
        self.threshold = genesis.pseudonyms.threshold
        self.stats = PseudonymStats()
        if share is not None and share.index != self.index:
            raise ValueError(
                f"the pseudonym share is member {share.index}'s, this node is member {self.index}"
            )
        self.registry = CaseRegistry.load(genesis, ledger)
        runtime.on_blocks_stored.append(self.registry.apply_blocks)
        self._pending: dict[bytes, _Pending] = {}
        self._failed_at: dict[int, float] = {}
        self._answering = trio.Semaphore(MAX_ANSWERING)
        self._inbox_in, self._inbox_out = trio.open_memory_channel[tuple[int, EvalRequest]](
            INBOX_FRAMES
        )
        runtime.frame_handlers[EvalRequest] = self._on_frame
        runtime.frame_handlers[EvalReply] = self._on_frame

    @property
    def ready(self) -> bool:
        return self.share is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._inbox_loop, nursery)
            if self.retention_ms is not None:
                nursery.start_soon(self._retention_loop, self.retention_ms)
            task_status.started()

    async def _retention_loop(self, retention_ms: int) -> None:
        """Forget cached results older than the member's retention, like its other
        identifier-derived data (the counts and the log stay)."""
        while True:
            cutoff = self.clock_ms() - retention_ms
            forgotten = await trio.to_thread.run_sync(self.store.forget_before, cutoff)
            if forgotten:
                log.info("forgot %d cached pseudonyms older than the retention", forgotten)
            await trio.sleep(RETENTION_CHECK_S)

    # ------------------------------------------------------------------ asking

    async def refs(self, items: Sequence[tuple[str, str]], purpose: Purpose) -> Evaluated:
        """The pseudonyms of ``items`` ((entity type, normalised value)); raises
        ``Unavailable`` (no share, too few members answer), ``Forbidden`` (a quota or a
        case refused by the evaluators, their reason quoted) or ``Invalid``."""
        if not items:
            raise Invalid("no_identifiers", "no identifiers to pseudonymise")
        if len(items) > MAX_REQUEST_ITEMS:
            raise Invalid(
                "too_many_identifiers", f"at most {MAX_REQUEST_ITEMS} identifiers at once"
            )
        if purpose.kind not in ("report", "query") or (purpose.kind == "query") != bool(
            purpose.case_id
        ):
            raise Invalid("bad_purpose", "a query names its case, a report none")
        started = time.perf_counter()
        keys = await maybe_threaded(len(items), self.store.cache_keys, items)
        cached = await maybe_threaded(len(items), self.store.cached, keys)
        missing = [i for i, c in enumerate(cached) if c is None]
        self.stats.cache_hits += len(items) - len(missing)
        self.stats.cache_misses += len(missing)
        pseudonyms: list[bytes | None] = [None if c is None else c.pseudonym for c in cached]
        evaluation = b""
        if missing:
            # An identifier asked twice in one batch is evaluated once.
            unique = list(dict.fromkeys(items[i] for i in missing))
            fresh, evaluation = await self._evaluate(unique, purpose)
            found = dict(zip(unique, fresh, strict=True))
            now = self.clock_ms()
            entries = []
            for i in missing:
                pseudonyms[i] = found[items[i]]
                entries.append((keys[i], CachedPseudonym(found[items[i]], evaluation, now)))
            # The cache is not synced: a small write is cheaper here than a thread trip.
            await maybe_threaded(len(entries), self.store.remember, entries)
        else:
            first = cached[0]
            assert first is not None
            evaluation = first.evaluation
        refs = tuple(
            EntityRef(t, p) for (t, _), p in zip(items, pseudonyms, strict=True) if p is not None
        )
        self.stats.latency.observe((time.perf_counter() - started) * 1000)
        return Evaluated(refs, evaluation, len(items) - len(missing))

    async def _evaluate(
        self, items: Sequence[tuple[str, str]], purpose: Purpose
    ) -> tuple[list[bytes], bytes]:
        if self.share is None:
            raise Unavailable(
                "no_pseudonym_share",
                "this node has no share of the pseudonym key (the key ceremony's "
                "pseudonym.share), so it cannot pseudonymise identifiers",
            )
        share = self.share

        inputs = await threaded(input_points, [join(t, v) for t, v in items])
        blinded, scalars = await blind(inputs)
        # Each failed round adds its failed members, so this ends: in a result, or
        # when too few members are left to ask.
        failed: set[int] = set()
        while True:
            others = self._choose(failed)
            if others is None:
                self.stats.asked["unavailable"] += 1
                raise Unavailable(
                    "pseudonyms_unavailable",
                    f"too few members answer pseudonym evaluations: {self.threshold} are needed "
                    f"(this one and {self.threshold - 1} other); tried "
                    f"{', '.join(self.genesis.members[m].name for m in sorted(failed)) or 'none'}",
                )
            try:
                combined, request_id = await self._round(share, others, blinded, purpose)
            except _Retry as retry:
                failed.update(retry.args[0])
                continue
            self.stats.asked["ok"] += 1
            break
        unblinded = await threaded_pairs(oprf.unblind_many, scalars, combined)
        pseudonyms = [oprf.finalize(t, v, u) for (t, v), u in zip(items, unblinded, strict=True)]
        return pseudonyms, request_id

    def _choose(self, failed: set[int]) -> list[int] | None:
        """t - 1 other members: those that have not failed us recently first, then in a
        rotating order so the load spreads."""
        now = time.monotonic()
        n = len(self.genesis.members)
        candidates = [m for m in range(n) if m != self.me and m not in failed]
        fresh = [m for m in candidates if now - self._failed_at.get(m, -math.inf) > self.cooldown_s]
        stale = [m for m in candidates if m not in fresh]
        start = secrets.randbelow(max(1, len(fresh))) if fresh else 0
        ordered = fresh[start:] + fresh[:start] + stale
        need = self.threshold - 1
        return sorted(ordered[:need]) if len(ordered) >= need else None

    async def _round(
        self,
        share: PseudonymShare,
        others: list[int],
        blinded: list[bytes],
        purpose: Purpose,
    ) -> tuple[list[bytes], bytes]:
        indices = tuple(sorted([self.index, *(m + 1 for m in others)]))
        chunks = [blinded[i : i + REQUEST_POINTS] for i in range(0, len(blinded), REQUEST_POINTS)]
        requests = [
            EvalRequest(
                secrets.token_bytes(16),
                purpose.kind,
                purpose.case_id,
                self.runtime.height,
                indices,
                tuple(chunk),
            )
            for chunk in chunks
        ]
        pendings = {r.request_id: _Pending(frozenset(others)) for r in requests}
        self._pending.update(pendings)
        try:
            for request in requests:
                for member in others:
                    self.runtime.transport.send_nowait(member, request)
            own = await threaded(
                lambda chunk: list(
                    oprf.evaluate_unproven(share.secret, self.index, indices, chunk)
                ),
                blinded,
            )
            with trio.move_on_after(self.timeout_s):
                for pending in pendings.values():
                    await pending.done.wait()
        finally:
            for request in requests:
                self._pending.pop(request.request_id, None)
        # Every answer is checked at once, each in a worker thread: a batch's proofs
        # are independent, and libsodium releases the GIL.
        problems: dict[tuple[int, int], str | None] = {}
        refusals: list[Forbidden] = []

        async def check(member: int, position: int) -> None:
            request = requests[position]
            reply = pendings[request.request_id].replies.get(member)
            try:
                problems[(member, position)] = await self._check(member, request, reply)
            except Forbidden as refusal:
                refusals.append(refusal)

        async with trio.open_nursery() as nursery:
            for member in others:
                for position in range(len(requests)):
                    nursery.start_soon(check, member, position)
        if refusals:
            raise refusals[0]
        bad = {member for (member, _), problem in problems.items() if problem is not None}
        parts: list[list[bytes]] = [own]
        for member in others:
            if member not in bad:
                parts.append(
                    [
                        point
                        for request in requests
                        for point in pendings[request.request_id].replies[member].points
                    ]
                )
        if bad:
            now = time.monotonic()
            for member in bad:
                self._failed_at[member] = now
            raise _Retry(bad)
        combined = await maybe_threaded(len(blinded), oprf.combine, parts)
        return combined, requests[0].request_id

    async def _check(
        self, member: int, request: EvalRequest, reply: EvalReply | None
    ) -> str | None:
        """None when ``reply`` is a correct evaluation of ``request``; else what is wrong
        (policy refusals are raised: they are the caller's answer)."""
        name = self.genesis.members[member].name
        if reply is None:
            self.stats.unanswered[name] += 1
            log.warning(
                "member %s did not answer a pseudonym evaluation within %g s", name, self.timeout_s
            )
            return "no answer"
        if reply.outcome in POLICY_OUTCOMES:
            self.stats.asked[reply.outcome] += 1
            raise Forbidden(reply.outcome, f"member {name} refused to evaluate: {reply.reason}")
        if reply.outcome != "ok":
            log.warning(
                "member %s refused a pseudonym evaluation: %s: %s",
                name,
                reply.outcome,
                reply.reason,
            )
            return reply.outcome
        evaluation = oprf.Evaluation(reply.points, oprf.Proof(reply.challenge, reply.response))
        context = context_of(self.genesis.chain_id, request, self.index, member + 1)
        public = self.genesis.pseudonyms.public_shares[member]
        valid = await maybe_threaded(
            len(request.points),
            oprf.verify,
            public,
            member + 1,
            request.indices,
            request.points,
            evaluation,
            context,
        )
        if not valid:
            self.stats.wrong_proofs[name] += 1
            log.error(
                "member %s answered a pseudonym evaluation with points its proof does not "
                "support (a wrong share or a forged answer); asking another member",
                name,
            )
            return "wrong proof"
        return None

    # ------------------------------------------------------------------ frames

    def _on_frame(self, src: int, frame: EvalRequest | EvalReply) -> None:
        if isinstance(frame, EvalReply):
            pending = self._pending.get(frame.request_id)
            if pending is not None and src in pending.expected and src not in pending.replies:
                pending.replies[src] = frame
                if pending.replies.keys() >= pending.expected:
                    pending.done.set()
            return
        try:
            self._inbox_in.send_nowait((src, frame))
        except trio.WouldBlock:
            self._reply(
                src, frame, Decision("busy", "too many evaluations waiting; ask another member")
            )
        except trio.ClosedResourceError:
            pass

    async def _inbox_loop(self, nursery: trio.Nursery) -> None:
        async for src, request in self._inbox_out:
            await self._answering.acquire()
            nursery.start_soon(self._answer, src, request)

    def _reply(self, src: int, request: EvalRequest, decision: Decision) -> None:
        requester = self.genesis.members[src].name
        self.stats.refused[(requester, decision.outcome)] += 1
        reply = EvalReply(request.request_id, decision.outcome, decision.reason[:512], (), b"", b"")
        self.runtime.transport.send_nowait(src, reply)

    async def _answer(self, src: int, request: EvalRequest) -> None:
        try:
            await self._answer_one(src, request)
        finally:
            self._answering.release()

    async def _answer_one(self, src: int, request: EvalRequest) -> None:
        requester = self.genesis.members[src].name
        if self.share is None:
            self._reply(
                src, request, Decision("busy", f"member {self.name} has no pseudonym share")
            )
            return
        if self.index not in request.indices or src + 1 not in request.indices:
            self._reply(
                src, request, Decision("bad_request", "the evaluating set must hold both of us")
            )
            return
        if len(request.indices) != self.threshold or max(request.indices) > len(
            self.genesis.members
        ):
            self._reply(
                src,
                request,
                Decision("bad_request", f"an evaluating set has exactly {self.threshold} members"),
            )
            return
        now = self.clock_ms()
        record = EvaluationRecord(
            request.request_id,
            requester,
            request.purpose,
            request.case_id,
            len(request.points),
            "ok",
            now,
        )
        if request.purpose == "query":
            with trio.move_on_after(self.case_wait_s):
                await self.runtime.wait_height(request.height)
            decision = judge_case(self.registry, requester, request.case_id, now)
            if not decision.granted:
                refused = EvaluationRecord(**{**record.__dict__, "outcome": decision.outcome})
                await trio.to_thread.run_sync(self.store.log_refusal, refused)
                self._reply(src, request, decision)
                return
        decision = await trio.to_thread.run_sync(charge, self.store, self.genesis, record)
        if not decision.granted:
            self._reply(src, request, decision)
            return
        context = context_of(self.genesis.chain_id, request, src + 1, self.index)
        share = self.share
        try:
            evaluation = await maybe_threaded(
                len(request.points),
                oprf.evaluate,
                share.secret,
                self.index,
                request.indices,
                request.points,
                context,
            )
        except InvalidPoint as exc:
            self._reply(
                src,
                request,
                Decision("bad_request", f"point {exc.position} is not a valid group element"),
            )
            return
        self.stats.evaluated[(requester, request.purpose)] += len(request.points)
        reply = EvalReply(
            request.request_id,
            "ok",
            "",
            evaluation.points,
            evaluation.proof.challenge,
            evaluation.proof.response,
        )
        self.runtime.transport.send_nowait(src, reply)

"""Private set intersection between two members, tied to a case: the node's side.

One service per node, started in the node's nursery beside the runtime
(``await nursery.start(service.run)``). It takes ``PsiFrame`` frames from the runtime's
receive loop (``runtime.frame_handlers``; the handler only queues), keeps its own copy of
the case registry current (loaded from the store, then fed every stored block), owns
the worker processes that do the arithmetic, and signs each run's ledger record with
the node key.

**Who may run.** A run happens under a case that is active on the ledger and names
both members. A case *names* a member when that member opened it or signed one of the
approvals that count for it (``node.ledger.cases``): both institutions then consented, on the
ledger, to this investigation, and a member that never approved the case cannot be drawn
into a run under it. The case's scope does not limit a run: the sets are exactly what
the members do not show each other. Both members must also hold a role that may sign
the ``psi`` record (investigator or auditor, as for queries). The initiator checks all
of this against its ledger before it sends anything; the responder checks it again
against its own, and further answers only when its policy says so (``[psi] answer``),
it holds a set of the asked entity type (``[psi.answer_sets]`` or the local API), both
sets fit ``max_set_size``, and fewer than ``max_runs`` runs are going on. A refusal
carries a code and the reason; nothing is recorded for it.

**What is recorded.** When a run ends after the sizes were exchanged, each member
submits its own ``psi`` transaction (case, exact case transaction, run id, both members,
both sizes, result size, outcome) and waits for it to commit. A completed run's
intersection is shown to this member's operator only once that record is committed;
otherwise the run ends as failed and the result is dropped. A run that fails (invalid
points, wrong counts, replayed or reordered chunks, a timeout, the other member giving
up) is recorded with the failure as its outcome and a result size of 0: nothing is ever
recorded as a success that was not one.

**Replays.** Run ids are 16 random bytes drawn by the initiator. A ``Hello`` for a run
id this node has seen before is refused (``replayed_run``); any other message whose run
id matches no run going on with that member is dropped and counted (``stale`` for a run
that ended here, ``unknown_run`` otherwise): a message replayed from an earlier run never
reaches a live one. Within a run, chunks are numbered and checked in order.

Input sets are normalised as for pseudonyms (``node.psi.inputs``) in the worker
processes. The answering member's sets are hashed to the group once, when loaded (the
hash does not depend on the run), and blinded for the next run while the node is idle
(``node.psi.answers``); every run still has its own fresh secret scalars, forgotten when
it ends. ``Hello`` carries the initiator's set size, so a member that refuses still
learns it; it learns nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from net.wire import MAX_PSI_BODY, PsiFrame
from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime
from node.ledger.cases import CaseRegistry, CaseStatus
from node.ledger.kinds import KIND_ROLES, NODE_ACTOR, PsiRun
from node.ledger.store import LedgerStore
from node.psi.answers import AnswerSet, AnswerSets
from node.psi.crypto import ChunkPool, Normalised, domain, normalise_chunk, random_scalar
from node.psi.inputs import (
    STOP_AFTER_PROBLEMS,
    IdentifierSet,
    TooManyProblems,
    assemble,
    check_entity_type,
    check_line_count,
    chunked,
    read_lines,
)
from node.psi.protocol import (
    DEFAULT_CHUNK,
    Hello,
    Plan,
    ProtocolError,
    PsiSession,
    Refuse,
    Role,
    decode_message,
    encode_message,
)
from node.psi.record import record_run
from node.psi.run import Run, RunState, Wiring, abort, exchange, next_message, send
from node.psi.work import map_in_order
from node.refusals import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    TooLarge,
    Unavailable,
)
from node.setup.config import PsiSection
from node.setup.genesis import Genesis

log = logging.getLogger("crosstrace.psi")

INBOX_FRAMES = 1024
KEEP_FINISHED = 16  # ended runs kept for the API, with their results
SEEN_RUN_IDS = 100_000


@dataclass
class PsiStats:
    started: int = 0
    answered: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # runs this node refused
    stale: int = 0  # messages for a run that already ended here
    unknown_run: int = 0  # messages for a run this node never had with that member
    inbox_full: int = 0


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class PsiService:
    def __init__(
        self,
        runtime: NodeRuntime,
        store: LedgerStore,
        genesis: Genesis,
        *,
        answer: bool = False,
        answer_files: Mapping[str, Path] | None = None,
        max_set_size: int = 1_000_000,
        max_runs: int = 2,
        workers: int = 0,
        timeout_s: float = 1800.0,
        idle_timeout_s: float = 120.0,
        record_timeout_s: float = 30.0,
        prepare: bool = True,
        chunk: int = DEFAULT_CHUNK,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.genesis = genesis
        self.me = runtime.member
        self.name = genesis.members[self.me].name
        self.answer = answer
        self.answer_files = dict(answer_files or {})
        self.max_set_size = max_set_size
        self.max_runs = max_runs
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.record_timeout_s = record_timeout_s
        self.chunk = chunk
        self.clock_ms = clock_ms
        self.pool = ChunkPool(workers)
        self.stats = PsiStats()
        self.answers = AnswerSets(
            self.pool,
            genesis.chain_id,
            lambda kind, data, dedupe: self.read_set(kind, data, dedupe=dedupe),
            clock_ms,
            prepare=prepare,
            chunk=chunk,
        )
        self.runs: OrderedDict[bytes, Run] = OrderedDict()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._index = {m.name: i for i, m in enumerate(genesis.members)}
        self._roles = {m.name: frozenset(m.roles) for m in genesis.members}
        self._nursery: trio.Nursery | None = None
        self._inbox_in, self._inbox_out = trio.open_memory_channel[tuple[int, bytes, bytes]](
            INBOX_FRAMES
        )
        # What one run may hold unread: all points and tags of two sets of the largest
        # size, encoded; an honest member never comes near it.
        self._buffer_limit = 2 * max_set_size * 40 + MAX_PSI_BODY
        # Loaded and hooked with no await in between, so no block falls between them.
        self.registry = CaseRegistry.load(genesis, store)
        runtime.on_blocks_stored.append(self.registry.apply_blocks)
        runtime.frame_handlers[PsiFrame] = self._on_frame

    @classmethod
    def from_config(
        cls, runtime: NodeRuntime, store: LedgerStore, genesis: Genesis, section: PsiSection
    ) -> PsiService:
        return cls(
            runtime,
            store,
            genesis,
            answer=section.answer,
            answer_files={t: Path(f) for t, f in section.answer_sets.items()},
            max_set_size=section.max_set_size,
            max_runs=section.max_runs,
            workers=section.workers,
            timeout_s=section.timeout_s,
            idle_timeout_s=section.idle_timeout_s,
            record_timeout_s=section.record_timeout_s,
            prepare=section.prepare,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._inbox_loop)
                for entity_type, path in self.answer_files.items():
                    self.answers.loading.add(entity_type)
                    nursery.start_soon(self._load_answer_file, entity_type, path)
                task_status.started()
        finally:
            self.pool.close()

    # ------------------------------------------------------------------ sets

    async def read_set(self, entity_type: str, data: bytes, *, dedupe: bool) -> IdentifierSet:
        """Parse and normalise one identifier a line, in the worker processes."""
        check_entity_type(entity_type)
        check_line_count(data, self.max_set_size)  # cheap, on the loop: refuse before copying
        lines = await trio.to_thread.run_sync(read_lines, data, self.max_set_size)
        jobs = [(entity_type, part) for part in chunked(lines)]
        results: list[Normalised] = []
        failed = 0

        def collect(_index: int, chunk: Normalised) -> None:
            nonlocal failed
            results.append(chunk)
            failed += len(chunk.problems)
            if failed >= STOP_AFTER_PROBLEMS:
                raise TooManyProblems

        try:
            await map_in_order(
                self.pool, normalise_chunk, jobs, collect, window=2 * self.pool.workers
            )
        except TooManyProblems:
            return assemble(entity_type, results, dedupe, stopped=True)
        return assemble(entity_type, results, dedupe)

    async def set_answer_set(
        self, entity_type: str, data: bytes, *, dedupe: bool = False, source: str = "api"
    ) -> AnswerSet:
        """Replace the set this node answers ``entity_type`` runs with."""
        answer_set = await self.answers.load(entity_type, data, dedupe=dedupe, source=source)
        self._prepare_when_idle()
        return answer_set

    async def _load_answer_file(self, entity_type: str, path: Path) -> None:
        await self.answers.load_file(entity_type, path)
        self._prepare_when_idle()

    def _prepare_when_idle(self) -> None:
        """Prepare the next run of each answer set, unless a run is going on (it would
        compete for the workers)."""
        if self._nursery is None or any(r.active for r in self.runs.values()):
            return
        for entity_type in self.answers.unprepared():
            self._nursery.start_soon(self.answers.prepare_next, entity_type)

    # ------------------------------------------------------------------ who may run

    def _authorise(self, case_id: str, initiator: str, responder: str) -> CaseStatus:
        """The case, if it lets ``initiator`` and ``responder`` run; else a refusal."""
        status = self.registry.status(case_id, self.clock_ms())
        if status is None:
            raise NotFound("no_case", f"there is no case {case_id!r} on the ledger")
        if not status.active:
            raise Conflict("case_not_active", status.reason)
        named = {status.case.opener} | {e.member for e in status.approvals}
        for who in (initiator, responder):
            if who not in named:
                raise Forbidden(
                    "not_named",
                    f"case {case_id!r} does not name member {who!r}: a member takes part in "
                    "a PSI run only under a case it opened or approved",
                )
            if not KIND_ROLES[PsiRun.kind] & self._roles[who]:
                raise Forbidden(
                    "forbidden_role",
                    f"member {who!r} holds neither role (investigator or auditor) needed "
                    "to sign the record of a PSI run",
                )
        return status

    def _check_capacity(self) -> None:
        active = sum(1 for r in self.runs.values() if r.active)
        if active >= self.max_runs:
            raise Unavailable(
                "busy", f"{active} PSI runs are going on here (psi.max_runs); retry later"
            )

    def _check_size(self, who: str, size: int) -> None:
        if size > self.max_set_size:
            raise TooLarge(
                "too_large",
                f"{who} set of {size:,} is larger than this node takes ({self.max_set_size:,})",
            )

    # ------------------------------------------------------------------ asking

    def check_start(self, case_id: str, peer_name: str) -> tuple[int, CaseStatus]:
        """Everything ``start`` checks that does not need the set: the caller runs it
        before reading a set, so a request without a case it may use costs nothing."""
        if self._nursery is None:
            raise Unavailable("not_running", "the PSI service is not running yet")
        peer = self._index.get(peer_name)
        if peer is None:
            raise NotFound("unknown_member", f"{peer_name!r} is not a member")
        if peer == self.me:
            raise Invalid("self", "a run needs another member")
        status = self._authorise(case_id, self.name, peer_name)
        self._check_capacity()
        stats = peer_statistics(self.runtime)
        if stats is not None and peer in stats and not stats[peer].connected:
            raise Unavailable("not_connected", f"this node has no session with {peer_name!r}")
        return peer, status

    async def start(
        self, case_id: str, peer_name: str, ids: IdentifierSet, actor: bytes = NODE_ACTOR
    ) -> Run:
        """Start a run as its initiator for the user ``actor``; it goes on in the
        background (``runs``). The responder's runs are the node's policy (``NODE_ACTOR``)."""
        peer, status = self.check_start(case_id, peer_name)  # again: time has passed
        self._check_size("our", len(ids.values))
        run_id = os.urandom(16)
        values = list(ids.values)
        secrets.SystemRandom().shuffle(values)  # positions must say nothing
        session = PsiSession(Role.INITIATOR, run_id, Plan(len(values), self.chunk))
        run = self._new_run(run_id, Role.INITIATOR, peer, case_id, status, ids, session, values)
        run.actor = actor
        hello = session.hello(case_id, status.case.tx_id, ids.entity_type)
        self.stats.started += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._drive, run, hello)
        return run

    def _new_run(
        self,
        run_id: bytes,
        role: Role,
        peer: int,
        case_id: str,
        status: CaseStatus,
        ids: IdentifierSet | AnswerSet,
        session: PsiSession,
        values: list[str],
        points: tuple[bytes, ...] | None = None,
        scalar: bytes | None = None,
        blinded: tuple[bytes, ...] | None = None,
    ) -> Run:
        # Unbounded in frames, bounded in bytes (``_deliver``): how many chunks the other
        # member sends is only known once it answers, and it may send them all at once.
        inbox, outbox = trio.open_memory_channel[bytes](math.inf)
        run = Run(
            run_id=run_id,
            role=role,
            peer=peer,
            peer_name=self.genesis.members[peer].name,
            case_id=case_id,
            case_tx=status.case.tx_id,
            entity_type=ids.entity_type,
            session=session,
            values=tuple(values),
            ordered=ids.values,
            scalar=random_scalar() if scalar is None else scalar,
            points=points,
            blinded=blinded,
            prepared=blinded is not None,
            started_ms=self.clock_ms(),
            inbox=inbox,
            outbox=outbox,
        )
        self._remember(run_id)
        self.runs[run_id] = run
        while len(self.runs) > KEEP_FINISHED and not next(iter(self.runs.values())).active:
            self.runs.popitem(last=False)
        return run

    def _remember(self, run_id: bytes) -> None:
        self._seen[run_id] = None
        while len(self._seen) > SEEN_RUN_IDS:
            self._seen.popitem(last=False)

    # ------------------------------------------------------------------ answering

    def _answer(self, src: int, run_id: bytes, hello: Hello) -> None:
        peer_name = self.genesis.members[src].name
        try:
            if run_id in self._seen:
                raise Conflict("replayed_run", "this run id was used before")
            self._remember(run_id)
            if not self.answer:
                raise Forbidden("not_answering", f"{self.name} does not answer PSI runs")
            status = self._authorise(hello.case_id, peer_name, self.name)
            if status.case.tx_id != hello.case_tx:
                raise Conflict("wrong_case", f"case {hello.case_id!r} is another case here")
            self._check_size("the asking member's", hello.count)
            self._check_capacity()
            taken = self.answers.take(hello.entity_type)
            if taken is None:
                loading = " (still loading)" if hello.entity_type in self.answers.loading else ""
                raise NotFound(
                    "no_answer_set", f"{self.name} has no {hello.entity_type} set{loading}"
                )
            answer_set, prepared = taken
            self._check_size("our", len(answer_set.values))
        except Refusal as exc:
            self.stats.refused[exc.code] = self.stats.refused.get(exc.code, 0) + 1
            log.warning("psi run %s from %s refused: %s", run_id.hex()[:8], peer_name, exc.message)
            message = Refuse(exc.code, exc.message[:500])
            self.runtime.transport.send_nowait(src, _frame(run_id, message))
            return
        if prepared is not None:
            order = list(prepared.order)
        else:
            order = list(range(len(answer_set.values)))
            secrets.SystemRandom().shuffle(order)
        session = PsiSession.answering(hello, run_id, len(order), self.chunk)
        run = self._new_run(
            run_id,
            Role.RESPONDER,
            src,
            hello.case_id,
            status,
            answer_set,
            session,
            [answer_set.values[i] for i in order],
            tuple(answer_set.points[i] for i in order),
            None if prepared is None else prepared.scalar,
            None if prepared is None else prepared.blinded,
        )
        self.stats.answered += 1
        log.info(
            "psi run %s: answering %s under case %s (%s, theirs %d, ours %d%s)",
            run.id8,
            peer_name,
            hello.case_id,
            hello.entity_type,
            hello.count,
            len(order),
            ", prepared" if prepared is not None else "",
        )
        assert self._nursery is not None
        self._nursery.start_soon(self._drive, run, session.accept())

    # ------------------------------------------------------------------ a run

    def _wiring(self, run: Run) -> Wiring:
        prefix = domain(self.genesis.chain_id, run.entity_type)
        return Wiring(self.runtime.transport.send_nowait, self.pool, prefix, self.idle_timeout_s)

    async def _drive(self, run: Run, opening: Any) -> None:
        try:
            await self._carry_out(run, opening)
        finally:
            run.forget()
            self._prepare_when_idle()  # the next run of an answer set, now the workers are free

    async def _carry_out(self, run: Run, opening: Any) -> None:
        wiring = self._wiring(run)
        try:
            with trio.fail_after(self.timeout_s):
                send(wiring, run, opening)
                if run.role is Role.INITIATOR:
                    first = await next_message(wiring, run)
                    if isinstance(first, Refuse):
                        self._refused(run, first)
                        return
                    run.session.accepted(first)
                    run.mark("accepted")
                matches = await exchange(wiring, run)
        except ProtocolError as exc:
            await self._failed(run, exc.code, exc.message, wiring)
            return
        except trio.TooSlowError:
            message = f"the run took longer than {self.timeout_s:g} s (psi.timeout_s)"
            await self._failed(run, "timeout", message, wiring)
            return
        except Exception as exc:  # a bug or a broken worker pool: the node stays up
            log.exception("psi run %s failed on this node", run.id8)
            await self._failed(run, "failed", f"this node failed: {exc!r}", wiring)
            return
        finally:
            self._close_inbox(run)
        await self._completed(run, matches)

    def _refused(self, run: Run, refusal: Refuse) -> None:
        run.state, run.outcome = RunState.REFUSED, refusal.code
        run.message = f"{run.peer_name} refused: {refusal.message}"
        run.finished_ms = self.clock_ms()
        log.warning("psi run %s: %s", run.id8, run.message)

    async def _completed(self, run: Run, matches: list[int]) -> None:
        order = {v: i for i, v in enumerate(run.ordered)}
        result = sorted((run.values[i] for i in matches), key=order.__getitem__)
        run.state, run.result_size = RunState.RECORDING, len(result)
        problem = await self._record(run, "completed", len(result))
        if problem is None:
            run.result = tuple(result)
            run.state, run.outcome = RunState.COMPLETED, "completed"
            self.stats.completed += 1
            log.info(
                "psi run %s with %s under case %s: %d in common (ours %d, theirs %d)",
                run.id8,
                run.peer_name,
                run.case_id,
                len(result),
                run.own_size,
                run.peer_size or 0,
            )
        else:
            run.result_size = None
            self._fail_state(run, "failed", f"{problem}; the result is withheld")

    async def _failed(self, run: Run, code: str, message: str, wiring: Wiring) -> None:
        if code != "aborted":
            abort(wiring, run, code, message)
        log.warning("psi run %s with %s failed: %s: %s", run.id8, run.peer_name, code, message)
        run.outcome, run.message = code, message
        if run.session.peer is not None:  # sizes were exchanged: the attempt is recorded
            run.state = RunState.RECORDING
            problem = await self._record(run, code, 0)
            if problem is not None:
                message = f"{message} (and {problem})"
        self._fail_state(run, code, message)

    def _fail_state(self, run: Run, code: str, message: str) -> None:
        run.state, run.outcome, run.message = RunState.FAILED, code, message
        run.finished_ms = run.finished_ms or self.clock_ms()
        self.stats.failed[code] = self.stats.failed.get(code, 0) + 1

    async def _record(self, run: Run, outcome: str, result_size: int) -> str | None:
        run.finished_ms = run.finished_ms or self.clock_ms()
        return await record_run(
            self.runtime,
            self.store,
            self.genesis.chain_id,
            self.name,
            run,
            outcome,
            result_size,
            now_ms=self.clock_ms(),
            timeout_s=self.record_timeout_s,
        )

    # ------------------------------------------------------------------ frames

    def _on_frame(self, src: int, frame: Any) -> None:
        try:
            self._inbox_in.send_nowait((src, frame.run_id, frame.body))
        except trio.WouldBlock:
            # The run it belongs to notices the gap and fails; nothing else is lost.
            self.stats.inbox_full += 1
        except trio.ClosedResourceError:
            pass

    async def _inbox_loop(self) -> None:
        async for src, run_id, body in self._inbox_out:
            run = self.runs.get(run_id)
            if run is not None and run.peer == src and run.inbox is not None:
                self._deliver(run, body)
                continue
            try:
                message = decode_message(body)
            except ProtocolError:
                message = None
            if isinstance(message, Hello):
                self._answer(src, run_id, message)  # refuses a run id seen before
            elif run_id in self._seen:
                self.stats.stale += 1
            else:
                self.stats.unknown_run += 1
                log.warning(
                    "psi: a message from %s for run %s, which this node never had with it",
                    self.genesis.members[src].name,
                    run_id.hex()[:8],
                )

    def _deliver(self, run: Run, body: bytes) -> None:
        assert run.inbox is not None
        run.buffered += len(body)
        if run.buffered > self._buffer_limit:
            # More than both sets' points and tags: the other member floods the run, which
            # then ends reading "wrong_count" at the end of what it holds.
            self._close_inbox(run)
            return
        run.inbox.send_nowait(body)  # unbounded in frames: never blocks

    def _close_inbox(self, run: Run) -> None:
        if run.inbox is not None:
            run.inbox.close()
            run.inbox = None

    # ------------------------------------------------------------------ reading

    def statistics(self) -> dict[str, Any]:
        return {
            "answering": self.answer,
            "answer_sets": self.answers.statistics(),
            "loading": sorted(self.answers.loading),
            "workers": self.pool.workers,
            "stats": {
                "started": self.stats.started,
                "answered": self.stats.answered,
                "completed": self.stats.completed,
                "failed": dict(self.stats.failed),
                "refused": dict(self.stats.refused),
                "stale": self.stats.stale,
                "unknown_run": self.stats.unknown_run,
                "inbox_full": self.stats.inbox_full,
            },
        }


def _frame(run_id: bytes, message: Refuse) -> PsiFrame:
    return PsiFrame(run_id, encode_message(message))

"""One PSI run as this node carries it out: the bookkeeping the API shows, and the
exchange itself (``exchange``), which moves messages between the network, the state
machine (``node.psi.protocol``) and the worker processes (``node.psi.crypto``).

Three tasks per run, all ending on their own once their part is done:

* our points: hash (initiator) or take the hashed answer set (responder), shuffle,
  blind chunk by chunk in the pool, send each ``Points`` chunk as soon as it is ready;
* the other member's messages, in arrival order, through the state machine: a points
  chunk goes to the pool to be raised and tagged, tags are kept;
* our tags: the raised chunks in order, validated (a point libsodium refuses ends the
  run, naming its position), sent back as ``Tags``.

Nothing here decides whether a run may happen (``node.psi.service`` does) or records it.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from net.wire import PsiFrame
from node.ledger.kinds import NODE_ACTOR
from node.psi.crypto import (
    ChunkPool,
    Reblinded,
    blind_chunk,
    hash_blind_chunk,
    reblind_chunk,
)
from node.psi.protocol import (
    Abort,
    PeerPoints,
    PeerTags,
    ProtocolError,
    PsiMessage,
    PsiSession,
    Role,
    decode_message,
    encode_message,
)
from node.psi.work import map_in_order, wait_future

log = logging.getLogger("crosstrace.psi")

PROGRESS_STEPS = 4  # log lines per run: at 25, 50, 75 and 100%
LOG_PROGRESS_FROM = 10_000  # smaller runs log only their end


class RunState(enum.StrEnum):
    RUNNING = "running"
    RECORDING = "recording"  # the result is known; its ledger record is on its way
    COMPLETED = "completed"
    FAILED = "failed"
    REFUSED = "refused"  # the responder said no before anything was exchanged


@dataclass
class Run:
    """One run on this node, either role. ``values`` are our elements in the order our
    points were sent (shuffled); ``result`` is withheld until the record commits."""

    run_id: bytes
    role: Role
    peer: int
    peer_name: str
    case_id: str
    case_tx: bytes
    entity_type: str
    session: PsiSession
    values: tuple[str, ...]
    ordered: tuple[str, ...]  # the same elements in the order the operator gave them
    scalar: bytes
    points: tuple[bytes, ...] | None = None  # hashed answer set (responder); None: hash here
    blinded: tuple[bytes, ...] | None = None  # prepared ahead with ``scalar`` (responder)
    prepared: bool = False  # whether ``blinded`` was ready before the run
    state: RunState = RunState.RUNNING
    outcome: str | None = None
    message: str = ""
    result: tuple[str, ...] | None = None
    result_size: int | None = None
    record_tx: bytes | None = None
    record_height: int | None = None
    started_ms: int = 0
    finished_ms: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Who started it (the user's actor id); the responder's runs are the node's policy.
    actor: bytes = NODE_ACTOR
    inbox: trio.MemorySendChannel[bytes] | None = None  # None once the run ended
    outbox: trio.MemoryReceiveChannel[bytes] | None = None
    buffered: int = 0  # bytes received and not yet read by the run
    _logged_step: int = 0
    _t0: float = field(default_factory=time.perf_counter)

    @property
    def active(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.RECORDING)

    @property
    def own_size(self) -> int:
        return self.session.own.count

    @property
    def peer_size(self) -> int | None:
        return None if self.session.peer is None else self.session.peer.count

    @property
    def id8(self) -> str:
        return self.run_id.hex()[:8]

    def forget(self) -> None:
        """Once the run has ended: drop the secret scalar, the elements and everything
        derived from them; only the result (this member's own data) and the summary stay.
        (Python cannot wipe memory; dropping the references is what it can do.)"""
        self.scalar = b""
        self.values = self.ordered = ()
        self.points = self.blinded = None
        self.session.discard()

    def mark(self, name: str) -> None:
        """Seconds since the run started, under ``name`` (shown by the API)."""
        self.timings[name] = round(time.perf_counter() - self._t0, 3)

    def note_progress(self) -> None:
        total = self.session.total_work
        if total < LOG_PROGRESS_FROM or self.session.peer is None:
            return
        step = math.floor(self.session.progress.done() * PROGRESS_STEPS / total)
        if step > self._logged_step:
            self._logged_step = step
            p = self.session.progress
            log.info(
                "psi run %s with %s: %d%% (our points sent %d of %d, theirs tagged %d of %d, "
                "tags back %d of %d)",
                self.id8,
                self.peer_name,
                100 * step // PROGRESS_STEPS,
                p.own_sent,
                self.own_size,
                p.peer_tagged,
                self.peer_size or 0,
                p.tags_received,
                self.own_size,
            )


def run_json(run: Run, *, with_result: bool = False) -> dict[str, Any]:
    p = run.session.progress
    out: dict[str, Any] = {
        "run_id": run.run_id.hex(),
        "role": str(run.role),
        "peer": run.peer_name,
        "case_id": run.case_id,
        "entity_type": run.entity_type,
        "state": str(run.state),
        "outcome": run.outcome,
        "message": run.message,
        "own_size": run.own_size,
        "peer_size": run.peer_size,
        "result_size": run.result_size,
        "prepared": run.prepared,
        "progress": {
            "done": p.done(),
            "total": run.session.total_work if run.peer_size else None,
            "own_sent": p.own_sent,
            "peer_received": p.peer_received,
            "peer_tagged": p.peer_tagged,
            "tags_received": p.tags_received,
        },
        "record": None
        if run.record_tx is None
        else {"tx_id": run.record_tx.hex(), "height": run.record_height},
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "timings_s": dict(run.timings),
    }
    if with_result:
        out["intersection"] = None if run.result is None else list(run.result)
    return out


# ------------------------------------------------------------------ the exchange


@dataclass(frozen=True)
class Wiring:
    """What an exchange needs from the node: sending to the other member, the pool."""

    send: Callable[[int, PsiFrame], None]
    pool: ChunkPool
    prefix: bytes  # ``node.psi.crypto.domain`` for the run's entity type
    idle_timeout_s: float


def send(wiring: Wiring, run: Run, message: PsiMessage) -> None:
    wiring.send(run.peer, PsiFrame(run.run_id, encode_message(message)))


async def next_message(wiring: Wiring, run: Run) -> PsiMessage:
    assert run.outbox is not None
    with trio.move_on_after(wiring.idle_timeout_s):
        try:
            body = await run.outbox.receive()
        except trio.EndOfChannel:
            raise ProtocolError(
                "wrong_count", f"{run.peer_name} sent more than the run can hold"
            ) from None
        run.buffered -= len(body)
        return decode_message(body)
    raise ProtocolError(
        "timeout", f"no message from {run.peer_name} for {wiring.idle_timeout_s:g} s"
    )


async def exchange(wiring: Wiring, run: Run) -> list[int]:
    """Points and tags both ways; our matched positions once the session is complete."""
    session = run.session
    assert session.peer is not None
    window = wiring.pool.workers
    raised_in, raised_out = trio.open_memory_channel[tuple[PeerPoints, Any]](window)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_points, wiring, run, window)
            nursery.start_soon(_send_tags, wiring, run, raised_out)
            await _receive(wiring, run, raised_in)
    except* ProtocolError as group:
        # The first task to fail says why; the others were cancelled because of it.
        raise group.exceptions[0] from None
    run.mark("exchanged")
    if not session.complete:  # every task ended on its own: a bug if this fires
        raise ProtocolError("failed", "the exchange ended before the run was complete")
    return session.matches()


async def _send_points(wiring: Wiring, run: Run, window: int) -> None:
    session, chunk = run.session, run.session.own.chunk
    if run.blinded is not None:  # prepared before the run (``node.psi.answers``)
        for seq in range(session.own.chunks):
            send(wiring, run, session.own_points(seq, run.blinded[seq * chunk : (seq + 1) * chunk]))
            await trio.lowlevel.checkpoint()
        run.mark("own_points_sent")
        return
    jobs: list[tuple[Any, ...]] = []
    for seq in range(session.own.chunks):
        part = slice(seq * chunk, (seq + 1) * chunk)
        if run.points is not None:
            jobs.append((run.scalar, run.points[part]))
        else:
            jobs.append((run.scalar, wiring.prefix, run.values[part]))
    fn = blind_chunk if run.points is not None else hash_blind_chunk

    def ready(seq: int, points: list[bytes]) -> None:
        send(wiring, run, session.own_points(seq, tuple(points)))
        run.note_progress()

    await map_in_order(wiring.pool, fn, jobs, ready, window=window)
    run.mark("own_points_sent")


async def _receive(
    wiring: Wiring, run: Run, raised: trio.MemorySendChannel[tuple[PeerPoints, Any]]
) -> None:
    session = run.session
    assert session.peer is not None
    peer_chunks, own_chunks = session.peer.chunks, session.own.chunks
    points_seen = tags_seen = 0
    async with raised:
        while points_seen < peer_chunks or tags_seen < own_chunks:
            event = session.receive(await next_message(wiring, run))
            if isinstance(event, PeerTags):
                tags_seen += 1
                run.note_progress()
                continue
            points_seen += 1
            future = wiring.pool.submit(reblind_chunk, run.scalar, run.run_id, event.points)
            await raised.send((event, future))
    run.mark("all_received")


async def _send_tags(
    wiring: Wiring, run: Run, raised: trio.MemoryReceiveChannel[tuple[PeerPoints, Any]]
) -> None:
    session = run.session
    assert session.peer is not None
    count = session.peer.count
    async with raised:
        async for event, future in raised:
            result: Reblinded = await wait_future(future)
            if result.invalid is not None:
                position = event.offset + result.invalid + 1
                raise ProtocolError(
                    "invalid_point",
                    f"{run.peer_name} sent an invalid group element: point {position:,} of "
                    f"{count:,} (chunk {event.seq}) is not a point of the prime-order group "
                    "(off the curve, of small order, outside the subgroup or non-canonical)",
                )
            send(wiring, run, session.peer_tags(event.seq, result.tags))
            run.note_progress()
            if event.seq == session.peer.chunks - 1:
                break
    run.mark("tags_sent")


def abort(wiring: Wiring, run: Run, code: str, message: str) -> None:
    """Tell the other member why we stop (best effort: it times out otherwise)."""
    try:
        send(wiring, run, Abort(code, message[:500]))
    except ValueError:
        log.exception("could not encode the abort of psi run %s", run.id8)

"""The sets a node answers other members' PSI runs with, one per entity type.

A set comes from ``[psi.answer_sets]`` at start-up or from the local API. Loading it
normalises every line and hashes every element to the group, in the worker processes;
both are the same for every run, so they are done once.

**Prepared runs.** Blinding the set is not the same for every run: it takes that run's
own secret scalar. With ``prepare`` on, the node draws the scalar of the *next* run
ahead of time and blinds the set with it while no run is going on, so the next run
starts by sending points that are ready. A prepared run is used by exactly one run and
then dropped (the following one is prepared once no run is going on), and it is dropped
unused when the set is replaced, so every run still has a fresh scalar and a fresh
shuffle; the only difference is when the blinding happens. The scalar waits in this
process's memory meanwhile, where the set itself is anyway.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from node.psi.crypto import ChunkPool, blind_chunk, domain, hash_chunk, random_scalar
from node.psi.inputs import IdentifierSet
from node.psi.work import map_all
from node.refusals import Refusal

log = logging.getLogger("crosstrace.psi")

HASH_CHUNK = 4096


@dataclass(frozen=True)
class AnswerSet:
    entity_type: str
    values: tuple[str, ...]  # normalised, in the order given
    points: tuple[bytes, ...]  # hashed to the group: the same for every run
    source: str
    loaded_ms: int


@dataclass(frozen=True)
class Prepared:
    """The next run's secret scalar, shuffle and blinded points for one answer set."""

    answer_set: AnswerSet
    scalar: bytes
    order: tuple[int, ...]
    blinded: tuple[bytes, ...]


class AnswerSets:
    def __init__(
        self,
        pool: ChunkPool,
        chain_id: str,
        read_set: Callable[[str, bytes, bool], Awaitable[IdentifierSet]],
        clock_ms: Callable[[], int],
        *,
        prepare: bool,
        chunk: int,
    ) -> None:
        self.pool = pool
        self.chain_id = chain_id
        self.read_set = read_set
        self.clock_ms = clock_ms
        self.prepare = prepare
        self.chunk = chunk
        self.sets: dict[str, AnswerSet] = {}
        self.loading: set[str] = set()
        self._prepared: dict[str, Prepared] = {}
        self._preparing: set[str] = set()

    async def load(
        self, entity_type: str, data: bytes, *, dedupe: bool = False, source: str = "api"
    ) -> AnswerSet:
        self.loading.add(entity_type)
        try:
            ids = await self.read_set(entity_type, data, dedupe)
            prefix = domain(self.chain_id, entity_type)
            values = ids.values
            jobs = [(prefix, values[i : i + HASH_CHUNK]) for i in range(0, len(values), HASH_CHUNK)]
            hashed = await map_all(self.pool, hash_chunk, jobs, window=2 * self.pool.workers)
        finally:
            self.loading.discard(entity_type)
        points = tuple(p for part in hashed for p in part)
        answer_set = AnswerSet(entity_type, values, points, source, self.clock_ms())
        self.sets[entity_type] = answer_set
        self._prepared.pop(entity_type, None)  # prepared for the set it replaces
        log.info("psi answer set for %s: %d identifiers (%s)", entity_type, len(values), source)
        return answer_set

    async def load_file(self, entity_type: str, path: Path) -> None:
        try:
            data = await trio.Path(path).read_bytes()
            await self.load(entity_type, data, source=str(path))
        except (OSError, Refusal) as exc:
            where = "; ".join(f"line {p.line}: {p.message}" for p in getattr(exc, "problems", ()))
            log.error(
                "psi.answer_sets.%s (%s) not loaded: %s%s",
                entity_type,
                path,
                exc,
                f" ({where})" if where else "",
            )

    def take(self, entity_type: str) -> tuple[AnswerSet, Prepared | None] | None:
        """The set of ``entity_type`` and, if ready, the run prepared for it (which no
        other run will get)."""
        answer_set = self.sets.get(entity_type)
        if answer_set is None:
            return None
        prepared = self._prepared.pop(entity_type, None)
        if prepared is not None and prepared.answer_set is not answer_set:
            prepared = None
        return answer_set, prepared

    def unprepared(self) -> list[str]:
        """The entity types worth preparing now."""
        if not self.prepare:
            return []
        return [t for t in self.sets if t not in self._prepared and t not in self._preparing]

    async def prepare_next(self, entity_type: str) -> None:
        """Blind the set with a fresh scalar and shuffle, for the next run."""
        answer_set = self.sets.get(entity_type)
        if answer_set is None or entity_type in self._preparing:
            return
        self._preparing.add(entity_type)
        try:
            order = list(range(len(answer_set.points)))
            secrets.SystemRandom().shuffle(order)
            scalar = random_scalar()
            shuffled = [answer_set.points[i] for i in order]
            jobs: list[tuple[Any, ...]] = [
                (scalar, shuffled[i : i + self.chunk]) for i in range(0, len(shuffled), self.chunk)
            ]
            parts = await map_all(self.pool, blind_chunk, jobs, window=2 * self.pool.workers)
        finally:
            self._preparing.discard(entity_type)
        if self.sets.get(entity_type) is answer_set:  # not replaced meanwhile
            blinded = tuple(p for part in parts for p in part)
            self._prepared[entity_type] = Prepared(answer_set, scalar, tuple(order), blinded)
            log.info("psi: the next %s run is prepared (%d points)", entity_type, len(blinded))

    def statistics(self) -> dict[str, Any]:
        return {
            t: {
                "size": len(s.values),
                "source": s.source,
                "loaded_ms": s.loaded_ms,
                "prepared": t in self._prepared,
            }
            for t, s in self.sets.items()
        }

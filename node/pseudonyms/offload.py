"""Where a pseudonym evaluation's group arithmetic runs: on the event loop for a few
points (a fraction of a millisecond, less than the trip to a worker thread and back),
otherwise in worker threads, split so both cores take part (libsodium releases the
GIL). Results come back in the order of the input."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from node.identifiers import oprf

T = TypeVar("T")

# Below this many points the arithmetic runs on the event loop (a few hundred us).
INLINE_POINTS = 16
THREAD_CHUNKS = 2


def split(items: Sequence[bytes], parts: int) -> list[Sequence[bytes]]:
    size = max(1, math.ceil(len(items) / parts))
    return [items[i : i + size] for i in range(0, len(items), size)]


async def threaded(
    fn: Callable[[Sequence[bytes]], list[bytes]], items: Sequence[bytes]
) -> list[bytes]:
    """``fn`` over ``items``, on the loop when few, else in worker threads (libsodium
    releases the GIL) whose results are joined in order."""
    if len(items) <= INLINE_POINTS:
        return fn(items)
    parts = split(items, THREAD_CHUNKS)
    results: list[list[bytes]] = [[] for _ in parts]

    async def run(i: int) -> None:
        results[i] = await trio.to_thread.run_sync(fn, parts[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(parts)):
            nursery.start_soon(run, i)
    return [x for part in results for x in part]


async def maybe_threaded(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` here for a few points (a fraction of a millisecond, less than the
    trip to a worker thread and back), in a worker thread for more."""
    if size <= INLINE_POINTS:
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args)


def join(entity_type: str, value: str) -> bytes:
    """One identifier as the bytes a worker thread takes (``input_points``)."""
    return entity_type.encode() + b"\0" + value.encode()


def input_points(joined: Sequence[bytes]) -> list[bytes]:
    """Each ``join``-ed identifier hashed to the group."""
    out = []
    for data in joined:
        entity_type, _, value = data.partition(b"\0")
        out.append(oprf.input_point(entity_type.decode(), value.decode()))
    return out


async def blind(points: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Each point blinded with its own fresh scalar: (blinded points, scalars)."""
    if len(points) <= INLINE_POINTS:
        return oprf.blind_many(points)
    parts = split(points, THREAD_CHUNKS)
    results: list[tuple[list[bytes], list[bytes]]] = [([], []) for _ in parts]

    async def run(i: int) -> None:
        results[i] = await trio.to_thread.run_sync(oprf.blind_many, parts[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(parts)):
            nursery.start_soon(run, i)
    return [b for r in results for b in r[0]], [x for r in results for x in r[1]]


async def threaded_pairs(
    fn: Callable[[Sequence[bytes], Sequence[bytes]], list[bytes]],
    left: Sequence[bytes],
    right: Sequence[bytes],
) -> list[bytes]:
    """``fn`` over pairs of equal slices of ``left`` and ``right``, like ``threaded``."""
    if len(left) <= INLINE_POINTS:
        return fn(left, right)
    size = max(1, math.ceil(len(left) / THREAD_CHUNKS))
    bounds = list(range(0, len(left), size))
    results: list[list[bytes]] = [[] for _ in bounds]

    async def run(i: int, start: int) -> None:
        results[i] = await trio.to_thread.run_sync(
            fn, left[start : start + size], right[start : start + size]
        )

    async with trio.open_nursery() as nursery:
        for i, start in enumerate(bounds):
            nursery.start_soon(run, i, start)
    return [x for part in results for x in part]

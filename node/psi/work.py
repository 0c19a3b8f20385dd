"""Waiting for the PSI worker processes without blocking the node's event loop.

``ChunkPool`` (``node.psi.crypto``) hands out ``concurrent.futures.Future`` objects; a
future's completion callback runs in the pool's management thread, so it wakes the trio
task through the run's token. Cancelling the waiting task cancels the future if it has
not started (a started chunk finishes in its worker and is thrown away).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import trio

from node.psi.crypto import ChunkPool

T = TypeVar("T")


async def wait_future(future: Future[T]) -> T:
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: Future[T]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


async def map_in_order(
    pool: ChunkPool,
    fn: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    on_result: Callable[[int, T], None],
    *,
    window: int,
) -> None:
    """``fn(*job)`` for every job in the pool, at most ``window`` queued at once, with
    ``on_result(i, result)`` called on the event loop in job order."""
    pending: deque[Future[T]] = deque()
    submitted = 0
    try:
        for i in range(len(jobs)):
            while submitted < len(jobs) and submitted < i + window:
                pending.append(pool.submit(fn, *jobs[submitted]))
                submitted += 1
            on_result(i, await wait_future(pending.popleft()))
    finally:
        for future in pending:
            future.cancel()


async def map_all(
    pool: ChunkPool, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, window: int
) -> list[T]:
    results: list[T] = []
    await map_in_order(pool, fn, jobs, lambda _i, r: results.append(r), window=window)
    return results

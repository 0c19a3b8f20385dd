"""File descriptors: the process's open-file limit, and a reserve the listener keeps.

A node holds sockets (members, handshakes, API clients), LMDB's files and its logs in
one descriptor table. ``raise_open_file_limit`` lifts the soft ``RLIMIT_NOFILE`` to the
hard one at start-up (the daemon calls it once and logs the result), and
``DescriptorBudget`` tells the listener when fewer than ``reserve`` descriptors are
free, so it stops taking new inbound sockets before accept() fails for everyone:
members' connections, the store and the API always have some left.

Counting: the open descriptors are listed from ``/proc/self/fd`` (or ``/dev/fd``) at
most every ``resample_every`` checks or ``max_age_s`` seconds, and in between the
listener's own sockets, which it counts exactly, are added to what the last listing
found for everything else. A check that finds too few free is confirmed by a fresh
listing (at most one every ``confirm_s``) before it refuses anything.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass

FD_DIRECTORIES = ("/proc/self/fd", "/dev/fd")
DESCRIPTOR_RESERVE = 64


@dataclass(frozen=True)
class OpenFileLimit:
    before: int  # the soft limit found (resource.RLIM_INFINITY for none)
    soft: int  # the soft limit now
    hard: int
    error: str | None = None  # why it could not be raised, if it could not

    def __str__(self) -> str:
        def show(value: int) -> str:
            return "unlimited" if value == resource.RLIM_INFINITY else str(value)

        if self.error is not None:
            return f"open-file limit {show(self.soft)} (hard {show(self.hard)}): {self.error}"
        if self.before == self.soft:
            return f"open-file limit {show(self.soft)} (already the hard limit)"
        return f"open-file limit raised from {show(self.before)} to {show(self.soft)} (hard)"


def raise_open_file_limit() -> OpenFileLimit:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; never lowers it, never raises."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return OpenFileLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        return OpenFileLimit(soft, soft, hard, f"not raised: {exc}")
    return OpenFileLimit(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)


def open_descriptor_count() -> int | None:
    """Descriptors open in this process, or None where that cannot be listed."""
    for directory in FD_DIRECTORIES:
        try:
            # The listing holds the directory's own descriptor while it reads.
            return len(os.listdir(directory)) - 1
        except OSError:
            continue
    return None


def soft_open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class DescriptorBudget:
    """Whether a new inbound socket would eat into the reserve. ``own`` is the number of
    the caller's own sockets open now (the new one included), which it counts exactly."""

    def __init__(
        self,
        reserve: int = DESCRIPTOR_RESERVE,
        *,
        count: Callable[[], int | None] = open_descriptor_count,
        limit: Callable[[], int] = soft_open_file_limit,
        resample_every: int = 64,
        max_age_s: float = 1.0,
        confirm_s: float = 0.02,
    ) -> None:
        if reserve < 0:
            raise ValueError("the descriptor reserve must not be negative")
        self.reserve = reserve
        self._count = count
        self._limit = limit
        self._resample_every = resample_every
        self._max_age_s = max_age_s
        self._confirm_s = confirm_s
        self._others: int | None = None  # descriptors that are not the caller's sockets
        self._sampled_at = float("-inf")
        self._checks = 0
        self.limit: int | None = None
        self.in_use: int | None = None  # the last estimate

    def free(self) -> int | None:
        """Free descriptors by the last estimate, or None before one (or with no count)."""
        if self.limit is None or self.in_use is None or self.limit == resource.RLIM_INFINITY:
            return None
        return self.limit - self.in_use

    def short(self, now: float, own: int) -> bool:
        """True when fewer than ``reserve`` descriptors would be left free."""
        if self.reserve == 0:
            return False
        self._checks += 1
        if self._checks >= self._resample_every or now - self._sampled_at >= self._max_age_s:
            self._sample(now, own)
        free = self._estimate(own)
        if free is not None and free < self.reserve and now - self._sampled_at >= self._confirm_s:
            self._sample(now, own)
            free = self._estimate(own)
        return free is not None and free < self.reserve

    def _sample(self, now: float, own: int) -> None:
        self._checks = 0
        self._sampled_at = now
        self.limit = self._limit()
        total = self._count()
        self._others = None if total is None else max(0, total - own)

    def _estimate(self, own: int) -> int | None:
        if self._others is None or self.limit is None:
            return None
        self.in_use = self._others + own
        if self.limit == resource.RLIM_INFINITY:
            return None
        return self.limit - self.in_use

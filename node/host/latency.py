"""Latency histograms for metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Upper bounds in seconds. A commit takes a few PBFT rounds plus a batch delay: tens of
# milliseconds on a LAN, seconds across sites, tens of seconds through a view change.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _number(value: float) -> str:
    return repr(float(value))


class LatencyHistogram:
    """Commit latencies in fixed buckets: constant memory however long a node runs."""

    def __init__(self, bounds_s: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self.counts = [0] * (len(self.bounds_s) + 1)  # the last one is +Inf
        self.sum_s = 0.0
        self.count = 0
        self._seen = 0

    def observe(self, ms: float) -> None:
        seconds = ms / 1000
        self.counts[bisect_left(self.bounds_s, seconds)] += 1
        self.sum_s += seconds
        self.count += 1

    def update(self, samples_ms: Sequence[float]) -> None:
        if len(samples_ms) < self._seen:
            # The list was replaced or trimmed: what is left cannot be told apart from
            # samples already counted, so count only what arrives from now on.
            self._seen = len(samples_ms)
            return
        for ms in samples_ms[self._seen :]:
            seconds = ms / 1000
            self.counts[bisect_left(self.bounds_s, seconds)] += 1
            self.sum_s += seconds
            self.count += 1
        self._seen = len(samples_ms)

    def cumulative(self) -> list[tuple[str, int]]:
        out = []
        total = 0
        for bound, n in zip((*map(_number, self.bounds_s), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

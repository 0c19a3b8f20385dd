"""What a process costs, read from Linux's ``/proc``: CPU time and peak resident memory.

Every reader answers ``nan`` where ``/proc`` is missing or the process is gone, so a
benchmark off Linux prints "nan" instead of failing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far (``utime + stime``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _status_kib(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM``) since it started or since the last
    ``reset_peak_rss``."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def reset_peak_rss(pid: int) -> bool:
    """Start ``VmHWM`` again from the current resident size (Linux 4.0+, writing 5 to
    ``clear_refs``; allowed for one's own processes), so a peak belongs to one phase.
    False where that is not possible: the peak then counts from the process's start."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True

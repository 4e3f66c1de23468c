"""CPU and memory of processes and of the machine, read from /proc (Linux)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (all its threads) in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def process_rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            line = f.readline().decode().split()
    except OSError:
        return None
    values = [int(v) for v in line[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass(slots=True)
class CpuSample:
    """CPU counters of a set of processes and the machine at one instant."""

    wall: float
    processes: dict[int, float | None]
    machine: tuple[int, int] | None

    @classmethod
    def take(cls, pids: list[int]) -> CpuSample:
        return cls(
            time.monotonic(), {p: process_cpu_seconds(p) for p in pids}, machine_busy_ticks()
        )


def cores_between(a: CpuSample, b: CpuSample, pids: list[int]) -> float | None:
    """Cores used by `pids` together between two samples (CPU seconds / wall seconds)."""
    dt = b.wall - a.wall
    if dt <= 0:
        return None
    total = 0.0
    for pid in pids:
        x, y = a.processes.get(pid), b.processes.get(pid)
        if x is None or y is None:
            return None
        total += y - x
    return total / dt


def machine_cores_between(a: CpuSample, b: CpuSample) -> float | None:
    """Busy cores of the whole machine between two samples."""
    if a.machine is None or b.machine is None:
        return None
    busy = b.machine[0] - a.machine[0]
    total = b.machine[1] - a.machine[1]
    if total <= 0:
        return None
    return (os.cpu_count() or 1) * busy / total

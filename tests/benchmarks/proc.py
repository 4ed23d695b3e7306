"""What processes cost, read from /proc: CPU time and memory of a process and its descendants."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def processes(pid: int) -> list[int]:
    """Return ``pid`` and all its descendants (a server's workers, a wrapper's program)."""
    try:
        return [pid, *_children(pid)]
    except OSError:
        return [pid]


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU time (user + system) the processes have used, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def memory_kb(pids: list[int]) -> tuple[int, int]:
    """Return the processes' resident and proportional set sizes (RSS, PSS) in kB."""
    rss = pss = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            name, _, value = line.partition(":")
            if name == "Rss":
                rss += int(value.split()[0])
            elif name == "Pss":
                pss += int(value.split()[0])
    return rss, pss

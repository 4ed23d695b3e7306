"""Measure what an idle local stack costs: CPU of one core and memory, per instance and in all.

A script, not a test: it prints figures. It starts its own stack on spare ports (or uses one
already running with --run-dir), lets it settle, then reads each instance's processes (the
instance and any children) from /proc over a window: CPU time (user + system) and memory.

Memory is given two ways. RSS counts every page a process maps, so pages shared by several
processes (the Python interpreter, shared libraries) count once per process; PSS gives each
process its share of a shared page, so the sum over the stack is what the stack takes.

    python -m tests.benchmarks.idle_footprint [--settle 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.proc import cpu_seconds, memory_kb, processes
from tests.benchmarks.running import stack

PORT_OFFSET = 21_000  # ports 26000 to 30090: below the ephemeral range, where a client socket may hold one


@dataclass
class Footprint:
    """One instance's figures over the window."""

    name: str
    processes: int
    cpu_percent: float  # of one core
    rss_mb: float
    pss_mb: float


def measure(pids_by_name: dict[str, list[int]], seconds: float) -> list[Footprint]:
    """Read every instance's CPU time over ``seconds`` and its memory at the end."""
    before = {name: cpu_seconds(pids) for name, pids in pids_by_name.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    result = []
    for name, pids in pids_by_name.items():
        rss, pss = memory_kb(pids)
        cpu = (cpu_seconds(pids) - before[name]) / elapsed * 100
        result.append(Footprint(name, len(pids), cpu, rss / 1024, pss / 1024))
    return sorted(result, key=lambda f: -f.cpu_percent)


def main(argv: list[str] | None = None) -> int:
    """Start (or use) a stack, let it settle, and print its idle footprint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before measuring")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the window")
    parser.add_argument("--run-dir", help="measure the stack running from this run directory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with stack(args.run_dir, PORT_OFFSET, "idle") as orchestrator:
        instances = [info for info in orchestrator.instances() if info.pid is not None]
        if not instances:
            sys.exit("no instance runs as a local process: this script measures a local stack (scalelab up)")
        time.sleep(args.settle)
        figures = measure({info.name: processes(info.pid) for info in instances}, args.seconds)
    print(f"idle stack, {args.seconds:g} s after {args.settle:g} s to settle (CPU as % of one core)")
    print(f"{'instance':<16}{'procs':>6}{'CPU %':>8}{'RSS MB':>9}{'PSS MB':>9}")
    for f in figures:
        print(f"{f.name:<16}{f.processes:>6}{f.cpu_percent:>8.2f}{f.rss_mb:>9.1f}{f.pss_mb:>9.1f}")
    total_cpu = sum(f.cpu_percent for f in figures)
    total_rss = sum(f.rss_mb for f in figures)
    total_pss = sum(f.pss_mb for f in figures)
    count = sum(f.processes for f in figures)
    print(f"{'all':<16}{count:>6}{total_cpu:>8.2f}{total_rss:>9.1f}{total_pss:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps([vars(f) for f in figures], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

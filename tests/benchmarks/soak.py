"""Soak the stack: half its measured capacity for ten minutes, and watch that nothing grows or fails.

A script, not a test: it prints figures. It starts its own stack on spare ports (or uses one
already running with --run-dir), measures what the stack answers unpaced with the lab's default
mix (the load engine, Locust, at 32 users), then sends half of that, paced, for --minutes. After
a warm-up it reads every instance's resident memory, open files and threads from /proc (its
whole process tree) every --every seconds, and at the end says whether there were errors, and
whether any instance's memory left a 10 % band around its warmed-up value or its open files or
threads grew. Growth is a trend, not a moment: the median of the last third of the readings
against the median of the first third, beyond a slack for the sockets and pool threads that
come and go with the requests in flight. Prometheus is reported but not judged: it keeps the
samples it scrapes, so its memory grows by design until its retention.

    python -m tests.benchmarks.soak [--minutes 10] [--warmup 60] [--every 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scalelab.load.engine import LoadEngine, LoadPlan
from scalelab.orchestrators import LocalOrchestrator
from tests.benchmarks.running import stack

PORT_OFFSET = 15_000  # below the ephemeral port range (32768 and up), which clients may hold
CAPACITY_USERS = 32
CAPACITY_SECONDS = 20
SOAK_USERS = 24
MEMORY_BAND = 0.10
FILES_SLACK = 8  # connections in flight come and go
THREADS_SLACK = 2  # request-thread pools start threads on demand, up to their configured size
NOT_JUDGED = ("prometheus",)
PAGE = os.sysconf("SC_PAGE_SIZE")
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Footprint:
    """What one instance's process tree holds: resident memory (bytes), open files and threads."""

    rss: int
    files: int
    threads: int


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def footprint(pid: int, tree: dict[int, list[int]]) -> Footprint:
    """Return the footprint of ``pid`` and every process below it."""
    rss = files = threads = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        pending.extend(tree.get(current, []))
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            rss += int(fields[21]) * PAGE  # field 24 of proc(5): rss in pages
            threads += int(fields[17])  # field 20: num_threads
            files += len(os.listdir(f"/proc/{current}/fd"))
        except OSError:
            continue
    return Footprint(rss, files, threads)


def snapshot(orchestrator: LocalOrchestrator) -> dict[str, Footprint]:
    """Return the footprint of every running instance."""
    tree = _children()
    return {info.name: footprint(info.pid, tree) for info in orchestrator.instances() if info.pid}


def failures(engine: LoadEngine) -> tuple[int, int]:
    """Return (requests, failures) the load engine counted so far."""
    stats = engine.stats()
    total = next((row for row in stats.get("stats", []) if row.get("name") == "Aggregated"), {})
    return int(total.get("num_requests", 0)), int(total.get("num_failures", 0))


def measure_capacity(engine: LoadEngine) -> float:
    """Return the median req/s the stack answers unpaced with the default mix."""
    engine.start(LoadPlan(users=CAPACITY_USERS, rate=0))
    rates = []
    try:
        time.sleep(5)  # the users connect and the caches fill
        for _ in range(CAPACITY_SECONDS):
            time.sleep(1)
            rates.append(float(engine.stats().get("current_rps", 0.0)))
    finally:
        engine.stop()
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    """Measure capacity, soak at half of it, and print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the reference footprint")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between footprint readings")
    parser.add_argument("--rate", type=float, help="soak at this req/s instead of half the measured capacity")
    parser.add_argument("--run-dir", help="soak the stack running from this run directory")
    args = parser.parse_args(argv)

    with stack(args.run_dir, PORT_OFFSET, "soak") as orchestrator:
        engine = LoadEngine(orchestrator.get("loadgen").url, REQUEST_TIMEOUT)
        capacity = measure_capacity(engine) if args.rate is None else 2 * args.rate
        rate = round(capacity / 2, 1)
        print(f"capacity (default mix, {CAPACITY_USERS} users, unpaced): {capacity:.0f} req/s; soaking at {rate} req/s")
        time.sleep(3)  # the capacity run's last answers
        engine.start(LoadPlan(users=SOAK_USERS, rate=rate))
        started = time.monotonic()
        try:
            time.sleep(args.warmup)
            reference = snapshot(orchestrator)
            before = failures(engine)
            readings = [reference]
            end = started + args.minutes * 60
            while time.monotonic() < end:
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
                readings.append(snapshot(orchestrator))
                sent, failed = failures(engine)
                print(f"{(time.monotonic() - started) / 60:5.1f} min  {sent} requests, {failed} failed")
            after = failures(engine)
        finally:
            engine.stop()

    final = readings[-1]
    third = max(1, len(readings) // 3)
    print(f"\n{'instance':<16}{'RSS MiB warm':>14}{'RSS MiB end':>13}{'change':>9}{'files':>11}{'threads':>11}")
    problems = []
    for name, ref in sorted(reference.items()):
        series = [r[name] for r in readings if name in r]
        end_fp = final.get(name)
        if end_fp is None:
            problems.append(f"{name} was gone at the end")
            continue
        change = (end_fp.rss - ref.rss) / ref.rss if ref.rss else 0.0
        early_files = statistics.median(f.files for f in series[:third])
        late_files = statistics.median(f.files for f in series[-third:])
        early_threads = statistics.median(f.threads for f in series[:third])
        late_threads = statistics.median(f.threads for f in series[-third:])
        print(
            f"{name:<16}{ref.rss / 2**20:>14.1f}{end_fp.rss / 2**20:>13.1f}{change:>+9.1%}"
            f"{f'{early_files:g}->{late_files:g}':>11}{f'{early_threads:g}->{late_threads:g}':>11}"
            + ("   (not judged: keeps what it scrapes)" if name in NOT_JUDGED else "")
        )
        if name in NOT_JUDGED:
            continue
        if abs(change) > MEMORY_BAND:
            problems.append(f"{name}: resident memory {change:+.1%} since warm-up")
        if late_files > early_files + FILES_SLACK:
            problems.append(f"{name}: open files grew, {early_files:g} -> {late_files:g} (medians)")
        if late_threads > early_threads + THREADS_SLACK:
            problems.append(f"{name}: threads grew, {early_threads:g} -> {late_threads:g} (medians)")
    sent, failed = after[0] - before[0], after[1] - before[1]
    print(f"\nafter warm-up: {sent} requests, {failed} failed, over {args.minutes:g} min at {rate} req/s")
    if failed:
        problems.append(f"{failed} requests failed")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("soak passed" if not problems else "soak FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

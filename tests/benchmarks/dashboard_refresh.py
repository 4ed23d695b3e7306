"""Time the control page's refresh with an hour of history on the page.

A script, not a test: it prints figures. It builds the real app around a Lab whose history
holds an hour of one-second samples (3 gateways, 4 microservices, 60 actions), then sends the
browser's own refresh request (every card, the charts among them) through the Flask server
(routing, JSON in and out) and reports the median and the slowest per window.

    python -m tests.benchmarks.dashboard_refresh [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from prometheus_client import CollectorRegistry

from dashboard.actionlog import ActionLog
from dashboard.app import create_app
from dashboard.config import DashboardConfig
from dashboard.history import Sample
from dashboard.lab import Lab
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config
from tests.unit.dashboard.panels.support import Callbacks

HOUR = 3600
WINDOWS = (60, 300, 3600)


def _filled_lab(run_dir: str) -> Lab:
    config = load_config(DashboardConfig, {"run_dir": run_dir}, environ={})
    lab = Lab(config, LocalOrchestrator(run_dir), lambda: "unused", CollectorRegistry())
    now = time.time()
    for second in range(HOUR):
        values = {"rps": 300.0, "errors": 0.0, "failed": 0.0, "p50": 0.01, "p95": 0.05, "p99": 0.1}
        values |= {f"split.gateways.gateway-{n}": 100.0 for n in (1, 2, 3)}
        values |= {f"split.microservices.microservice-{n}": 10.0 for n in (1, 2, 3, 4)}
        values |= {"cache.hit_ratio": 0.9, "db.qps": 20.0, "worker.queue": 3.0}
        lab.history.add(Sample(now - HOUR + second, values))
    # One action a minute over the hour (each begin and finish reads the clock once).
    clock = iter(now - HOUR + 60 * (n // 2) for n in range(120))
    lab.actions = ActionLog(CollectorRegistry(), clock=lambda: next(clock))
    for _ in range(60):
        lab.actions.finish(lab.actions.begin("kill", "gateway-2"), True)
    return lab


def main() -> None:
    """Print the median and slowest refresh per chart window."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_dir:
        lab = _filled_lab(run_dir)
        app = create_app(lab)
        client = app.server.test_client()
        client.get("/")  # the first request builds Dash's routes
        # One callback refreshes every card each interval, the charts among them (dashboard/changes.py).
        callbacks = Callbacks(app)
        print(f"history: {len(lab.history)} samples, {len(lab.actions.recent())} actions")
        for window in WINDOWS:
            timings, sizes = [], []
            for _ in range(args.rounds):
                began = time.perf_counter()
                # Nothing shown yet: every card is sent, the worst case of an interval.
                shown = callbacks.fire("tick", "n_intervals", 1, state={"window": window}, output="refresh-timing")
                timings.append(time.perf_counter() - began)
                assert shown is not None and "refresh-timing.children" in shown
                sizes.append(len(json.dumps(shown)))
            print(
                f"the page's refresh, {window:>4} s window: median {statistics.median(timings) * 1000:5.1f} ms, "
                f"slowest {max(timings) * 1000:5.1f} ms, {statistics.median(sizes) / 1024:.0f} KiB per refresh"
            )


if __name__ == "__main__":
    main()

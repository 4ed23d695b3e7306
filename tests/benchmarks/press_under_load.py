"""Time how long a kill pressed on the control page takes to show on its tile, paced and at full blast.

A script, not a test: it prints figures. It starts its own stack on spare ports (or uses one
already running with --run-dir), opens the page in Chromium, starts load from the page's own
load card (paced: 5 users at 40 req/s; full blast: 32 users with no pacing), presses *kill*
on an instance and waits for its tile to say ``down``, then starts it again. It also reports how
much of each second the page's main thread is busy (Chrome's TaskDuration), which is what a
click waits behind.

    python -m tests.benchmarks.press_under_load [--instance gateway-2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from playwright.sync_api import Page, sync_playwright

from tests.benchmarks.running import stack
from tests.browser.control_page import ControlPage

PORT_OFFSET = 22_000  # ports 27000 to 31090: below the ephemeral range
GETS_ONLY = {"mix_data_hot": 80, "mix_data_new": 5, "mix_process": 15, "mix_longtask": 0}
LOADS = {"paced (5 users, 40 req/s)": (5, 40), "full blast (32 users, no pacing)": (32, 0)}
CHROMIUM = "/usr/bin/chromium"


def main_thread_busy(page: Page, seconds: float) -> float:
    """Return the share of ``seconds`` the page's main thread spent in tasks."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def task_seconds() -> float:
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "TaskDuration")

    before = task_seconds()
    page.wait_for_timeout(seconds * 1000)
    return (task_seconds() - before) / seconds


def main(argv: list[str] | None = None) -> int:
    """Press kill under each load and print the delays."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="gateway-2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-dir", help="use the stack running from this run directory")
    args = parser.parse_args(argv)
    with stack(args.run_dir, PORT_OFFSET, "press") as orchestrator, sync_playwright() as playwright:
        port = next(info.port for info in orchestrator.instances() if info.name == "dashboard")
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        control = ControlPage(page)
        control.wait_state(args.instance, "healthy", timeout=30)
        for label, (users, rate) in LOADS.items():
            control.start_load(users, rate, **GETS_ONLY)
            page.wait_for_timeout(8000)  # the users spawned and at speed
            busy = main_thread_busy(page, 5)
            delays = []
            for _ in range(args.repeats):
                pressed = control.press("kill", args.instance)
                delays.append(control.wait_state(args.instance, "down", timeout=30) - pressed)
                control.press("start", args.instance)
                control.wait_state(args.instance, "healthy", timeout=30)
                page.wait_for_timeout(2000)
            control.stop_load()
            page.wait_for_timeout(3000)
            shown = ", ".join(f"{d:.2f}" for d in delays)
            print(
                f"{label}: kill of {args.instance} shown down after {statistics.median(delays):.2f} s "
                f"(median of {shown}); the page's main thread busy {busy:.0%} of each second"
            )
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the three classic scripts share: the arguments, finding the stack, running the experiment, the PNGs."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from dashboard.experiments import ExperimentError, Result, Target, load_experiment, run_experiment
from dashboard.experiments.report import PLOTS
from services.cli.commands.experiment import admin_token
from services.cli.context import pick_orchestrator
from services.orchestrator import OrchestratorError

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_RESULTS_DIR = "results"
EXIT_FAILED = 1


def parser(description: str) -> argparse.ArgumentParser:
    """Return a parser with the options every classic script has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the load balancer (default {DEFAULT_URL})")
    parser.add_argument(
        "--results-dir", default=DEFAULT_RESULTS_DIR, help="where the PNGs and the full report go (default ./results)"
    )
    parser.add_argument(
        "--run-dir",
        default=os.environ.get("SCALELAB_RUN_DIR", ".scalelab"),
        help="run directory of a local stack, for the pools' and database's counters (default ./.scalelab)",
    )
    parser.add_argument("--seed", type=int, help="the load's random seed")
    return parser


def target(url: str, run_dir: str) -> Target:
    """Return the target at ``url``, with the stack's control when the running stack is the one at ``url``."""
    url = url.rstrip("/")
    try:
        orchestrator = pick_orchestrator(run_dir)
        balancer = orchestrator.get("load-balancer")
    except (OrchestratorError, ValueError, OSError):
        return Target(url)
    if balancer.state != "running" or balancer.url != url:
        return Target(url)  # another stack, or none we control: send the load only
    return Target.of(orchestrator, admin_token(orchestrator), base_url=url)


def run(name: str, overrides: dict[str, Any], args: argparse.Namespace, plots: tuple[str, ...]) -> Result | None:
    """Run the experiment, copy its classic PNGs into the results directory, and return the result."""
    if args.seed is not None:
        overrides = {**overrides, "load.seed": args.seed}
    try:
        result = run_experiment(load_experiment(name, overrides), target(args.url, args.run_dir), args.results_dir)
    except ExperimentError as exc:
        print(f"{name}: {exc}")
        return None
    for kind in plots:
        source = result.directory / PLOTS[kind]
        if source.exists():
            shutil.copyfile(source, Path(args.results_dir) / PLOTS[kind])
            print(f"Saved {Path(args.results_dir) / PLOTS[kind]}")
    return result


def finish(result: Result | None) -> int:
    """Print the checks and where the report is; return the exit code."""
    if result is None:
        return EXIT_FAILED
    for check in result.checks:
        print(f"  {'passed' if check.passed else 'FAILED'}  {check.label}: {check.message}")
    print(f"Full report: {result.report}")
    return 0 if result.passed else EXIT_FAILED

"""What the three classic scripts share: the arguments, finding the stack, running the experiment, the PNGs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from scalelab import catalog
from scalelab.cli.commands.experiment import admin_token
from scalelab.experiments import ExperimentError, Result, Target, load_experiment, run_experiment
from scalelab.experiments.report import PLOTS
from scalelab.orchestrators import OrchestratorError, find_orchestrator
from scalelab.paths import RUN_DIR_ENV, find_run_dir

DEFAULT_URL = f"http://127.0.0.1:{catalog.entry().ports[0]}"
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
        default=None,
        help=f"run directory of a local stack, for the pools' and database's counters (env {RUN_DIR_ENV}; "
        "default: found as `scalelab` finds it)",
    )
    parser.add_argument("--seed", type=int, help="the load's random seed")
    return parser


def target(url: str, run_dir: str | None) -> Target:
    """Return the target at ``url``, with the stack's control when the running stack is the one at ``url``."""
    url = url.rstrip("/")
    try:
        orchestrator = find_orchestrator(find_run_dir(run_dir))
        balancer = orchestrator.get(catalog.instance_names(catalog.entry())[0])
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

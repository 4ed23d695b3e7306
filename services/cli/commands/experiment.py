"""``scalelab experiment NAME``: run an experiment against the running stack, write its report, check it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...orchestrator import Orchestrator, OrchestratorError
from ...orchestrator.compose import CONTAINER_RESULTS
from ...orchestrator.docker import DockerOrchestrator
from .. import exitcodes
from ..context import Context

ADMIN_TOKEN_ENV = "SCALELAB_ADMIN_TOKEN"


def key_value(text: str) -> tuple[str, str]:
    """Parse one ``--set key=value`` (argparse type)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. load.duration=5), not {text!r}")
    return key.strip(), value


def admin_token(orchestrator: Orchestrator, environ: Mapping[str, str] | None = None) -> str:
    """Return the admin token: the local stack's own, else SCALELAB_ADMIN_TOKEN (a compose stack's)."""
    environ = os.environ if environ is None else environ
    secrets = getattr(orchestrator, "secrets", None)
    stored = secrets() if callable(secrets) else None
    return stored.admin_token if stored is not None else environ.get(ADMIN_TOKEN_ENV, "")


def run_in_compose(
    ctx: Context, orchestrator: DockerOrchestrator, name: str, overrides: dict[str, Any]
) -> exitcodes.ExitCode:
    """Run the experiment inside the compose network, in the control page's container.

    From the host only the published ports answer; inside, every pool, counter and knob does.
    The container writes the report to /app/results, which compose mounts as ./results.
    """
    files = {}
    if Path(name).is_file():  # a file of the user's: hand it to the container
        files[Path(name).name] = Path(name).read_bytes()
        name = f"/tmp/{Path(name).name}"
    command = ["python", "-m", "services.cli", "experiment", name, "--results-dir", CONTAINER_RESULTS, "--no-progress"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    ctx.say(f"running {name} inside the compose network (container `dashboard`); its output follows when it ends")
    try:
        code, output = orchestrator.run_inside("dashboard", command, files)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(output.rstrip())
    ctx.say("(reports are in ./results beside docker-compose.yml)")
    return exitcodes.ExitCode(code) if code in (exitcodes.OK, exitcodes.CHECKS_FAILED) else exitcodes.FAILED


def list_builtin(ctx: Context) -> exitcodes.ExitCode:
    """Print each built-in experiment with its description."""
    from dashboard.experiments import list_experiments

    for name, description in list_experiments():
        ctx.say(f"{name:22} {description}")
    ctx.say("\nRun one with `scalelab experiment NAME`; copy its file from dashboard/experiments/builtin/ to edit it.")
    return exitcodes.OK


def run(
    ctx: Context,
    name: str | None,
    sets: Sequence[tuple[str, str]] = (),
    seed: int | None = None,
    results_dir: str = "results",
    list_only: bool = False,
    progress: bool = True,
) -> exitcodes.ExitCode:
    """Run experiment ``name`` (a built-in or a YAML file); exit CHECKS_FAILED when a check fails."""
    # Imported here: the other verbs need neither matplotlib nor the experiments' code.
    from dashboard.experiments import ExperimentError, SpecError, Target, load_experiment, run_experiment

    if list_only:
        return list_builtin(ctx)
    if not name:
        ctx.fail("name an experiment (`scalelab experiment --list` shows the built-in ones) or a YAML file")
        return exitcodes.USAGE
    overrides: dict[str, Any] = dict(sets)
    if seed is not None:
        overrides["load.seed"] = seed
    try:
        experiment = load_experiment(name, overrides)
    except SpecError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    orchestrator = ctx.orchestrator
    if isinstance(orchestrator, DockerOrchestrator) and not orchestrator.in_network:
        return run_in_compose(ctx, orchestrator, name, overrides)
    try:
        target = Target.of(orchestrator, admin_token(orchestrator))
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    if not any(info.name == "load-balancer" and info.state == "running" for info in orchestrator.instances()):
        ctx.fail("the load balancer is not running: start the stack first (`scalelab up`)")
        return exitcodes.FAILED
    ctx.say(f"experiment {experiment.name} (seed {experiment.load.seed}) against {target.base_url}")
    try:
        result = run_experiment(experiment, target, results_dir, progress_bar=progress)
    except ExperimentError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    except KeyboardInterrupt:
        ctx.fail("interrupted; the stack was put back as it was")
        return exitcodes.INTERRUPTED
    for check in result.checks:
        ctx.say(f"  {'passed' if check.passed else 'FAILED'}  {check.label}: {check.message}")
    for note in result.summary.get("notes", []):
        ctx.say(f"  note: {note}")
    if result.passed:
        ctx.say(f"PASSED: all {len(result.checks)} checks. Report: {result.report}")
        return exitcodes.OK
    failed = ", ".join(check.label for check in result.failed)
    ctx.say(f"FAILED: {len(result.failed)} of {len(result.checks)} checks ({failed}). Report: {result.report}")
    return exitcodes.CHECKS_FAILED

"""``scalelab experiment NAME``: run an experiment against the running stack, write its report, check it."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalelab import catalog
from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.generate.compose import CONTAINER_RESULTS, CONTROL_CONTAINER
from scalelab.orchestrators import Orchestrator, OrchestratorError

ADMIN_TOKEN_ENV = "SCALELAB_ADMIN_TOKEN"
REPORT_LINE = re.compile(r"Report: (\S+)/report\.html")


def key_value(text: str) -> tuple[str, str]:
    """Parse one ``--set key=value`` (argparse type)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. load.duration=5), not {text!r}")
    return key.strip(), value


def admin_token(orchestrator: Orchestrator, environ: Mapping[str, str] | None = None) -> str:
    """Return the admin token: the one the orchestrator keeps (a local stack's), else SCALELAB_ADMIN_TOKEN."""
    environ = os.environ if environ is None else environ
    return orchestrator.admin_token() or environ.get(ADMIN_TOKEN_ENV, "")


def run_in_network(
    ctx: Context, orchestrator: Orchestrator, name: str, overrides: dict[str, Any], results_dir: Path | None
) -> exitcodes.ExitCode:
    """Run the experiment where every pool, counter and knob answers: in the stack's control container.

    From the host only the published ports answer. The container writes the report under its
    own results folder (compose: ./results beside docker-compose.yml); with ``results_dir``, or
    where that folder is not on this machine (swarm: ./results here), it is copied out too.
    """
    if results_dir is None and orchestrator.reports_seen_at is None:
        results_dir = Path("results")
    files = {}
    if Path(name).is_file():  # a file of the user's: hand it to the container
        files[Path(name).name] = Path(name).read_bytes()
        name = f"/tmp/{Path(name).name}"
    command = ["python", "-m", "scalelab", "experiment", name, "--results-dir", CONTAINER_RESULTS, "--no-progress"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    ctx.say(f"running {name} {orchestrator.where}, in its control container `{CONTROL_CONTAINER}`; its output follows")
    try:
        code, output = orchestrator.run_control(command, files)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    found = REPORT_LINE.search(output)
    if results_dir is not None and found:
        try:
            copy = orchestrator.fetch_results(found.group(1), results_dir)
        except OrchestratorError as exc:
            ctx.fail(f"the report stayed in the container's {CONTAINER_RESULTS}: {exc}")
        else:
            output = output.replace(found.group(1), str(copy))
    ctx.say(output.rstrip())
    if results_dir is None and orchestrator.reports_seen_at:
        ctx.say(f"(reports are in {orchestrator.reports_seen_at})")
    return exitcodes.ExitCode(code) if code in (exitcodes.OK, exitcodes.CHECKS_FAILED) else exitcodes.FAILED


def stack_target(ctx: Context) -> Any:
    """Return the running stack as an experiment's Target, or None after saying why it cannot be one."""
    from scalelab.experiments import Target

    orchestrator = ctx.orchestrator
    try:
        target = Target.of(orchestrator, admin_token(orchestrator))
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return None
    entry = catalog.instance_names(catalog.entry())[0]
    if not any(info.name == entry and info.state == "running" for info in orchestrator.instances()):
        ctx.fail(f"{entry} is not running: start the stack first (`scalelab up`, or `scalelab start {entry}`)")
        return None
    return target


def list_builtin(ctx: Context) -> exitcodes.ExitCode:
    """Print each built-in experiment with its description."""
    from scalelab.experiments import list_experiments
    from scalelab.experiments.spec import BUILTIN_DIR

    for name, description in list_experiments():
        ctx.say(f"{name:22} {description}")
    ctx.say(f"\nRun one with `scalelab experiment NAME`; to make your own, copy a file from {BUILTIN_DIR} and edit it.")
    return exitcodes.OK


def run(
    ctx: Context,
    name: str | None,
    sets: Sequence[tuple[str, str]] = (),
    seed: int | None = None,
    results_dir: str | None = None,
    list_only: bool = False,
    progress: bool = True,
) -> exitcodes.ExitCode:
    """Run experiment ``name`` (a built-in or a YAML file); exit CHECKS_FAILED when a check fails."""
    # Imported here: the other verbs need neither matplotlib nor the experiments' code.
    from scalelab.experiments import (
        DEFAULT_RESULTS_DIR,
        ExperimentError,
        SpecError,
        load_experiment,
        run_experiment,
    )

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
    chosen = Path(results_dir).resolve() if results_dir else None
    if not orchestrator.reaches_pools():
        return run_in_network(ctx, orchestrator, name, overrides, chosen)
    target = stack_target(ctx)
    if target is None:
        return exitcodes.FAILED
    ctx.say(f"experiment {experiment.name} (seed {experiment.load.seed}) against {target.base_url}")
    try:
        where = chosen or orchestrator.results_dir or Path(DEFAULT_RESULTS_DIR).resolve()
        result = run_experiment(experiment, target, where, progress_bar=progress)
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

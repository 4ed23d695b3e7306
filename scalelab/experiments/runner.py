"""Run an experiment against the running stack: each variant's setup, the load with its timeline, the report.

The load runs in a child process (driver.py) so that Locust's gevent patching stays out of
this one; this process carries out the timeline, watches the balancing pools and, whatever
happens, puts the stack back as it found it: knobs back, added instances removed, killed or
paused ones started or resumed.

Variants run in order and build on each other (the stack is restored once, at the end):
before each variant's load, its own ``setup`` runs, then the experiment's common ``setup``
(so that, say, a knob set by the common setup also reaches an instance the variant started).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from scalelab import catalog
from scalelab.autoscaler import Autoscaler, Decision, PrometheusSignal, newest_first
from scalelab.experiments.checks import CheckResult, evaluate
from scalelab.experiments.measure import (
    counter_deltas,
    counters,
    cpu_per_request,
    cpu_seconds,
    failover_events,
    failover_metrics,
)
from scalelab.experiments.outcome import Result, VariantOutcome
from scalelab.experiments.records import read_csv, request_metrics
from scalelab.experiments.spec import Action, Experiment, Variant, builtin_names
from scalelab.experiments.spec import load as load_experiment
from scalelab.experiments.timeline import Executed, Executor, Undo, run_timeline, wait_settled
from scalelab.failover import PoolWatcher
from scalelab.orchestrators.base import Orchestrator
from scalelab.stack import StackClient

__all__ = ["DEFAULT_RESULTS_DIR", "ExperimentError", "ProgressCallback", "Target", "list_experiments", "run_experiment"]

log = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = "results"
REQUEST_TIMEOUT_SECONDS = 2.0  # for the control calls (knobs, pool status), not the load
# Time the driver may take beyond the load itself: starting Python and Locust, and draining.
DRIVER_STARTUP_SECONDS = 30.0
# How long to keep watching the pools after the load, so a change right at its end is seen.
WATCH_AFTER_SECONDS = 0.5
STDERR_TAIL_CHARS = 2_000
REPO_ROOT = Path(__file__).resolve().parents[2]

ProgressCallback = Callable[[float, str], None]


class ExperimentError(RuntimeError):
    """An experiment could not run (stack unreachable, a setup action refused, the load failed)."""


@dataclass
class Target:
    """Where an experiment runs: the load balancer's URL, and the stack for actions and readings."""

    base_url: str
    stack: StackClient | None = None  # None: load only (no setup, timeline, pool or counter readings)

    @classmethod
    def of(
        cls,
        orchestrator: Orchestrator,
        admin_token: str | Callable[[], str],
        base_url: str | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> Target:
        """Return the target for a stack run by ``orchestrator`` (the balancer's URL unless ``base_url``)."""
        token = admin_token if callable(admin_token) else (lambda: admin_token)
        stack = StackClient(orchestrator, token, timeout)
        entry = catalog.instance_names(catalog.entry())[0]
        return cls(base_url or orchestrator.get(entry).url, stack)


def list_experiments() -> list[tuple[str, str]]:
    """Return (name, description) of every built-in experiment."""
    return [(name, load_experiment(name).description) for name in builtin_names()]


class _Progress:
    """Turn driver progress into one fraction for the whole run: a tqdm bar and the caller's callback."""

    def __init__(self, name: str, variants: int, callback: ProgressCallback | None, bar: bool) -> None:
        self.variants = variants
        self.callback = callback
        self.name = name
        # The message goes last, so that the bar keeps its place as the message changes.
        self.bar = tqdm(
            total=1000, desc=name, disable=not bar, leave=True, bar_format="{percentage:3.0f}%|{bar:30}| {desc}"
        )

    def update(self, variant: int, fraction: float, message: str) -> None:
        overall = min(1.0, (variant + max(0.0, min(fraction, 1.0))) / self.variants)
        self.bar.n = int(overall * 1000)
        self.bar.set_description_str(f"{self.name}: {message}", refresh=False)
        self.bar.refresh()
        if self.callback is not None:
            try:
                self.callback(overall, message)
            except Exception:  # a broken listener must not break the experiment
                log.exception("experiment progress callback failed")

    def close(self) -> None:
        self.bar.close()


def _results_directory(root: Path, name: str, started: float) -> Path:
    stamp = datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{stamp}-{name}"
    suffix = 2
    while candidate.exists():
        candidate = root / f"{stamp}-{name}-{suffix}"
        suffix += 1
    candidate.mkdir(parents=True)
    return candidate


def timeline_of(experiment: Experiment, variant: Variant) -> tuple[Action, ...]:
    """Return the actions to carry out while ``variant``'s load runs: its own timeline, else the experiment's."""
    return variant.timeline or experiment.timeline


def _changes_stack(experiment: Experiment) -> bool:
    return bool(
        experiment.setup
        or experiment.timeline
        or any(variant.setup or variant.timeline for variant in experiment.variants)
    )


def run_experiment(
    experiment: Experiment,
    target: Target,
    results_dir: str | Path = DEFAULT_RESULTS_DIR,
    on_progress: ProgressCallback | None = None,
    progress_bar: bool = True,
    cancel: threading.Event | None = None,
) -> Result:
    """Run every variant of ``experiment`` against ``target``, write the report and return the result.

    ``on_progress(fraction, message)`` is called a few times a second (fraction of the whole
    run, 0..1); ``cancel``, once set, ends the load early and skips the remaining variants.
    Raise ExperimentError when it cannot run; the stack is restored either way.
    """
    stack = target.stack
    if stack is None and _changes_stack(experiment):
        raise ExperimentError(
            f"{experiment.name} changes the stack (setup or timeline): it needs the stack's orchestrator and admin "
            "token (run it with `scalelab experiment`)"
        )
    cancel = cancel or threading.Event()
    started = time.time()
    progress = _Progress(experiment.name, len(experiment.variants), on_progress, progress_bar)
    undo = Undo(stack) if stack is not None else None
    executor = Executor(stack, undo) if stack is not None and undo is not None else None
    outcomes: list[VariantOutcome] = []
    notes: list[str] = []
    if experiment.scaling_law and stack is not None and not stack.orchestrator.limits_instances:
        notes.append(
            f"Local mode: every instance is a process on this machine and they all share its {os.cpu_count()} "
            "cores, with no limit each. Instances added past the cores add no capacity: the fit shows the "
            "machine, not the service. The compose stack gives each instance its own share (docker-compose.yml)."
        )
    try:
        with tempfile.TemporaryDirectory(prefix="scalelab-experiment-") as work:
            for index, variant in enumerate(experiment.variants):
                if cancel.is_set():
                    notes.append(f"cancelled before variant {variant.name!r}")
                    break
                outcomes.append(
                    _run_variant(experiment, variant, index, target, executor, progress, cancel, Path(work))
                )
    finally:
        if undo is not None and stack is not None:
            progress.update(len(experiment.variants) - 1, 1.0, "restoring the stack")
            notes.extend(undo.restore())
            settled = wait_settled(stack)
            if settled:
                notes.append(f"after restoring: {settled}")
        progress.close()
    if cancel.is_set() and not any("cancelled" in note for note in notes):
        notes.append("cancelled during the run")
    checks = evaluate(experiment.checks, {outcome.name: outcome.metrics for outcome in outcomes})
    checks.extend(_action_checks(outcomes))
    if cancel.is_set():
        checks.append(CheckResult("run completed", "cancelled", None, None, False, "the run was cancelled"))
    # Made only now, so that a run that could not happen leaves no empty directory behind.
    directory = _results_directory(Path(results_dir), experiment.name, started)
    # Imported here: matplotlib adds about 35 MB to the resident memory of every process that
    # imports the runner (the control page does), and only a finished run draws plots.
    from scalelab.experiments.report import write_report

    summary = write_report(directory, experiment, outcomes, checks, target.base_url, started, time.time(), notes)
    if on_progress is not None:
        progress.callback = None
        with contextlib.suppress(Exception):
            on_progress(1.0, "done: " + ("passed" if summary["passed"] else "FAILED"))
    return Result(experiment.name, directory, summary["passed"], checks, summary)


def _action_checks(outcomes: list[VariantOutcome]) -> list[CheckResult]:
    """Return a failed check for every timeline action the stack refused: the experiment did not happen as written."""
    return [
        CheckResult(f"action {executed.label}", "action", None, outcome.name, False, executed.error)
        for outcome in outcomes
        for executed in outcome.actions
        if not executed.ok
    ]


@dataclass
class _VariantRun:
    """One variant being run: what it runs, against what, and where its outcome goes."""

    experiment: Experiment
    variant: Variant
    index: int
    target: Target
    executor: Executor | None
    progress: _Progress
    cancel: threading.Event
    work: Path
    outcome: VariantOutcome
    scaled_from: int = 0  # instances of the autoscaled service when the variant began


def _run_variant(
    experiment: Experiment,
    variant: Variant,
    index: int,
    target: Target,
    executor: Executor | None,
    progress: _Progress,
    cancel: threading.Event,
    work: Path,
) -> VariantOutcome:
    outcome = VariantOutcome(variant.name, namespace=secrets.token_hex(4))
    run = _VariantRun(experiment, variant, index, target, executor, progress, cancel, work, outcome)
    stack = target.stack
    setup = (*variant.setup, *experiment.setup)
    if setup and executor is not None and stack is not None:
        progress.update(index, 0.0, f"{variant.name}: setting up")
        for action in setup:
            executed = executor.run(action)
            outcome.setup.append(executed)
            if not executed.ok:
                raise ExperimentError(f"setup of {variant.name!r} failed: {executed.label}: {executed.error}")
        settled = wait_settled(stack)
        if settled:
            outcome.notes.append(settled)
    before = counters(stack) if stack is not None else None
    cpu_before = cpu_seconds(stack) if stack is not None else None
    watcher = PoolWatcher(stack, count_retries=bool(timeline_of(experiment, variant))) if stack is not None else None
    if watcher is not None:
        watcher.start()
    scaler = _autoscaler(run) if experiment.autoscaler is not None and variant.autoscale else None
    try:
        if scaler is not None:
            scaler.start()
        _drive(run)
    finally:
        if scaler is not None:
            _wind_down(run, scaler)
        if watcher is not None:
            time.sleep(WATCH_AFTER_SECONDS)
            watcher.stop()
    outcome.metrics = request_metrics(outcome.records)
    if scaler is not None:
        outcome.metrics.update(_scaling_metrics(run, scaler))
    if stack is not None:
        outcome.metrics.update(counter_deltas(before, counters(stack)))
        outcome.metrics.update(cpu_per_request(cpu_before, cpu_seconds(stack), outcome.metrics.get("answered") or 0))
    if watcher is not None:
        outcome.transitions = list(watcher.transitions)
        outcome.events = failover_events(outcome.actions, watcher, outcome.records)
        outcome.metrics.update(failover_metrics(outcome.events))
    return outcome


def _running(stack: StackClient, service: str) -> list[str]:
    return [info.name for info in stack.instances() if info.service == service and info.state == "running"]


def _autoscaler(run: _VariantRun) -> Autoscaler:
    """Return the experiment's autoscaler for this variant: it scales through the executor, so the undo knows."""
    stack, executor, policy = run.target.stack, run.executor, run.experiment.autoscaler
    if stack is None or executor is None or policy is None:
        raise ExperimentError(
            f"{run.experiment.name} autoscales: it needs the stack (run it with `scalelab experiment`)"
        )
    prometheus = next(svc for svc in catalog.SERVICES if svc.runs == "prometheus")
    try:
        signal = PrometheusSignal(stack.orchestrator.get(catalog.instance_names(prometheus)[0]).url)
    except Exception as exc:
        raise ExperimentError(f"{run.experiment.name} autoscales on Prometheus, which is not running: {exc}") from None

    def scale(service: str, change: int) -> tuple[str, ...]:
        if change > 0:
            done = [executor.run(Action("add", service)) for _ in range(change)]
        else:
            done = [executor.run(Action("remove", name)) for name in newest_first(_running(stack, service))[:-change]]
        failed = [executed.error for executed in done if not executed.ok]
        changed = tuple(name for executed in done if executed.ok for name in executed.instances)
        if failed and not changed:
            raise ExperimentError("; ".join(failed))
        return changed

    def record(decision: Decision) -> None:
        # Drawn on the report's timeline like any other action.
        t0 = run.outcome.t0
        run.outcome.actions.append(
            Executed(
                label=decision.label,
                verb=decision.verb,
                target=decision.service,
                started=decision.time,
                finished=time.time(),
                instances=decision.instances,
                offset=None if t0 is None else round(decision.time - t0, 3),
                error=decision.error,
            )
        )

    scaler = Autoscaler(policy, signal.read, lambda service: _running(stack, service), scale, record)
    run.outcome.notes.append(f"autoscaler: {scaler.policy.describe()}")
    run.scaled_from = len(_running(stack, policy.service))
    return scaler


def _wind_down(run: _VariantRun, scaler: Autoscaler) -> None:
    """Let the autoscaler scale back in after the load (up to autoscale_after seconds), then stop it."""
    stack = run.target.stack
    deadline = time.monotonic() + run.experiment.autoscale_after
    run.progress.update(run.index, 1.0, f"{run.variant.name}: the autoscaler scales back in")
    while stack is not None and time.monotonic() < deadline and not run.cancel.is_set():
        if len(_running(stack, scaler.policy.service)) <= scaler.policy.min_instances:
            break
        time.sleep(0.2)
    scaler.stop()


def _scaling_metrics(run: _VariantRun, scaler: Autoscaler) -> dict[str, float]:
    decisions = [decision for decision in scaler.decisions if not decision.error]
    stack = run.target.stack
    end = len(_running(stack, scaler.policy.service)) if stack is not None else 0
    return {
        "instances_max": max([run.scaled_from, end, *(decision.after for decision in decisions)]),
        "instances_end": end,
        "scale_outs": sum(1 for decision in decisions if decision.after > decision.before),
        "scale_ins": sum(1 for decision in decisions if decision.after < decision.before),
    }


def _drive(run: _VariantRun) -> None:
    """Run the driver process for one variant, the timeline beside it; fill in the records and actions."""
    experiment, variant, index, outcome = run.experiment, run.variant, run.index, run.outcome
    target, executor, progress, cancel, work = run.target, run.executor, run.progress, run.cancel, run.work
    plan_path, records_path, log_path = (
        work / f"{kind}-{index}.{ext}" for kind, ext in (("plan", "json"), ("records", "csv"), ("driver", "log"))
    )
    plan = {
        "base_url": target.base_url,
        "namespace": outcome.namespace,
        "variant": variant.name,
        "load": asdict(replace(experiment.load, model=variant.model or experiment.load.model)),
    }
    plan_path.write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "scalelab.experiments.driver", str(plan_path), str(records_path)]
    stop_timeline = threading.Event()
    timeline: threading.Thread | None = None
    error = ""
    limit = DRIVER_STARTUP_SECONDS + experiment.load.expected_seconds() + experiment.load.timeout
    with (
        open(log_path, "w") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env) as process,
    ):
        watchdog = threading.Timer(limit, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("event")
                if kind == "started":
                    outcome.t0 = float(event["t0"])
                    progress.update(index, 0.0, f"{variant.name}: load started")
                    due = timeline_of(experiment, variant)
                    if due and executor is not None:
                        timeline = threading.Thread(
                            target=run_timeline,
                            args=(executor, due, outcome.t0, outcome.actions, stop_timeline),
                            name="experiment-timeline",
                            daemon=True,
                        )
                        timeline.start()
                elif kind == "progress":
                    message = f"{variant.name}: {event['answered']} answered, {event['errors']} failed"
                    progress.update(index, float(event["fraction"]), message)
                elif kind == "error":
                    error = str(event.get("message", ""))
                if cancel.is_set() and process.poll() is None:
                    process.terminate()  # the driver stops handing out requests and writes what it has
                    stop_timeline.set()
        finally:
            watchdog.cancel()
            if process.poll() is None and (cancel.is_set() or sys.exc_info()[0] is not None):
                process.kill()
    if timeline is not None:
        timeline.join()
    if process.returncode != 0 or not records_path.exists():
        tail = log_path.read_text()[-STDERR_TAIL_CHARS:] if log_path.exists() else ""
        reason = error or f"exit code {process.returncode}"
        if process.returncode == -9:
            reason += f" (stopped after {limit:.0f} s)"
        raise ExperimentError(f"the load of {variant.name!r} failed: {reason}\n{tail}".rstrip())
    outcome.records = read_csv(records_path)

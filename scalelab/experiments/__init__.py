"""Experiments: scripted, reproducible runs against the stack that measure a tactic and write a report.

    from scalelab.experiments import Target, load_experiment, run_experiment

    experiment = load_experiment("failover", {"load.duration": 10})
    result = run_experiment(experiment, Target.of(orchestrator, admin_token), on_progress=print)
    result.passed, result.report, [check.message for check in result.failed]

The names below are imported on first use: ``python -m scalelab.experiments.driver`` runs
under gevent and must not pull in the report's or the runner's dependencies before Locust
has patched the standard library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalelab.experiments.checks import METRICS, CheckResult
    from scalelab.experiments.outcome import Result, VariantOutcome
    from scalelab.experiments.report import list_results
    from scalelab.experiments.runner import (
        DEFAULT_RESULTS_DIR,
        ExperimentError,
        ProgressCallback,
        Target,
        list_experiments,
        run_experiment,
    )
    from scalelab.experiments.spec import Experiment, SpecError, builtin_names
    from scalelab.experiments.spec import load as load_experiment

__all__ = [
    "DEFAULT_RESULTS_DIR",
    "METRICS",
    "CheckResult",
    "Experiment",
    "ExperimentError",
    "ProgressCallback",
    "Result",
    "SpecError",
    "Target",
    "VariantOutcome",
    "builtin_names",
    "list_experiments",
    "list_results",
    "load_experiment",
    "run_experiment",
]

_HOMES = {
    "DEFAULT_RESULTS_DIR": ("runner", "DEFAULT_RESULTS_DIR"),
    "METRICS": ("checks", "METRICS"),
    "CheckResult": ("checks", "CheckResult"),
    "Experiment": ("spec", "Experiment"),
    "ExperimentError": ("runner", "ExperimentError"),
    "ProgressCallback": ("runner", "ProgressCallback"),
    "Result": ("outcome", "Result"),
    "SpecError": ("spec", "SpecError"),
    "Target": ("runner", "Target"),
    "VariantOutcome": ("outcome", "VariantOutcome"),
    "builtin_names": ("spec", "builtin_names"),
    "list_experiments": ("runner", "list_experiments"),
    "list_results": ("report", "list_results"),
    "load_experiment": ("spec", "load"),
    "run_experiment": ("runner", "run_experiment"),
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    try:
        module, attribute = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value

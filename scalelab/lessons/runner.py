"""Run a lesson's steps against the running stack and read the measured value beside each prediction.

Each step is an experiment run with :func:`scalelab.experiments.run_experiment`: the stack is
changed, measured and restored as any experiment does, and the step's report (with its plots)
is written under the results directory. The lesson's measured values are read from the steps'
summaries, as each prediction's ``measured`` names them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalelab.experiments.runner import ExperimentError, Target, run_experiment
from scalelab.lessons.spec import Lesson, Prediction, Step

__all__ = ["LessonRun", "StepResult", "measured_value", "run_lesson", "run_step"]

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class StepResult:
    """A step as it ran: its experiment's report folder, summary and verdict."""

    step: str
    directory: Path
    passed: bool
    summary: dict[str, Any]


@dataclass
class LessonRun:
    """What a lesson's run measured: each step's result, and the value answering each prediction."""

    lesson: Lesson
    steps: dict[str, StepResult] = field(default_factory=dict)

    def measured(self) -> dict[str, float | None]:
        """Return the measured value of every prediction (None while its step has not run)."""
        return {p.id: measured_value(p, self.steps) for p in self.lesson.predictions}


def measured_value(prediction: Prediction, steps: Mapping[str, StepResult]) -> float | None:
    """Return the number that answers ``prediction`` from the steps' summaries (None when not measured)."""
    result = steps.get(prediction.measured.step)
    if result is None:
        return None
    variants = result.summary.get("variants", [])
    wanted = prediction.measured.variant
    variant = next((v for v in variants if wanted is None or v.get("name") == wanted), None)
    if variant is None:
        return None
    value = variant.get("metrics", {}).get(prediction.measured.metric)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_step(
    lesson: Lesson,
    step: Step,
    target: Target,
    results_dir: str | Path,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    progress_bar: bool = False,
) -> StepResult:
    """Run one step's experiment against ``target``; return its result (ExperimentError when it cannot run)."""
    result = run_experiment(
        step.parsed, target, results_dir, on_progress=on_progress, progress_bar=progress_bar, cancel=cancel
    )
    return StepResult(step.id, result.directory, result.passed, result.summary)


def run_lesson(
    lesson: Lesson,
    target: Target,
    results_dir: str | Path,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    progress_bar: bool = False,
) -> LessonRun:
    """Run every step in order; return what was measured. Raise ExperimentError when a step cannot run."""
    run = LessonRun(lesson)
    count = len(lesson.steps)
    for index, step in enumerate(lesson.steps):
        if cancel is not None and cancel.is_set():
            break

        def progress(fraction: float, message: str, index: int = index, step: Step = step) -> None:
            if on_progress is not None:
                on_progress((index + fraction) / count, f"step {index + 1} of {count}, {step.title}: {message}")

        try:
            run.steps[step.id] = run_step(lesson, step, target, results_dir, progress, cancel, progress_bar)
        except ExperimentError as exc:
            raise ExperimentError(f"{lesson.name}, step {step.id!r}: {exc}") from None
    return run

"""``scalelab lesson``: list the lessons, or run one headless and write its worksheet.

scalelab lesson --list
scalelab lesson failover --predict kill_detection=1 --predict pause_detection="0.3 to 1.2 s" --student Ada
scalelab lesson failover --answer-key        # the measured values an instructor can expect here
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scalelab.cli import exitcodes
from scalelab.cli.commands.experiment import stack_target
from scalelab.cli.context import Context

__all__ = ["key_value", "run"]


def key_value(text: str) -> tuple[str, str]:
    """Parse one ``--predict id=value`` (argparse type)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected ID=VALUE (e.g. kill_detection=0.5), not {text!r}")
    return key.strip(), value.strip()


def _predictions(lesson: Any, given: Sequence[tuple[str, str]], path: str | None) -> dict[str, Any]:
    """Return the student's predictions by id, from a YAML file and then the options; raise ValueError."""
    raw: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read the predictions: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the predictions file is a mapping of prediction ids to answers")
        raw.update(loaded)
    raw.update(dict(given))
    chosen = {}
    for prediction_id, value in raw.items():
        prediction = lesson.prediction(str(prediction_id))
        chosen[prediction.id] = prediction.coerce(value)
    return chosen


def list_lessons(ctx: Context) -> exitcodes.ExitCode:
    """Print every built-in lesson with its goal."""
    from scalelab.lessons import builtin_lessons, load

    for name in builtin_lessons():
        lesson = load(name)
        ctx.say(f"{name:24} {lesson.title}: {lesson.goal}")
    return exitcodes.OK


def run(
    ctx: Context,
    name: str | None,
    predict: Sequence[tuple[str, str]] = (),
    predictions_file: str | None = None,
    student: str = "",
    answer_key: bool = False,
    out: str | None = None,
    results_dir: str | None = None,
    list_only: bool = False,
) -> exitcodes.ExitCode:
    """Run lesson ``name`` headless against the running stack and write the worksheet."""
    from scalelab.experiments import DEFAULT_RESULTS_DIR, ExperimentError
    from scalelab.lessons import LessonError, load, render_worksheet, run_lesson, write_worksheet

    if list_only:
        return list_lessons(ctx)
    if not name:
        ctx.fail("name a lesson (`scalelab lesson --list` shows the built-in ones) or a lesson file (.md)")
        return exitcodes.USAGE
    try:
        lesson = load(name)
        chosen = {} if answer_key else _predictions(lesson, predict, predictions_file)
    except (LessonError, ValueError) as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    orchestrator = ctx.orchestrator
    if not orchestrator.reaches_pools():
        ctx.fail(
            "a headless lesson measures through the stack's pools, which only a local stack's host reaches; "
            "in containers, run the lesson's experiments with `scalelab experiment NAME`"
        )
        return exitcodes.FAILED
    target = stack_target(ctx)
    if target is None:
        return exitcodes.FAILED
    where = (
        Path(results_dir).resolve() if results_dir else orchestrator.results_dir or Path(DEFAULT_RESULTS_DIR).resolve()
    )
    ctx.say(f"lesson {lesson.name}: {lesson.title} ({len(lesson.steps)} step(s)) against {target.base_url}")

    try:
        run = run_lesson(lesson, target, where, progress_bar=True)
    except (ExperimentError, LessonError) as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    except KeyboardInterrupt:
        ctx.fail("interrupted; the stack was put back as it was")
        return exitcodes.INTERRUPTED
    measured = run.measured()
    for prediction in lesson.predictions:
        value = measured[prediction.id]
        shown = "not measured" if value is None else f"{prediction.answer_of(value)} {prediction.unit}".rstrip()
        guess = f" (predicted {chosen[prediction.id]})" if prediction.id in chosen else ""
        ctx.say(f"  {prediction.id}: {shown}{guess}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "answer-key" if answer_key else "worksheet"
    path = Path(out) if out else where / f"{stamp}-{kind}-{lesson.name}.html"
    html = render_worksheet(lesson, run.steps, chosen, student=student, answer_key=answer_key)
    ctx.say(f"{'Answer key' if answer_key else 'Worksheet'}: {write_worksheet(path, html)}")
    missing = [pid for pid, value in measured.items() if value is None]
    if missing:
        ctx.fail(f"not measured: {', '.join(missing)} (see the steps' reports)")
        return exitcodes.CHECKS_FAILED
    return exitcodes.OK

"""The worksheet: one self-contained HTML file with a lesson's predictions, measurements, plots and explanations.

The student's copy has their name and predictions beside the measured values; an answer key
(``answer_key=True``) has the measured values alone, as an instructor can expect them on the
machine it ran on. Plots are embedded as data URLs and styles inline, so the file opens
anywhere, offline, and can be handed in as it is. Text from the lesson is escaped; its Markdown
is rendered with raw HTML disabled.
"""

from __future__ import annotations

import base64
import os
import platform
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt

from scalelab.lessons.runner import StepResult, measured_value
from scalelab.lessons.spec import Lesson, Prediction

__all__ = ["compare", "render_worksheet", "write_worksheet"]

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_ENVIRONMENT = Environment(
    loader=PackageLoader("scalelab.lessons", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
# A number prediction within this factor of the measured value counts as close.
CLOSE_FACTOR = 1.5


def _number(value: float, unit: str) -> str:
    return f"{value:.3g}{' ' + unit if unit else ''}"


def compare(prediction: Prediction, predicted: Any, measured: float | None) -> tuple[str, str]:
    """Return (verdict in words, its style) of a prediction against the measured value."""
    if measured is None:
        return "not measured yet", "missing"
    if predicted is None or predicted == "":
        return "no prediction", "missing"
    if prediction.choices:
        answer = prediction.answer_of(measured)
        return ("right", "right") if predicted == answer else (f"the answer was {answer!r}", "off")
    guess = float(predicted)
    if guess == measured:
        return "exact", "right"
    if guess <= 0 or measured <= 0:
        return f"off by {_number(abs(measured - guess), prediction.unit)}", "off"
    factor = max(guess, measured) / min(guess, measured)
    direction = "high" if guess > measured else "low"
    if factor <= CLOSE_FACTOR:
        return f"close ({factor:.2g}x {direction})", "right"
    return f"{factor:.2g}x too {direction}", "off"


def _plots(result: StepResult) -> list[dict[str, str]]:
    plots = result.summary.get("files", {}).get("plots", {})
    found = []
    for name, filename in plots.items():
        path = result.directory / filename
        if path.is_file():
            found.append({"name": name, "data": base64.b64encode(path.read_bytes()).decode()})
    return found


def render_worksheet(
    lesson: Lesson,
    steps: Mapping[str, StepResult],
    predictions: Mapping[str, Any] | None = None,
    student: str = "",
    answer_key: bool = False,
    now: datetime | None = None,
) -> str:
    """Return the worksheet's HTML."""
    predictions = predictions or {}
    rows = []
    for prediction in lesson.predictions:
        value = measured_value(prediction, steps)
        shown = (
            None
            if value is None
            else (prediction.answer_of(value) if prediction.choices else _number(value, prediction.unit))
        )
        predicted = predictions.get(prediction.id)
        verdict, style = compare(prediction, predicted, value)
        if predicted is None or predicted == "":
            predicted_text = "—"
        elif prediction.choices:
            predicted_text = str(predicted)
        else:
            predicted_text = _number(float(predicted), prediction.unit)
        rows.append(
            {
                "id": prediction.id,
                "question": prediction.question,
                "predicted": predicted_text,
                "measured": shown,
                "verdict": verdict,
                "verdict_class": style,
            }
        )
    shown_steps = []
    for step in lesson.steps:
        result = steps.get(step.id)
        failed = []
        if result is not None:
            failed = [check["label"] for check in result.summary.get("checks", []) if not check.get("passed")]
        shown_steps.append(
            {
                "id": step.id,
                "title": step.title,
                "do": step.do,
                "ran": result is not None,
                "passed": bool(result and result.passed),
                "failed": ", ".join(failed),
                "experiment": step.experiment
                if isinstance(step.experiment, str)
                else step.experiment.get("name", step.id),
                "plots": _plots(result) if result is not None else [],
            }
        )
    when = (now or datetime.now()).strftime("%Y-%m-%d %H:%M")
    return _ENVIRONMENT.get_template("worksheet.html").render(
        title=("Answer key: " if answer_key else "Worksheet: ") + lesson.title,
        kind="Answer key" if answer_key else "Worksheet",
        student=student,
        when=when,
        machine=f"{platform.node() or 'this machine'} ({os.cpu_count()} cores, {platform.system()})",
        lesson=lesson,
        background=_MARKDOWN.render(lesson.background) if lesson.background else "",
        why=_MARKDOWN.render(lesson.why) if lesson.why else "",
        more=[(heading, _MARKDOWN.render(text)) for heading, text in lesson.more.items()],
        rows=rows,
        steps=shown_steps,
        answer_key=answer_key,
    )


def write_worksheet(path: str | Path, html: str) -> Path:
    """Write the worksheet to ``path`` (its folder made if missing) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html)
    return target

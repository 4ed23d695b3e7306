"""Lesson files: Markdown with a YAML header, read strictly, every error naming the file and the field.

A lesson is a worksheet on the live stack::

    ---
    name: failover
    title: Failover, kill versus pause
    goal: Measure how fast a dead gateway leaves rotation, and why a hung one takes longer.
    predictions:
      - id: kill_detection
        question: How many seconds after a kill is gateway-2 out of rotation?
        unit: s
        measured: {step: kill, metric: detection_seconds}
    steps:
      - id: kill
        title: Kill gateway-2 under load
        do: 80 requests a second; gateway-2 is killed at 2 s and started again at 5 s.
        experiment: failover
    try_next:
      - Pause gateway-2 instead ...
    ---
    ## Background
    ...
    ## Why
    ...

Each step runs an experiment (a built-in one by name, or one written inline in the step), so a
lesson acts on the stack through the same machinery, restores it the same way, and measures
what the experiment measures. A prediction names the value that answers it: a step, a variant
of its experiment (needed when it has several) and a metric. A prediction is a number, or a
choice among ranges of the measured number. The body's ``## Background`` is shown before the
steps, ``## Why`` after the measurements; any other section is shown after those.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalelab.experiments.checks import METRICS, SHARE_PREFIX
from scalelab.experiments.spec import Experiment, SpecError, builtin_names, read_yaml
from scalelab.experiments.spec import load as load_experiment
from scalelab.experiments.spec import parse as parse_experiment

__all__ = [
    "BUILTIN_DIR",
    "Choice",
    "Lesson",
    "LessonError",
    "Measured",
    "Prediction",
    "Step",
    "builtin_lessons",
    "load",
    "parse",
]

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
HEADER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)(.*)\Z", re.DOTALL)
SECTION = re.compile(r"^##[ \t]+(.+?)[ \t]*$", re.MULTILINE)
BACKGROUND, WHY = "Background", "Why"


class LessonError(ValueError):
    """A lesson file is missing, unreadable or invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Measured:
    """Where a prediction's answer comes from: a metric of a variant of a step's experiment."""

    step: str
    metric: str
    variant: str | None = None  # None: the experiment's only variant


@dataclass(frozen=True)
class Choice:
    """One answer of a choice prediction: the measured number lies in [min, max)."""

    label: str
    min: float = -math.inf
    max: float = math.inf

    def holds(self, value: float) -> bool:
        """Return whether ``value`` falls in this choice's range."""
        return self.min <= value < self.max


@dataclass(frozen=True)
class Prediction:
    """A question the student answers before running the steps, and the measurement that answers it."""

    id: str
    question: str
    measured: Measured
    unit: str = ""
    choices: tuple[Choice, ...] = ()  # empty: the answer is a number

    def answer_of(self, value: float | None) -> str | None:
        """Return the choice ``value`` makes true (the number itself, as text, for a number prediction)."""
        if value is None:
            return None
        if not self.choices:
            return f"{value:.4g}"
        return next((choice.label for choice in self.choices if choice.holds(value)), None)

    def coerce(self, raw: Any) -> float | str:
        """Return a student's answer as this prediction takes it; raise ValueError saying what it takes."""
        if self.choices:
            labels = [choice.label for choice in self.choices]
            if raw not in labels:
                raise ValueError(f"{self.id}: one of {labels}, not {raw!r}")
            return str(raw)
        try:
            number = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{self.id}: a number{' of ' + self.unit if self.unit else ''}, not {raw!r}") from None
        if isinstance(raw, bool) or not math.isfinite(number):
            raise ValueError(f"{self.id}: a number, not {raw!r}")
        return number


@dataclass(frozen=True)
class Step:
    """One thing to do on the live stack: an experiment, with what it does in words."""

    id: str
    title: str
    do: str
    experiment: str | dict[str, Any]  # a built-in experiment's name, or an experiment document
    parsed: Experiment = field(compare=False, repr=False)  # that experiment, read and checked with the lesson

    @property
    def variants(self) -> tuple[str, ...]:
        """Return the names of its experiment's variants."""
        return tuple(variant.name for variant in self.parsed.variants)


@dataclass(frozen=True)
class Lesson:
    """A whole lesson file, validated."""

    name: str
    title: str
    goal: str
    predictions: tuple[Prediction, ...]
    steps: tuple[Step, ...]
    background: str = ""
    why: str = ""
    more: dict[str, str] = field(default_factory=dict)  # other sections of the body, by heading
    try_next: tuple[str, ...] = ()
    source: str = ""

    def prediction(self, prediction_id: str) -> Prediction:
        """Return the prediction ``prediction_id``; raise LessonError naming the known ones."""
        for prediction in self.predictions:
            if prediction.id == prediction_id:
                return prediction
        known = ", ".join(p.id for p in self.predictions)
        raise LessonError(f"{self.name} has no prediction {prediction_id!r}; its predictions: {known}")


def builtin_lessons() -> list[str]:
    """Return the names of the lessons that ship with the package."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.md"))


def load(name_or_path: str | Path) -> Lesson:
    """Read a built-in lesson (by name) or a lesson file (a path ending in .md)."""
    path = Path(name_or_path)
    if path.suffix != ".md" and not path.exists():
        path = BUILTIN_DIR / f"{name_or_path}.md"
        if not path.is_file():
            known = ", ".join(builtin_lessons())
            raise LessonError(f"no lesson named {str(name_or_path)!r}; built-in: {known} (or a path to a .md file)")
    if not path.is_file():
        raise LessonError(f"{path}: no such lesson file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonError(f"{path}: cannot read it: {exc}") from None
    return parse(text, path.name, source=str(path))


def parse(text: str, filename: str, source: str = "") -> Lesson:
    """Validate a lesson's text (its YAML header and Markdown body) and return it."""
    match = HEADER.match(text.replace("\r\n", "\n"))
    if match is None:
        raise LessonError(f"{filename}: a lesson starts with a YAML header between two lines of ---")
    try:
        header = read_yaml(match.group(1), filename)
    except SpecError as exc:
        raise LessonError(str(exc)) from None
    return _Reader(filename).lesson(header, _sections(match.group(2)), source)


def _sections(body: str) -> dict[str, str]:
    """Return the body's ``## Heading`` sections by heading (text before the first one is ``""``)."""
    parts = SECTION.split(body)
    sections = {"": parts[0].strip()} if parts[0].strip() else {}
    for heading, content in zip(parts[1::2], parts[2::2], strict=True):
        sections[heading] = content.strip()
    return sections


class _Reader:
    """Turn a lesson header into dataclasses, naming the file and field in every error."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, where: str, message: str) -> LessonError:
        return LessonError(f"{self.filename}: {where}: {message}")

    def mapping(self, value: Any, where: str, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where or "header", f"must be a mapping, not {value!r}")
        unknown = [key for key in value if key not in known]
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}" if where else str(unknown[0]), f"unknown field; known: {', '.join(known)}"
            )
        missing = [key for key in required if key not in value]
        if missing:
            raise self.fail(f"{where}.{missing[0]}" if where else missing[0], "missing")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty text, not {value!r}")
        return " ".join(value.split())

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise self.fail(where, f"must be a short name of lowercase letters, digits, - and _, not {value!r}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"must be a non-empty list, not {value!r}")
        return value

    def lesson(self, header: Any, sections: dict[str, str], source: str) -> Lesson:
        known = ("name", "title", "goal", "predictions", "steps", "try_next")
        raw = self.mapping(header, "", known, ("name", "title", "goal", "predictions", "steps"))
        steps = self.steps(raw["steps"])
        predictions = self.predictions(raw["predictions"], steps)
        try_next = raw.get("try_next", []) or []
        if not isinstance(try_next, list):
            raise self.fail("try_next", f"must be a list of texts, not {try_next!r}")
        return Lesson(
            name=self.name(raw["name"], "name"),
            title=self.text(raw["title"], "title"),
            goal=self.text(raw["goal"], "goal"),
            predictions=predictions,
            steps=steps,
            background=sections.get(BACKGROUND, ""),
            why=sections.get(WHY, ""),
            more={heading: text for heading, text in sections.items() if heading not in (BACKGROUND, WHY, "")},
            try_next=tuple(self.text(item, f"try_next[{n}]") for n, item in enumerate(try_next)),
            source=source,
        )

    def steps(self, value: Any) -> tuple[Step, ...]:
        steps: list[Step] = []
        for index, item in enumerate(self.items(value, "steps")):
            where = f"steps[{index}]"
            raw = self.mapping(item, where, ("id", "title", "do", "experiment"), ("id", "title", "do", "experiment"))
            step_id = self.name(raw["id"], f"{where}.id")
            if step_id in [step.id for step in steps]:
                raise self.fail(f"{where}.id", f"{step_id!r} is used twice")
            experiment = raw["experiment"]
            try:
                if isinstance(experiment, str):
                    if experiment not in builtin_names():
                        raise self.fail(
                            f"{where}.experiment",
                            f"no built-in experiment {experiment!r}; known: {', '.join(builtin_names())}",
                        )
                    parsed = load_experiment(experiment)
                elif isinstance(experiment, dict):
                    parsed = parse_experiment(experiment, f"{self.filename}: {where}.experiment")
                else:
                    raise self.fail(
                        f"{where}.experiment", "a built-in experiment's name, or an experiment written here"
                    )
            except SpecError as exc:
                raise LessonError(str(exc)) from None
            steps.append(
                Step(
                    step_id,
                    self.text(raw["title"], f"{where}.title"),
                    self.text(raw["do"], f"{where}.do"),
                    experiment,
                    parsed,
                )
            )
        return tuple(steps)

    def predictions(self, value: Any, steps: tuple[Step, ...]) -> tuple[Prediction, ...]:
        predictions: list[Prediction] = []
        by_id = {step.id: step for step in steps}
        for index, item in enumerate(self.items(value, "predictions")):
            where = f"predictions[{index}]"
            raw = self.mapping(
                item, where, ("id", "question", "unit", "measured", "choices"), ("id", "question", "measured")
            )
            prediction_id = self.name(raw["id"], f"{where}.id")
            if prediction_id in [p.id for p in predictions]:
                raise self.fail(f"{where}.id", f"{prediction_id!r} is used twice")
            measured = self.measured(raw["measured"], f"{where}.measured", by_id)
            unit = raw.get("unit", "") or ""
            if not isinstance(unit, str):
                raise self.fail(f"{where}.unit", f"must be text, not {unit!r}")
            predictions.append(
                Prediction(
                    prediction_id,
                    self.text(raw["question"], f"{where}.question"),
                    measured,
                    unit,
                    self.choices(raw.get("choices"), f"{where}.choices"),
                )
            )
        return tuple(predictions)

    def measured(self, value: Any, where: str, steps: dict[str, Step]) -> Measured:
        raw = self.mapping(value, where, ("step", "variant", "metric"), ("step", "metric"))
        step = steps.get(raw["step"]) if isinstance(raw["step"], str) else None
        if step is None:
            raise self.fail(f"{where}.step", f"no step {raw['step']!r}; steps: {', '.join(steps)}")
        metric = raw["metric"]
        if not isinstance(metric, str) or (metric not in METRICS and not metric.startswith(SHARE_PREFIX)):
            raise self.fail(
                f"{where}.metric", f"unknown metric {metric!r}; known: {', '.join(METRICS)}, {SHARE_PREFIX}<instance>"
            )
        variant = raw.get("variant")
        if variant is None and len(step.variants) > 1:
            raise self.fail(f"{where}.variant", f"step {step.id!r} runs variants {list(step.variants)}: name one")
        if variant is not None and variant not in step.variants:
            raise self.fail(
                f"{where}.variant", f"step {step.id!r} has no variant {variant!r}; it has {list(step.variants)}"
            )
        return Measured(step.id, metric, variant)

    def choices(self, value: Any, where: str) -> tuple[Choice, ...]:
        if value is None:
            return ()
        choices = []
        for index, item in enumerate(self.items(value, where)):
            raw = self.mapping(item, f"{where}[{index}]", ("label", "min", "max"), ("label",))
            bounds = {}
            for key in ("min", "max"):
                if key in raw:
                    bound = raw[key]
                    if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
                        raise self.fail(f"{where}[{index}].{key}", f"must be a number, not {bound!r}")
                    bounds[key] = float(bound)
            choices.append(Choice(self.text(raw["label"], f"{where}[{index}].label"), **bounds))
        return tuple(choices)

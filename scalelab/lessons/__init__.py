"""Lessons: guided, predict-then-measure worksheets on the live stack (see docs/lessons.md)."""

from scalelab.lessons.runner import LessonRun, StepResult, measured_value, run_lesson, run_step
from scalelab.lessons.spec import Lesson, LessonError, Prediction, Step, builtin_lessons, load
from scalelab.lessons.worksheet import render_worksheet, write_worksheet

__all__ = [
    "Lesson",
    "LessonError",
    "LessonRun",
    "Prediction",
    "Step",
    "StepResult",
    "builtin_lessons",
    "load",
    "measured_value",
    "render_worksheet",
    "run_lesson",
    "run_step",
    "write_worksheet",
]

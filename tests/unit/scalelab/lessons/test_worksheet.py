"""The worksheet: predictions beside measurements, plots embedded, everything escaped, nothing fetched."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from scalelab.lessons.runner import StepResult, measured_value
from scalelab.lessons.spec import parse
from scalelab.lessons.worksheet import compare, render_worksheet, write_worksheet

from .test_spec import GOOD

# The smallest valid PNG: one transparent pixel.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002000100"
    "05fe02fea35d6a0a0000000049454e44ae426082"
)


def step_result(tmp_path: Path, p99: float = 42.0, p50: float = 150.0) -> dict[str, StepResult]:
    (tmp_path / "variants.png").write_bytes(PIXEL)
    summary = {
        "variants": [{"name": "default", "metrics": {"p99_ms": p99, "p50_ms": p50}}],
        "checks": [{"label": "errors <= 0", "passed": True}],
        "files": {"plots": {"variants": "variants.png", "gone": "missing.png"}},
    }
    return {"send": StepResult("send", tmp_path, True, summary)}


def test_the_measured_value_is_read_from_the_named_step_variant_and_metric(tmp_path: Path):
    lesson = parse(GOOD, "tiny.md")
    steps = step_result(tmp_path)
    assert measured_value(lesson.prediction("p99"), steps) == 42.0
    assert measured_value(lesson.prediction("p99"), {}) is None


def test_a_prediction_is_judged_against_the_measured_value():
    lesson = parse(GOOD, "tiny.md")
    p99, fast = lesson.prediction("p99"), lesson.prediction("fast")
    assert compare(p99, 40.0, 42.0) == ("close (1.1x low)", "right")
    assert compare(p99, 400.0, 42.0) == ("9.5x too high", "off")
    assert compare(p99, None, 42.0) == ("no prediction", "missing")
    assert compare(p99, 10.0, None) == ("not measured yet", "missing")
    assert compare(fast, "slow", 150.0) == ("right", "right")
    assert compare(fast, "fast", 150.0) == ("the answer was 'slow'", "off")


def test_the_students_worksheet_has_their_name_predictions_measurements_plots_and_explanations(tmp_path: Path):
    lesson = parse(GOOD, "tiny.md")
    html = render_worksheet(
        lesson, step_result(tmp_path), {"p99": 40.0, "fast": "fast"}, student="Ada", now=datetime(2026, 12, 2, 10, 0)
    )
    assert "<h1>Worksheet: A tiny lesson</h1>" in html and '<strong id="student">Ada</strong>' in html
    assert "2026-12-02 10:00" in html
    row = re.search(r'<tr data-prediction="p99">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "40 ms" in row and "42 ms" in row and "close (1.1x low)" in row
    row = re.search(r'<tr data-prediction="fast">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "fast" in row and "slow" in row and "the answer was" in row
    assert html.count("data:image/png;base64,") == 1  # the plot that exists, embedded
    assert "<p>Why this matters.</p>" in html and "<p>Because.</p>" in html and "<h2>Going further</h2>" in html
    assert "Send more: a hundred." in html and "every check passed" in html
    # Self-contained: nothing to fetch from anywhere.
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", html)


def test_an_answer_key_has_the_measured_values_alone(tmp_path: Path):
    lesson = parse(GOOD, "tiny.md")
    html = render_worksheet(lesson, step_result(tmp_path), answer_key=True)
    assert "<h1>Answer key: A tiny lesson</h1>" in html
    assert "your prediction" not in html and "42 ms" in html


def test_whatever_a_student_or_a_lesson_writes_is_escaped(tmp_path: Path):
    hostile = GOOD.replace("Why this matters.", "<script>alert(1)</script> **bold**").replace(
        "title: A tiny lesson", "title: A <b>tiny</b> lesson"
    )
    lesson = parse(hostile, "tiny.md")
    html = render_worksheet(lesson, step_result(tmp_path), student="<img src=x onerror=alert(1)>")
    assert "<script>" not in html and "<img src=x" not in html and "<b>tiny</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<strong>bold</strong>" in html


def test_a_step_not_run_says_so(tmp_path: Path):
    html = render_worksheet(parse(GOOD, "tiny.md"), {})
    assert "Not run." in html and "not measured" in html
    path = write_worksheet(tmp_path / "deep" / "sheet.html", html)
    assert path.read_text() == html

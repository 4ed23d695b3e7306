"""Every lesson runs headless on the local stack and writes a worksheet with a measured value for each prediction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalelab.cli.main import cli
from scalelab.lessons import builtin_lessons, load

from .conftest import Stack
from .test_experiments import snapshot


@pytest.mark.parametrize("name", builtin_lessons())
def test_every_lesson_runs_headless_and_writes_its_answer_key(
    healthy_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    before = snapshot(healthy_stack)
    sheet = tmp_path / "key.html"
    args = ["--run-dir", str(healthy_stack.orchestrator.run_dir), "lesson", name, "--answer-key"]
    code = cli([*args, "--out", str(sheet), "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0, out
    html = sheet.read_text()
    lesson = load(name)
    for prediction in lesson.predictions:
        row = re.search(rf'<tr data-prediction="{prediction.id}">(.*?)</tr>', html, re.DOTALL)
        assert row is not None and "not measured" not in row.group(1), prediction.id
        assert re.search(rf"^  {prediction.id}: \S", out, re.MULTILINE), out
    assert html.count("data:image/png;base64,") >= len(lesson.steps)  # each step's plots, embedded
    assert f"Answer key: {tmp_path / 'key.html'}" in out
    assert snapshot(healthy_stack) == before  # each step put the stack back


def test_a_students_predictions_from_a_file_and_options_end_up_beside_the_measurements(
    healthy_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text("miss_ms: 60\nhit_ms: 20\n")
    sheet = tmp_path / "ada.html"
    args = ["--run-dir", str(healthy_stack.orchestrator.run_dir), "lesson", "cache-aside", "--student", "Ada"]
    code = cli([*args, "--predictions", str(answers), "--predict", "speedup=10", "--out", str(sheet)])
    out = capsys.readouterr().out
    assert code == 0, out
    html = sheet.read_text()
    assert '<strong id="student">Ada</strong>' in html
    row = re.search(r'<tr data-prediction="miss_ms">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "60 ms" in row and re.search(r"\d+(\.\d+)? ms", row)
    assert "(predicted 10.0)" in out

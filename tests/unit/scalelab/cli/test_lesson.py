"""``scalelab lesson``: its arguments, the list, and the errors it gives before touching a stack."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scalelab.cli.commands.lesson import key_value
from scalelab.cli.main import build_parser, cli
from scalelab.lessons import builtin_lessons


def run(tmp_path: Path, *args: str) -> int:
    return cli(["--run-dir", str(tmp_path), "lesson", *args])


def test_the_arguments_are_parsed() -> None:
    args = build_parser().parse_args(
        ["lesson", "failover", "--predict", "kill_detection=0.5", "--student", "Ada", "--out", "sheet.html"]
    )
    assert (args.name, args.predict, args.student, args.out, args.answer_key) == (
        "failover",
        [("kill_detection", "0.5")],
        "Ada",
        "sheet.html",
        False,
    )
    with pytest.raises(argparse.ArgumentTypeError, match="expected ID=VALUE"):
        key_value("half a second")


def test_list_shows_every_lesson_with_its_title(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "--list") == 0
    out = capsys.readouterr().out
    for name in builtin_lessons():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "Failover, kill versus pause" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "no lesson named 'nosuch'; built-in: algorithms"),
        (["failover", "--predict", "nosuch=1"], "failover has no prediction 'nosuch'; its predictions: kill_detection"),
        (["failover", "--predict", "kill_detection=soon"], "kill_detection: a number of s, not 'soon'"),
        (["failover", "--predict", "pause_detection=2 s"], "pause_detection: one of ['under 0.3 s'"),
        (["failover", "--predictions", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read the predictions"),
    ],
)
def test_bad_input_is_refused_before_any_step_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(tmp_path, *args) == 1
    assert message in capsys.readouterr().err


def test_a_predictions_file_is_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text("- 1\n- 2\n")
    assert run(tmp_path, "failover", "--predictions", str(answers)) == 1
    assert "a mapping of prediction ids to answers" in capsys.readouterr().err


def test_without_a_name_it_says_how_to_find_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path) == 2
    assert "scalelab lesson --list" in capsys.readouterr().err


def test_without_a_running_stack_it_says_to_start_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "cache-aside", "--answer-key") == 1
    assert "no stack has been started from" in capsys.readouterr().err

"""The scalelab command on an empty run directory: no processes are started."""

from __future__ import annotations

import pytest

from scalelab.cli.main import build_parser, cli
from scalelab.paths import find_run_dir


def run(tmp_path, *args: str) -> int:
    return cli(["--run-dir", str(tmp_path), *args])


def test_status_without_a_stack_says_so(tmp_path, capsys):
    assert run(tmp_path, "status") == 1
    out = capsys.readouterr().out
    assert "no stack has been started" in out
    assert str(tmp_path) in out
    assert "scalelab up" in out


@pytest.mark.parametrize(
    "argv", [["explode"], [], ["kill"], ["add", "database"], ["remove"], ["up", "--port-offset", "x"]]
)
def test_bad_arguments_exit_with_usage_code_2(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        run(tmp_path, *argv)
    assert info.value.code == 2
    assert "usage: scalelab" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["kill", "start", "pause", "resume", "remove"])
def test_acting_on_an_unknown_instance_fails_clearly(tmp_path, capsys, verb):
    assert run(tmp_path, verb, "nosuch") == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("scalelab: ")
    assert "no instance named 'nosuch'" in captured.err
    assert captured.out == ""


def test_add_without_a_stack_fails_clearly(tmp_path, capsys):
    assert run(tmp_path, "add", "microservice") == 1
    assert "no stack has been started here" in capsys.readouterr().err


def test_down_without_a_stack_reports_nothing_running(tmp_path, capsys):
    assert run(tmp_path, "down") == 0
    assert "nothing was running" in capsys.readouterr().out


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("up", "down", "status", "kill", "start", "pause", "resume", "add", "remove"):
        assert verb in out


def test_run_dir_defaults_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALELAB_RUN_DIR", str(tmp_path / "from-env"))
    assert build_parser().parse_args(["status"]).run_dir is None
    assert find_run_dir(None) == tmp_path / "from-env"

"""``scalelab experiment``: its arguments, the list of built-ins, and its errors, through the real entry point."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scalelab.cli.commands.experiment import admin_token, key_value
from scalelab.cli.main import build_parser, cli
from scalelab.orchestrators import LocalOrchestrator
from scalelab.topology import Secrets


def run(tmp_path: Path, *args: str) -> int:
    return cli(["--run-dir", str(tmp_path), "experiment", *args])


def test_the_arguments_are_parsed() -> None:
    args = build_parser().parse_args(
        [
            "experiment",
            "failover",
            "--set",
            "load.duration=5",
            "--set",
            "checks.0.max=0.1",
            "--seed",
            "7",
            "--results-dir",
            "out",
        ]
    )
    assert (args.name, args.sets, args.seed, args.results_dir, args.list_only) == (
        "failover",
        [("load.duration", "5"), ("checks.0.max", "0.1")],
        7,
        "out",
        False,
    )
    defaults = build_parser().parse_args(["experiment", "caching"])
    # No --results-dir: the reports go beside the run directory, where the page lists them.
    assert (defaults.sets, defaults.seed, defaults.results_dir) == ([], None, None)


def test_list_names_every_built_in_with_its_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "--list") == 0
    out = capsys.readouterr().out
    for name in ("load-balancing", "caching", "microservice-routing", "failover", "stampede", "scaling", "algorithms"):
        assert f"\n{name} " in f"\n{out}"
    assert "the classic caching_test.py" in out


@pytest.mark.parametrize("bad", ["load.duration", "=5"])
def test_a_set_without_key_and_value_is_a_usage_error(tmp_path: Path, capsys, bad: str) -> None:
    with pytest.raises(SystemExit) as info:
        run(tmp_path, "caching", "--set", bad)
    assert info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_without_a_name_it_says_what_to_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path) == 2
    assert "name an experiment" in capsys.readouterr().err


def test_an_unknown_experiment_lists_the_built_in_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "nosuch") == 1
    assert (
        "scalelab: no experiment named 'nosuch'; built-in: algorithms, autoscaling, caching" in capsys.readouterr().err
    )


def test_an_invalid_override_names_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "caching", "--set", "load.users=0") == 1
    assert "caching.yaml: load.users: must be from 1 to 200, not 0" in capsys.readouterr().err


def test_without_a_stack_it_says_to_start_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "caching") == 1
    err = capsys.readouterr().err
    assert "no stack has been started" in err
    assert "(`scalelab up`)" in err


def test_the_admin_token_comes_from_the_local_stack_else_the_environment(tmp_path: Path) -> None:
    orchestrator = LocalOrchestrator(tmp_path)
    assert admin_token(orchestrator, {"SCALELAB_ADMIN_TOKEN": "from-env"}) == "from-env"
    orchestrator.state_path.parent.mkdir(parents=True, exist_ok=True)
    orchestrator.state_path.write_text('{"instances": {}, "secrets": {"jwt_secret": "j", "admin_token": "stored"}}')
    assert orchestrator.secrets() == Secrets("j", "stored")
    assert admin_token(orchestrator, {"SCALELAB_ADMIN_TOKEN": "from-env"}) == "stored"


def test_key_value_keeps_everything_after_the_first_equals_sign() -> None:
    assert key_value("load.mix={data_hot: 1}") == ("load.mix", "{data_hot: 1}")
    assert key_value("a=b=c") == ("a", "b=c")
    with pytest.raises(argparse.ArgumentTypeError):
        key_value("nothing")

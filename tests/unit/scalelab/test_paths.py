"""Where the lab's files are: the run directory is named or found, never just the current folder."""

from __future__ import annotations

from pathlib import Path

from scalelab.paths import find_run_dir, offset_run_dir, results_dir_for, stack_file


def test_an_explicit_run_dir_wins(tmp_path: Path) -> None:
    environ = {"SCALELAB_RUN_DIR": str(tmp_path / "env"), "HOME": str(tmp_path)}
    assert find_run_dir(tmp_path / "given", cwd=tmp_path, environ=environ) == tmp_path / "given"


def test_the_environment_names_it_next(tmp_path: Path) -> None:
    environ = {"SCALELAB_RUN_DIR": str(tmp_path / "env"), "HOME": str(tmp_path)}
    assert find_run_dir(None, cwd=tmp_path, environ=environ) == tmp_path / "env"


def test_a_stack_started_in_a_folder_above_is_found(tmp_path: Path) -> None:
    (tmp_path / "lab" / ".scalelab").mkdir(parents=True)
    (tmp_path / "lab" / ".scalelab" / "state.json").write_text("{}")
    deep = tmp_path / "lab" / "some" / "where"
    deep.mkdir(parents=True)
    assert find_run_dir(None, cwd=deep, environ={"HOME": str(tmp_path)}) == tmp_path / "lab" / ".scalelab"


def test_an_empty_dot_scalelab_is_not_a_stack(tmp_path: Path) -> None:
    (tmp_path / ".scalelab").mkdir()
    environ = {"HOME": str(tmp_path / "home")}
    assert find_run_dir(None, cwd=tmp_path, environ=environ) == tmp_path / "home" / ".local" / "state" / "scalelab"


def test_otherwise_the_users_state_directory(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    assert find_run_dir(None, cwd=tmp_path, environ=environ) == tmp_path / "state" / "scalelab"


def test_a_moved_stack_gets_a_run_dir_of_its_own(tmp_path: Path) -> None:
    assert offset_run_dir(tmp_path / ".scalelab", 100) == tmp_path / ".scalelab+100"
    assert offset_run_dir(tmp_path / ".scalelab", 0) == tmp_path / ".scalelab"


def test_reports_go_beside_the_run(tmp_path: Path) -> None:
    assert results_dir_for(tmp_path / ".scalelab") == tmp_path / "results"
    assert results_dir_for(tmp_path / "state" / "scalelab") == tmp_path / "state" / "scalelab" / "results"


def test_stack_files_are_found_in_a_checkout() -> None:
    assert (stack_file("prometheus", "rules") / "recording.yml").is_file()
    assert stack_file("grafana", "dashboards").is_dir()

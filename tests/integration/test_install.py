"""ScaleLab installed as a package (not editable), used from an unrelated directory: every verb works.

The wheel is built from this checkout and installed into a folder of its own; the commands
run from another folder with only that installation on the path, so nothing can come from
the source tree (rules, experiments, assets and templates must ship inside the package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import free_offset

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300
NOT_SOURCE = (
    ".git",
    ".venv",
    ".lock-venv",
    ".scalelab*",
    "build",
    "results",
    "test-artifacts",
    "__pycache__",
    "*.egg-info",
)
VERB_TIMEOUT = 180


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel and install it (without dependencies: the test's own environment has them)."""
    work = tmp_path_factory.mktemp("install")
    # A copy of the checkout: building in place would leave build/ behind, and stale files there
    # would slip into later wheels.
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(source)],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    wheel = next(work.glob("scalelab-*.whl"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    return site


@pytest.fixture
def elsewhere(tmp_path: Path, installed: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """An unrelated working directory, and an environment that finds only the installed copy."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SCALELAB_RUN_DIR")}
    env.update(PYTHONPATH=str(installed), HOME=str(tmp_path / "home"), PYTHONSAFEPATH="1")
    folder = tmp_path / "somewhere" / "else"
    folder.mkdir(parents=True)
    yield folder, env


def scalelab(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `scalelab` in ``folder``."""
    return subprocess.run(
        [sys.executable, "-m", "scalelab", *args], cwd=folder, env=env, capture_output=True, text=True,
        timeout=VERB_TIMEOUT,
    )  # fmt: skip


def test_the_installed_package_carries_its_stack_files(installed: Path) -> None:
    package = installed / "scalelab"
    for shipped in (
        "stackfiles/prometheus/rules/recording.yml",
        "stackfiles/prometheus/rules/alerts.yml",
        "stackfiles/grafana/dashboards/scalelab-overview.json",
        "experiments/builtin/caching.yaml",
        "experiments/templates/report.html",
    ):
        assert (package / shipped).is_file(), shipped
    assert (installed / "dashboard" / "assets" / "scalelab.css").is_file()


def test_up_status_experiment_down_from_an_unrelated_directory(elsewhere: tuple[Path, dict[str, str]]) -> None:
    folder, env = elsewhere
    offset = str(free_offset())
    up = scalelab(folder, env, "up", "--detach", "--port-offset", offset)
    run_dir = ""
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Control page: http://127.0.0.1:" in up.stdout
        # The run directory is the user's own, not the current folder, and the next verbs find it.
        assert not (folder / ".scalelab").exists()
        run_dir = next(line for line in up.stdout.splitlines() if "--run-dir" in line).split("--run-dir ")[1].split()[0]
        status = scalelab(folder, env, "--run-dir", run_dir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "load-balancer" in status.stdout and "unhealthy" not in status.stdout
        experiment = scalelab(folder, env, "--run-dir", run_dir, "experiment", "caching", "--no-progress")
        assert experiment.returncode == 0, experiment.stdout + experiment.stderr
        report = Path(experiment.stdout.rsplit("Report: ", 1)[1].strip())
        assert report.is_file() and report.name == "report.html"
        assert not str(report).startswith(str(REPO))
    finally:
        if run_dir:
            down = scalelab(folder, env, "--run-dir", run_dir, "down")
            assert down.returncode == 0, down.stdout + down.stderr

"""The stack on a one-node Docker Swarm, deployed for real with `scalelab up --engine swarm`.

The swarm is made by the fixture when the engine is in none, and left afterwards, so the engine
ends as it began.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..compose.conftest import docker_client, require_base_images

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_SECONDS = 600


def scalelab(run_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `scalelab` CLI as a user types it: it finds the running stack itself."""
    env = {**os.environ, "SCALELAB_ORCHESTRATOR": "auto"}
    return subprocess.run(
        [sys.executable, "-m", "scalelab", "--run-dir", str(run_dir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="package")
def swarm_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where `scalelab up --engine swarm` writes the stack file."""
    return tmp_path_factory.mktemp("swarm-run")


@pytest.fixture(scope="package")
def one_node_swarm() -> Iterator[None]:
    """This engine as a one-node swarm; the swarm is left again if this fixture made it."""
    client = docker_client()
    require_base_images(client)
    made = client.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        done = subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        if made:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, text=True)


@pytest.fixture(scope="package")
def swarm_stack(one_node_swarm: None, swarm_run_dir: Path) -> Iterator[None]:
    """The whole stack on the swarm, healthy; removed afterwards even when a test failed."""
    try:
        started = scalelab(swarm_run_dir, "up", "--engine", "swarm", timeout=UP_TIMEOUT_SECONDS)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield
    finally:
        scalelab(swarm_run_dir, "down", "--engine", "swarm")

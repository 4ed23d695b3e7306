"""The compose stack, built and started for real on this machine's Docker engine."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalelab.generate.compose import PROJECT, compose_document, published_ports

REPO = Path(__file__).resolve().parents[2]
# Everything but Grafana, which has no image on machines without registry access.
SERVICES = [name for name in compose_document()["services"] if name != "grafana"]
HEALTHY_WITHIN_SECONDS = 180


def compose_command() -> list[str] | None:
    """Return the compose CLI here: Compose v2 (`docker compose`) or Debian's docker-compose 1.29."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def docker_client():  # type: ignore[no-untyped-def]
    """Return a Docker SDK client, or skip the test when no engine answers."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine reachable ({exc}); .ci/run installs and starts one")
    return client


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the compose CLI on the project's file."""
    command = compose_command()
    assert command is not None
    return subprocess.run(
        [*command, "-p", PROJECT, "-f", str(REPO / "docker-compose.yml"), *args],
        cwd=REPO, capture_output=True, text=True, check=check,
    )  # fmt: skip


def require_base_images(client) -> None:  # type: ignore[no-untyped-def]
    """Skip, saying why, when the images the lab's Dockerfiles build on are not on this engine."""
    for image in ("python:3.12-slim", "prom/prometheus:latest"):
        try:
            client.images.get(image)
        except Exception:
            pytest.skip(f"base image {image} is not on this engine and no registry gave it; .ci/docker-setup builds it")


@pytest.fixture(scope="session")
def compose_secrets() -> Path:
    """The stack's secrets in .env beside the compose file, made once per checkout (compose needs them)."""
    env_file = REPO / ".env"
    if not env_file.exists():
        from scalelab.cli.main import cli

        assert cli(["secrets", "--env-file", str(env_file)]) == 0
    return env_file


# Package-scoped: torn down before the swarm tests, which publish the same ports.
@pytest.fixture(scope="package")
def compose_stack(compose_secrets: Path) -> Iterator[None]:
    """Build and start the stack; tear down containers, networks and volumes even on failure."""
    client = docker_client()
    if compose_command() is None:
        pytest.skip("no compose CLI (docker compose or docker-compose); .ci/run installs one")
    require_base_images(client)
    taken = []
    for name, port in published_ports().items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if name in SERVICES and sock.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(f"{name} ({port})")
    if taken:
        pytest.fail(f"ports the compose stack publishes are in use: {', '.join(taken)}; stop what holds them")
    try:
        built = compose("build", check=False)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        started = compose("up", "-d", *SERVICES, check=False)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
        while True:
            containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})
            health = {c.labels["com.docker.compose.service"]: c.attrs["State"].get("Health", {}).get("Status")
                      for c in containers}  # fmt: skip
            if sorted(health) == sorted(SERVICES) and all(status == "healthy" for status in health.values()):
                break
            if time.monotonic() > deadline:
                logs = compose("logs", "--tail=20", check=False).stdout[-4000:]
                pytest.fail(f"not healthy within {HEALTHY_WITHIN_SECONDS} s: {health}\n{logs}")
            time.sleep(1)
        yield
    finally:
        compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)

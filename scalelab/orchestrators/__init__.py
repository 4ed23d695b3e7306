"""Orchestrators: one interface to list, kill, start, pause, resume, add and remove instances, in any mode."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scalelab.orchestrators.base import InstanceInfo, Orchestrator, OrchestratorError, UnknownInstance
from scalelab.orchestrators.local import LocalOrchestrator
from scalelab.topology import InstanceSpec, Secrets, default_topology

__all__ = [
    "ORCHESTRATOR_ENV",
    "InstanceInfo",
    "InstanceSpec",
    "LocalOrchestrator",
    "Orchestrator",
    "OrchestratorError",
    "Secrets",
    "UnknownInstance",
    "default_topology",
    "find_orchestrator",
]

ORCHESTRATOR_ENV = "SCALELAB_ORCHESTRATOR"
CHOICES = ("auto", "local", "docker", "swarm")


def find_orchestrator(
    run_dir: str | Path, environ: Mapping[str, str] | None = None, in_network: bool | None = None
) -> Orchestrator:
    """Return the orchestrator of the running stack: local processes, else a compose stack, else a swarm stack.

    A stack started with `scalelab up` in ``run_dir`` wins; otherwise a running compose project,
    then a swarm stack, is found by its labels; with none, the local one (which says nothing runs).
    SCALELAB_ORCHESTRATOR=local, docker or swarm skips the search (tests use it to stay off Docker).
    ``in_network`` says whether this process runs inside the compose network (default: from
    DASHBOARD_DOCKER_IN_NETWORK).
    """
    environ = os.environ if environ is None else environ
    choice = environ.get(ORCHESTRATOR_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise OrchestratorError(f"{ORCHESTRATOR_ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    local = LocalOrchestrator(run_dir)
    if choice == "local" or (choice == "auto" and local.running()):
        return local
    from scalelab.orchestrators.docker import DockerOrchestrator, docker_stack_running

    inside = docker_in_network(environ) if in_network is None else in_network
    if choice == "docker" or (choice == "auto" and docker_stack_running()):
        return DockerOrchestrator(in_network=inside)
    from scalelab.orchestrators.swarm import SwarmOrchestrator, swarm_stack_running

    if choice == "swarm" or swarm_stack_running():
        return SwarmOrchestrator(in_network=inside)
    return local


def docker_in_network(environ: Mapping[str, str]) -> bool:
    """Return whether DASHBOARD_DOCKER_IN_NETWORK says this process runs inside the compose network."""
    return environ.get("DASHBOARD_DOCKER_IN_NETWORK", "").strip().lower() in ("1", "true", "yes", "on")

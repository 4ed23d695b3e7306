"""What every command gets: the orchestrator for the run directory, and output helpers."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from ..orchestrator import LocalOrchestrator, Orchestrator


@dataclass
class Context:
    """The state a command works on."""

    orchestrator: Orchestrator
    # Looked up when the command runs, so a redirected sys.stdout (tests, pipes) is honoured.
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, message: str) -> None:
        """Print a line for the user."""
        print(message, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        """Print an error line."""
        print(f"scalelab: {message}", file=self.err, flush=True)


def pick_orchestrator(run_dir: str, environ: Mapping[str, str] | None = None) -> Orchestrator:
    """Return the orchestrator of the running stack: local processes, else a Docker compose stack.

    A stack started here with `scalelab up` wins; otherwise a running compose project
    `scalelab` is found by its labels; with neither, the local one (which says nothing runs).
    SCALELAB_ORCHESTRATOR=local or docker skips the search (tests use it to stay off Docker).
    """
    environ = os.environ if environ is None else environ
    choice = environ.get("SCALELAB_ORCHESTRATOR", "auto")
    if choice not in ("auto", "local", "docker"):
        raise ValueError(f"SCALELAB_ORCHESTRATOR must be auto, local or docker, not {choice!r}")
    local = LocalOrchestrator(run_dir)
    if choice == "local" or (choice == "auto" and local.running()):
        return local
    from ..orchestrator.docker import DockerOrchestrator, docker_stack_running

    if choice == "docker" or docker_stack_running():
        return DockerOrchestrator(in_network=docker_in_network(environ))
    return local


def docker_in_network(environ: Mapping[str, str]) -> bool:
    """Return whether DASHBOARD_DOCKER_IN_NETWORK says this process runs inside the compose network."""
    return environ.get("DASHBOARD_DOCKER_IN_NETWORK", "").strip().lower() in ("1", "true")

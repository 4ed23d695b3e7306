"""What every command gets: the orchestrator for the run directory, and output helpers."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TextIO, TypeVar

from scalelab.orchestrators import Orchestrator, find_orchestrator

AnyOrchestrator = TypeVar("AnyOrchestrator", bound=Orchestrator)


@dataclass
class Context(Generic[AnyOrchestrator]):
    """The state a command works on: ``up`` and ``down`` get a local stack's, the others whichever runs."""

    orchestrator: AnyOrchestrator
    # Looked up when the command runs, so a redirected sys.stdout (tests, pipes) is honoured.
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, message: str) -> None:
        """Print a line for the user."""
        print(message, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        """Print an error line."""
        print(f"scalelab: {message}", file=self.err, flush=True)


def pick_orchestrator(run_dir: str | Path, environ: Mapping[str, str] | None = None) -> Orchestrator:
    """Return the orchestrator of the running stack (see :func:`scalelab.orchestrators.find_orchestrator`)."""
    return find_orchestrator(run_dir, environ)

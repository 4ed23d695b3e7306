"""What every command gets: the orchestrator for the run directory, and output helpers."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from ..orchestrator import LocalOrchestrator


@dataclass
class Context:
    """The state a command works on."""

    orchestrator: LocalOrchestrator
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def say(self, message: str) -> None:
        """Print a line for the user."""
        print(message, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        """Print an error line."""
        print(f"scalelab: {message}", file=self.err, flush=True)

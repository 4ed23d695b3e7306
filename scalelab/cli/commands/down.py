"""``scalelab down``: stop every instance of a stack started here."""

from __future__ import annotations

from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.orchestrators import LocalOrchestrator


def run(ctx: Context[LocalOrchestrator]) -> exitcodes.ExitCode:
    """Stop the stack; say so when nothing was running."""
    orchestrator = ctx.orchestrator
    stopped = orchestrator.down()
    ctx.say(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return exitcodes.OK

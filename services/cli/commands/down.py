"""``scalelab down``: stop every instance of a stack started here."""

from __future__ import annotations

from .. import exitcodes
from ..context import Context


def run(ctx: Context) -> exitcodes.ExitCode:
    """Stop the stack; say so when nothing was running."""
    stopped = ctx.orchestrator.down()
    ctx.say(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return exitcodes.OK

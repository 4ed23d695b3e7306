"""``scalelab kill|start|pause|resume INSTANCE``: act on one instance through the orchestrator."""

from __future__ import annotations

from ...orchestrator import OrchestratorError
from .. import exitcodes
from ..context import Context

PAST = {"kill": "killed", "start": "started", "pause": "paused", "resume": "resumed"}


def run(ctx: Context, action: str, name: str) -> exitcodes.ExitCode:
    """Apply ``action`` to instance ``name`` and report its new state."""
    try:
        info = getattr(ctx.orchestrator, action)(name)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(f"{PAST[action]} {info.name} (port {info.port}): now {info.state}")
    return exitcodes.OK

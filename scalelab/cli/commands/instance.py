"""``scalelab kill|start|pause|resume INSTANCE``: act on one instance through the orchestrator."""

from __future__ import annotations

from scalelab import actions
from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.orchestrators import OrchestratorError

PAST = {"kill": "killed", "start": "started", "pause": "paused", "resume": "resumed"}


def run(ctx: Context, verb: str, name: str) -> exitcodes.ExitCode:
    """Apply ``verb`` to instance ``name`` and report its new state."""
    try:
        done = actions.perform(actions.parse(verb, name), ctx.orchestrator)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    info = done.instances[0]
    ctx.say(f"{PAST[verb]} {info.name} (port {info.port}): now {info.state}")
    return exitcodes.OK

"""``scalelab add SERVICE``: start one more microservice or gateway and put it in rotation."""

from __future__ import annotations

from ...orchestrator import OrchestratorError
from ...orchestrator.membership import register
from .. import exitcodes
from ..context import Context


def run(ctx: Context, service: str) -> exitcodes.ExitCode:
    """Start the instance, then register it with the pools that balance it."""
    try:
        info = ctx.orchestrator.add(service)
        pools = register(ctx.orchestrator, info)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(f"added {info.name} on {info.url}; now balanced by {', '.join(pools) or 'nothing yet'}")
    return exitcodes.OK

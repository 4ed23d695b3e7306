"""``scalelab add SERVICE``: start one more microservice or gateway and put it in rotation."""

from __future__ import annotations

from ...orchestrator import OrchestratorError
from ...orchestrator.membership import BALANCED_BY
from .. import exitcodes
from ..context import Context


def run(ctx: Context, service: str) -> exitcodes.ExitCode:
    """Start the instance; the orchestrator also registers it with the pools that balance it."""
    try:
        info = ctx.orchestrator.add(service)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(f"added {info.name} (port {info.port}); every {BALANCED_BY[service][0]} now balances it")
    return exitcodes.OK

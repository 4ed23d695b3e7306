"""``scalelab remove INSTANCE``: take a microservice or gateway out of rotation, stop it and forget it."""

from __future__ import annotations

from ...orchestrator import OrchestratorError
from ...orchestrator.membership import BALANCED_BY
from ...orchestrator.topology import service_of
from .. import exitcodes
from ..context import Context


def run(ctx: Context, name: str) -> exitcodes.ExitCode:
    """Remove the instance; the orchestrator withdraws it from the pools that balance it before stopping it."""
    try:
        ctx.orchestrator.remove(name)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    balancer = BALANCED_BY[service_of(name)][0]
    ctx.say(f"removed {name}: no {balancer} balances it any more, and it is stopped and forgotten")
    return exitcodes.OK

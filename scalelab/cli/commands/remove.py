"""``scalelab remove INSTANCE``: take an instance out of rotation, stop it and forget it (scale in)."""

from __future__ import annotations

from scalelab import actions, catalog
from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.orchestrators import OrchestratorError


def run(ctx: Context, name: str) -> exitcodes.ExitCode:
    """Remove the instance; the orchestrator withdraws it from the pools that balance it before stopping it."""
    try:
        actions.perform(actions.Remove(name), ctx.orchestrator)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    pool = catalog.service(catalog.service_of(name)).pool
    balancer = pool.holder if pool else "balancer"
    ctx.say(f"removed {name}: no {balancer} balances it any more, and it is stopped and forgotten")
    return exitcodes.OK

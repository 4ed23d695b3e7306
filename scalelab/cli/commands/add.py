"""``scalelab add SERVICE``: start one more instance of a service that scales and put it in rotation."""

from __future__ import annotations

from scalelab import actions, catalog
from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.orchestrators import OrchestratorError


def run(ctx: Context, service: str) -> exitcodes.ExitCode:
    """Start the instance; the orchestrator also registers it with the pools that balance it."""
    try:
        done = actions.perform(actions.Add(service), ctx.orchestrator)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    info = done.instances[0]
    pool = catalog.service(service).pool
    ctx.say(f"added {info.name} (port {info.port}); every {pool.holder if pool else 'balancer'} now balances it")
    return exitcodes.OK

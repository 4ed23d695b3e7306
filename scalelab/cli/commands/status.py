"""``scalelab status``: a table of instances with process state and health."""

from __future__ import annotations

from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.cli.table import render
from scalelab.orchestrators.local import healthy

HEALTH_PROBE_SECONDS = 0.5


def print_status(ctx: Context) -> int:
    """Print the instance table; return how many running instances are unhealthy."""
    rows = []
    unhealthy = 0
    for info in ctx.orchestrator.instances():
        if info.state != "running":
            health = "-"
        elif info.health is not None:
            health = info.health
        else:
            health = "healthy" if healthy(info.port, HEALTH_PROBE_SECONDS, info.health_path) else "unhealthy"
        unhealthy += health not in ("-", "healthy")
        rows.append(
            (info.name, info.service, info.url, info.pid if info.state != "stopped" else None, info.state, health)
        )
    ctx.say(render(("INSTANCE", "SERVICE", "URL", "PID", "PROCESS", "HEALTH"), rows))
    return unhealthy


def run(ctx: Context) -> exitcodes.ExitCode:
    """Print the table, or say that no stack was started here."""
    if not ctx.orchestrator.instances():
        where = ctx.orchestrator.where or "here"
        ctx.say(f"no stack has been started {where}; run `scalelab up` (or `docker compose up --build`)")
        return exitcodes.FAILED
    print_status(ctx)
    return exitcodes.OK

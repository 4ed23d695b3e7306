"""``scalelab status``: a table of instances with process state and health."""

from __future__ import annotations

from ...orchestrator.local import healthy
from .. import exitcodes
from ..context import Context
from ..table import render

HEALTH_PROBE_SECONDS = 0.5


def print_status(ctx: Context) -> int:
    """Print the instance table; return how many running instances are unhealthy."""
    rows = []
    unhealthy = 0
    for info in ctx.orchestrator.instances():
        if info.state == "running":
            ok = healthy(info.port, HEALTH_PROBE_SECONDS, info.health_path)
            unhealthy += not ok
            health = "healthy" if ok else "unhealthy"
        else:
            health = "-"
        rows.append(
            (info.name, info.service, info.url, info.pid if info.state != "stopped" else None, info.state, health)
        )
    ctx.say(render(("INSTANCE", "SERVICE", "URL", "PID", "PROCESS", "HEALTH"), rows))
    return unhealthy


def run(ctx: Context) -> exitcodes.ExitCode:
    """Print the table, or say that no stack was started here."""
    if not ctx.orchestrator.instances():
        ctx.say(f"no stack has been started from {ctx.orchestrator.run_dir}; run `scalelab up`")
        return exitcodes.FAILED
    print_status(ctx)
    return exitcodes.OK

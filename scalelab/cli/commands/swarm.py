"""``scalelab up --engine swarm`` and ``scalelab down --engine swarm``: the stack on Docker Swarm."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scalelab import catalog
from scalelab.cli import exitcodes
from scalelab.cli.commands.secrets import ENV_FILE, write_secrets
from scalelab.cli.commands.status import print_status
from scalelab.cli.context import Context
from scalelab.generate.compose import COMPOSE_SECRETS, compose_dir
from scalelab.orchestrators import OrchestratorError
from scalelab.orchestrators.swarm import SwarmOrchestrator


def orchestrator(run_dir: Path) -> SwarmOrchestrator:
    """Return the swarm stack's orchestrator, run from this machine; the stack file goes under ``run_dir``."""
    swarm = SwarmOrchestrator()
    swarm.stack_dir = run_dir / "swarm"
    return swarm


def stack_environment(ctx: Context) -> dict[str, str]:
    """Return this process's environment with the stack's secrets from .env, writing fresh ones if it has none."""
    path = compose_dir() / ENV_FILE
    if not path.exists():
        write_secrets(path)
        ctx.say(f"wrote fresh secrets to {path} (the page's password is SCALELAB_DASHBOARD_PASSWORD there)")
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() in COMPOSE_SECRETS:
            values[name.strip()] = value.strip()
    return {**os.environ, **values}


def up(ctx: Context[SwarmOrchestrator], open_ports: bool) -> exitcodes.ExitCode:
    """Deploy the stack onto the swarm and wait until every task is healthy."""
    swarm = ctx.orchestrator
    ctx.say("deploying ScaleLab onto the swarm (building its images first) ...")
    started = time.monotonic()
    try:
        missing = swarm.up(swarm.stack_dir, stack_environment(ctx), open_ports)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(f"all tasks healthy in {time.monotonic() - started:.1f} s\n")
    if missing:
        ctx.say(f"left out, no image here: {', '.join(missing)}\n")
    print_status(ctx)
    entry = catalog.entry()
    page = catalog.service("dashboard")
    reach = "from the network too (--open-ports)" if open_ports else "from this machine only"
    ctx.say(f"\nControl page: http://127.0.0.1:{page.ports[0]}/   ({reach})")
    ctx.say(f"API: http://127.0.0.1:{entry.ports[0]}/token, then /data with the token in the Authorization header.")
    ctx.say("Control it with `scalelab status|kill|pause|resume|start|add|remove`; stop it with "
            "`scalelab down --engine swarm`.")  # fmt: skip
    return exitcodes.OK


def down(ctx: Context[SwarmOrchestrator]) -> exitcodes.ExitCode:
    """Remove the stack from the swarm (its volumes stay)."""
    try:
        removed = ctx.orchestrator.down()
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    ctx.say(f"removed {', '.join(removed)}" if removed else "no swarm stack was running")
    return exitcodes.OK

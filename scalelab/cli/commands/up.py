"""``scalelab up``: start the whole stack, wait until healthy, print the URLs."""

from __future__ import annotations

import os
import secrets as tokens
import signal
import time
from types import FrameType

from scalelab import catalog
from scalelab.cli import exitcodes
from scalelab.cli.commands.status import print_status
from scalelab.cli.context import Context
from scalelab.generate.scrape import find_prometheus
from scalelab.orchestrators import LocalOrchestrator, OrchestratorError, Secrets
from scalelab.paths import find_run_dir

REAP_SECONDS = 0.5


def stack_secrets() -> Secrets:
    """Return the secrets from the environment, generating any that is not set."""
    return Secrets(
        jwt_secret=os.environ.get("SCALELAB_JWT_SECRET") or tokens.token_hex(32),
        admin_token=os.environ.get("SCALELAB_ADMIN_TOKEN") or tokens.token_hex(16),
    )


def _found_by_default(orchestrator: LocalOrchestrator) -> bool:
    """Return whether other verbs run from here find this stack without --run-dir."""
    return find_run_dir() == orchestrator.run_dir


class _Stop(Exception):
    pass


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def run(ctx: Context[LocalOrchestrator], detach: bool, port_offset: int) -> exitcodes.ExitCode:
    """Start the stack; stay in the foreground until Ctrl-C unless ``detach``."""
    orchestrator = ctx.orchestrator
    ctx.say(f"starting ScaleLab from {orchestrator.run_dir} ...")
    started = time.monotonic()
    prometheus = find_prometheus()
    if prometheus is None:
        ctx.say(
            "Prometheus not found (install Debian's `prometheus` or set SCALELAB_PROMETHEUS_BIN): running without it."
        )
    try:
        orchestrator.up(stack_secrets(), port_offset, prometheus)
    except OrchestratorError as exc:
        ctx.fail(str(exc))
        return exitcodes.FAILED
    except KeyboardInterrupt:
        ctx.fail("interrupted while starting; everything started so far was stopped")
        return exitcodes.INTERRUPTED
    ctx.say(f"all instances healthy in {time.monotonic() - started:.1f} s\n")
    print_status(ctx)
    instances = {info.name: info for info in orchestrator.instances()}
    page = instances[catalog.service("dashboard").name]
    ctx.say(f"\nControl page: {page.url}/   (load, knobs, kills, live charts)")
    entry = instances[catalog.instance_names(catalog.entry())[0]]
    ctx.say(f"API: {entry.url}/token, then {entry.url}/data with the token in the Authorization header.")
    ctx.say(f"Logs: {orchestrator.log_dir}   Admin token: {orchestrator.run_dir / 'state.json'}")
    ctx.say(f"Experiment reports: {orchestrator.results_dir}")
    again = "" if _found_by_default(orchestrator) else f" --run-dir {orchestrator.run_dir}"
    if detach:
        ctx.say(f"Detached; control it with `scalelab{again} status|kill|...` and stop it with `scalelab{again} down`.")
        return exitcodes.OK
    ctx.say("Press Ctrl-C to stop.")
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        while True:
            orchestrator.reap()
            time.sleep(REAP_SECONDS)
    except (KeyboardInterrupt, _Stop):
        ctx.say("\nstopping ...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        stopped = orchestrator.down()
        ctx.say(f"stopped {len(stopped)} instance(s)")
    return exitcodes.OK

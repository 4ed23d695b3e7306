"""``scalelab autoscale on|off|status``: switch the control page's autoscaler, or say what it does.

The autoscaler runs in the control page's process (it lives as long as the stack does, and its
decisions are marked on the page's charts); this command talks to the page's ``/autoscaler``.
"""

from __future__ import annotations

from typing import Any

import requests

from scalelab import catalog
from scalelab.cli import exitcodes
from scalelab.cli.commands.experiment import admin_token
from scalelab.cli.context import Context
from scalelab.orchestrators import OrchestratorError
from services.kit.auth import ADMIN_HEADER

REQUEST_TIMEOUT_SECONDS = 10.0


def _page_url(ctx: Context) -> str:
    page = next(svc for svc in catalog.SERVICES if svc.runs == "dashboard")
    return ctx.orchestrator.get(catalog.instance_names(page)[0]).url


def describe(status: dict[str, Any]) -> list[str]:
    """Return the lines that say what the autoscaler does."""
    if not status.get("enabled"):
        return ["autoscaler: off" + (f" (last: {status['describe']})" if status.get("describe") else "")]
    lines = [f"autoscaler: on, {status['describe']}; {status['instances']} running"]
    if status.get("signal") is not None:
        lines.append(f"  signal now: {status['signal']:.3g}")
    if status.get("error"):
        lines.append(f"  problem: {status['error']}")
    for decision in status.get("decisions", [])[-5:]:
        lines.append(
            f"  {decision['label']} ({decision['reason']})" + (f": {decision['error']}" if decision["error"] else "")
        )
    return lines


def run(ctx: Context, switch: str, policy: dict[str, Any]) -> exitcodes.ExitCode:
    """Switch the autoscaler on (with ``policy``) or off, or show its status."""
    try:
        url = _page_url(ctx) + "/autoscaler"
    except OrchestratorError as exc:
        ctx.fail(f"the control page is not running, and the autoscaler runs in it: {exc}")
        return exitcodes.FAILED
    try:
        if switch == "status":
            response = requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
        else:
            body = {"enabled": switch == "on", **policy}
            headers = {ADMIN_HEADER: admin_token(ctx.orchestrator)}
            response = requests.put(url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        ctx.fail(f"the control page at {url} did not answer: {exc}")
        return exitcodes.FAILED
    if response.status_code == 401 and "WWW-Authenticate" in response.headers:
        ctx.fail(f"the control page at {url} asks for its password: it is served beyond loopback; use the page")
        return exitcodes.FAILED
    try:
        status = response.json()
    except ValueError:
        ctx.fail(f"the control page answered {response.status_code} without JSON")
        return exitcodes.FAILED
    if response.status_code != 200:
        ctx.fail(str(status.get("error", status)) if isinstance(status, dict) else str(status))
        return exitcodes.FAILED
    for line in describe(status):
        ctx.say(line)
    return exitcodes.OK

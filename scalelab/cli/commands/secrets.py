"""``scalelab secrets``: write fresh secrets for the compose stack into .env beside docker-compose.yml.

Nothing usable is committed: docker compose refuses to start until these exist, and each
checkout makes its own. The file is readable by its owner only.
"""

from __future__ import annotations

import os
import secrets as tokens
from pathlib import Path

from scalelab.cli import exitcodes
from scalelab.cli.context import Context
from scalelab.generate.compose import COMPOSE_SECRETS, PROJECT, compose_dir

ENV_FILE = ".env"


def render(values: dict[str, str]) -> str:
    """Return the .env text: the project name and one fresh value per secret."""
    lines = [
        "# Written by `scalelab secrets`: the compose stack's own secrets. Keep this file to yourself;",
        "# `scalelab secrets --force` replaces them (restart the stack afterwards).",
        f"COMPOSE_PROJECT_NAME={PROJECT}",
        *(f"{name}={value}" for name, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def write_secrets(path: Path) -> None:
    """Write fresh secrets to ``path``, readable by its owner only."""
    values = {name: tokens.token_urlsafe(32) for name in COMPOSE_SECRETS}
    # Created 0600 before anything is written, so the secrets are never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(render(values))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_TRUNC


def run(ctx: Context, env_file: str | None, force: bool) -> exitcodes.ExitCode:
    """Write the secrets; refuse to replace existing ones unless ``force``."""
    path = Path(env_file) if env_file else compose_dir() / ENV_FILE
    if path.exists() and not force:
        ctx.fail(f"{path} exists; keep it, or replace its secrets with `scalelab secrets --force`")
        return exitcodes.FAILED
    write_secrets(path)
    ctx.say(f"wrote fresh secrets to {path}: the control page's password (user `scalelab`) is")
    ctx.say("SCALELAB_DASHBOARD_PASSWORD and Grafana's (user `admin`) SCALELAB_GRAFANA_PASSWORD there.")
    return exitcodes.OK

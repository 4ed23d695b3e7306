"""Serve a gateway: its listener (front.py) on the public port, its Flask app behind it (services/kit/front.py)."""

from __future__ import annotations

import sys

from ..kit.config import ConfigError, load_config
from ..kit.front import serve_fronted
from .config import GatewayConfig
from .front import GatewayListener

__all__ = ["serve"]


def serve() -> None:
    """Serve the gateway configured by the environment until the server is told to stop."""
    try:
        settings = load_config(GatewayConfig)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    serve_fronted("services.gateway.app:create_app", settings, GatewayListener)  # type: ignore[arg-type]

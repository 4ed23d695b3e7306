"""Serve a gateway: its listener (front.py) on the public port, its Flask app behind it (services/kit/front.py)."""

from __future__ import annotations

from ..kit.front import serve_fronted
from .config import GatewayConfig
from .front import GatewayListener

__all__ = ["serve"]


def serve() -> None:
    """Serve the gateway configured by the environment until the server is told to stop."""
    serve_fronted("services.gateway.app:create_app", GatewayConfig, GatewayListener)  # type: ignore[arg-type]

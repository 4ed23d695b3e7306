"""Serve the balancer with aiohttp's server, on uvloop when it is installed."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..kit import load_config
from .app import create_app
from .config import BalancerConfig

# Match the services: idle client connections stay open this long.
KEEPALIVE_SECONDS = 75


def serve() -> None:
    """Run the balancer until SIGINT or SIGTERM."""
    config = load_config(BalancerConfig)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        create_app(),
        host=config.host,
        port=config.port,
        access_log=None,
        keepalive_timeout=KEEPALIVE_SECONDS,
        backlog=1024,
        print=None,
        loop=loop,
        shutdown_timeout=2,
    )

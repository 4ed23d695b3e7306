"""Serve the balancer with its own listener (listener.py), on uvloop when it is installed."""

from __future__ import annotations

import asyncio
import signal

from ..kit import load_config
from .app import create_app
from .config import BalancerConfig
from .listener import Listener

# Requests in flight at SIGTERM get this long to finish.
SHUTDOWN_SECONDS = 2.0


async def _run(config: BalancerConfig) -> None:
    listener = Listener(create_app())
    await listener.start(config.host, config.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await listener.stop(SHUTDOWN_SECONDS)


def serve() -> None:
    """Run the balancer until SIGINT or SIGTERM."""
    config = load_config(BalancerConfig)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_run(config))
    finally:
        loop.close()

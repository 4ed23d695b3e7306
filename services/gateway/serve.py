"""Serve a gateway: its listener (front.py) on the public port, its Flask app on a loopback port behind it.

The Flask app runs on granian's request threads as every other service's does; the listener
runs its event loop on a thread of the same process, so both share the one ``Gateway`` (its
knobs, breakers, pools and metrics). With gunicorn (``SCALELAB_SERVER=gunicorn``), whose gevent
worker would turn that thread into a greenlet, the app serves the public port itself, its
express lane answering plain reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sys
import threading
from typing import Any

from ..kit.config import ConfigError, load_config
from ..kit.server import serve_wsgi
from .config import GatewayConfig
from .front import GatewayListener

__all__ = ["Running", "serve", "start_listener"]

log = logging.getLogger(__name__)

APP = "services.gateway.app:create_app"
# How long the listener may take to start once the app is built.
START_SECONDS = 10.0


def _loopback_port() -> int:
    """Return a port free on 127.0.0.1 now, for the app (only this process connects to it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class Running:
    """A gateway's listener running on its own thread and event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: GatewayListener, thread: threading.Thread) -> None:
        self.loop = loop
        self.listener = listener
        self.thread = thread

    def stop(self, grace: float = 2.0) -> None:
        """Let requests in flight finish (up to ``grace`` seconds), close everything, and end the thread."""
        asyncio.run_coroutine_threadsafe(self.listener.stop(grace), self.loop).result(grace + 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def start_listener(app: Any, sock: socket.socket, app_port: int, threads: int) -> Running:
    """Run the gateway's listener for ``app`` on ``sock`` in a thread of its own; return once it listens."""
    listening = threading.Event()
    failed: list[BaseException] = []
    loop = _new_loop()
    listener = GatewayListener(app, app_port, threads)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(listener.start(sock=sock))
        except BaseException as exc:
            failed.append(exc)
            listening.set()
            return
        listening.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="gateway-listener", daemon=True)
    thread.start()
    if not listening.wait(START_SECONDS):
        raise RuntimeError(f"the gateway's listener did not start within {START_SECONDS:g} s")
    if failed:
        raise failed[0]
    return Running(loop, listener, thread)


def serve() -> None:
    """Serve the gateway configured by the environment until the server is told to stop."""
    try:
        settings = load_config(GatewayConfig)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.server != "granian":
        if settings.worker_class == "gevent":
            from gevent import monkey

            monkey.patch_all()
        serve_wsgi(APP, settings, settings.server, settings.worker_class, settings.threads)
        return
    try:
        sock = socket.create_server((settings.host, settings.port), backlog=1024)
    except OSError as exc:
        print(
            f"gateway: cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
            "is another instance on that port? Set GATEWAY_PORT to a free one.",
            file=sys.stderr,
        )
        sys.exit(1)
    app_port = _loopback_port()
    behind = dataclasses.replace(settings, host="127.0.0.1", port=app_port)
    serve_wsgi(
        APP,
        behind,
        settings.server,
        settings.worker_class,
        settings.threads,
        on_app=lambda app: start_listener(app, sock, app_port, settings.threads),
    )

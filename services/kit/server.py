"""Serve a Flask app factory with gunicorn: one worker process per instance, never Flask's dev server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from .settings import ServiceSettings

__all__ = ["serve_wsgi"]

# Services keep idle keep-alive connections longer than the kit's client does (60 s), so the
# client always closes first and never writes to a socket the server has just dropped.
KEEPALIVE_SECONDS = 75
# A paused (SIGSTOP) instance must come back when resumed, not be killed by its own master.
WORKER_TIMEOUT_SECONDS = 3600


class _Embedded(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in the worker after gevent has patched the standard library.
        return self._factory()


def serve_wsgi(factory: Callable[[], Any], settings: ServiceSettings, worker_class: str = "gevent", threads: int = 16) -> None:
    """Run gunicorn in this process, serving ``factory()`` on ``settings.host:settings.port``."""
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": worker_class,
        "threads": threads,
        "worker_connections": 2000,
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": 3,
        "loglevel": settings.log_level,
        "accesslog": None,
        "errorlog": "-",
        "proc_name": f"scalelab-{settings.instance}",
        "control_socket_disable": True,  # one per instance would collide on the same path
    }
    _Embedded(factory, options).run()

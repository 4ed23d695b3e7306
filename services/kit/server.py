"""Serve a Flask app factory with a production WSGI server, one process per instance.

Two servers are supported: granian (Rust HTTP core, WSGI on a pool of blocking threads) and
gunicorn. Which one and how many threads is configuration; docs/benchmarks.md shows why
granian is the default for the request path.

granian runs its worker as a thread of the process that starts it (the server it ships for
free-threaded Python, used here with the GIL): a master process beside the worker cost each
instance about 50 MB of memory for nothing, as one worker serves each instance anyway.
gunicorn always forks its worker under a master.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .settings import ServiceSettings

__all__ = ["serve_wsgi"]

# Services keep idle keep-alive connections longer than the kit's clients do (20 s), so a
# client always closes first and never writes to a socket the server has just dropped.
KEEPALIVE_SECONDS = 75
# granian's name for the same: how long an idle connection may wait for its next request.
GRANIAN_IDLE_MS = 60_000
# A paused (SIGSTOP) instance must come back when resumed, not be killed by its own master.
WORKER_TIMEOUT_SECONDS = 3600


def _serve_gunicorn(
    target: str, settings: ServiceSettings, worker_class: str, threads: int, on_app: OnApp | None
) -> None:
    from gunicorn.app.base import BaseApplication

    class Embedded(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
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
                "control_socket_disable": True,  # one per instance would collide on the same path
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Runs in the worker (after gevent patched the standard library, for gevent workers).
            return _build(target, on_app)

    Embedded().run()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def buffered(app: WsgiApp) -> WsgiApp:
    """Wrap ``app`` so that it answers with one list of bytes instead of an iterator.

    granian sends a list in one call, where an iterator costs a call into Python per chunk and
    a streamed answer (in the profile, 10 to 15 % of a service's time on the cache-hit path).
    Every answer here is small and already in memory.
    """

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunks = app(environ, start_response)
        try:
            return [b"".join(chunks)]
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # Flask's teardown runs here, as a server would call it

    return call


# Called with the app a factory built, before the server serves it (a gateway starts its listener).
OnApp = Callable[[Any], None]


def _build(target: str, on_app: OnApp | None = None) -> WsgiApp:
    """Import ``target`` ("module:function") and return the app the factory builds."""
    import importlib

    module, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module), attr)()
    if on_app is not None:
        on_app(app)
    return app


def _serve_granian(target: str, settings: ServiceSettings, threads: int, on_app: OnApp | None) -> None:
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import MTServer
    from granian.server.common import AbstractServer

    class InProcess(MTServer):  # type: ignore[misc]
        """granian's thread-worker server on a GIL build: the worker is a thread of this process."""

        def _check_gil(self) -> None:
            pass  # with the GIL, the one worker thread and the request threads take turns as usual

        def serve(self, *args: Any, **kwargs: Any) -> None:
            AbstractServer.serve(self, *args, **kwargs)  # skips the free-threaded build's warning

    InProcess(
        target,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=1,
        blocking_threads=threads,
        backlog=2048,
        log_enabled=True,
        log_level=settings.log_level,  # type: ignore[arg-type]
        log_access=False,
        workers_kill_timeout=3,
        http1_settings=HTTP1Settings(header_read_timeout=GRANIAN_IDLE_MS),
    ).serve(target_loader=lambda: buffered(_build(target, on_app)), wrap_loader=False)


def serve_wsgi(
    target: str,
    settings: ServiceSettings,
    server: str,
    worker_class: str,
    threads: int,
    on_app: OnApp | None = None,
) -> None:
    """Serve the app factory ``target`` ("module:function") on ``settings.host:settings.port``.

    ``threads`` request threads, plus threads for queued requests and ``settings.reserved_threads``
    kept for health and admin routes (services/kit/admission.py) when the server runs requests on threads.
    ``on_app(app)`` is called with the app once it is built, before it is served.
    """
    if settings.admits_by_threads():
        threads += settings.queued_requests + settings.reserved_threads
    if server == "granian":
        _serve_granian(target, settings, threads, on_app)
    elif server == "gunicorn":
        _serve_gunicorn(target, settings, worker_class, threads, on_app)
    else:
        raise ValueError(f"unknown server {server!r}: use granian or gunicorn")

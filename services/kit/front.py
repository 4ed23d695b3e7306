"""A Flask service behind an asyncio listener of its own: its busiest routes on an event loop, the rest to Flask.

Under load a Flask app on a thread-pool server keeps its requests on threads that take turns at
the GIL in no fair order, and that order was the p99 of the whole lab (docs/benchmarks.md). On
one event loop a request waits in a first-in first-out queue instead, and costs less CPU. So a
service may put the kit's listener (listener.py) on its public port: ``serve_fronted`` serves the
Flask app with granian on a loopback port only the process knows, and runs the listener on a
thread of the same process, so both share the app's state (knobs, stores, pools, metrics).

``ExpressListener`` answers the app's express lanes that never block (express.py, registered with
``blocking=False``: the cache's reads) on the loop, through the same handlers, checks and
metrics as the WSGI lane, and passes every other request to the app with the client's Host and
headers: one implementation of everything else, with its validation and its 4xx. A service with
more to do on the loop (the gateway's reads, which ask the cache) subclasses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask

from .config import ConfigError, load_config
from .deadline import DEADLINE_HEADER
from .errors import error_body
from .express import EXPRESS, ExpressLanes
from .listener import CONNECTION_HEADERS, Answer, HttpListener, Request, error_answer, http_date
from .origin import host_allowed
from .server import serve_wsgi
from .settings import ServiceSettings
from .tier import DRAIN_SECONDS
from .upstream import Upstream, UpstreamError

__all__ = ["ExpressListener", "Running", "serve_fronted", "start_listener"]

log = logging.getLogger(__name__)

# What the app's answers keep of their headers: the listener frames the answer itself.
RESPONSE_SKIP = CONNECTION_HEADERS | {b"server"}
# A HEAD answer has no body to measure: the app's Content-Length says what a GET would get.
HEAD_SKIP = RESPONSE_SKIP - {b"content-length"}
DEADLINE_NAME = DEADLINE_HEADER.encode()
# The app's slowest answers: a gateway removing a microservice waits for its requests in flight.
APP_TIMEOUT_SECONDS = DRAIN_SECONDS + 30
# How long the listener may take to start once the app is built, and to connect to the app.
START_SECONDS = 10.0
CONNECT_SECONDS = 2.0


class ExpressListener(HttpListener):
    """The listener in front of a kit-built Flask ``app`` served on ``app_port`` of 127.0.0.1."""

    def __init__(self, app: Flask, app_port: int, settings: ServiceSettings) -> None:
        super().__init__(settings.max_body_bytes, "send less, or raise SCALELAB_MAX_BODY_BYTES")
        self.name = settings.instance or app.name.rsplit(".", 1)[-1]  # "gateway-1", or the service
        self.lanes: ExpressLanes = app.extensions[EXPRESS]
        self.settings = settings
        self._app_port = app_port
        self._app: Upstream | None = None
        self._app_answered = False  # until then a refused connection is the app still starting

    async def open(self) -> None:
        """Keep connections to the app (its pool fills as requests come)."""
        self._app = Upstream("127.0.0.1", self._app_port, CONNECT_SECONDS, APP_TIMEOUT_SECONDS, own_host=False)

    async def closed(self) -> None:
        """Close the connections to the app."""
        if self._app is not None:
            self._app.close()

    async def answer(self, request: Request, client: str) -> Answer:
        """Answer a request through a lane that never blocks, when it has one; else pass it to the app."""
        path, _, query = request.target.partition("?")
        path = unquote_to_bytes(path).decode("latin-1")  # as WSGI's PATH_INFO, which the lanes read
        lane = self.lanes.lane(request.method, path)
        if lane is not None and not lane.blocking and host_allowed(request.host, self.lanes.hosts):
            environ = {
                "REQUEST_METHOD": request.method,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "HTTP_HOST": request.host,
            }
            served = self.lanes.serve(lane, environ)
            if served is not None:
                status, headers, body = served
                sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k != "Content-Length"]
                return status, [*sent, (b"Date", http_date())], body
        return await self.pass_on(request)

    def refused(self, method: str, status: int) -> None:
        """Count a request refused as it was read, as the app counts one no route matches."""
        self.lanes.metrics.observe("unmatched", method, status, 0.0)

    async def pass_on(self, request: Request) -> Answer:
        """Pass ``request`` to the app with the client's Host, deadline and headers; return its answer."""
        assert self._app is not None
        headers = request.headers
        if request.deadline is not None:
            headers = [(DEADLINE_NAME, request.deadline.encode("latin-1")), *headers]
        if request.host is not None:
            headers = [(b"Host", request.host.encode("latin-1")), *headers]
        try:
            answer = await self._app.request(request.method, request.target, headers, request.body, idempotent=False)
        except UpstreamError as exc:
            if self._app_answered:
                log.error("%s's app on port %d did not answer: %s", self.name, self._app_port, exc)
            message = f"{self.name}'s app did not answer; see {self.name}'s log"
            return error_answer(503, error_body(503, message), {"Retry-After": "1"})
        self._app_answered = True
        skip = HEAD_SKIP if request.head_only else RESPONSE_SKIP
        return answer.status, [(k, v) for k, v in answer.headers if k.lower() not in skip], answer.body


# Builds a service's listener for its app: (app, app_port, settings) -> listener.
MakeListener = Callable[[Flask, int, ServiceSettings], ExpressListener]


class Running:
    """A listener running on its own thread and event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: HttpListener, thread: threading.Thread) -> None:
        self.loop = loop
        self.listener = listener
        self.thread = thread

    def stop(self, grace: float = 2.0) -> None:
        """Let requests in flight finish (up to ``grace`` seconds), close everything, and end the thread."""
        asyncio.run_coroutine_threadsafe(self.listener.stop(grace), self.loop).result(grace + 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def start_listener(listener: HttpListener, sock: socket.socket) -> Running:
    """Run ``listener`` on ``sock`` in a thread of its own; return once it listens."""
    listening = threading.Event()
    failed: list[BaseException] = []
    loop = _new_loop()

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

    thread = threading.Thread(target=run, name="listener", daemon=True)
    thread.start()
    if not listening.wait(START_SECONDS):
        raise RuntimeError(f"the listener did not start within {START_SECONDS:g} s")
    if failed:
        raise failed[0]
    return Running(loop, listener, thread)


def _loopback_port() -> int:
    """Return a port free on 127.0.0.1 now, for the app (only this process connects to it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_fronted(target: str, settings_class: type[ServiceSettings], make_listener: MakeListener) -> None:
    """Serve the app factory ``target`` behind the listener ``make_listener`` builds, on its settings' port.

    The settings are ``settings_class`` read from the environment. With gunicorn
    (``SCALELAB_SERVER=gunicorn``), whose gevent worker would turn the listener's thread into a
    greenlet, the app serves the public port itself, its express lanes included.
    """
    service = target.split(".")[1]
    try:
        settings = load_config(settings_class)
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        sys.exit(2)
    name = settings.instance or service
    if settings.server != "granian":
        if settings.server == "gunicorn" and settings.worker_class == "gevent":
            from gevent import monkey

            monkey.patch_all()  # before anything else uses socket or threading
        serve_wsgi(target, settings, settings.server, settings.worker_class, settings.threads)
        return
    try:
        sock = socket.create_server((settings.host, settings.port), backlog=1024)
    except OSError as exc:
        print(
            f"{name}: cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
            "is another instance on that port? Give this one a free port.",
            file=sys.stderr,
        )
        sys.exit(1)
    app_port = _loopback_port()
    behind = dataclasses.replace(settings, host="127.0.0.1", port=app_port)

    def front(app: Any) -> None:
        start_listener(make_listener(app, app_port, settings), sock)

    serve_wsgi(target, behind, settings.server, settings.worker_class, settings.threads, on_app=front)

"""The express lane: a service's hottest routes answered without Flask, for the ordinary request.

On the cache-hit path Flask's own work (request context, routing, hooks, the response object)
cost more CPU than the lab's work did: about 100 µs a request against 30 µs for a plain WSGI
callable (docs/benchmarks.md). The lane is WSGI middleware in front of the Flask app
(``app.wsgi_app``): for a route a service names, a handler answers the request when its input is
ordinary, and returns ``None`` for anything else, which Flask then serves as it always did. So
every unusual input (odd characters, extra parameters, HEAD, another method) keeps one
implementation, Flask's, with its validation and its 4xx.

What every request gets either way, the lane does too: the same-site check (an unknown Host goes
to Flask, which refuses it), admission to a request thread, the request count, duration and
in-flight metrics under the Flask route's name, and JSON errors with the kit's body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from .admission import Admission
from .errors import INTERNAL_ERROR, ApiError, error_body
from .metrics import HttpMetrics
from .origin import host_allowed

__all__ = ["EXPRESS", "Answer", "ExpressLanes", "Handler", "Lane", "Served", "express"]

log = logging.getLogger(__name__)

# Where an app keeps its lanes (app.extensions).
EXPRESS = "scalelab_express"

# (status, JSON body, extra headers), or None: "not ordinary, let Flask serve it".
Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[[dict[str, Any]], Answer | None]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Lane:
    """One route the lanes answer."""

    route: str  # the Flask rule, so both paths count under one label
    handler: Handler
    admitted: bool  # takes a request slot (reserved routes such as /health do not)
    blocking: bool  # may wait on I/O: never run on an event loop (services/kit/front.py)


# What a lane answered: the status, the headers and the JSON body's bytes.
Served = tuple[int, list[tuple[str, str]], bytes]


class ExpressLanes:
    """WSGI middleware: answer registered ``GET`` routes through their handlers, everything else through Flask."""

    def __init__(
        self,
        app: Flask,
        metrics: HttpMetrics,
        hosts: frozenset[str],
        admission: Admission | None,
    ) -> None:
        self.behind: WsgiApp = app.wsgi_app  # Flask, for every request the lanes do not answer
        self.dumps = app.json.dumps  # Flask's own encoder: the same bytes either way
        self.metrics = metrics
        self.hosts = hosts
        self._admission = admission
        self._exact: dict[str, Lane] = {}
        self._prefixed: list[tuple[str, Lane]] = []

    def add(
        self,
        path: str,
        route: str,
        handler: Handler,
        admitted: bool = True,
        prefix: bool = False,
        blocking: bool = True,
    ) -> None:
        """Answer ``GET path`` (or any path under ``path`` with ``prefix``) with ``handler``, counted as ``route``."""
        lane = Lane(route, handler, admitted, blocking)
        if prefix:
            self._prefixed.append((path, lane))
        else:
            self._exact[path] = lane

    def lane(self, method: str, path: str) -> Lane | None:
        """Return the lane that answers ``method`` on ``path`` (the decoded path, as WSGI's PATH_INFO), if any."""
        if method != "GET":
            return None
        lane = self._exact.get(path)
        if lane is None:
            for start, candidate in self._prefixed:
                if path.startswith(start):
                    return candidate
        return lane

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        lane = self.lane(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        if lane is None or not host_allowed(environ.get("HTTP_HOST"), self.hosts):
            return self.behind(environ, start_response)
        served = self.serve(lane, environ, self._admission if lane.admitted else None)
        if served is None:
            return self.behind(environ, start_response)  # counted there, as Flask serves it
        status, headers, payload = served
        start_response(_status_line(status), headers)
        return [payload]

    def serve(self, lane: Lane, environ: dict[str, Any], admission: Admission | None = None) -> Served | None:
        """Answer a request (its WSGI ``environ``) through ``lane``: counted, timed, errors as JSON.

        Return None when the handler leaves the request to Flask. ``admission``: take a request
        slot for the handler's run (an event loop's lanes take none: they hold no thread).
        """
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            if admission is not None:
                admission.enter()
            try:
                answer = lane.handler(environ)
            finally:
                if admission is not None:
                    admission.leave()
        except ApiError as exc:
            answer = (exc.status, exc.body(), exc.headers)
        except Exception:
            log.exception("unhandled error")
            answer = (500, error_body(500, INTERNAL_ERROR), {})
        finally:
            metrics.in_flight.dec()
        if answer is None:
            return None
        status, body, headers = answer
        metrics.observe(lane.route, "GET", status, time.perf_counter() - started)
        payload = f"{self.dumps(body, indent=None, separators=(',', ':'))}\n".encode()
        framing = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        return status, [*framing, *headers.items()], payload


@cache
def _status_line(status: int) -> str:
    # Werkzeug's reason phrases, in its capitals ("404 NOT FOUND"): the lane answers as Flask does.
    return f"{status} {HTTP_STATUS_CODES.get(status, 'unknown').upper()}"


def express(
    app: Flask,
    path: str,
    route: str,
    handler: Handler,
    admitted: bool = True,
    prefix: bool = False,
    blocking: bool = True,
) -> None:
    """Serve ``GET path`` of a kit-built ``app`` through ``handler`` when the request is ordinary.

    ``route`` is the Flask rule of the same route (its metrics label); ``handler(environ)``
    returns ``(status, JSON body, headers)``, raises an ApiError, or returns ``None`` to hand the
    request to Flask. ``admitted=False`` for routes that take no request slot (health, status).
    ``blocking=False`` for a handler that never waits on I/O: an event loop in front of the app
    may run it (services/kit/front.py).
    """
    app.extensions[EXPRESS].add(path, route, handler, admitted=admitted, prefix=prefix, blocking=blocking)

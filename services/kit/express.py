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

__all__ = ["EXPRESS", "Answer", "ExpressLanes", "Handler", "express"]

log = logging.getLogger(__name__)

# Where an app keeps its lanes (app.extensions).
EXPRESS = "scalelab_express"

# (status, JSON body, extra headers), or None: "not ordinary, let Flask serve it".
Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[[dict[str, Any]], Answer | None]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class _Lane:
    route: str  # the Flask rule, so both paths count under one label
    handler: Handler
    admitted: bool  # takes a request slot (reserved routes such as /health do not)


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
        self._exact: dict[str, _Lane] = {}
        self._prefixed: list[tuple[str, _Lane]] = []

    def add(self, path: str, route: str, handler: Handler, admitted: bool = True, prefix: bool = False) -> None:
        """Answer ``GET path`` (or any path under ``path`` with ``prefix``) with ``handler``, counted as ``route``."""
        lane = _Lane(route, handler, admitted)
        if prefix:
            self._prefixed.append((path, lane))
        else:
            self._exact[path] = lane

    def _lane(self, environ: dict[str, Any]) -> _Lane | None:
        if environ["REQUEST_METHOD"] != "GET":
            return None
        path = environ.get("PATH_INFO", "")
        lane = self._exact.get(path)
        if lane is None:
            for start, candidate in self._prefixed:
                if path.startswith(start):
                    return candidate
        return lane

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        lane = self._lane(environ)
        if lane is None or not host_allowed(environ.get("HTTP_HOST"), self.hosts):
            return self.behind(environ, start_response)
        metrics = self.metrics
        started = time.perf_counter()
        admission = self._admission if lane.admitted else None
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
            return self.behind(environ, start_response)  # counted there, as Flask serves it
        status, body, headers = answer
        metrics.observe(lane.route, "GET", status, time.perf_counter() - started)
        payload = f"{self.dumps(body, indent=None, separators=(',', ':'))}\n".encode()
        start_response(
            _status_line(status),
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers.items()],
        )
        return [payload]


@cache
def _status_line(status: int) -> str:
    # Werkzeug's reason phrases, in its capitals ("404 NOT FOUND"): the lane answers as Flask does.
    return f"{status} {HTTP_STATUS_CODES.get(status, 'unknown').upper()}"


def express(app: Flask, path: str, route: str, handler: Handler, admitted: bool = True, prefix: bool = False) -> None:
    """Serve ``GET path`` of a kit-built ``app`` through ``handler`` when the request is ordinary.

    ``route`` is the Flask rule of the same route (its metrics label); ``handler(environ)``
    returns ``(status, JSON body, headers)``, raises an ApiError, or returns ``None`` to hand the
    request to Flask. ``admitted=False`` for routes that take no request slot (health, status).
    """
    app.extensions[EXPRESS].add(path, route, handler, admitted=admitted, prefix=prefix)

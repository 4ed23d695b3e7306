"""The Flask app factory every service builds on: /health, /metrics, /control, JSON errors, metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry
from spectree import SpecTree
from werkzeug.routing import PathConverter

from .admission import Admission
from .auth import require_admin
from .config import ConfigError
from .errors import ApiError, register_error_handlers
from .express import EXPRESS, ExpressLanes
from .inputs import json_body
from .knobs import Knobs
from .metrics import HttpMetrics, exposition, instrument_flask
from .openapi import ADMIN, KNOBS, ControlChange, ControlView, Health, KnobChanges, responses, validated
from .origin import allowed_hosts, own_addresses, refusal
from .settings import ServiceSettings

__all__ = ["RESERVED", "create_service_app", "json_body", "reserve"]

# Where an app keeps the endpoints that take no request slot (services/kit/admission.py).
RESERVED = "scalelab_reserved_endpoints"


def reserve(app: Flask, *endpoints: str) -> None:
    """Serve ``endpoints`` (health, admin, status routes) on the reserved threads: they take no request slot."""
    app.extensions[RESERVED].update(endpoints)


class AnyPath(PathConverter):
    """Werkzeug's path converter for ids and keys that may hold any character: a leading ``/``, newlines.

    With the stock converter ``/db/%2Fa`` and ``/db/a%0Ab`` do not match (its ``.`` stops at a
    newline) and the client gets a 404 (or a redirect to another id) for a valid one. Every
    service's ``<path:...>`` routes use this one.
    """

    regex = r"[\s\S]+?"
    part_isolating = False


def configure_logging(settings: ServiceSettings, service: str) -> None:
    """Log to stderr with the instance name on every line, so interleaved logs stay readable."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s {settings.instance or service} %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def create_service_app(
    service: str,
    settings: ServiceSettings,
    knobs: Knobs,
    registry: CollectorRegistry,
    api: SpecTree,
    health: Callable[[], dict[str, Any]] | None = None,
    health_waits: bool = True,
) -> Flask:
    """Return a Flask app with the routes and behaviour every ScaleLab service shares.

    :param service: the service kind (``gateway``, ``cache`` ...), used in logs and metrics.
    :param settings: the service's settings (instance name, admin token, body limit ...).
    :param knobs: the runtime knobs ``GET/PUT /control`` reads and changes.
    :param registry: the Prometheus registry ``/metrics`` exposes (tests pass a fresh one).
    :param api: the service's API description (services/kit/openapi.py): it documents and validates
        the shared routes here as well as the service's own, and serves ``/openapi.json``.
    :param health: extra fields for ``/health`` (e.g. a dependency's state).
    :param health_waits: whether ``health`` may wait on I/O (a query); when it never does, a
        listener in front of the app (services/kit/front.py) answers ``/health`` on its loop.
    """
    settings.instance = settings.instance or service
    configure_logging(settings, service)
    app = Flask(f"scalelab.{service}")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.url_map.converters["path"] = AnyPath  # before any route is added: routes bind their converter
    register_error_handlers(app)
    metrics = HttpMetrics(service, settings.instance, registry)
    instrument_flask(app, metrics)
    started = time.time()
    admin = require_admin(settings.admin_token)
    try:
        hosts = allowed_hosts(settings.instance, settings.allowed_hosts, own_addresses(settings.host))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    app.extensions[RESERVED] = set()
    app.extensions[KNOBS] = knobs
    admission = None
    if settings.admits_by_threads():
        try:
            admission = Admission(
                settings.instance, settings.threads, settings.queued_requests, settings.reserved_threads, registry
            )
        except ValueError as exc:
            raise ConfigError(f"SCALELAB_THREADS, SCALELAB_QUEUED_REQUESTS, SCALELAB_RESERVED_THREADS: {exc}") from None

    @app.before_request
    def same_site_only() -> None:
        # Before any route: a rebound name or another site's page gets a 403 and changes nothing.
        message = refusal(request.method, request.headers, hosts)
        if message is not None:
            raise ApiError(403, message)
        # Unknown paths (endpoint None) answer 404 at once: they take no slot either.
        if admission is not None and request.endpoint is not None and request.endpoint not in app.extensions[RESERVED]:
            admission.enter()
            g.admitted = True

    @app.teardown_request
    def leave(_exc: BaseException | None) -> None:
        if g.pop("admitted", False):
            admission.leave()  # type: ignore[union-attr]

    def health_body() -> dict[str, Any]:
        body = {
            "status": "ok",
            "service": service,
            "instance": settings.instance,
            "uptime_seconds": round(time.time() - started, 3),
        }
        if health is not None:
            body.update(health())
        return body

    @app.get("/health")
    @api.validate(resp=responses(HTTP_200=Health), tags=["operations"])
    def health_route():
        return jsonify(health_body())

    @app.get("/metrics")
    @api.validate(resp=responses(HTTP_200=(None, "Prometheus text format")), tags=["operations"])
    def metrics_route():
        body, content_type = exposition(registry)
        return Response(body, content_type=content_type)

    # The token is checked before the body: a caller without it learns nothing about the knobs.
    @app.get("/control")
    @admin
    @api.validate(resp=responses((401,), HTTP_200=ControlView), security=ADMIN, tags=["operations"])
    def control_get():
        return jsonify({"instance": settings.instance, "knobs": knobs.snapshot()})

    @app.put("/control")
    @admin
    @api.validate(
        json=KnobChanges, resp=responses((400, 401, 413), HTTP_200=ControlChange), security=ADMIN, tags=["operations"]
    )
    def control_put():
        changed = knobs.update(validated("json").root)
        logging.getLogger(service).info("control: changed %s", changed)
        return jsonify({"instance": settings.instance, "changed": changed, "knobs": knobs.values()})

    reserve(app, "health_route", "metrics_route", "control_get", "control_put", "openapi_json", "static")
    api.register(app)
    # Health probes arrive several times a second from every prober: the lane answers them.
    app.extensions[EXPRESS] = lanes = ExpressLanes(app, metrics, hosts, admission)
    app.wsgi_app = lanes  # type: ignore[method-assign]
    lanes.add("/health", "/health", lambda _environ: (200, health_body(), {}), admitted=False, blocking=health_waits)
    return app

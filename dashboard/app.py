"""Build the control app: the Dash page on a Flask server with /health, /metrics and, off loopback, a password.

``python -m dashboard`` serves it; ``create_app`` takes a ready Lab so tests can build one
against any stack.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc  # noqa: F401 - registers its components' scripts with Dash
from dash import Dash
from flask import Response, jsonify, request, send_from_directory
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from dashboard.callbacks import register
from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from dashboard.layout import page
from scalelab.autoscaler import AutoscalerError
from scalelab.orchestrators import find_orchestrator
from scalelab.orchestrators.base import Orchestrator, OrchestratorError
from scalelab.paths import find_run_dir
from services.kit.auth import ADMIN_HEADER, check_admin_token
from services.kit.config import load_config
from services.kit.errors import ApiError
from services.kit.origin import refusal

__all__ = ["ASSETS", "PASSWORD_USER", "admin_token_source", "create_app", "orchestrator_for", "serve"]

ASSETS = Path(__file__).resolve().parent / "assets"
PASSWORD_USER = "scalelab"
# Prometheus and health checks reach these without the page's password.
OPEN_PATHS = ("/health", "/metrics")


def orchestrator_for(config: DashboardConfig, environ: Mapping[str, str] | None = None) -> Orchestrator:
    """Return the orchestrator of the stack the app controls (SCALELAB_ORCHESTRATOR=auto, local or docker),
    as the CLI finds it."""
    return find_orchestrator(find_run_dir(config.run_dir or None, environ=environ), environ, config.docker_in_network)


def admin_token_source(config: DashboardConfig, orchestrator: Orchestrator) -> Any:
    """Return a function giving the admin token: from the configuration, else the one the stack keeps."""

    def token() -> str:
        found = config.admin_token or orchestrator.admin_token()
        if not found:
            raise OrchestratorError(
                "no admin token: set SCALELAB_ADMIN_TOKEN or start the stack with `scalelab up` "
                f"(the page reads the stack {orchestrator.where or 'it controls'})"
            )
        return found

    return token


def _authorised(config: DashboardConfig) -> bool:
    # Werkzeug parses the Basic credentials; anything else (or nothing) is no login.
    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        return False
    user, password = credentials.username or "", credentials.password or ""
    # Bytes: compare_digest refuses non-ASCII str, and a password may be any text.
    same_user = hmac.compare_digest(user.encode(), PASSWORD_USER.encode())
    return same_user & hmac.compare_digest(password.encode(), config.password.encode())


def create_app(lab: Lab) -> Dash:
    """Return the Dash app for ``lab`` (whose sampler the caller starts)."""
    config = lab.config
    app = Dash(
        __name__,
        title="ScaleLab control",
        assets_folder=str(ASSETS),
        serve_locally=True,  # every script and stylesheet from this server: the lab works offline
        update_title=None,
        suppress_callback_exceptions=True,  # tiles and their buttons are drawn by callbacks
    )
    app.layout = lambda: page(lab)
    register(app, lab)
    server = app.server

    hosts = config.hosts

    @server.before_request
    def same_site_only() -> Any:
        # Before the password: a page on another site, or one reached by a rebound name, gets nothing.
        message = refusal(request.method, request.headers, hosts)
        if message is None:
            return None
        return Response(json.dumps({"error": message, "status": 403}), 403, content_type="application/json")

    @server.before_request
    def password() -> Any:
        if not config.needs_password or request.path in OPEN_PATHS or _authorised(config):
            return None
        return Response(
            "The ScaleLab control page is served beyond loopback: log in as `scalelab` with DASHBOARD_PASSWORD.",
            401,
            {"WWW-Authenticate": 'Basic realm="ScaleLab control"'},
        )

    @server.before_request
    def watching() -> None:
        if request.path.startswith("/_dash-update-component"):  # a page asks for what it shows
            lab.watched()

    @server.get("/health")
    def health() -> Any:
        status = lab.status
        return jsonify(
            status="ok",
            instance="dashboard",
            sampled_seconds_ago=None if not status.time else round(time.time() - status.time, 3),
            figures_from=status.source,
            instances_seen=len(status.tiles),
        )

    @server.get("/autoscaler")
    def autoscaler_status() -> Any:
        return jsonify(lab.autoscaler_status())

    @server.put("/autoscaler")
    def autoscaler_switch() -> Any:
        # What `scalelab autoscale` sends: the stack's admin token, as every change through an API.
        try:
            check_admin_token(lab.admin_token(), request.headers.get(ADMIN_HEADER))
        except ApiError as exc:
            return jsonify(error=exc.message, status=exc.status), exc.status
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "enabled" not in body:
            return jsonify(
                error='send a JSON object: {"enabled": true or false, and any policy fields}', status=400
            ), 400
        policy = {name: value for name, value in body.items() if name != "enabled"}
        try:
            return jsonify(lab.set_autoscaler(body["enabled"], policy))
        except AutoscalerError as exc:
            return jsonify(error=str(exc), status=400), 400

    @server.get("/results/<path:name>")
    def results(name: str) -> Any:
        # Experiment reports, behind the page's password like the page itself.
        return send_from_directory(Path(config.results_dir).resolve(), name)

    @server.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(lab.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)

    return app


def serve() -> Any:
    """Build the configured Lab and app, start sampling, and return the WSGI app (granian's factory)."""
    config = load_config(DashboardConfig)
    orchestrator = orchestrator_for(config)
    lab = Lab(config, orchestrator, admin_token_source(config, orchestrator))
    lab.start()
    return create_app(lab).server

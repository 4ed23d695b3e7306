"""An API gateway: tokens, cached /data, balanced /process, and async /longtask."""

from __future__ import annotations

from functools import wraps
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry

from ..kit import (
    ApiError,
    ConfigError,
    HttpClient,
    Knob,
    Knobs,
    TokenIssuer,
    UpstreamError,
    bearer_value,
    create_service_app,
    json_body,
    load_config,
    parse_backends,
    require_admin,
)
from ..kit.tier import DRAIN_SECONDS, BalancedTier
from .cache_aside import CacheAside
from .config import GatewayConfig

bp = Blueprint("gateway", __name__)


class Gateway:
    """What one gateway instance holds: its config, token issuer, cache-aside reader and pools."""

    def __init__(self, config: GatewayConfig, registry: CollectorRegistry) -> None:
        if not config.jwt_secret:
            raise ConfigError(
                "SCALELAB_JWT_SECRET is not set: every gateway needs the same secret (scalelab up sets one)"
            )
        self.config = config
        self.knobs = Knobs(
            [
                Knob("cache_enabled", config.cache_enabled, "Use the cache for /data (cache-aside)."),
                Knob(
                    "cache_ttl_seconds",
                    float(config.cache_ttl_seconds),
                    "TTL of entries this gateway stores (s).",
                    0.001,
                    86_400,
                ),
                Knob("coalescing", config.coalescing, "Coalesce concurrent database reads of one key."),
            ],
            registry,
        )
        self.tokens = TokenIssuer(config.jwt_secret, config.token_lifetime_seconds)
        self.microservices = BalancedTier(
            "microservices", parse_backends(config.microservices, "GATEWAY_MICROSERVICES"), config, self.knobs, registry
        )
        self.cache_aside = CacheAside(
            HttpClient(config.cache_url, timeout=config.cache_timeout, connect_timeout=config.cache_timeout),
            HttpClient(config.database_url, timeout=config.upstream_timeout),
            self.knobs,
            registry,
            config.cache_retry_seconds,
        )
        self.worker = HttpClient(config.worker_url, timeout=config.upstream_timeout)

    def health(self) -> dict[str, Any]:
        """Return this gateway's fields for /health: its id and whether it uses the cache now."""
        return {"gateway_id": self.config.gateway_id, "cache": self.cache_aside.cache_state()}

    def worker_call(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        """Call the worker; raise a 503 ApiError naming it when it cannot be reached."""
        try:
            if payload is None:
                return self.worker.get_json(path)
            return self.worker.send_json(method, path, payload)
        except UpstreamError as exc:
            raise ApiError(503, f"worker unavailable ({exc}); check the worker instance") from None


def _gw() -> Gateway:
    return current_app.extensions["gateway"]


def _protected(view):  # type: ignore[no-untyped-def]
    """Require a valid client token (looked up per request: the issuer lives on the app)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _gw().tokens.verify(bearer_value(request.headers.get("Authorization")))
        return view(*args, **kwargs)

    return wrapper


@bp.get("/token")
def token():
    return jsonify({"token": _gw().tokens.issue()})


@bp.get("/data")
@_protected
def data():
    key = request.args.get("key", "my_data")
    record, cached = _gw().cache_aside.read(key)
    return jsonify({"cached": cached, "data": record, "key": key, "gateway_id": _gw().config.gateway_id})


@bp.get("/process")
@_protected
def process():
    _, response = _gw().microservices.request("GET", "/process")
    try:
        body = response.json()
    except ValueError:
        raise ApiError(502, f"a microservice answered {response.status} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(502, "a microservice answered with JSON that is not an object")
    body["gateway_id"] = _gw().config.gateway_id
    return jsonify(body), response.status


@bp.post("/longtask")
@_protected
def longtask():
    status, body = _gw().worker_call("POST", "/task", json_body())
    if not isinstance(body, dict):
        raise ApiError(502, f"the worker answered {status} without a JSON object")
    body["gateway_id"] = _gw().config.gateway_id
    return jsonify(body), status


@bp.get("/task/<task_id>")
@_protected
def task(task_id: str):
    status, body = _gw().worker_call("GET", "/task/" + quote(task_id, safe=""))
    if isinstance(body, dict):
        body["gateway_id"] = _gw().config.gateway_id
    return jsonify(body), status


@bp.get("/pool/status")
def pool_status():
    return jsonify(_gw().microservices.pool.snapshot())


def _add_backend():
    backend = _gw().microservices.add_backend(json_body())
    return jsonify({"added": backend.name, "url": backend.url}), 201


def _remove_backend(name: str):
    # Answers once the requests already on their way to it are done, so the caller may stop it then.
    backend = _gw().microservices.remove_backend(name, DRAIN_SECONDS)
    return jsonify({"removed": backend.name})


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build a gateway from the environment (``overrides`` win, for tests) and start its health checks."""
    config = load_config(GatewayConfig, overrides)
    registry = registry or CollectorRegistry()
    gateway = Gateway(config, registry)
    app = create_service_app("gateway", config, gateway.knobs, registry, health=gateway.health)
    app.extensions["gateway"] = gateway
    app.register_blueprint(bp)
    admin = require_admin(config.admin_token)
    app.add_url_rule("/pool/backends", "add_backend", admin(_add_backend), methods=["POST"])
    app.add_url_rule("/pool/backends/<name>", "remove_backend", admin(_remove_backend), methods=["DELETE"])
    gateway.microservices.start()
    return app

"""An API gateway: tokens, cached /data, balanced /process, and async /longtask.

Time budgets per hop (defaults; each is a setting of :class:`GatewayConfig`)::

    client -> balancer -> gateway   SCALELAB_UPSTREAM_TIMEOUT        10 s  the balancer's wait (not set here)
    one request at this gateway     GATEWAY_REQUEST_BUDGET_SECONDS    8 s  or less, by X-Request-Deadline
                                                                         (the balancer's, less a hop margin)
      gateway -> cache              GATEWAY_CACHE_TIMEOUT           0.5 s  per call
      gateway -> database           GATEWAY_DATABASE_TIMEOUT          5 s  per read
      gateway -> a microservice     GATEWAY_MICROSERVICE_TIMEOUT      5 s  per attempt; failover shares the budget
      gateway -> worker             GATEWAY_WORKER_TIMEOUT            2 s  per call

Every call waits at most the smaller of its own timeout and what is left of the request's
budget, and passes the deadline on in ``X-Request-Deadline`` less a hop margin (the database and
the microservices stop their simulated work there); once the budget is spent no call
or retry starts and the request ends with a 504 naming what it waited for. The budget stays
below the balancer's timeout, so a slow hop gets that 504 rather than the balancer's own.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, current_app, g, jsonify, request
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
    load_config,
    parse_backends,
    require_admin,
)
from ..kit.app import reserve
from ..kit.deadline import DEADLINE_HEADER, Deadline
from ..kit.discovery import DnsDiscovery, DnsTarget
from ..kit.express import Answer, Handler, express
from ..kit.openapi import validated
from ..kit.shedding import MODES as SHEDDING_MODES
from ..kit.shedding import Shedder
from ..kit.tier import DRAIN_SECONDS, BalancedTier
from .api import ADD, DATA, LONGTASK, MAX_KEY_CHARS, POOL, PROCESS, REMOVE, TASK, TOKEN_ROUTE, DataQuery, api
from .cache_aside import COALESCING, OFF, PER_GATEWAY, CacheAside, coalescing_mode
from .config import GatewayConfig

bp = Blueprint("gateway", __name__)
# What a client told to come back after the worker could not be reached should wait.
WORKER_RETRY_AFTER_SECONDS = 1
# Answers whose Retry-After header the gateway passes on from the worker.
RETRY_STATUSES = (429, 503)
# A local service either accepts a connection at once or is not there.
CONNECT_TIMEOUT_SECONDS = 1.0
NO_PAYLOAD = object()


@dataclass
class Outcome:
    """How an admitted request ended: its status (500 until the answer says otherwise)."""

    status: int = 500


def check_budgets(config: GatewayConfig) -> None:
    """Raise ConfigError unless every timeout is positive and the request budget stays below the balancer's wait."""
    timeouts = {
        "GATEWAY_REQUEST_BUDGET_SECONDS": config.request_budget_seconds,
        "GATEWAY_CACHE_TIMEOUT": config.cache_timeout,
        "GATEWAY_DATABASE_TIMEOUT": config.database_timeout,
        "GATEWAY_MICROSERVICE_TIMEOUT": config.microservice_timeout,
        "GATEWAY_WORKER_TIMEOUT": config.worker_timeout,
    }
    for env, seconds in timeouts.items():
        if not seconds > 0:
            raise ConfigError(f"{env} must be a number of seconds above 0, not {seconds}")
    if config.request_budget_seconds >= config.upstream_timeout:
        raise ConfigError(
            f"GATEWAY_REQUEST_BUDGET_SECONDS ({config.request_budget_seconds}) must stay below "
            f"SCALELAB_UPSTREAM_TIMEOUT ({config.upstream_timeout}), the balancer's wait for a gateway: "
            "otherwise the balancer gives up before the gateway can say which hop was slow"
        )


class Gateway:
    """What one gateway instance holds: its config, token issuer, cache-aside reader and pools."""

    def __init__(self, config: GatewayConfig, registry: CollectorRegistry) -> None:
        if not config.jwt_secret:
            raise ConfigError(
                "SCALELAB_JWT_SECRET is not set: every gateway needs the same secret (scalelab up sets one)"
            )
        check_budgets(config)
        if config.shedding not in SHEDDING_MODES:
            raise ConfigError(f"GATEWAY_SHEDDING must be one of {', '.join(SHEDDING_MODES)}, not {config.shedding!r}")
        if not 0 <= config.retry_budget <= 10 or not 0 <= config.retry_backoff_ms <= 1000:
            raise ConfigError(
                "GATEWAY_RETRY_BUDGET must be from 0 to 10 and GATEWAY_RETRY_BACKOFF_MS from 0 to 1000, "
                f"not {config.retry_budget} and {config.retry_backoff_ms}"
            )
        if config.max_in_flight < 1 or config.client_rate_limit < 0 or config.client_burst < 1:
            raise ConfigError(
                "GATEWAY_MAX_IN_FLIGHT and GATEWAY_CLIENT_BURST must be at least 1 and GATEWAY_CLIENT_RATE_LIMIT "
                f"0 or more, not {config.max_in_flight}, {config.client_burst} and {config.client_rate_limit}"
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
                Knob(
                    "coalescing",
                    coalescing_mode(config.coalescing),
                    "Coalesce concurrent database reads of one key: off, in this gateway, or across gateways.",
                    choices=COALESCING,
                    switch=(OFF, PER_GATEWAY),
                ),
                Knob(
                    "shedding",
                    config.shedding,
                    "Load shedding: off, a fixed concurrency limit (max_in_flight) or an adaptive one up to it.",
                    choices=SHEDDING_MODES,
                ),
                Knob(
                    "max_in_flight",
                    float(config.max_in_flight),
                    "The fixed concurrency limit; the adaptive one's ceiling.",
                    1,
                    10_000,
                ),
                Knob(
                    "client_rate_limit",
                    float(config.client_rate_limit),
                    "Requests a second per client (token); 0: no limit.",
                    0,
                    100_000,
                ),
                Knob("client_burst", float(config.client_burst), "Requests a client may send at once.", 1, 100_000),
            ],
            registry,
        )
        self.shedder = Shedder(
            f"gateway-{config.gateway_id}",
            config.shedding,
            config.max_in_flight,
            config.client_rate_limit,
            config.client_burst,
            registry,
        )
        self.knobs.on_change(self._apply)
        self.tokens = TokenIssuer(config.jwt_secret, config.token_lifetime_seconds)
        discover = config.microservices_discover
        static = [] if discover else parse_backends(config.microservices, "GATEWAY_MICROSERVICES")
        self.microservices = BalancedTier(
            "microservices",
            static,
            config,
            self.knobs,
            registry,
            breakers=True,
            retries=(config.retry_budget, config.retry_backoff_ms),
        )
        # On Swarm and Kubernetes the microservices come and go as DNS records, not as a list.
        self.discovery = (
            DnsDiscovery(
                self.microservices,
                DnsTarget.parse(discover, "GATEWAY_MICROSERVICES_DISCOVER"),
                config.discover_interval,
                lambda name, allow_last: self.microservices.remove_backend(name, DRAIN_SECONDS, allow_last),
            )
            if discover
            else None
        )
        # Each client's timeout is its hop's cap; a call waits less when the request's budget has less left.
        self.cache_aside = CacheAside(
            HttpClient(config.cache_url, timeout=config.cache_timeout, connect_timeout=config.cache_timeout),
            HttpClient(
                config.database_url,
                timeout=config.database_timeout,
                connect_timeout=min(config.database_timeout, CONNECT_TIMEOUT_SECONDS),
            ),
            self.knobs,
            registry,
            config.cache_retry_seconds,
            breaker_policy=self.microservices.pool.breaker_policy,
        )
        self.worker = HttpClient(
            config.worker_url,
            timeout=config.worker_timeout,
            connect_timeout=min(config.worker_timeout, CONNECT_TIMEOUT_SECONDS),
        )

    def _apply(self, name: str, value: Any) -> None:
        if name == "shedding":
            self.shedder.configure(mode=value)
        elif name == "max_in_flight":
            self.shedder.configure(max_in_flight=value)
        elif name == "client_rate_limit":
            self.shedder.configure(client_rate=value)
        elif name == "client_burst":
            self.shedder.configure(client_burst=value)

    def health(self) -> dict[str, Any]:
        """Return this gateway's fields for /health: its id, whether it uses the cache now, its admission state."""
        return {
            "gateway_id": self.config.gateway_id,
            "cache": self.cache_aside.cache_state(),
            "database_breaker": self.cache_aside.database_breaker(),
            "cache_breaker": self.cache_aside.cache_breaker(),
            "admission": self.shedder.state(),
        }

    def deadline(self) -> Deadline:
        """Return the current request's deadline: the budget from now, or the caller's X-Request-Deadline if sooner."""
        if "deadline" not in g:
            g.deadline = self.deadline_of(request.headers.get(DEADLINE_HEADER))
        return g.deadline

    def deadline_of(self, header: str | None) -> Deadline:
        """Return a request's deadline from its X-Request-Deadline header (or None): the budget from now, or sooner."""
        return Deadline.from_header(header, self.config.request_budget_seconds)

    @contextmanager
    def admitted(self, authorization: str | None) -> Iterator[Outcome]:
        """Admit a client's request: check its token, then rate limiting and shedding; raise the 401/429/503.

        Set the yielded outcome's ``status`` to the answer's: its latency and status teach the adaptive limit.
        """
        claims = self.tokens.verify(bearer_value(authorization))
        ticket = self.shedder.admit(str(claims.get("sub", "")))
        outcome = Outcome()
        try:
            yield outcome
        except ApiError as exc:
            outcome.status = exc.status
            raise
        finally:
            self.shedder.done(ticket, outcome.status)

    def read_data(self, key: str, deadline: Deadline) -> dict[str, Any]:
        """Return the body of ``GET /data?key=``: the record, whether it came from the cache, and this gateway."""
        return self.data_body(key, *self.cache_aside.read(key, deadline))

    def data_body(self, key: str, record: Any, cached: bool) -> dict[str, Any]:
        """Return the body that answers ``GET /data?key=`` with ``record`` (``cached``: it came from the cache)."""
        return {"cached": cached, "data": record, "key": key, "gateway_id": self.config.gateway_id}

    def worker_call(self, method: str, path: str, payload: Any = NO_PAYLOAD) -> tuple[int, Any, dict[str, str]]:
        """Call the worker within the request's budget; return ``(status, JSON body, headers)``.

        Raise a 503 ApiError (with Retry-After) naming the worker when it cannot be reached, and
        a 504 when the budget ran out first.
        """
        deadline = self.deadline()
        headers = deadline.headers()
        body = None
        if payload is not NO_PAYLOAD:  # JSON null is a payload too
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self.worker.request(
                method, path, body, headers, timeout=deadline.timeout(self.config.worker_timeout, "the worker")
            )
            parsed = response.json() if response.body else None
        except UpstreamError as exc:
            if deadline.expired():
                raise deadline.exceeded("the worker") from None
            raise ApiError(
                503,
                f"worker unavailable ({exc}); check the worker instance",
                headers={"Retry-After": str(WORKER_RETRY_AFTER_SECONDS)},
            ) from None
        except ValueError:
            raise ApiError(502, f"the worker answered {response.status} with a body that is not JSON") from None
        return response.status, parsed, response.headers


def _retry_after(status: int, headers: dict[str, str]) -> dict[str, str]:
    """Return the worker's Retry-After to pass on with a 429 or 503 (the worker's own advice), else nothing."""
    if status in RETRY_STATUSES:
        return {"Retry-After": headers.get("retry-after", str(WORKER_RETRY_AFTER_SECONDS))}
    return {}


def _gw() -> Gateway:
    return current_app.extensions["gateway"]


def _protected(view):  # type: ignore[no-untyped-def]
    """Require a valid client token, admit the request past rate limiting and shedding, then start the budget."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gateway = _gw()
        with gateway.admitted(request.headers.get("Authorization")) as outcome:
            gateway.deadline()  # the budget counts from here, whatever the view does before its first call
            response = current_app.make_response(view(*args, **kwargs))
            outcome.status = response.status_code
            return response

    return wrapper


# The /data keys the express lane reads straight from the query: characters that need no decoding.
PLAIN_KEY = re.compile(rf"[A-Za-z0-9_.~-]{{1,{MAX_KEY_CHARS}}}")
# The key a /data read without one asks for.
DEFAULT_KEY = DataQuery.model_fields["key"].default
# The WSGI name of the X-Request-Deadline header.
DEADLINE_ENVIRON = "HTTP_" + DEADLINE_HEADER.upper().replace("-", "_")


def plain_data_key(query: str) -> str | None:
    """Return the key a ``GET /data`` query names when it is plain (none, or ``key=`` a plain key), else None.

    A plain read is what the express lane and the gateway's listener answer themselves; anything
    else goes to Flask and its validation.
    """
    if not query:
        return DEFAULT_KEY
    if query.startswith("key=") and PLAIN_KEY.fullmatch(query, 4) is not None:
        return query[4:]
    return None


def _express_data(gateway: Gateway) -> Handler:
    """Return the express lane's handler for ``GET /data`` (services/kit/express.py): plain reads only."""

    def handle(environ: dict[str, Any]) -> Answer | None:
        key = plain_data_key(environ.get("QUERY_STRING", ""))
        if key is None:
            return None
        with gateway.admitted(environ.get("HTTP_AUTHORIZATION")) as outcome:
            body = gateway.read_data(key, gateway.deadline_of(environ.get(DEADLINE_ENVIRON)))
            outcome.status = 200
            return 200, body, {}

    return handle


@bp.get("/token")
@api.validate(**TOKEN_ROUTE)
def token():
    # Each token is a client of its own: the per-client rate limit counts by the token's subject.
    return jsonify({"token": _gw().tokens.issue(f"client-{secrets.token_hex(6)}")})


@bp.get("/data")
@_protected
@api.validate(**DATA)
def data():
    return jsonify(_gw().read_data(validated("query").key, _gw().deadline()))


@bp.get("/process")
@_protected
@api.validate(**PROCESS)
def process():
    deadline = _gw().deadline()
    _, response = _gw().microservices.request(
        "GET", "/process", headers=deadline.headers(), deadline=deadline, timeout=_gw().config.microservice_timeout
    )
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
@api.validate(**LONGTASK)
def longtask():
    status, body, headers = _gw().worker_call("POST", "/task", validated("json").root)
    if not isinstance(body, dict):
        raise ApiError(502, f"the worker answered {status} without a JSON object")
    body["gateway_id"] = _gw().config.gateway_id
    return jsonify(body), status, _retry_after(status, headers)


@bp.get("/task/<task_id>")
@_protected
@api.validate(**TASK)
def task(task_id: str):
    status, body, headers = _gw().worker_call("GET", "/task/" + quote(task_id, safe=""))
    if isinstance(body, dict):
        body["gateway_id"] = _gw().config.gateway_id
    return jsonify(body), status, _retry_after(status, headers)


@bp.get("/pool/status")
@api.validate(**POOL)
def pool_status():
    return jsonify(_gw().microservices.pool.snapshot())


@api.validate(**ADD)
def _add_backend():
    backend = _gw().microservices.add_backend(validated("json").model_dump())
    return jsonify({"added": backend.name, "url": backend.url}), 201


@api.validate(**REMOVE)
def _remove_backend(name: str):
    # Answers once the requests already on their way to it are done, so the caller may stop it then.
    backend = _gw().microservices.remove_backend(name, DRAIN_SECONDS)
    return jsonify({"removed": backend.name})


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build a gateway from the environment (``overrides`` win, for tests) and start its health checks."""
    config = load_config(GatewayConfig, overrides)
    registry = registry or CollectorRegistry()
    gateway = Gateway(config, registry)
    app = create_service_app("gateway", config, gateway.knobs, registry, api, health=gateway.health, health_waits=False)
    app.extensions["gateway"] = gateway
    app.register_blueprint(bp)
    admin = require_admin(config.admin_token)
    app.add_url_rule("/pool/backends", "add_backend", admin(_add_backend), methods=["POST"])
    app.add_url_rule("/pool/backends/<name>", "remove_backend", admin(_remove_backend), methods=["DELETE"])
    reserve(app, "gateway.pool_status", "add_backend", "remove_backend")
    express(app, "/data", "/data", _express_data(gateway))
    gateway.microservices.start()
    if gateway.discovery is not None:
        gateway.discovery.start()
    return app

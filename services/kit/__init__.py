"""The service kit: what every ScaleLab service shares, so each service's own code is its logic."""

from .algorithms import ALGORITHMS, make_algorithm
from .app import create_service_app, json_body
from .auth import ADMIN_HEADER, TokenIssuer, bearer_value, check_admin_token, require_admin
from .config import ConfigError, describe_config, load_config, setting
from .errors import ApiError, error_body, register_error_handlers
from .health import HealthChecker, HealthPolicy, HealthState, http_probe
from .httpclient import HttpClient, Response, UpstreamError
from .inputs import int_arg, parse_json
from .knobs import Knob, Knobs
from .metrics import LATENCY_BUCKETS, HttpMetrics, instrument_flask
from .pool import IDEMPOTENT_METHODS, Backend, Failure, NoHealthyBackend, Pool, retryable
from .settings import PoolSettings, ServiceSettings, parse_backends
from .singleflight import SingleFlight

__all__ = [
    "ADMIN_HEADER",
    "ALGORITHMS",
    "IDEMPOTENT_METHODS",
    "LATENCY_BUCKETS",
    "ApiError",
    "Backend",
    "ConfigError",
    "Failure",
    "HealthChecker",
    "HealthPolicy",
    "HealthState",
    "HttpClient",
    "HttpMetrics",
    "Knob",
    "Knobs",
    "NoHealthyBackend",
    "Pool",
    "PoolSettings",
    "Response",
    "ServiceSettings",
    "SingleFlight",
    "TokenIssuer",
    "UpstreamError",
    "bearer_value",
    "check_admin_token",
    "create_service_app",
    "describe_config",
    "error_body",
    "http_probe",
    "instrument_flask",
    "int_arg",
    "json_body",
    "load_config",
    "make_algorithm",
    "parse_backends",
    "parse_json",
    "register_error_handlers",
    "require_admin",
    "retryable",
    "setting",
]

"""A microservice instance: /process does a configurable amount of (simulated) work."""

from __future__ import annotations

import random
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter

from ..kit import ApiError, Knob, Knobs, create_service_app, load_config
from ..kit.deadline import DEADLINE_HEADER, NO_BUDGET, Deadline
from .api import PROCESS, api
from .config import MicroserviceConfig

bp = Blueprint("microservice", __name__)


@bp.route("/process", methods=["GET", "POST"])
@api.validate(**PROCESS)
def process():
    config: MicroserviceConfig = current_app.extensions["config"]
    knobs: Knobs = current_app.extensions["knobs"]
    delay_ms = knobs["service_time_ms"] + knobs["extra_latency_ms"]
    # The calling gateway's deadline ends the work: past it, nobody waits for the answer.
    deadline = Deadline.from_header(request.headers.get(DEADLINE_HEADER), NO_BUDGET)
    deadline.wait(delay_ms / 1000, f"{config.instance}'s service time ({delay_ms:g} ms)")
    if current_app.extensions["rng"].random() < knobs["error_rate"]:
        current_app.extensions["injected_errors"].inc()
        raise ApiError(503, f"injected error in {config.instance} (error_rate knob)", service_id=config.service_id)
    return jsonify(
        {
            "message": f"Processed by microservice {config.service_id}",
            "service_id": config.service_id,
            "instance": config.instance,
        }
    )


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build a microservice instance from the environment (``overrides`` win, for tests)."""
    config = load_config(MicroserviceConfig, overrides)
    registry = registry or CollectorRegistry()
    knobs = Knobs(
        [
            Knob("service_time_ms", float(config.service_time_ms), "Base time per /process call (ms).", 0, 60_000),
            Knob("extra_latency_ms", 0.0, "Injected extra latency per call (ms).", 0, 60_000),
            Knob("error_rate", float(config.error_rate), "Share of calls failing with 503.", 0, 1),
        ],
        registry,
    )
    app = create_service_app("microservice", config, knobs, registry, api)
    app.extensions.update(
        config=config,
        knobs=knobs,
        rng=random.Random(),
        injected_errors=Counter(
            "scalelab_injected_errors", "Requests failed on purpose (error_rate knob).", registry=registry
        ),
    )
    app.register_blueprint(bp)
    return app

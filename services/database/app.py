"""The database service: records in SQLite behind a simulated query latency and error rate."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..kit import (
    LATENCY_BUCKETS,
    ApiError,
    ConfigError,
    Knob,
    Knobs,
    create_service_app,
    load_config,
)
from ..kit.deadline import DEADLINE_HEADER, NO_BUDGET, Deadline
from ..kit.openapi import responses, validated
from .api import DbStats, PageQuery, Record, RecordBody, RecordPage, api
from .config import DatabaseConfig
from .store import RecordStore

bp = Blueprint("database", __name__)
# A 400 for a malformed X-Request-Deadline, a 503 from the error_rate knob, a 504 when the caller's deadline is first.
QUERY_ERRORS = (400, 503, 504)


class QuerySimulator:
    """Make each query cost the configured latency and fail at the configured rate; count it."""

    def __init__(self, knobs: Knobs, registry: CollectorRegistry, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self._knobs = knobs
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.queries = Counter(
            "scalelab_db_queries", "Database queries, by operation.", ["operation"], registry=registry
        )
        self.failures = Counter(
            "scalelab_db_injected_errors", "Queries failed on purpose (error_rate knob).", registry=registry
        )
        self.duration = Histogram(
            "scalelab_db_query_duration_seconds", "Time a query took, simulated latency included.",
            ["operation"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.counts: dict[str, int] = {}

    def run(self, operation: str, query: Callable[[], Any], deadline: Deadline | None = None) -> Any:
        """Wait the simulated latency, maybe fail on purpose, then run ``query``.

        A ``deadline`` that comes before the latency is over ends the query there with a 504:
        the caller has stopped waiting, and a write it gave up on is not made.
        """
        started = time.perf_counter()
        self.queries.labels(operation).inc()
        self.counts[operation] = self.counts.get(operation, 0) + 1
        delay = self._knobs["latency_ms"] + self._rng.uniform(-1, 1) * self._knobs["jitter_ms"]
        deadline = deadline or Deadline(NO_BUDGET)
        try:
            deadline.wait(max(0.0, delay) / 1000, f"the database's simulated latency ({delay:.0f} ms)", self._sleep)
            if self._rng.random() < self._knobs["error_rate"]:
                self.failures.inc()
                raise ApiError(503, "injected database error (error_rate knob); retry or lower the rate")
            return query()
        finally:
            self.duration.labels(operation).observe(time.perf_counter() - started)


def _store() -> RecordStore:
    return current_app.extensions["record_store"]


def _sim() -> QuerySimulator:
    return current_app.extensions["query_simulator"]


def _deadline() -> Deadline:
    # The caller's X-Request-Deadline, if it sent one: the database has no budget of its own.
    return Deadline.from_header(request.headers.get(DEADLINE_HEADER), NO_BUDGET)


@bp.get("/db")
@api.validate(query=PageQuery, resp=responses(QUERY_ERRORS, HTTP_200=RecordPage), tags=["records"])
def list_records():
    page: PageQuery = validated("query")
    limit, offset = page.limit, page.offset
    records = _sim().run("list", lambda: _store().list(limit, offset), _deadline())
    return jsonify({"records": records, "count": len(records), "total": _store().count(), "offset": offset})


@bp.get("/db/<path:record_id>")
@api.validate(resp=responses(QUERY_ERRORS, HTTP_200=Record), tags=["records"])
def get_record(record_id: str):
    record, created = _sim().run("read", lambda: _store().get_or_create(record_id), _deadline())
    return jsonify({**record, "created": created} if created else record)


@bp.put("/db/<path:record_id>")
@api.validate(json=RecordBody, resp=responses((*QUERY_ERRORS, 413), HTTP_200=Record), tags=["records"])
def put_record(record_id: str):
    data = validated("json").root
    return jsonify(_sim().run("write", lambda: _store().put(record_id, data), _deadline()))


@bp.get("/stats")
@api.validate(resp=responses(HTTP_200=DbStats), tags=["records"])
def stats():
    return jsonify(
        {"queries": dict(_sim().counts), "total_queries": sum(_sim().counts.values()), "records": _store().count()}
    )


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build the database service from the environment (``overrides`` win, for tests)."""
    config = load_config(DatabaseConfig, overrides)
    registry = registry or CollectorRegistry()
    knobs = Knobs(
        [
            Knob("latency_ms", float(config.latency_ms), "Simulated time per query (ms).", 0, 60_000),
            Knob("jitter_ms", float(config.jitter_ms), "Random +/- spread on the latency (ms).", 0, 60_000),
            Knob("error_rate", float(config.error_rate), "Share of queries failing with 503.", 0, 1),
        ],
        registry,
    )
    if config.max_generated_records < 0:
        raise ConfigError(f"DATABASE_MAX_GENERATED_RECORDS must be 0 or more, not {config.max_generated_records}")
    store = RecordStore(config.path, config.seed_records, config.max_generated_records)
    Gauge("scalelab_db_records", "Records stored.", registry=registry).set_function(store.count)
    app = create_service_app("database", config, knobs, registry, api)
    app.extensions["record_store"] = store
    app.extensions["query_simulator"] = QuerySimulator(knobs, registry)
    app.register_blueprint(bp)
    return app

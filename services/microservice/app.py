"""A microservice instance: /process does a configurable amount of (simulated) work."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter

from ..kit import ApiError, ConfigError, Knob, Knobs, create_service_app, load_config
from ..kit.deadline import DEADLINE_HEADER, NO_BUDGET, Deadline
from .api import PROCESS, api
from .config import MicroserviceConfig

bp = Blueprint("microservice", __name__)
WORK_MODES = ("sleep", "cpu", "both")
# Hashes per look at the clock: about 0.1 ms of CPU, so a call overshoots its work by no more than that.
HASHES_PER_SLICE = 64


# One call computes at a time. Python holds its GIL while it hashes a short input, so an instance
# computes on one core at most however many threads run; without the lock its 32 request threads
# would all contend for the GIL, and its health check, waiting its turn among them, would miss
# its 0.3 s timeout: the pools would take a busy instance for a dead one.
COMPUTING = threading.Lock()


def compute(cpu_seconds: float, deadline: Deadline, instance: str) -> int:
    """Spend ``cpu_seconds`` of this thread's CPU time hashing, one call at a time; return the hashes made.

    Counted in CPU time, not wall time: when instances share too few cores the call takes longer,
    which is what the lab shows. Raise the deadline's 504 when it comes first, waiting or computing.
    """
    waiting_for = f"{instance}'s CPU work ({cpu_seconds * 1000:g} ms)"
    if not COMPUTING.acquire(timeout=min(deadline.remaining(), threading.TIMEOUT_MAX)):
        raise deadline.exceeded(waiting_for)
    try:
        return _hash_for(cpu_seconds, deadline, waiting_for)
    finally:
        COMPUTING.release()


def _hash_for(cpu_seconds: float, deadline: Deadline, waiting_for: str) -> int:
    end = time.thread_time() + cpu_seconds
    digest, hashes = waiting_for.encode(), 0
    while time.thread_time() < end:
        for _ in range(HASHES_PER_SLICE):
            digest = hashlib.sha256(digest).digest()
        hashes += HASHES_PER_SLICE
        if deadline.expired():
            raise deadline.exceeded(waiting_for)
    return hashes


class Servers:
    """The servers of a queueing station: at most ``count`` calls work at once, the others wait their turn.

    With ``count`` servers and a service time ``s`` the instance serves at most ``count / s``
    calls a second whatever the load, so past that the queue, and every call's wait, grows: the
    capacity an overload experiment needs, independent of how fast the machine is. 0: no limit.
    """

    def __init__(self) -> None:
        # Condition.notify wakes the longest waiter first: the queue is served in arrival order.
        self._free = threading.Condition()
        self.busy = 0

    @contextmanager
    def serving(self, count: int, deadline: Deadline, waiting_for: str) -> Iterator[None]:
        """Hold a server for the ``with`` block; raise the deadline's 504 when it comes before one is free."""
        if not count:
            yield
            return
        with self._free:
            while self.busy >= count:
                if deadline.expired():
                    raise deadline.exceeded(waiting_for)
                self._free.wait(min(deadline.remaining(), threading.TIMEOUT_MAX))
            self.busy += 1
        try:
            yield
        finally:
            with self._free:
                self.busy -= 1
                self._free.notify()


@bp.route("/process", methods=["GET", "POST"])
@api.validate(**PROCESS)
def process():
    config: MicroserviceConfig = current_app.extensions["config"]
    knobs: Knobs = current_app.extensions["knobs"]
    work = knobs["work"]
    # The calling gateway's deadline ends the work: past it, nobody waits for the answer.
    deadline = Deadline.from_header(request.headers.get(DEADLINE_HEADER), NO_BUDGET)
    servers: Servers = current_app.extensions["servers"]
    with servers.serving(int(knobs["concurrency"]), deadline, f"a free server of {config.instance}"):
        if work in ("cpu", "both"):
            compute(knobs["cpu_work_ms"] / 1000, deadline, config.instance)
        delay_ms = (knobs["service_time_ms"] if work in ("sleep", "both") else 0.0) + knobs["extra_latency_ms"]
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
    if config.work not in WORK_MODES:
        raise ConfigError(f"MICROSERVICE_WORK must be one of {', '.join(WORK_MODES)}, not {config.work!r}")
    registry = registry or CollectorRegistry()
    knobs = Knobs(
        [
            Knob("service_time_ms", float(config.service_time_ms), "Base time per /process call (ms).", 0, 60_000),
            Knob("extra_latency_ms", 0.0, "Injected extra latency per call (ms).", 0, 60_000),
            Knob("error_rate", float(config.error_rate), "Share of calls failing with 503.", 0, 1),
            Knob("work", config.work, "What a call does: sleep, cpu or both.", choices=WORK_MODES),
            Knob("cpu_work_ms", float(config.cpu_work_ms), "CPU time a call computes for (ms).", 0, 10_000),
            Knob(
                "concurrency",
                float(config.concurrency),
                "Calls served at once; the rest wait in line (0: as many as its threads).",
                0,
                10_000,
            ),
        ],
        registry,
    )
    app = create_service_app("microservice", config, knobs, registry, api)
    app.extensions.update(
        config=config,
        knobs=knobs,
        rng=random.Random(),
        servers=Servers(),
        injected_errors=Counter(
            "scalelab_injected_errors", "Requests failed on purpose (error_rate knob).", registry=registry
        ),
    )
    app.register_blueprint(bp)
    return app

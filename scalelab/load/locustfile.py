"""The live load engine's users: the lab's mix, drawn at random, at the pace the swarm form asks for.

Run by the load engine process (`locust -f scalelab/load/locustfile.py`); the mix, the number
of hot keys and the pace per user are options that the swarm form (or its API) can change.
Client-side metrics are served on the Locust web UI at /metrics.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
from typing import Any

from flask import Response, request
from locust import events
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from scalelab.load import mix, shapes
from scalelab.load.metrics import ClientMetrics
from scalelab.load.users import LabUser
from services.kit.origin import ALLOWED_HOSTS_ENV, allowed_hosts, own_addresses, refusal

METRICS = ClientMetrics(CollectorRegistry())
HELP = {
    "data_hot": "weight of /data on a few hot keys (cache-friendly)",
    "data_new": "weight of /data on ever-new keys (always a cache miss)",
    "process": "weight of /process",
    "longtask": "weight of /longtask",
}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    for endpoint in mix.ENDPOINTS:
        parser.add_argument(
            f"--{mix.option_name(endpoint).replace('_', '-')}",
            type=int,
            default=int(mix.DEFAULT_MIX[endpoint]),
            include_in_web_ui=True,
            help=HELP[endpoint],
        )
    parser.add_argument(
        "--hot-keys", type=int, default=mix.DEFAULT_HOT_KEYS, include_in_web_ui=True, help="how many hot keys"
    )
    parser.add_argument(
        "--rate-per-user",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="requests per second per user; 0 = as fast as the stack answers",
    )
    parser.add_argument(
        "--model",
        choices=shapes.MODELS,
        default="closed",
        include_in_web_ui=True,
        help="closed: a user waits for each answer; open: each request goes out when due, answered or not",
    )
    parser.add_argument(
        "--shape", choices=shapes.SHAPES, default="constant", include_in_web_ui=True, help="how the rate moves"
    )
    parser.add_argument(
        "--peak-rate", type=float, default=0.0, include_in_web_ui=True, help="req/s a shape reaches (all users)"
    )
    parser.add_argument(
        "--shape-seconds", type=float, default=0.0, include_in_web_ui=True, help="seconds the shape runs over"
    )


# When the current swarm was asked for: a shape's clock starts there.
SWARM_STARTED = [time.time()]


def _open(options: Any) -> bool:
    return getattr(options, "model", "closed") == "open"


@events.request.add_listener
def _count(
    name: str, response_time: float, response: Any, exception: BaseException | None, context: Any = None, **_: Any
) -> None:
    if isinstance(context, dict) and context.get("model") == "open":
        return  # timed from when it was due, by the source (MixSource.answered)
    METRICS.record(name, response, response_time / 1000, exception is not None)


@events.init.add_listener
def _serve_metrics(environment: Any, **_: Any) -> None:
    if environment.web_ui is None:
        return
    target = (environment.host or "").rstrip("/")
    web_host = getattr(environment.parsed_options, "web_host", "") or "127.0.0.1"
    hosts = allowed_hosts(
        os.environ.get("SCALELAB_INSTANCE", ""),
        os.environ.get(ALLOWED_HOSTS_ENV, "").split(","),
        own_addresses("0.0.0.0" if web_host in ("", "*") else web_host),  # as Prometheus scrapes it in a swarm
    )

    @environment.web_ui.app.before_request
    def same_site_only() -> Response | None:
        # No other site's page, and no page reached by a rebound name, may start or stop the load.
        message = refusal(request.method, request.headers, hosts)
        if message is None:
            return None
        return Response(json.dumps({"success": False, "message": message}), status=403, content_type="application/json")

    @environment.web_ui.app.before_request
    def only_the_stack() -> Response | None:
        # The engine sends load to the stack it was started for (--host), never to a host a
        # request names: the swarm form must not turn it against anything else.
        asked = (request.form.get("host") or "").rstrip("/") if request.path == "/swarm" else ""
        if request.path == "/swarm":
            SWARM_STARTED[0] = time.time()
        if asked and asked != target:
            body = {"success": False, "message": f"this load engine only targets {target}, not {asked}"}
            return Response(json.dumps(body), status=403, content_type="application/json")
        return None

    @environment.web_ui.app.route("/metrics")
    def metrics() -> Response:
        runner = environment.runner
        METRICS.users.set(runner.user_count if runner is not None else 0)
        return Response(generate_latest(METRICS.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


class MixSource:
    """Draw each request from the mix on the swarm form; pace each user at the rate it asks for."""

    def __init__(self) -> None:
        self._rng = random.Random()
        self._seed = self._rng.randrange(2**32)
        self._seq = itertools.count()

    def take(self, user: LabUser) -> tuple[mix.Request, float] | None:
        options = user.environment.parsed_options
        weights = {endpoint: getattr(options, mix.option_name(endpoint)) for endpoint in mix.ENDPOINTS}
        now = time.time()
        if sum(max(0, weight) for weight in weights.values()) <= 0:
            return None  # nothing to send: the user stops rather than spin
        number = next(self._seq)
        request = mix.request_for(mix.draw(self._rng, weights), number, self._rng, number, self._seed, options.hot_keys)
        rate = options.rate_per_user
        if rate > 0 and options.shape != "constant":
            # The shape moves the whole rate from the target to the peak; each user's share moves with it.
            base = rate * max(user.environment.runner.user_count, 1) if user.environment.runner else rate
            rate *= shapes.rate_at(
                options.shape, 1.0, options.peak_rate / base, 4, options.shape_seconds, now - SWARM_STARTED[0]
            )
        due = max(now, getattr(user, "next_due", now)) if rate > 0 else now
        user.next_due = due + (1.0 / rate if rate > 0 else 0.0)
        return request, due

    def sent(self, user: LabUser, request: mix.Request, sent_at: float) -> None:
        """Nothing to note: Locust's statistics and the metrics above count it."""

    def answered(self, user: LabUser, request: mix.Request, sent_at: float, seconds: float, response: Any) -> None:
        """Count an open-model request, timed from when it was due (the request listener counts the others)."""
        if user.open_model:
            status = getattr(response, "status_code", 0) or 0
            failed = bool(getattr(response, "error", None)) or not 200 <= status < 400
            METRICS.record(request.label, response, seconds, failed)


class LiveUser(LabUser):
    """A user of the live load engine."""

    source = MixSource()
    namespace = secrets.token_hex(4)

    @property
    def open_model(self) -> bool:  # type: ignore[override]
        """Return whether the swarm form asked for the open model."""
        return _open(self.environment.parsed_options)

"""What the retry budget saves in an outage: microservice calls per request when every microservice hangs.

A script, not a test: it prints figures. It serves three microservices in this process that take
2 s a call and one gateway whose per-attempt timeout is 20 ms, so every attempt fails and every
request would be retried on the other two. It sends the same requests twice: with a budget so
large it allows every retry, then with the default (0.2 retries per request, plus 5 a second and
up to 20 saved), and prints the calls the microservices got.

    python -m tests.benchmarks.retry_budget [--requests 60]
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from services.gateway.app import create_app as create_gateway
from services.gateway.config import GatewayConfig
from services.microservice.app import create_app as create_microservice
from tests.unit.support import InThread

HUNG_MS = 2000
ATTEMPT_TIMEOUT_SECONDS = 0.02
UNBOUNDED = 10.0  # retries per request: more than a request can make, so every retry is allowed
NOWHERE = "http://127.0.0.1:9"  # /process needs no cache, database or worker


def measure(microservices: list[str], budget: float, requests: int) -> tuple[float, float, set[int]]:
    """Return (retries, seconds, statuses) of ``requests`` sequential /process calls at ``budget``."""
    registry = CollectorRegistry()
    app = create_gateway(
        {
            "jwt_secret": "b" * 48,
            "admin_token": "bench",
            "microservices": microservices,
            "microservice_timeout": ATTEMPT_TIMEOUT_SECONDS,
            "retry_budget": budget,
            "cache_url": NOWHERE,
            "database_url": NOWHERE,
            "worker_url": NOWHERE,
        },
        registry=registry,
    )
    client = app.test_client()
    token = {"Authorization": client.get("/token").get_json()["token"]}
    started = time.monotonic()
    statuses = {client.get("/process", headers=token).status_code for _ in range(requests)}
    seconds = time.monotonic() - started
    names = [spec.partition("=")[0] for spec in microservices]
    retried = sum(
        registry.get_sample_value("scalelab_backend_retries_total", {"pool": "microservices", "backend": name}) or 0
        for name in names
    )
    app.extensions["gateway"].microservices.checker.stop()
    return retried, seconds, statuses


def main() -> None:
    """Print the calls an outage costs with every retry allowed and with the default budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    servers = [
        InThread(
            make_server(
                "127.0.0.1",
                0,
                create_microservice({"service_time_ms": HUNG_MS, "service_id": str(n)}, registry=CollectorRegistry()),
                threaded=True,
            )
        )
        for n in range(3)
    ]
    microservices = [f"microservice-{n}={server.url}" for n, server in enumerate(servers)]
    try:
        for budget in (UNBOUNDED, GatewayConfig().retry_budget):
            retried, seconds, statuses = measure(microservices, budget, args.requests)
            label = "every retry allowed" if budget == UNBOUNDED else f"retry_budget {budget:g}"
            print(
                f"{label:>22}: {args.requests} requests made {args.requests + retried:.0f} calls "
                f"({retried / args.requests:.2f} retries per request) in {seconds:.1f} s; answers {sorted(statuses)}"
            )
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()

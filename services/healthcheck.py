"""Container health check: exit 0 when this container's service answers ``GET /health``.

``python -m services.healthcheck`` runs every 2 s in every container, so it imports nothing
but the standard library: it finds the port in the service's own port variable.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_SECONDS = 2.0
# Each service's port variable (tests check these against the services' settings).
PORT_VARIABLES = {
    "load-balancer": "BALANCER_PORT",
    "gateway": "GATEWAY_PORT",
    "cache": "CACHE_PORT",
    "database": "DATABASE_PORT",
    "microservice": "MICROSERVICE_PORT",
    "worker": "WORKER_PORT",
}


def main() -> int:
    """Probe the service; print why when it is not healthy."""
    service = os.environ.get("SCALELAB_SERVICE", "")
    variable = PORT_VARIABLES.get(service)
    port = os.environ.get(variable or "", "")
    if not port.isdigit():
        print(f"healthcheck: set SCALELAB_SERVICE and its port variable (service {service!r})", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT_SECONDS) as response:
            if response.status == 200:
                return 0
    except OSError as exc:
        print(f"healthcheck: {service} on port {port}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

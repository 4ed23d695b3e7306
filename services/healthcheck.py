"""Container health check: exit 0 when this container's service answers ``GET /health``.

``python -m services.healthcheck`` runs every 2 s in every container, so it imports nothing
but the standard library. The container names the port and path to probe in
SCALELAB_HEALTH_PORT and SCALELAB_HEALTH_PATH (the compose file, generated from the catalog,
sets them for every container).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

TIMEOUT_SECONDS = 2.0


def target(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """Return the port and path to probe, or None when the environment names no port."""
    port = environ.get("SCALELAB_HEALTH_PORT", "")
    if not port.isdigit():
        return None
    return port, environ.get("SCALELAB_HEALTH_PATH") or "/health"


def main() -> int:
    """Probe the service; print why when it is not healthy."""
    found = target(os.environ)
    service = os.environ.get("SCALELAB_SERVICE") or os.environ.get("SCALELAB_INSTANCE", "")
    if found is None:
        print(
            f"healthcheck: set SCALELAB_HEALTH_PORT to the port of {service or 'this container'}'s service",
            file=sys.stderr,
        )
        return 2
    port, path = found
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT_SECONDS) as response:
            if response.status == 200:
                return 0
    except OSError as exc:
        print(f"healthcheck: {service} on port {port}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

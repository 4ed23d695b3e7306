"""Container health check: exit 0 when this container's service answers ``GET /health``.

``python -m services.healthcheck`` reads the service from ``SCALELAB_SERVICE`` and its port
from that service's own settings, so one HEALTHCHECK line serves every container.
"""

from __future__ import annotations

import os
import sys

from .__main__ import config_class_of
from .kit.config import load_config
from .orchestrator.local import healthy

TIMEOUT_SECONDS = 2.0


def main() -> int:
    """Probe the service; print why when it is not healthy."""
    service = os.environ.get("SCALELAB_SERVICE", "")
    try:
        settings = load_config(config_class_of(service))
    except (KeyError, ValueError) as exc:
        print(f"healthcheck: cannot tell which service this is (SCALELAB_SERVICE={service!r}): {exc}", file=sys.stderr)
        return 2
    if healthy(settings.port, TIMEOUT_SECONDS):
        return 0
    print(f"healthcheck: {service} does not answer GET /health on port {settings.port}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Serve the control app: ``python -m dashboard`` (what `scalelab up` and the compose file run)."""

from __future__ import annotations

import sys

from dashboard.config import DashboardConfig
from services.kit.config import ConfigError, load_config
from services.kit.server import serve_wsgi
from services.kit.settings import ServiceSettings


def main() -> int:
    """Check the configuration, then serve the page with the kit's WSGI server."""
    try:
        config = load_config(DashboardConfig)
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    settings = ServiceSettings(instance="dashboard", host=config.host, port=config.port, log_level=config.log_level)
    print(f"ScaleLab control page: http://{config.host}:{config.port}/", flush=True)
    serve_wsgi("dashboard.app:serve", settings, "granian", "gthread", config.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one service in this process: ``python -m services <service>`` (what the launcher and Docker run)."""

from __future__ import annotations

import os
import sys

# service name -> (package, config class) for the Flask services, served by a WSGI server.
WSGI_SERVICES = {
    "gateway": ("gateway", "GatewayConfig"),
    "cache": ("cache", "CacheConfig"),
    "database": ("database", "DatabaseConfig"),
    "microservice": ("microservice", "MicroserviceConfig"),
    "worker": ("worker", "WorkerConfig"),
}
SERVICES = ("load-balancer", *WSGI_SERVICES)


def config_class_of(service: str) -> type:
    """Return the settings class of ``service`` (e.g. GatewayConfig for ``gateway``)."""
    import importlib

    if service == "load-balancer":
        from .balancer.config import BalancerConfig

        return BalancerConfig
    package, config_name = WSGI_SERVICES[service]
    return getattr(importlib.import_module(f".{package}.config", __package__), config_name)


def main(argv: list[str] | None = None) -> int:
    """Serve the service named in ``argv`` with the environment's settings."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv and os.environ.get("SCALELAB_SERVICE"):
        argv = [os.environ["SCALELAB_SERVICE"]]  # containers name their service in the environment
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: python -m services {{{','.join(SERVICES)}}}", file=sys.stderr)
        return 2
    service = argv[0]
    if service == "load-balancer":
        from .balancer.serve import serve as serve_balancer

        serve_balancer()
        return 0
    from .kit.config import load_config

    settings = load_config(config_class_of(service))
    if settings.server == "gunicorn" and settings.worker_class == "gevent":
        # Patch before anything else uses socket or threading (gunicorn does it again in the worker).
        from gevent import monkey

        monkey.patch_all()
    from .kit.server import serve_wsgi

    package = WSGI_SERVICES[service][0]
    serve_wsgi(f"services.{package}.app:create_app", settings, settings.server, settings.worker_class, settings.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

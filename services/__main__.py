"""Run one service in this process: ``python -m services <service>`` (what the launcher and Docker run)."""

from __future__ import annotations

import sys

# service name -> (package, config class) for the Flask services, served by gunicorn.
WSGI_SERVICES = {
    "gateway": ("gateway", "GatewayConfig"),
    "cache": ("cache", "CacheConfig"),
    "database": ("database", "DatabaseConfig"),
    "microservice": ("microservice", "MicroserviceConfig"),
    "worker": ("worker", "WorkerConfig"),
}
SERVICES = ("load-balancer", *WSGI_SERVICES)


def main(argv: list[str] | None = None) -> int:
    """Serve the service named in ``argv`` with the environment's settings."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: python -m services {{{','.join(SERVICES)}}}", file=sys.stderr)
        return 2
    service = argv[0]
    if service == "load-balancer":
        from .balancer.serve import serve as serve_balancer

        serve_balancer()
        return 0
    import importlib

    from .kit.config import load_config

    package, config_name = WSGI_SERVICES[service]
    config_class = getattr(importlib.import_module(f".{package}.config", __package__), config_name)
    settings = load_config(config_class)
    if settings.server == "gunicorn" and settings.worker_class == "gevent":
        # Patch before anything else uses socket or threading (gunicorn does it again in the worker).
        from gevent import monkey

        monkey.patch_all()
    from .kit.server import serve_wsgi

    serve_wsgi(f"services.{package}.app:create_app", settings, settings.server, settings.worker_class, settings.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
# The worker runs its task pool on real threads; the request-serving services use gevent.
WORKER_CLASSES = {"worker": "gthread"}


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
    worker_class = WORKER_CLASSES.get(service, "gevent")
    if worker_class == "gevent":
        # Patch before anything else imports socket or threading (gunicorn does it again in the worker).
        from gevent import monkey

        monkey.patch_all()
    import importlib

    from .kit.config import load_config
    from .kit.server import serve_wsgi

    package, config_name = WSGI_SERVICES[service]
    module = importlib.import_module(f".{package}.app", __package__)
    config_class = getattr(importlib.import_module(f".{package}.config", __package__), config_name)
    settings = load_config(config_class)
    settings.instance = settings.instance or service
    serve_wsgi(module.create_app, settings, worker_class=worker_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())

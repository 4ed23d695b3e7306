"""Run one service in this process: ``python -m services PACKAGE`` (what the launcher and Docker run).

A service is a folder of this package: ``config.py`` holds its settings class (a
:class:`~services.kit.ServiceSettings`) and either ``serve.py`` serves it itself (the balancer and
the gateway, each with its own listener on uvloop) or ``app.py`` has the ``create_app`` a WSGI
server runs. Nothing here lists them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from pathlib import Path

NOT_SERVICES = ("kit",)


def service_packages() -> list[str]:
    """Return the service folders of this package (``balancer``, ``cache``, ...)."""
    here = Path(__file__).resolve().parent
    return sorted(
        module.name
        for module in pkgutil.iter_modules([str(here)])
        if module.ispkg and module.name not in NOT_SERVICES and (here / module.name / "config.py").is_file()
    )


def config_class_of(package: str) -> type:
    """Return the settings class of the service in ``services/<package>`` (e.g. GatewayConfig)."""
    from .kit.settings import ServiceSettings

    module = importlib.import_module(f".{package}.config", __package__)
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"services/{package}/config.py should define one settings class, found {len(found)}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    """Serve the service named in ``argv`` (or SCALELAB_SERVICE) with the environment's settings."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv and os.environ.get("SCALELAB_SERVICE"):
        argv = [os.environ["SCALELAB_SERVICE"]]  # containers name their service in the environment
    packages = service_packages()
    if len(argv) != 1 or argv[0] not in packages:
        print(f"usage: python -m services {{{','.join(packages)}}}", file=sys.stderr)
        return 2
    package = argv[0]
    if importlib.util.find_spec(f"{__package__}.{package}.serve") is not None:
        importlib.import_module(f".{package}.serve", __package__).serve()
        return 0
    from .kit.config import ConfigError, load_config

    try:
        settings = load_config(config_class_of(package))
    except ConfigError as exc:
        print(f"{package}: {exc}", file=sys.stderr)
        return 2
    if settings.server == "gunicorn" and settings.worker_class == "gevent":
        # Patch before anything else uses socket or threading (gunicorn does it again in the worker).
        from gevent import monkey

        monkey.patch_all()
    from .kit.server import serve_wsgi

    serve_wsgi(f"services.{package}.app:create_app", settings, settings.server, settings.worker_class, settings.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

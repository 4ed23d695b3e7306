"""Serve the cache: the kit's listener on the public port, answering plain reads on its event loop.

Every cache hit of the lab crosses this service, so its reads (``GET /cache/<key>``, the express
lane of app.py) are answered on the listener's loop; everything else goes to the Flask app behind
it (services/kit/front.py).
"""

from __future__ import annotations

import sys

from ..kit.config import ConfigError, load_config
from ..kit.front import ExpressListener, serve_fronted
from .config import CacheConfig

__all__ = ["serve"]


def serve() -> None:
    """Serve the cache configured by the environment until the server is told to stop."""
    try:
        settings = load_config(CacheConfig)
    except ConfigError as exc:
        print(f"cache: {exc}", file=sys.stderr)
        sys.exit(2)
    serve_fronted("services.cache.app:create_app", settings, ExpressListener)

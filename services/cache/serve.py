"""Serve the cache: the kit's listener on the public port, answering plain reads on its event loop.

Every cache hit of the lab crosses this service, so its reads (``GET /cache/<key>``, the express
lane of app.py) are answered on the listener's loop; everything else goes to the Flask app behind
it (services/kit/front.py).
"""

from __future__ import annotations

from ..kit.front import ExpressListener, serve_fronted
from .config import CacheConfig

__all__ = ["serve"]


def serve() -> None:
    """Serve the cache configured by the environment until the server is told to stop."""
    serve_fronted("services.cache.app:create_app", CacheConfig, ExpressListener)

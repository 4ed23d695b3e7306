"""Put an added instance into rotation through the services' own control routes.

Runs wherever the balancing instances can be reached: from the CLI in local mode, inside the
new container in Docker mode (``python -m services.orchestrator.membership``).
"""

from __future__ import annotations

import os
import sys

from ..kit.auth import ADMIN_HEADER
from ..kit.httpclient import HttpClient, UpstreamError
from .base import OrchestratorError

__all__ = ["BALANCED_BY", "announce"]

REGISTER_TIMEOUT_SECONDS = 3.0
# Which service balances which, and the route that adds a backend to its pool.
BALANCED_BY = {"microservice": ("gateway", "/pool/backends"), "gateway": ("load-balancer", "/lb/backends")}


def announce(name: str, url: str, path: str, peers: list[str], admin_token: str) -> None:
    """POST ``{name, url}`` to ``path`` on every peer base URL; raise OrchestratorError if one refuses."""
    for peer in peers:
        client = HttpClient(peer, timeout=REGISTER_TIMEOUT_SECONDS)
        try:
            status, body = client.send_json(
                "POST", path, {"name": name, "url": url}, headers={ADMIN_HEADER: admin_token}
            )
        except UpstreamError as exc:
            raise OrchestratorError(f"{name} started but {peer} could not be reached to register it: {exc}") from exc
        finally:
            client.close()
        if status != 201:
            raise OrchestratorError(f"{name} started but {peer} refused to register it ({status}: {body})")


def main(argv: list[str]) -> int:
    """``NAME URL PATH PEER_URL...``, with the admin token in SCALELAB_ADMIN_TOKEN."""
    if len(argv) < 4:
        print("usage: python -m services.orchestrator.membership NAME URL PATH PEER_URL...", file=sys.stderr)
        return 2
    name, url, path, *peers = argv
    try:
        announce(name, url, path, peers, os.environ.get("SCALELAB_ADMIN_TOKEN", ""))
    except OrchestratorError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

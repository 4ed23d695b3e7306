"""Put an instance into rotation, or take it out, through the services' own control routes.

Runs wherever the balancing instances can be reached: from the CLI in local mode, inside a
container of the stack in Docker mode (``python -m scalelab.membership``).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import quote

from scalelab.orchestrators.base import OrchestratorError
from services.kit.auth import ADMIN_HEADER
from services.kit.httpclient import HttpClient, UpstreamError
from services.kit.tier import DRAIN_SECONDS

__all__ = ["announce", "main", "withdraw"]

REGISTER_TIMEOUT_SECONDS = 3.0
# A peer answers a removal once the requests already sent to the instance are done (or cut).
WITHDRAW_TIMEOUT_SECONDS = REGISTER_TIMEOUT_SECONDS + DRAIN_SECONDS
USAGE = (
    "usage: python -m scalelab.membership NAME URL PATH PEER_URL...\n"
    "       python -m scalelab.membership --withdraw NAME PATH PEER_URL..."
)


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


def withdraw(name: str, path: str, peers: list[str], admin_token: str) -> None:
    """DELETE ``<path>/<name>`` on every peer base URL; raise OrchestratorError if one refuses.

    A peer answering 404 no longer has it (it never had it, or an earlier attempt removed it).
    """
    for peer in peers:
        client = HttpClient(peer, timeout=WITHDRAW_TIMEOUT_SECONDS)
        try:
            response = client.request("DELETE", f"{path}/{quote(name, safe='')}", headers={ADMIN_HEADER: admin_token})
        except UpstreamError as exc:
            raise OrchestratorError(
                f"{name} is still running: {peer} could not be reached to take it out of rotation ({exc}); "
                "check that instance, then try again"
            ) from exc
        finally:
            client.close()
        if response.status not in (200, 404):
            raise OrchestratorError(
                f"{name} is still running: {peer} refused to take it out of rotation "
                f"({response.status}: {response.body.decode(errors='replace')})"
            )


def main(argv: list[str]) -> int:
    """Announce (``NAME URL PATH PEER_URL...``) or withdraw (``--withdraw NAME PATH PEER_URL...``) an instance.

    The admin token comes from SCALELAB_ADMIN_TOKEN.
    """
    token = os.environ.get("SCALELAB_ADMIN_TOKEN", "")
    try:
        if argv[:1] == ["--withdraw"]:
            if len(argv) < 4:
                print(USAGE, file=sys.stderr)
                return 2
            name, path, *peers = argv[1:]
            withdraw(name, path, peers, token)
        else:
            if len(argv) < 4:
                print(USAGE, file=sys.stderr)
                return 2
            name, url, path, *peers = argv
            announce(name, url, path, peers, token)
    except OrchestratorError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Put an added instance into rotation through the services' own control routes."""

from __future__ import annotations

from ..kit.auth import ADMIN_HEADER
from ..kit.httpclient import HttpClient, UpstreamError
from .base import InstanceInfo, OrchestratorError
from .local import LocalOrchestrator

REGISTER_TIMEOUT_SECONDS = 3.0
# Which service balances which: an added instance is registered with these pools.
BALANCED_BY = {"microservice": ("gateway", "/pool/backends"), "gateway": ("load-balancer", "/lb/backends")}


def register(orchestrator: LocalOrchestrator, info: InstanceInfo) -> list[str]:
    """Register ``info`` with every running instance that balances its service; return their names."""
    secrets = orchestrator.secrets()
    if secrets is None or info.service not in BALANCED_BY:
        return []
    balancer_service, path = BALANCED_BY[info.service]
    registered = []
    for peer in orchestrator.instances():
        if peer.service != balancer_service or peer.state != "running":
            continue
        client = HttpClient(peer.url, timeout=REGISTER_TIMEOUT_SECONDS)
        try:
            status, body = client.send_json(
                "POST", path, {"name": info.name, "url": info.url}, headers={ADMIN_HEADER: secrets.admin_token}
            )
        except UpstreamError as exc:
            raise OrchestratorError(
                f"{info.name} started but {peer.name} could not be reached to register it: {exc}"
            ) from exc
        finally:
            client.close()
        if status != 201:
            raise OrchestratorError(f"{info.name} started but {peer.name} refused to register it ({status}: {body})")
        registered.append(peer.name)
    return registered

"""Load balancer settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import PoolSettings, ServiceSettings, setting

DEFAULT_GATEWAYS = ["gateway-1=http://127.0.0.1:5000", "gateway-2=http://127.0.0.1:5003"]


@dataclass
class BalancerConfig(ServiceSettings, PoolSettings):
    """Settings of the load balancer."""

    port: int = setting(8000, "BALANCER_PORT", "Port of the load balancer (the lab's entry point).")
    backends: list[str] = setting(DEFAULT_GATEWAYS, "BALANCER_BACKENDS", "name=url of each gateway, comma separated.")
    discover: str = setting(
        "",
        "BALANCER_DISCOVER",
        "host:port whose DNS records are the gateways (tasks.gateway and the gateways' port on Docker Swarm), "
        "re-resolved every SCALELAB_DISCOVER_INTERVAL; when set, BALANCER_BACKENDS is not used.",
    )
    connect_timeout: float = setting(1.0, "BALANCER_CONNECT_TIMEOUT", "Seconds to wait for a connection to a gateway.")

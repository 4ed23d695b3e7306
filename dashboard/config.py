"""The control app's configuration: where the stack, Prometheus, the load engine and Grafana are.

Everything comes from the environment (``scalelab up`` and the compose file set it), never
from the browser: the page cannot point the app at another host or learn the admin token.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.config import ConfigError, setting
from services.kit.origin import allowed_hosts, own_addresses

__all__ = ["LOOPBACK", "DashboardConfig"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class DashboardConfig:
    """Settings of the control app (``python -m dashboard``)."""

    host: str = setting("127.0.0.1", "DASHBOARD_HOST", "Address the page is served on; not loopback needs a password.")
    instance: str = setting(
        "dashboard", "SCALELAB_INSTANCE", "Its name; inside a compose network, a host it answers to."
    )
    allowed_hosts: list[str] = setting(
        [],
        "SCALELAB_ALLOWED_HOSTS",
        "More host names the page answers to, comma separated (* for any); it always answers to this machine's.",
    )
    port: int = setting(8050, "DASHBOARD_PORT", "Port of the page.")
    password: str = setting(
        "", "DASHBOARD_PASSWORD", "Password (user `scalelab`) required when DASHBOARD_HOST is not loopback."
    )
    run_dir: str = setting(
        "", "DASHBOARD_RUN_DIR", "Run directory of a local stack (empty: found as `scalelab` finds it)."
    )
    docker_in_network: bool = setting(
        False, "DASHBOARD_DOCKER_IN_NETWORK", "The app runs inside the compose network: reach instances by name."
    )
    admin_token: str = setting(
        "", "SCALELAB_ADMIN_TOKEN", "Admin token of the services' control API; local mode reads it from state.json."
    )
    prometheus_url: str = setting("http://127.0.0.1:9090", "DASHBOARD_PROMETHEUS_URL", "Prometheus the charts query.")
    loadgen_url: str = setting("http://127.0.0.1:8089", "DASHBOARD_LOADGEN_URL", "The load engine (Locust) API.")
    grafana_url: str = setting(
        "http://127.0.0.1:3000", "DASHBOARD_GRAFANA_URL", "Grafana as the browser reaches it (embedded panels)."
    )
    grafana_probe_url: str = setting(
        "", "DASHBOARD_GRAFANA_PROBE_URL", "Grafana as the app reaches it (default: DASHBOARD_GRAFANA_URL)."
    )
    results_dir: str = setting(
        "results", "DASHBOARD_RESULTS_DIR", "Where experiments run from the page write their reports (and are listed)."
    )
    refresh_seconds: float = setting(1.0, "DASHBOARD_REFRESH_SECONDS", "How often charts and tiles refresh.")
    idle_refresh_seconds: float = setting(
        5.0,
        "DASHBOARD_IDLE_REFRESH_SECONDS",
        "How often the stack is read while no page is open, no load runs and nothing was pressed lately "
        "(a page that opens is served a fresh reading at once, then one per DASHBOARD_REFRESH_SECONDS).",
    )
    history_seconds: int = setting(3600, "DASHBOARD_HISTORY_SECONDS", "How much history the charts keep.")
    request_timeout: float = setting(
        0.8, "DASHBOARD_REQUEST_TIMEOUT", "Seconds the app waits for a service, Prometheus or the load engine."
    )
    threads: int = setting(16, "DASHBOARD_THREADS", "Threads serving the page's requests (callbacks run in parallel).")
    log_level: str = setting("info", "SCALELAB_LOG_LEVEL", "debug, info, warning or error.")

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK and not self.password:
            raise ConfigError(
                f"DASHBOARD_HOST={self.host} serves the control page beyond this machine: "
                "set DASHBOARD_PASSWORD (the page then asks for user `scalelab` and that password)"
            )
        if not 0.2 <= self.refresh_seconds <= 60:
            raise ConfigError(f"DASHBOARD_REFRESH_SECONDS={self.refresh_seconds} must be between 0.2 and 60")
        if not self.refresh_seconds <= self.idle_refresh_seconds <= 60:
            raise ConfigError(
                f"DASHBOARD_IDLE_REFRESH_SECONDS={self.idle_refresh_seconds} must be between "
                f"DASHBOARD_REFRESH_SECONDS ({self.refresh_seconds}) and 60"
            )
        self.grafana_probe_url = self.grafana_probe_url or self.grafana_url
        _ = self.hosts  # a malformed SCALELAB_ALLOWED_HOSTS stops the page at start, naming it

    @property
    def hosts(self) -> frozenset[str]:
        """Return the Host names the page answers to (a browser reaching it by any other name is refused)."""
        # The address it is served on is one of its names (an IPv6 one written as a Host header writes it).
        named = [] if self.host in WILDCARDS else [f"[{self.host}]" if ":" in self.host else self.host]
        try:
            return allowed_hosts(self.instance, [*self.allowed_hosts, *named], own_addresses(self.host))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def needs_password(self) -> bool:
        """Whether the page asks for a password (it is served beyond loopback)."""
        return self.host not in LOOPBACK

"""Pool membership from DNS: the A records of one name are a pool's backends, re-resolved every second.

That is how Docker Swarm (``tasks.gateway``) and Kubernetes (a headless Service) tell a client
which instances of a service run now. Each address becomes a backend named by the instance
name it reports on ``/health`` (``gateway-2``, from its task slot or pod), so the pool, its
metrics and the page read the same as with a fixed list. An address that is gone from the
answer is taken out of the pool the way ``DELETE /…/backends/<name>`` does it (drained), except
the pool's last backend, which stays and is marked down by its health checks instead.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .config import ConfigError
from .errors import ApiError
from .tier import BACKEND_NAME, BalancedTier

__all__ = ["DnsDiscovery", "DnsTarget", "identify", "resolve"]

log = logging.getLogger(__name__)
# An instance that is starting answers /health within a second or it is tried again next round.
IDENTIFY_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class DnsTarget:
    """A DNS name whose A (and AAAA) records are the backends, and the port they all listen on."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, env: str) -> DnsTarget:
        """Parse ``host:port``; raise ConfigError naming ``env`` otherwise."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ConfigError(
                f"{env}: expected host:port, a DNS name and the port every backend listens on "
                f"(tasks.<service>:<port> on Docker Swarm), not {text!r}"
            )
        return cls(host, int(port))

    def url(self, address: str) -> str:
        """Return the base URL of the backend at ``address``."""
        host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        return f"http://{host}:{self.port}"


def resolve(target: DnsTarget) -> set[str]:
    """Return the addresses ``target.host`` resolves to now; raise OSError when the lookup fails."""
    found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return {address[0] for *_, address in found}


def identify(url: str) -> str:
    """Return the instance name the backend at ``url`` reports on /health; raise OSError or ValueError."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=IDENTIFY_TIMEOUT_SECONDS)
    try:
        conn.request("GET", "/health", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"{url}/health answered {response.status}")
    name = json.loads(body).get("instance")
    if not isinstance(name, str) or not BACKEND_NAME.fullmatch(name):
        raise ValueError(f"{url}/health names no usable instance: {name!r}")
    return name


class DnsDiscovery:
    """Keep a tier's backends equal to what a DNS name resolves to, checking every ``interval`` seconds."""

    def __init__(
        self,
        tier: BalancedTier,
        target: DnsTarget,
        interval: float,
        remove: Callable[[str, bool], object],
        lookup: Callable[[DnsTarget], set[str]] = resolve,
        name_of: Callable[[str], str] = identify,
    ) -> None:
        """``remove(name, allow_last)`` takes a backend out as the pool's DELETE route does (draining it)."""
        self.tier = tier
        self.target = target
        self.interval = interval
        self._remove = remove
        self._lookup = lookup
        self._name_of = name_of
        self._found: dict[str, str] = {}  # address -> backend name, for the backends this added
        self._stop = threading.Event()
        self._failing = False

    def start(self) -> None:
        """Sync once now, so the first requests find backends, then every interval on a thread."""
        self.sync()
        threading.Thread(target=self._loop, name=f"discover-{self.tier.pool.name}", daemon=True).start()

    def stop(self) -> None:
        """Stop after the sync under way."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception:  # one bad round must not end discovery for the instance's lifetime
                log.exception("discovery of pool %r failed this round", self.tier.pool.name)

    def sync(self) -> None:
        """Add a backend for each new address and take out those whose address is gone."""
        try:
            addresses = self._lookup(self.target)
        except OSError as exc:
            # Keep what the pool has: a DNS hiccup must not empty it (health checks still judge each backend).
            if not self._failing:
                log.warning("cannot resolve %s for pool %r: %s", self.target.host, self.tier.pool.name, exc)
            self._failing = True
            return
        self._failing = False
        for address in sorted(set(self._found) - addresses):
            self._drop(address)
        for address in sorted(addresses - set(self._found)):
            self._add(address)

    def _add(self, address: str) -> None:
        url = self.target.url(address)
        try:
            name = self._name_of(url)
        except (OSError, ValueError) as exc:
            log.debug("%s is not answering yet (%s); next round", url, exc)
            return
        current = {backend.name: backend for backend in self.tier.pool.backends()}
        if name in current and current[name].url != url:
            # The same slot on a new address: a task or pod replaced after a crash.
            stale = next((a for a, n in self._found.items() if n == name), None)
            self._take_out(name, allow_last=True)  # even the last: its successor is added right after
            if stale is not None:
                del self._found[stale]
        if name not in {backend.name for backend in self.tier.pool.backends()}:
            try:
                self.tier.add_backend({"name": name, "url": url})
            except ApiError as exc:
                log.warning("cannot add %s (%s) to pool %r: %s", name, url, self.tier.pool.name, exc.message)
                return
            log.info("pool %r: %s at %s found through %s", self.tier.pool.name, name, url, self.target.host)
        self._found[address] = name

    def _drop(self, address: str) -> None:
        name = self._found[address]
        if self._take_out(name):
            del self._found[address]

    def _take_out(self, name: str, allow_last: bool = False) -> bool:
        """Remove backend ``name``; return False when it is the pool's last, which stays (marked down)."""
        try:
            self._remove(name, allow_last)
        except ApiError as exc:
            if exc.status == 404:
                return True
            log.info("pool %r keeps %s for now: %s", self.tier.pool.name, name, exc.message)
            return False
        log.info("pool %r: %s is gone from %s", self.tier.pool.name, name, self.target.host)
        return True

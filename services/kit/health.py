"""Active health checking: the up/down state machine and the thread that probes each backend."""

from __future__ import annotations

import http.client
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .httpclient import HttpClient
    from .pool import Backend, Pool

__all__ = ["HealthChecker", "HealthPolicy", "HealthState", "check_health", "http_probe"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthPolicy:
    """How often to probe, how long to wait, and how many results flip the state.

    The defaults mark a dead backend down within about one second: two failed probes
    0.25 s apart, each given at most 0.3 s.
    """

    interval: float = 0.25
    timeout: float = 0.3
    fall: int = 2
    rise: int = 2
    path: str = "/health"

    def detection_bound(self) -> float:
        """Return the longest time a backend that stopped answering can still count as healthy."""
        return self.fall * (self.interval + self.timeout)


class HealthState:
    """Up/down with hysteresis: ``fall`` failures in a row take it down, ``rise`` successes bring it up."""

    def __init__(self, rise: int, fall: int, healthy: bool = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.healthy = healthy
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool) -> bool:
        """Count one probe result; return True when it changed the state."""
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.healthy and self.successes >= self.rise:
                self.healthy = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.healthy and self.failures >= self.fall:
                self.healthy = False
                return True
        return False

    def force_down(self) -> bool:
        """Take the backend down at once (a connection to it failed); return True if it was up."""
        self.successes = 0
        self.failures = max(self.failures, self.fall)
        if self.healthy:
            self.healthy = False
            return True
        return False


Probe = Callable[["Backend", HealthPolicy], None]


def check_health(host: str, port: int, path: str, timeout: float) -> None:
    """Raise unless ``GET http://host:port<path>`` answers 200 within ``timeout`` seconds."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise ConnectionError(f"{host}:{port}{path} answered {response.status}")
    finally:
        conn.close()


# One keep-alive connection per probed backend, dropped with the backend. On a new connection
# each probe (four a second per backend and prober) also cost a connect, an accept and a close
# on both sides, the larger part of an idle gateway's CPU. A dead instance still fails its next
# probe at once: its connection is closed or reset, and the new one is refused.
_probe_clients: weakref.WeakKeyDictionary[Backend, HttpClient] = weakref.WeakKeyDictionary()
_probe_clients_lock = threading.Lock()


def http_probe(backend: Backend, policy: HealthPolicy) -> None:
    """Raise unless ``GET <backend><policy.path>`` answers 200 within the policy's timeout."""
    from .httpclient import HttpClient  # here: the client's module needs the pool's, which needs this one

    with _probe_clients_lock:
        client = _probe_clients.get(backend)
        if client is None or client.base_url != backend.url.rstrip("/"):
            if client is not None:
                client.close()  # the backend moved (found again by DNS at a new address)
            client = _probe_clients[backend] = HttpClient(
                backend.url, timeout=policy.timeout, connect_timeout=policy.timeout, max_idle=1
            )
            weakref.finalize(backend, client.close)  # its connection closes with the backend, not at exit
    response = client.request("GET", policy.path, timeout=policy.timeout)
    if response.status != 200:
        raise ConnectionError(f"{backend.url}{policy.path} answered {response.status}")


class HealthChecker:
    """Probe every backend of a pool on its own thread and report each result to the pool."""

    def __init__(self, pool: Pool, policy: HealthPolicy, probe: Probe = http_probe) -> None:
        self.pool = pool
        self.policy = policy
        self._probe = probe
        self._stop = threading.Event()
        # Backends by identity, not name: a backend removed and then added again under the same name
        # is a new object and needs its own thread (the old one ends on ``removed``).
        self._watched: set[Backend] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start probing every backend the pool has now (call :meth:`watch` for later ones)."""
        for backend in self.pool.backends():
            self.watch(backend)

    def watch(self, backend: Backend) -> None:
        """Start probing ``backend`` unless it is already watched."""
        with self._lock:
            if backend in self._watched:
                return
            self._watched.add(backend)
        thread = threading.Thread(target=self._loop, args=(backend,), name=f"health-{backend.name}", daemon=True)
        thread.start()

    def stop(self) -> None:
        """Stop all probe threads after their current probe."""
        self._stop.set()

    def check_once(self, backend: Backend) -> bool:
        """Probe ``backend`` once, report the result to the pool and return whether it passed."""
        started = time.monotonic()
        try:
            self._probe(backend, self.policy)
        except Exception as exc:  # any failure to answer counts against the backend
            self.pool.report_check(
                backend, ok=False, latency=time.monotonic() - started, error=str(exc) or type(exc).__name__
            )
            return False
        self.pool.report_check(backend, ok=True, latency=time.monotonic() - started)
        return True

    def _loop(self, backend: Backend) -> None:
        try:
            # Ends once the backend is removed from its pool (after at most the probe under way).
            while not self._stop.is_set() and not backend.removed:
                started = time.monotonic()
                self.check_once(backend)
                # A slow probe eats into the wait so the cadence stays at one probe per interval.
                self._stop.wait(max(0.0, self.policy.interval - (time.monotonic() - started)))
        finally:
            with self._lock:
                self._watched.discard(backend)
            with _probe_clients_lock:
                client = _probe_clients.pop(backend, None)
            if client is not None:
                client.close()

"""A small bounded load for failover tests: a few threads, each with its own keep-alive session."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

MAX_REQUESTS_PER_CLIENT = 5_000


@dataclass
class LoadResult:
    """What the clients saw: statuses, transport errors, and which backend answered."""

    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    served_by: Counter = field(default_factory=Counter)
    slowest: float = 0.0  # seconds, the longest a request took

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(n for status, n in self.statuses.items() if status >= 400)


def run_load(
    url: str, headers: dict[str, str], clients: int, seconds: float, during: Callable[[], None], field_name: str
) -> LoadResult:
    """Run ``clients`` looping clients for ``seconds``; call ``during()`` once, a third of the way in."""
    result = LoadResult()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    response = session.get(url, headers=headers, timeout=10)
                except requests.RequestException as exc:
                    with lock:
                        result.errors.append(repr(exc))
                    continue
                with lock:
                    result.slowest = max(result.slowest, time.monotonic() - started)
                    result.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        result.served_by[response.json()[field_name]] += 1
                    else:
                        result.errors.append(f"{response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)
    during()
    time.sleep(seconds * 2 / 3)
    stop.set()
    for thread in threads:
        thread.join()
    return result

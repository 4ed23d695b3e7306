"""Cache service settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import ServiceSettings, setting
from .store import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRY_BYTES


@dataclass
class CacheConfig(ServiceSettings):
    """Settings of the cache service."""

    port: int = setting(5004, "CACHE_PORT", "Port of the cache service.")
    # The cache's requests never wait on another service, so under the GIL they run one after the
    # other: a burst waits in the server's own queue, which holds no thread. Threads held for a
    # queue only contend for the GIL (the cache cost 320 rather than 220 us of CPU per request).
    queued_requests: int = setting(
        0,
        "SCALELAB_QUEUED_REQUESTS",
        "Requests that may wait (up to 5 s) in a thread of their own for a busy request thread. None by default: "
        "the cache's requests never wait on I/O, so they queue in the server without holding a thread.",
    )
    capacity: int = setting(10_000, "CACHE_CAPACITY", "Most entries held; the least recently used go first.")
    max_bytes: int = setting(
        DEFAULT_MAX_BYTES,
        "CACHE_MAX_BYTES",
        "Most bytes the entries take (each key's UTF-8 plus its value as compact JSON); "
        "the least recently used go first.",
    )
    max_entry_bytes: int = setting(
        DEFAULT_MAX_ENTRY_BYTES,
        "CACHE_MAX_ENTRY_BYTES",
        "Most bytes one entry may take, counted as for CACHE_MAX_BYTES; a larger one is refused with 413.",
    )
    default_ttl_seconds: float = setting(30.0, "CACHE_DEFAULT_TTL_SECONDS", "TTL for entries stored without one.")
    lease_seconds: float = setting(
        2.0,
        "CACHE_LEASE_SECONDS",
        "How long a lease on a missing key lasts (GET ?lease=true): long enough for one database read.",
    )

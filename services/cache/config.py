"""Cache service settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import ServiceSettings, setting


@dataclass
class CacheConfig(ServiceSettings):
    """Settings of the cache service."""

    port: int = setting(5004, "CACHE_PORT", "Port of the cache service.")
    capacity: int = setting(10_000, "CACHE_CAPACITY", "Most entries held; the least recently used go first.")
    default_ttl_seconds: float = setting(30.0, "CACHE_DEFAULT_TTL_SECONDS", "TTL for entries stored without one.")

"""What the cache service's HTTP API takes and gives: the models behind its /openapi.json and its 400s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..kit.openapi import Query, service_api

__all__ = ["CacheEntry", "CacheStats", "CacheWrite", "Deleted", "Flushed", "KeyQuery", "Stored", "api"]

MAX_TTL_SECONDS = 86_400

api = service_api(
    "cache",
    "A bounded TTL key-value cache. Keys go in the path (/cache/<key>, any characters) or, for keys that "
    "clash with /cache/stats and /cache/flush, in the query (/cache?key=<key>).",
)


for follow in ("GET /cache/{key}", "DELETE /cache/{key}"):
    api.link("POST /cache/{key}", 201, follow, key="$response.body#/key")


class KeyQuery(Query):
    """The key, for the routes that take it in the query."""

    key: str = Field(min_length=1, description="The cache key (any characters).")


class CacheWrite(BaseModel):
    """``POST /cache/<key>``: the value to store and, optionally, its lifetime."""

    model_config = ConfigDict(strict=True)

    value: Any = Field(description="Any JSON value.")
    ttl: float | None = Field(
        None, gt=0, le=MAX_TTL_SECONDS, description="Seconds the entry lives (default: the default_ttl_seconds knob)."
    )


class CacheEntry(BaseModel):
    """A cached value and how long it has left."""

    key: str
    value: Any
    ttl_remaining_seconds: float


class Stored(BaseModel):
    """A value was stored."""

    key: str
    stored: bool
    ttl_seconds: float


class Deleted(BaseModel):
    """Whether the key was there to delete."""

    key: str
    deleted: bool


class Flushed(BaseModel):
    """How many entries the flush removed."""

    flushed: int


class CacheStats(BaseModel):
    """Counters and sizes since the cache started."""

    hits: int
    misses: int
    hit_ratio: float | None
    sets: int
    deletes: int
    evictions: int
    expirations: int
    size: int
    capacity: int
    default_ttl_seconds: float

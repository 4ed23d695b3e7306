"""What the cache service's HTTP API takes and gives: the models behind its /openapi.json and its 400s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..kit.openapi import ErrorBody, Query, service_api

__all__ = [
    "CacheEntry",
    "CacheMiss",
    "CacheStats",
    "CacheWrite",
    "Deleted",
    "Flushed",
    "KeyLeaseQuery",
    "KeyQuery",
    "LeaseQuery",
    "Stored",
    "api",
]

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


LEASE_DOC = (
    "On a miss, ask for the lease on the key: the first caller gets a token to fill it with (POST with "
    '"lease"), the others learn that it is being filled ("filling": true) and wait for the value instead.'
)


class LeaseQuery(Query):
    """``GET /cache/<key>``: whether a miss should ask for the lease on the key."""

    lease: bool = Field(False, description=LEASE_DOC)


class KeyLeaseQuery(KeyQuery):
    """``GET /cache?key=``: the key, and whether a miss should ask for its lease."""

    lease: bool = Field(False, description=LEASE_DOC)


class CacheMiss(ErrorBody):
    """The key is not cached; with ``?lease=true``, who fills it."""

    key: str
    lease: str | None = Field(None, description="Your token to fill the key with, when you got the lease.")
    filling: bool = Field(False, description="Another caller holds the lease: wait a little and read again.")


class CacheWrite(BaseModel):
    """``POST /cache/<key>``: the value to store and, optionally, its lifetime."""

    model_config = ConfigDict(strict=True)

    value: Any = Field(description="Any JSON value.")
    ttl: float | None = Field(
        None, gt=0, le=MAX_TTL_SECONDS, description="Seconds the entry lives (default: the default_ttl_seconds knob)."
    )
    lease: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The token a leased miss gave: the value is stored only while that lease is live (else 409).",
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

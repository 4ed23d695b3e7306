"""The cache service: a bounded TTL key-value cache over HTTP.

Keys go in the path (``/cache/<key>``, any characters, ``/`` included) or, for keys that
clash with ``/cache/flush`` and ``/cache/stats``, in the query (``/cache?key=flush``).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from prometheus_client import CollectorRegistry

from ..kit import ApiError, ConfigError, Knob, Knobs, create_service_app, load_config
from ..kit.app import AnyPath
from ..kit.express import Answer, Handler, express
from ..kit.openapi import responses, validated
from .api import (
    CacheEntry,
    CacheMiss,
    CacheStats,
    CacheWrite,
    Deleted,
    Flushed,
    KeyLeaseQuery,
    KeyQuery,
    LeaseQuery,
    Stored,
    api,
)
from .config import CacheConfig
from .leases import Leases
from .store import CacheStore, EntryTooLarge

bp = Blueprint("cache", __name__)


class KeyConverter(AnyPath):
    """The kit's any-character path converter (``/cache/%2Fa`` is the key ``/a``), except two keys.

    ``stats`` and ``flush`` never match: ``/cache/stats`` and ``/cache/flush`` are those routes
    for every method (``POST /cache/stats`` is a 405, not a write), and such keys go in the query.
    """

    regex = r"(?!(?:stats|flush)\Z)" + AnyPath.regex
    part_isolating = False  # said again: Werkzeug works it out anew for a class that sets its own regex


def _store() -> CacheStore:
    return current_app.extensions["cache_store"]


def _leases() -> Leases:
    return current_app.extensions["cache_leases"]


@bp.get("/cache/stats")
@api.validate(resp=responses(HTTP_200=CacheStats), tags=["cache"])
def stats():
    return jsonify(_store().stats())


@bp.post("/cache/flush")
@api.validate(resp=responses(HTTP_200=Flushed), tags=["cache"])
def flush():
    # Open and bodiless, as in the classic lab: its scripts flush before they measure.
    _leases().clear()
    return jsonify({"flushed": _store().flush()})


def _read(store: CacheStore, leases: Leases, key: str, lease: bool = False) -> tuple[int, dict[str, Any]]:
    """Return the status and body of a read of ``key``: the entry, or a miss (with the lease when asked)."""
    if lease:
        entry, token = leases.acquire(key, lambda: store.get(key))
    else:
        entry, token = store.get(key), None
    if entry is None:
        miss = {"error": f"key {key!r} is not cached (or has expired)", "status": 404, "key": key}
        if lease:
            miss.update(lease=token, filling=token is None)
        return 404, miss
    return 200, {"key": key, "value": entry.value, "ttl_remaining_seconds": round(store.remaining(entry), 3)}


def _get(key: str, lease: bool = False):
    status, body = _read(_store(), _leases(), key, lease)
    return jsonify(body), status


# The keys the express lane reads straight from the path: the gateway's ("data:my_data"), and any
# other made of characters that need no decoding. Anything else, and every query, goes to Flask.
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:~@!$*+,;=-]+")
EXPRESS_PREFIX = "/cache/"


def _express_read(store: CacheStore, leases: Leases) -> Handler:
    """Return the express lane's handler for ``GET /cache/<key>`` (services/kit/express.py)."""
    reserved = {"stats", "flush", ".", ".."}

    def handle(environ: dict[str, Any]) -> Answer | None:
        key = environ["PATH_INFO"][len(EXPRESS_PREFIX) :]
        if environ.get("QUERY_STRING") or key in reserved or PLAIN_KEY.fullmatch(key) is None:
            return None
        status, body = _read(store, leases, key)
        return status, body, {}

    return handle


def _put(key: str):
    body: CacheWrite = validated("json")
    try:
        if body.lease is None:
            entry = _store().set(key, body.value, body.ttl)
        else:
            live, entry = _leases().fill(key, body.lease, lambda: _store().set(key, body.value, body.ttl))
            if not live:
                raise ApiError(
                    409,
                    f"the lease on {key!r} is no longer live (it expired, or the key was deleted or the cache "
                    "flushed since): the value was not stored; read the key again",
                    key=key,
                    stored=False,
                )
    except EntryTooLarge as exc:
        raise ApiError(
            413,
            f"{exc} (CACHE_MAX_ENTRY_BYTES); store a smaller value",
            size_bytes=exc.size,
            limit_bytes=exc.limit,
        ) from None
    return jsonify({"key": key, "stored": True, "ttl_seconds": entry.ttl}), 201


def _delete(key: str):
    _leases().invalidate(key)  # a fill under way read the value from before this change
    return jsonify({"key": key, "deleted": _store().delete(key)})


# Each operation twice: the key in the path, or in the query for keys such as "stats".
READ = {"resp": responses(HTTP_200=CacheEntry, HTTP_404=CacheMiss), "tags": ["cache"]}
WRITE = {"json": CacheWrite, "resp": responses((400, 409, 413), HTTP_201=Stored), "tags": ["cache"]}
DELETE = {"resp": responses(HTTP_200=Deleted), "tags": ["cache"]}


@bp.get("/cache/<path:key>")
@api.validate(query=LeaseQuery, **READ)
def get(key: str):
    return _get(key, validated("query").lease)


@bp.get("/cache")
@api.validate(query=KeyLeaseQuery, **READ)
def get_by_query():
    query = validated("query")
    return _get(query.key, query.lease)


@bp.post("/cache/<path:key>")
@api.validate(**WRITE)
def put(key: str):
    return _put(key)


@bp.post("/cache")
@api.validate(query=KeyQuery, **WRITE)
def put_by_query():
    return _put(validated("query").key)


@bp.delete("/cache/<path:key>")
@api.validate(**DELETE)
def delete(key: str):
    return _delete(key)


@bp.delete("/cache")
@api.validate(query=KeyQuery, **DELETE)
def delete_by_query():
    return _delete(validated("query").key)


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build the cache service from the environment (``overrides`` win, for tests)."""
    config = load_config(CacheConfig, overrides)
    registry = registry or CollectorRegistry()
    try:
        store = CacheStore(
            config.capacity,
            config.default_ttl_seconds,
            registry=registry,
            max_bytes=config.max_bytes,
            max_entry_bytes=config.max_entry_bytes,
        )
    except ValueError as exc:
        raise ConfigError(f"CACHE_CAPACITY, CACHE_MAX_BYTES, CACHE_MAX_ENTRY_BYTES: {exc}") from None
    leases = Leases(config.lease_seconds, config.capacity)
    registry.register(leases)
    knobs = Knobs(
        [
            Knob(
                "default_ttl_seconds",
                float(config.default_ttl_seconds),
                "TTL for entries stored without one.",
                0.001,
                86_400,
            ),
            Knob("lease_seconds", float(config.lease_seconds), "How long a lease on a missing key lasts.", 0.01, 60),
        ],
        registry,
    )
    knob_targets = {"default_ttl_seconds": (store, "default_ttl"), "lease_seconds": (leases, "seconds")}
    knobs.on_change(lambda name, value: setattr(*knob_targets[name], value))
    app = create_service_app(
        "cache",
        config,
        knobs,
        registry,
        api,
        health=lambda: {"entries": len(store), "bytes": store.bytes_used()},
        health_waits=False,
    )
    app.extensions["cache_store"] = store
    app.extensions["cache_leases"] = leases
    app.url_map.converters["path"] = KeyConverter  # before the routes are added, which bind it
    app.register_blueprint(bp)
    # A read waits on nothing but the store's lock: the listener in front runs it on its event loop (serve.py).
    express(app, EXPRESS_PREFIX, "/cache/<path:key>", _express_read(store, leases), prefix=True, blocking=False)
    return app

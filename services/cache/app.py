"""The cache service: a bounded TTL key-value cache over HTTP.

Keys go in the path (``/cache/<key>``, any characters, ``/`` included) or, for keys that
clash with ``/cache/flush`` and ``/cache/stats``, in the query (``/cache?key=flush``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry
from werkzeug.routing import PathConverter

from ..kit import ApiError, ConfigError, Knob, Knobs, create_service_app, json_body, load_config
from .config import CacheConfig
from .store import CacheStore, EntryTooLarge

bp = Blueprint("cache", __name__)


class KeyConverter(PathConverter):
    """Werkzeug's path converter, but a key may also start with ``/`` (``/cache/%2Fa`` is the key ``/a``).

    With the stock converter that URL does not match, and Werkzeug redirects it to ``/cache/a``:
    a client that follows the redirect would store the value under another key.
    """

    regex = ".+?"
    part_isolating = False


def _store() -> CacheStore:
    return current_app.extensions["cache_store"]


def _query_key() -> str:
    key = request.args.get("key")
    if key is None or key == "":
        raise ApiError(400, "give the key in the path (/cache/<key>) or the query (/cache?key=<key>)")
    return key


@bp.get("/cache/stats")
def stats():
    return jsonify(_store().stats())


@bp.post("/cache/flush")
def flush():
    return jsonify({"flushed": _store().flush()})


@bp.get("/cache")
@bp.get("/cache/<path:key>")
def get(key: str | None = None):
    key = _query_key() if key is None else key
    entry = _store().get(key)
    if entry is None:
        return jsonify({"error": f"key {key!r} is not cached (or has expired)", "status": 404, "key": key}), 404
    return jsonify({"key": key, "value": entry.value, "ttl_remaining_seconds": round(_store().remaining(entry), 3)})


@bp.post("/cache")
@bp.post("/cache/<path:key>")
def put(key: str | None = None):
    key = _query_key() if key is None else key
    body = json_body()
    if not isinstance(body, dict) or "value" not in body:
        raise ApiError(400, 'send {"value": <any JSON>, "ttl": <seconds, optional>}')
    ttl = body.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 86_400):
        raise ApiError(400, "ttl must be a number of seconds in (0, 86400]")
    try:
        entry = _store().set(key, body["value"], ttl)
    except EntryTooLarge as exc:
        raise ApiError(
            413,
            f"{exc} (CACHE_MAX_ENTRY_BYTES); store a smaller value",
            size_bytes=exc.size,
            limit_bytes=exc.limit,
        ) from None
    return jsonify({"key": key, "stored": True, "ttl_seconds": entry.ttl}), 201


@bp.delete("/cache")
@bp.delete("/cache/<path:key>")
def delete(key: str | None = None):
    key = _query_key() if key is None else key
    return jsonify({"key": key, "deleted": _store().delete(key)})


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
    knobs = Knobs(
        [
            Knob(
                "default_ttl_seconds",
                float(config.default_ttl_seconds),
                "TTL for entries stored without one.",
                0.001,
                86_400,
            )
        ],
        registry,
    )
    knobs.on_change(lambda _name, value: setattr(store, "default_ttl", value))
    app = create_service_app(
        "cache", config, knobs, registry, health=lambda: {"entries": len(store), "bytes": store.bytes_used()}
    )
    app.extensions["cache_store"] = store
    app.url_map.converters["path"] = KeyConverter  # before the routes are added, which bind it
    app.register_blueprint(bp)
    return app

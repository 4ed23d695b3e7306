"""The balancer's API description: its own routes, plus the gateways' API it passes on.

The balancer's own routes (/health, /metrics, /control, /lb/*) are described and validated with
spectree, as the Flask services' are (services/kit/openapi.py), through :class:`AiohttpPlugin`:
spectree has no aiohttp plugin of its own. Every other path is a gateway's: ``/openapi.json``
adds the paths of a healthy gateway's document (read through the balancer's own upstream
connections, kept for :data:`GATEWAY_DOC_SECONDS`), each with the answers the balancer itself
may give on the way (no gateway, a spent deadline, a foreign Host).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from spectree.plugins.base import BasePlugin, Context
from spectree.utils import get_multidict_items

from ..kit.inputs import parse_json
from ..kit.openapi import ErrorBody, service_api, validation_error

__all__ = ["GATEWAY_DOC_SECONDS", "AiohttpPlugin", "BalancerHealth", "api", "merged", "validated"]

# How long the gateways' document is kept before it is read again (a new version shows up within this).
GATEWAY_DOC_SECONDS = 30.0
# What the balancer itself may answer on a passed-on route, whatever the gateway says.
ON_THE_WAY = {
    "400": "A malformed X-Request-Deadline.",
    "403": "A Host that is not the balancer's, or a state-changing request from another site.",
    "413": "A body over SCALELAB_MAX_BODY_BYTES.",
    "502": "The gateway failed and the request was not safe to send to another.",
    "503": "No healthy gateway.",
    "504": "The deadline (SCALELAB_UPSTREAM_TIMEOUT or the client's X-Request-Deadline) ran out.",
}
CONTEXT = web.RequestKey("scalelab.context", Context)


class AiohttpPlugin(BasePlugin):
    """spectree on aiohttp: routes from the app's router, validation with the kit's rules (see KitFlaskPlugin)."""

    ASYNC = True

    def register_route(self, app: web.Application) -> None:
        # The balancer adds /openapi.json itself, behind its Host and Origin checks, with the gateways' paths.
        self.app = app

    def find_routes(self) -> Iterator[web.AbstractRoute]:
        for route in self.app.router.routes():
            if route.method != "*" and route.resource is not None and route.resource.canonical != "/openapi.json":
                yield route

    def bypass(self, func: Callable[..., Any], method: str) -> bool:
        return method in ("HEAD", "OPTIONS")

    def parse_func(self, route: web.AbstractRoute) -> Iterator[tuple[str, Callable[..., Any]]]:
        yield route.method, route.handler

    def parse_path(self, route: web.AbstractRoute, path_parameter_descriptions: Mapping[str, str] | None):
        assert route.resource is not None
        path = route.resource.canonical
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": (path_parameter_descriptions or {}).get(name, ""),
            }
            for name in re.findall(r"{(\w+)}", path)
        ]
        return path, parameters

    async def validate(
        self,
        func: Callable[..., Awaitable[Any]],
        query: type[BaseModel] | None,
        json: type[BaseModel] | None,
        form: Any,
        headers: Any,
        cookies: Any,
        resp: Any,
        before: Any,
        after: Any,
        validation_error_status: int,
        skip_validation: bool,
        force_resp_serialize: bool,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        request = next(arg for arg in args if isinstance(arg, web.Request))
        if not skip_validation:
            # Bytes rather than request.json(): that decodes with the charset the client names, and an
            # unknown one is a LookupError; json.loads finds UTF-8, -16 or -32 by itself.
            query_part = json_part = None
            if query is not None:
                query_part = _checked(query, get_multidict_items(request.query, query), "query parameter", "parameter")
            if json is not None:
                json_part = _checked(json, parse_json(await request.read()), "body field", "field")
            request[CONTEXT] = Context(query_part, json_part, None, None, None)
        return await func(*args, **kwargs)


def _checked(model: type[BaseModel], raw: Any, where: str, label: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, where, label) from None


def validated(request: web.Request, part: str) -> Any:
    """Return the request's validated ``part`` (``query`` or ``json``)."""
    return getattr(request[CONTEXT], part)


api = service_api(
    "load-balancer",
    "The single entry point: an asyncio reverse proxy in front of the gateways. Its own routes are /health, "
    "/metrics, /control and /lb/*; every other path is passed to a healthy gateway (its routes are listed here "
    "too, read from a gateway's own document).",
    backend=AiohttpPlugin,
)


class BalancerHealth(BaseModel):
    """``GET /health``: the balancer answers, and how many gateways it can send to."""

    status: str
    service: str
    instance: str
    uptime_seconds: float
    healthy_backends: int


def merged(own: dict[str, Any], gateway: dict[str, Any] | None) -> dict[str, Any]:
    """Return the balancer's document: its own paths, then every other path of the gateway's document.

    Each passed-on operation also lists what the balancer itself may answer (:data:`ON_THE_WAY`).
    """
    doc = copy.deepcopy(own)
    if not gateway:
        doc["info"]["description"] += " (No gateway's document could be read just now: its routes are not listed.)"
        return doc
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in gateway.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, schema)
    error = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}}}
    tags = {tag["name"] for tag in doc.get("tags", [])}
    for path, item in gateway.get("paths", {}).items():
        if path in doc["paths"] or path == "/openapi.json":
            continue
        item = copy.deepcopy(item)
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ON_THE_WAY.items():
                operation["responses"].setdefault(status, {"description": description, **error})
            for tag in operation.get("tags", []):
                if tag not in tags:
                    doc.setdefault("tags", []).append({"name": tag})
                    tags.add(tag)
        doc["paths"][path] = item
    return doc


class GatewayDocument:
    """The gateways' document, read from a healthy gateway and kept for :data:`GATEWAY_DOC_SECONDS`."""

    def __init__(self, fetch: Callable[[], Awaitable[bytes | None]], clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._doc: dict[str, Any] | None = None
        self._read_at = -GATEWAY_DOC_SECONDS

    async def get(self) -> dict[str, Any] | None:
        """Return the gateways' document (read again when older than the limit), or None when none answers."""
        if self._doc is None or self._clock() - self._read_at >= GATEWAY_DOC_SECONDS:
            raw = await self._fetch()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("paths"), dict):
                self._doc, self._read_at = doc, self._clock()
        return self._doc

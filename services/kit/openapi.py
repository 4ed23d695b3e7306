"""The HTTP API's description and its validation, from one set of models.

Each service describes its routes with pydantic models through a :class:`spectree.SpecTree`
(:func:`service_api`): the same models validate the request (a wrong type is a 400 naming the
field) and make the OpenAPI 3.1 document the service serves at ``/openapi.json``. Only routes
decorated with ``api.validate`` are documented, and tests/unit/kit/test_openapi.py keeps every
route a service answers in its document.

Two things differ from spectree's own Flask plugin, on purpose:

* the body is read with the kit's :func:`~services.kit.inputs.json_body`: as JSON whatever the
  Content-Type says (the classic scripts and ``curl -d`` send form encoding), and refused with a
  400 when it is nested too deeply, holds NaN or is not JSON at all;
* responses are not validated on the way out: that costs every request, and the test suite
  checks every answer against the document with Schemathesis instead.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Annotated, Any, Literal

from flask import Flask, jsonify, make_response, request
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, WithJsonSchema
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import get_multidict_items

from .errors import ApiError
from .inputs import json_body, shown

__all__ = [
    "ADMIN",
    "KNOBS",
    "TOKEN",
    "ControlChange",
    "ControlView",
    "ErrorBody",
    "Health",
    "KnobChanges",
    "Open",
    "Query",
    "ServiceApi",
    "responses",
    "service_api",
    "validation_error",
    "with_knobs",
]

# Security requirements a route names in ``api.validate(security=...)``.
ADMIN = {"admin": []}
TOKEN = {"token": []}
# Where an app keeps its Knobs, for the document's PUT /control body.
KNOBS = "scalelab_knobs"
# Statuses any route may answer, whatever it does: a foreign Host or a cross-site write (403).
COMMON_ERRORS = (403,)


class Query(BaseModel):
    """Query parameters: an unknown one is a 400 (a typo such as ``?keyy=`` would silently read the default)."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A JSON object that may carry more fields than the ones named."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(Open):
    """Every error: what went wrong and what to do, with the status repeated; some add fields (e.g. ``key``)."""

    error: str = Field(description="What went wrong and what to do about it.")
    status: int = Field(description="The HTTP status, repeated.")


class Health(Open):
    """``GET /health``: the instance answers; ``degraded`` (still 200) says something is wrong, with reasons."""

    status: Literal["ok", "degraded"]
    service: str
    instance: str
    uptime_seconds: float


class KnobView(Open):
    """One runtime knob: its value, type and limits."""

    value: bool | int | float | str
    type: Literal["bool", "int", "float", "str"]
    doc: str


class ControlView(BaseModel):
    """``GET /control``: every knob of this instance."""

    instance: str
    knobs: dict[str, KnobView]


class ControlChange(BaseModel):
    """``PUT /control``: the knobs changed (all or none) and every knob's value now."""

    instance: str
    changed: dict[str, bool | int | float | str]
    knobs: dict[str, bool | int | float | str]


# Any value passes the model: each knob checks its own and says what it takes (services/kit/knobs.py).
KnobValue = Annotated[Any, WithJsonSchema({"type": ["boolean", "number", "string"]})]


class KnobChanges(RootModel[dict[str, KnobValue]]):
    """``PUT /control``: knob names and their new values, e.g. ``{"latency_ms": 200}`` (GET /control lists them)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})


def with_knobs(spec: dict[str, Any], knobs: Any) -> dict[str, Any]:
    """Return ``spec`` with the ``PUT /control`` body naming this instance's knobs as they are now.

    A copy: one process may build several apps of a service (the tests do), each with its own knobs,
    and a pool's weight knobs come and go with its backends.
    """
    if knobs is None:
        return spec
    doc = copy.deepcopy(spec)
    doc["components"]["schemas"][KnobChanges.__name__] = knobs.json_schema()
    return doc


def validation_error(error: ValidationError, where: str, label: str) -> ApiError:
    """Return the 400 for a request part that failed its model: a one-line message naming the first field.

    The field is also in the body under ``label`` (``parameter``, ``field``), as the kit's own 400s
    have it: a script can act on it without parsing text. ``where`` says what it is ("query parameter").
    """
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    extra = {label: field} if field else {}
    if first["type"] == "extra_forbidden":  # most often a typo: say so rather than read the default
        return ApiError(400, f"unknown {where} {field!r}; check its spelling against /openapi.json", **extra)
    got = "" if first["type"] == "missing" else f", not {shown(first.get('input'))}"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    subject = f"{where} {field!r}" if field else f"the {where.split()[0]}"
    return ApiError(400, f"{subject}: {first['msg']}{got}{more}", **extra)


class KitFlaskPlugin(FlaskPlugin):
    """spectree's Flask plugin with the kit's body reading, its 400s, and no response validation."""

    def register_route(self, app: Flask) -> None:
        # Only the document: the HTML pages spectree could add load their scripts from a CDN.
        spec = self.spectree
        app.add_url_rule(
            "/openapi.json",
            "openapi_json",
            lambda: jsonify(with_knobs(spec.spec, app.extensions.get(KNOBS))),
            methods=["GET"],
        )

    def request_validation(self, req: Any, query: Any, json: Any, form: Any, headers: Any, cookies: Any) -> None:
        adapter = self.model_adapter
        parts: dict[str, Any] = {"query": None, "json": None, "headers": None}
        for name, model, where, label, read in (
            ("query", query, "query parameter", "parameter", lambda: get_multidict_items(req.args, query)),
            ("json", json, "body field", "field", json_body),
            ("headers", headers, "header", "header", lambda: dict(req.headers)),
        ):
            if model is None:
                continue
            try:
                parts[name] = adapter.validate_obj(model, read())
            except ValidationError as exc:
                raise validation_error(exc, where, label) from None
        req.context = Context(parts["query"], parts["json"], None, parts["headers"], None)

    def validate_response(self, resp: Any, resp_model: Any, skip_validation: bool, force_resp_serialize: bool):
        return make_response(resp), None


def _header_key(name: str, header: str, description: str) -> SecurityScheme:
    return SecurityScheme(
        name=name, data=SecuritySchemeData(type="apiKey", field_in="header", name=header, description=description)
    )


class ServiceApi(SpecTree):
    """A spectree document with OpenAPI links: what one answer gives that another route takes.

    Links let a client, and Schemathesis's stateful tests, follow e.g. ``POST /task`` to the
    ``GET /task/{task_id}`` of the task it made.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._links: list[tuple[str, str, int, str, str, dict[str, str]]] = []
        self._linked = False

    def link(self, source: str, status: int, target: str, **parameters: str) -> None:
        """Document that a ``status`` answer of ``source`` ("POST /task") feeds ``target`` ("GET /task/{task_id}").

        ``parameters`` map the target's parameters to runtime expressions, e.g.
        ``task_id="$response.body#/task_id"``.
        """
        (method, path), (target_method, target_path) = source.split(" ", 1), target.split(" ", 1)
        self._links.append((method.lower(), path, status, target_method.lower(), target_path, parameters))

    @property
    def spec(self) -> dict[str, Any]:
        spec = super().spec
        if not self._linked:
            paths = spec["paths"]
            for method, path, status, target_method, target_path, parameters in self._links:
                response = paths[path][method]["responses"][str(status)]
                name = f"{target_method.upper()} {target_path}"
                response.setdefault("links", {})[name] = {
                    "operationId": paths[target_path][target_method]["operationId"],
                    "parameters": parameters,
                }
            self._linked = True
        return spec


def service_api(service: str, description: str, backend: type[Any] | None = None) -> ServiceApi:
    """Return the API description of ``service``: decorate its routes with ``.validate`` and pass it to the app.

    ``backend`` is the spectree plugin for the service's framework (default: Flask, with the kit's rules).
    """
    try:
        version = metadata.version("scalelab")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "0"
    return ServiceApi(
        backend=backend or KitFlaskPlugin,
        mode="strict",
        naming_strategy=lambda model: model.__name__,  # readable names; each service's models have unique ones
        title=f"ScaleLab {service}",
        description=description,
        version=version,
        validation_error_status=400,
        validation_error_model=ErrorBody,
        security_schemes=[
            _header_key("admin", "X-Admin-Token", "The stack's admin token (.scalelab/state.json or the .env file)."),
            _header_key("token", "Authorization", "A token from GET /token, bare or as 'Bearer <token>'."),
        ],
    )


def responses(errors: Iterable[int] = (), **models: Any) -> Response:
    """Return a route's documented answers: ``models`` (``HTTP_200=Model``) and ``errors`` with the error body.

    Every route also documents the statuses any route may answer (:data:`COMMON_ERRORS`).
    """
    codes: Mapping[str, Any] = {f"HTTP_{status}": ErrorBody for status in (*errors, *COMMON_ERRORS)}
    return Response(**{**codes, **models})


def validated(part: Literal["query", "json", "headers"]) -> Any:
    """Return the current request's validated ``part`` (the model instance ``api.validate`` made)."""
    return getattr(request.context, part)  # type: ignore[attr-defined]

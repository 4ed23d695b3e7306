"""JSON errors: one exception type that services raise, and handlers that render every error as JSON."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

__all__ = ["INTERNAL_ERROR", "ApiError", "error_body", "register_error_handlers"]

log = logging.getLogger(__name__)

# What a client learns of a crash: the traceback goes to the service's log.
INTERNAL_ERROR = "internal error; see the service log"


class ApiError(Exception):
    """An error with an HTTP status and a message a user can act on.

    ``headers`` go on the response (e.g. ``Retry-After`` with a 429 or 503); ``extra`` fields go in its body.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """Return the JSON body this error is answered with."""
        return error_body(self.status, self.message, **self.extra)


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """Return the JSON body every ScaleLab error uses."""
    return {"error": message, "status": status, **extra}


def register_error_handlers(app: Flask) -> None:
    """Render ApiError, HTTP errors (404, 405, 413, bad JSON ...) and crashes as JSON, never HTML."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(exc.body()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        response = jsonify(error_body(status, exc.description or exc.name))
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response, status

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        # Log the traceback for the operator; the client only learns that it failed.
        log.exception("unhandled error")
        return jsonify(error_body(500, INTERNAL_ERROR)), 500

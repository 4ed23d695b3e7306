"""What a microservice's HTTP API takes and gives: the models behind its /openapi.json."""

from __future__ import annotations

from pydantic import BaseModel

from ..kit.openapi import ErrorBody, responses, service_api

__all__ = ["PROCESS", "Processed", "api"]

api = service_api("microservice", "One microservice instance: /process does a configurable amount of simulated work.")


class Processed(BaseModel):
    """Who did the work."""

    message: str
    service_id: str
    instance: str


class Failed(ErrorBody):
    """An injected error, naming the instance's service id."""

    service_id: str


# A 400 for a malformed X-Request-Deadline, a 503 from the error_rate knob, a 504 when the caller's deadline is first.
PROCESS = {"resp": responses((400, 504), HTTP_200=Processed, HTTP_503=Failed), "tags": ["work"]}

"""The load driver's records: what one answer (or its absence) becomes. Locust itself is not imported here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from scalelab.experiments.driver import _record
from scalelab.experiments.plan import PlannedRequest
from scalelab.experiments.records import Record

PROCESS = PlannedRequest(7, "process", "GET", "/process")
DATA = PlannedRequest(8, "data_hot", "GET", "/data", "hot-1")


@dataclass
class Answer:
    """What Locust's FastResponse offers the driver."""

    status_code: int
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: Any = None

    def json(self) -> Any:
        return json.loads(self.text)


def test_an_answer_names_the_gateway_and_the_instance() -> None:
    body = json.dumps({"service_id": "2", "instance": "microservice-2", "gateway_id": "1"})
    answer = Answer(200, body, {"X-Served-By": "gateway-1"})
    assert _record("v", PROCESS, 100.0, 12.5, answer) == Record(
        "v", 7, 100.0, 12.5, 200, "process", "", "gateway-1", "1", "microservice-2", "2", None, ""
    )


def test_a_data_answer_says_whether_it_was_cached() -> None:
    answer = Answer(200, json.dumps({"cached": True, "gateway_id": "2"}), {"X-Served-By": "gateway-2"})
    record = _record("v", DATA, 100.0, 3.0, answer)
    assert (record.cached, record.key, record.instance) == (True, "hot-1", "")


def test_an_error_answer_keeps_its_message() -> None:
    answer = Answer(503, json.dumps({"error": "no healthy backend in pool 'microservices'", "status": 503}))
    record = _record("v", PROCESS, 100.0, 5.0, answer)
    assert (record.status, record.ok, record.error) == (503, False, "no healthy backend in pool 'microservices'")


def test_no_answer_is_a_lost_request_without_latency() -> None:
    record = _record("v", PROCESS, 100.0, 2000.0, Answer(0, error=ConnectionRefusedError("refused")))
    assert (record.status, record.latency_ms, record.error) == (0, None, "ConnectionRefusedError: refused")


def test_a_body_that_is_not_json_is_not_looked_into() -> None:
    record = _record("v", PROCESS, 100.0, 5.0, Answer(502, "<html>bad gateway</html>"))
    assert (record.status, record.error, record.instance) == (502, "<html>bad gateway</html>", "")

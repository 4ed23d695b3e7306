"""Schemathesis against every service and the balancer: no 5xx, and every answer as the service's /openapi.json says.

The stack is one of its own (fuzzing writes odd keys, records and tasks). Each instance's
document is fuzzed operation by operation with data that fits it and data that does not (which
must get a 4xx); where answers link to other routes (a task's id, a key just stored) the calls
are also chained statefully. The admin routes are fuzzed with the admin token on apps in this
process, so random knob values never slow the stack down. SCALELAB_FUZZ_EXAMPLES sets the
examples per operation (default 50).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ensure_resource_availability

from scalelab import catalog

from .conftest import REQUEST_TIMEOUT, Stack, started_stack

EXAMPLES = int(os.environ.get("SCALELAB_FUZZ_EXAMPLES", "50"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=False
)
# One instance of every lab service; the balancer's document also holds the gateways' routes.
INSTANCES = [catalog.instance_names(svc)[0] for svc in catalog.lab_services()]
TOKEN_SECURITY = [{"token": []}]
ADMIN_SECURITY = [{"admin": []}]
# Admin routes whose random input would reach past this machine: a new backend's URL names any host.
NEVER_WITH_THE_ADMIN_TOKEN = {"POST /pool/backends", "POST /lb/backends"}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def _document(stack: Stack, instance: str) -> Any:
    return schemathesis.openapi.from_url(stack.url(instance) + "/openapi.json")


def _fuzz_each_operation(schema: Any, headers_for: Any) -> list[str]:
    """Run every operation of ``schema`` on fitting and unfitting data; return the failures found."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy)
        @SETTINGS
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers_for(case), timeout=REQUEST_TIMEOUT)

        try:
            run()
        except Exception as exc:  # a FailureGroup naming every distinct failure, with a curl to reproduce it
            failures.append(f"{operation.label}:\n{exc}")
    return failures


def _with_token(token: str) -> Any:
    def headers_for(case: Any) -> dict[str, str] | None:
        # The token in place of the generated one; none where a negative case left the header out.
        wants = case.operation.definition.raw.get("security") == TOKEN_SECURITY
        return {"Authorization": token} if wants and case.headers and "Authorization" in case.headers else None

    return headers_for


@pytest.mark.parametrize("instance", INSTANCES)
def test_no_server_error_and_every_answer_as_documented(fuzz_stack: Stack, instance: str) -> None:
    failures = _fuzz_each_operation(_document(fuzz_stack, instance), _with_token(fuzz_stack.token()))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("instance", ["cache", "database", "worker", "gateway-1", "load-balancer"])
def test_linked_calls_keep_their_promises(fuzz_stack: Stack, instance: str) -> None:
    schema = _document(fuzz_stack, instance)
    token = fuzz_stack.token()

    # A cache may drop an entry at any moment (its TTL, which may be a millisecond, or eviction):
    # "a stored key answers 404 soon after" is its contract, not a fault.
    excluded = [ensure_resource_availability] if instance == "cache" else []

    class Chained(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            secured = case.operation.definition.raw.get("security") == TOKEN_SECURITY
            return {"headers": {"Authorization": token} if secured else {}, "timeout": REQUEST_TIMEOUT}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response, additional_checks=additional_checks, excluded_checks=excluded,
                transport_kwargs=kwargs or None, recorder=getattr(self, "recorder", None),
            )  # fmt: skip

    Chained.run(
        settings=settings(
            max_examples=max(10, EXAMPLES // 2), stateful_step_count=6, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )
    )  # fmt: skip


# ------------------------------------------------------------------ admin routes, in this process


def _apps(tmp_path: Any) -> Iterator[tuple[str, Any]]:
    from services.cache.app import create_app as cache
    from services.database.app import create_app as database
    from services.gateway.app import create_app as gateway
    from services.microservice.app import create_app as microservice
    from services.worker.app import create_app as worker

    common = {"admin_token": "t"}
    yield "cache", cache(common, registry=CollectorRegistry())
    yield "database", database({**common, "path": str(tmp_path / "db.sqlite3")}, registry=CollectorRegistry())
    yield "microservice", microservice(common, registry=CollectorRegistry())
    app = worker({**common, "path": str(tmp_path / "tasks.sqlite3")}, registry=CollectorRegistry())
    yield "worker", app
    app.extensions["task_runner"].stop()
    # Its microservices are the stack's default addresses on 127.0.0.1: probed, never reached beyond.
    app = gateway({**common, "jwt_secret": "s"}, registry=CollectorRegistry())
    yield "gateway", app
    app.extensions["gateway"].microservices.checker.stop()


def test_admin_routes_take_any_input_without_a_server_error(tmp_path) -> None:
    failures = []
    for name, app in _apps(tmp_path):
        schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
        admin_only = schema.include(
            func=lambda ctx: (
                ctx.operation.definition.raw.get("security") == ADMIN_SECURITY
                and ctx.operation.label not in NEVER_WITH_THE_ADMIN_TOKEN
            )
        )
        failures += [
            f"{name} {failure}" for failure in _fuzz_each_operation(admin_only, lambda case: {"X-Admin-Token": "t"})
        ]
    assert not failures, "\n\n".join(failures)


def test_the_balancers_document_lists_the_gateways_routes_and_its_own(fuzz_stack: Stack) -> None:
    balancer = requests.get(fuzz_stack.lb + "/openapi.json", timeout=REQUEST_TIMEOUT).json()
    gateway = requests.get(fuzz_stack.url("gateway-1") + "/openapi.json", timeout=REQUEST_TIMEOUT).json()
    assert {"/lb/status", "/lb/backends", "/health", "/control"} <= set(balancer["paths"])
    assert set(gateway["paths"]) - {"/health", "/metrics", "/control"} <= set(balancer["paths"])
    assert "503" in balancer["paths"]["/data"]["get"]["responses"]  # what the balancer adds on the way

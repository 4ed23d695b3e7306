"""The catalog describes the running services truly: their knobs, limits and defaults, and their pools."""

from __future__ import annotations

import pytest
import requests

from scalelab import catalog

from .conftest import REQUEST_TIMEOUT, Stack


@pytest.mark.parametrize("svc", catalog.lab_services(), ids=lambda s: s.name)
def test_every_catalog_knob_is_one_the_service_has_with_the_same_limits(healthy_stack: Stack, svc) -> None:
    first = catalog.instance_names(svc)[0]
    response = requests.get(
        healthy_stack.url(first) + "/control", headers=healthy_stack.admin(), timeout=REQUEST_TIMEOUT
    )
    assert response.status_code == 200, response.text
    knobs = response.json()["knobs"]
    for knob in svc.knobs:
        assert knob.name in knobs, f"{first} has no knob {knob.name}; it has {sorted(knobs)}"
        served = knobs[knob.name]
        kind = {"switch": "bool", "number": "float", "choice": "str"}[knob.kind]
        assert served["type"] == kind, (knob.name, served)
        if knob.kind == "number":
            assert (served.get("min"), served.get("max")) == (knob.minimum, knob.maximum), knob.name
        if knob.kind == "choice":
            assert tuple(served["choices"]) == knob.choices


@pytest.mark.parametrize(("svc", "pool"), list(catalog.pool_holders()), ids=lambda p: getattr(p, "name", ""))
def test_every_pool_is_where_the_catalog_says(healthy_stack: Stack, svc, pool) -> None:
    holder = catalog.instance_names(catalog.service(pool.holder))[0]
    status = requests.get(
        healthy_stack.url(holder) + pool.status_route, headers=healthy_stack.admin(), timeout=REQUEST_TIMEOUT
    ).json()
    members = {backend["name"] for backend in status["backends"]}
    assert members == set(catalog.instance_names(svc))

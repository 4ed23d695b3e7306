"""Scaling in with `scalelab remove` against real processes: out of rotation, stopped, forgotten, nothing failed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from scalelab.cli.main import cli
from scalelab.orchestrators.local import port_free

from .conftest import REQUEST_TIMEOUT, Stack, started_stack, wait_for
from .load import run_load

LOAD_CLIENTS = 4
LOAD_SECONDS = 3.0


@pytest.fixture(scope="module")
def scaling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own: the tests below change its membership for good."""
    with started_stack(tmp_path_factory.mktemp("scale-in")) as running:
        yield running


def scalelab(stack: Stack, *args: str) -> int:
    return cli(["--run-dir", str(stack.orchestrator.run_dir), *args])


def pool_members(url: str) -> list[str]:
    return [backend["name"] for backend in requests.get(url, timeout=REQUEST_TIMEOUT).json()["backends"]]


def gateway_pools(stack: Stack) -> dict[str, list[str]]:
    """Return each running gateway's microservice pool, by gateway name."""
    return {
        info.name: pool_members(info.url + "/pool/status")
        for info in stack.orchestrator.instances()
        if info.service == "gateway" and info.state == "running"
    }


def has_prometheus(stack: Stack) -> bool:
    return "prometheus" in [info.name for info in stack.orchestrator.instances()]


def scraped_instances(stack: Stack) -> set[str]:
    """Return the instances in the Prometheus targets file (empty when the stack runs without Prometheus)."""
    targets = stack.orchestrator.prometheus_dir / "targets" / "scalelab.json"
    if not targets.exists():
        return set()
    return {group["labels"]["instance"] for group in json.loads(targets.read_text())}


def seen_ids(stack: Stack, path: str, field: str, headers: dict[str, str], n: int = 12) -> set[str]:
    with requests.Session() as session:
        return {session.get(stack.lb + path, headers=headers, timeout=REQUEST_TIMEOUT).json()[field] for _ in range(n)}


def test_a_removed_microservice_leaves_every_pool_with_no_failed_request(
    scaling: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scalelab(scaling, "add", "microservice") == 0
    port = scaling.orchestrator.get("microservice-4").port
    headers = scaling.auth()
    wait_for(lambda: "4" in seen_ids(scaling, "/process", "service_id", headers))
    if has_prometheus(scaling):
        assert "microservice-4" in scraped_instances(scaling)
    capsys.readouterr()

    codes: list[int] = []
    result = run_load(
        scaling.lb + "/process",
        headers,
        LOAD_CLIENTS,
        LOAD_SECONDS,
        lambda: codes.append(scalelab(scaling, "remove", "microservice-4")),
        "service_id",
    )
    assert codes == [0], capsys.readouterr().err
    assert "removed microservice-4" in capsys.readouterr().out
    assert result.failed == 0, result.errors[:5]
    assert result.served_by["4"] > 0, result.served_by  # it took traffic until it was removed
    assert result.total > 100, result.total

    expected = ["microservice-1", "microservice-2", "microservice-3"]
    assert gateway_pools(scaling) == {"gateway-1": expected, "gateway-2": expected}
    assert "4" not in seen_ids(scaling, "/process", "service_id", headers, n=30)
    assert "microservice-4" not in [info.name for info in scaling.orchestrator.instances()]
    assert "microservice-4" not in scraped_instances(scaling)
    assert port_free(port)


def test_a_removed_gateway_leaves_the_balancer_with_no_failed_request(
    scaling: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scalelab(scaling, "add", "gateway") == 0
    port = scaling.orchestrator.get("gateway-3").port
    headers = scaling.auth()
    wait_for(lambda: "3" in seen_ids(scaling, "/data", "gateway_id", headers))
    capsys.readouterr()

    codes: list[int] = []
    result = run_load(
        scaling.lb + "/data",
        headers,
        LOAD_CLIENTS,
        LOAD_SECONDS,
        lambda: codes.append(scalelab(scaling, "remove", "gateway-3")),
        "gateway_id",
    )
    assert codes == [0], capsys.readouterr().err
    assert "removed gateway-3" in capsys.readouterr().out
    assert result.failed == 0, result.errors[:5]
    assert result.served_by["3"] > 0, result.served_by
    assert pool_members(scaling.lb + "/lb/status") == ["gateway-1", "gateway-2"]
    assert seen_ids(scaling, "/data", "gateway_id", headers, n=20) == {"1", "2"}
    assert port_free(port)


def test_the_last_running_microservice_is_not_removed(scaling: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert scalelab(scaling, "kill", "microservice-2") == 0
    assert scalelab(scaling, "remove", "microservice-1") == 0
    capsys.readouterr()
    # microservice-3 is now the only one running.
    assert scalelab(scaling, "remove", "microservice-3") == 1
    err = capsys.readouterr().err
    assert "cannot remove microservice-3: it is the last running microservice" in err
    assert "scalelab add microservice" in err
    assert scaling.orchestrator.get("microservice-3").state == "running"
    # A stopped one can go: microservice-3 keeps running.
    assert scalelab(scaling, "remove", "microservice-2") == 0
    assert gateway_pools(scaling) == {"gateway-1": ["microservice-3"], "gateway-2": ["microservice-3"]}
    assert seen_ids(scaling, "/process", "service_id", scaling.auth(), n=6) == {"3"}
    # Gateways scale in by the same rules: not a cache, and not the last running gateway.
    assert scalelab(scaling, "remove", "cache") == 1
    assert "only microservice and gateway instances scale in" in capsys.readouterr().err
    assert scalelab(scaling, "remove", "gateway-1") == 0
    assert scalelab(scaling, "remove", "gateway-2") == 1
    assert "last running gateway" in capsys.readouterr().err
    assert requests.get(scaling.lb + "/process", headers=scaling.auth(), timeout=REQUEST_TIMEOUT).status_code == 200

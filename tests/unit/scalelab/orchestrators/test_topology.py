"""The stack's topology: instance names, classic ports, environments and start order."""

from __future__ import annotations

import pytest

from scalelab.topology import Secrets, default_topology, index_of, service_of, start_order

SECRETS = Secrets(jwt_secret="j" * 64, admin_token="admin-token")
CLASSIC_PORTS = {
    "load-balancer": 8000,
    "gateway-1": 5000,
    "gateway-2": 5003,
    "cache": 5004,
    "database": 5002,
    "microservice-1": 5001,
    "microservice-2": 5006,
    "microservice-3": 5007,
    "worker": 5005,
}


@pytest.fixture
def specs(tmp_path):
    return {spec.name: spec for spec in default_topology(SECRETS, tmp_path)}


def test_nine_instances_on_the_classic_ports(specs):
    assert {name: spec.port for name, spec in specs.items()} == CLASSIC_PORTS


def test_each_instance_knows_its_service(specs):
    assert {name: spec.service for name, spec in specs.items()} == {
        "load-balancer": "load-balancer",
        "gateway-1": "gateway",
        "gateway-2": "gateway",
        "cache": "cache",
        "database": "database",
        "microservice-1": "microservice",
        "microservice-2": "microservice",
        "microservice-3": "microservice",
        "worker": "worker",
    }


def test_port_offset_moves_every_port_and_every_url(tmp_path):
    specs = {spec.name: spec for spec in default_topology(SECRETS, tmp_path, port_offset=100)}
    assert {name: spec.port for name, spec in specs.items()} == {n: p + 100 for n, p in CLASSIC_PORTS.items()}
    gateway = specs["gateway-1"].env
    assert gateway["GATEWAY_PORT"] == "5100"
    assert gateway["GATEWAY_CACHE_URL"] == "http://127.0.0.1:5104"
    assert gateway["GATEWAY_DATABASE_URL"] == "http://127.0.0.1:5102"
    assert gateway["GATEWAY_WORKER_URL"] == "http://127.0.0.1:5105"
    assert "microservice-2=http://127.0.0.1:5106" in gateway["GATEWAY_MICROSERVICES"]
    assert specs["load-balancer"].env["BALANCER_PORT"] == "8100"


def test_every_instance_binds_locally_with_its_name_and_the_admin_token(specs):
    for name, spec in specs.items():
        assert spec.env["SCALELAB_INSTANCE"] == name
        assert spec.env["SCALELAB_BIND"] == "127.0.0.1"
        assert spec.env["SCALELAB_ADMIN_TOKEN"] == "admin-token"


def test_gateway_environment(specs):
    env = specs["gateway-2"].env
    assert env["GATEWAY_ID"] == "2"
    assert specs["gateway-1"].env["GATEWAY_ID"] == "1"
    assert env["GATEWAY_PORT"] == "5003"
    assert env["SCALELAB_JWT_SECRET"] == SECRETS.jwt_secret
    assert env["GATEWAY_CACHE_URL"] == "http://127.0.0.1:5004"
    assert env["GATEWAY_DATABASE_URL"] == "http://127.0.0.1:5002"
    assert env["GATEWAY_WORKER_URL"] == "http://127.0.0.1:5005"
    assert env["GATEWAY_MICROSERVICES"].split(",") == [
        "microservice-1=http://127.0.0.1:5001",
        "microservice-2=http://127.0.0.1:5006",
        "microservice-3=http://127.0.0.1:5007",
    ]


def test_only_gateways_get_the_jwt_secret(specs):
    holders = {name for name, spec in specs.items() if "SCALELAB_JWT_SECRET" in spec.env}
    assert holders == {"gateway-1", "gateway-2"}


def test_load_balancer_lists_the_gateways(specs):
    assert specs["load-balancer"].env["BALANCER_BACKENDS"].split(",") == [
        "gateway-1=http://127.0.0.1:5000",
        "gateway-2=http://127.0.0.1:5003",
    ]


def test_microservices_get_their_id_and_port(specs):
    for number, port in (("1", 5001), ("2", 5006), ("3", 5007)):
        env = specs[f"microservice-{number}"].env
        assert env["MICROSERVICE_ID"] == number
        assert env["MICROSERVICE_PORT"] == str(port)


def test_stateful_services_keep_their_files_in_the_data_dir(specs, tmp_path):
    assert specs["database"].env["DATABASE_PATH"] == str(tmp_path / "database.sqlite3")
    assert specs["worker"].env["WORKER_QUEUE_PATH"] == str(tmp_path / "tasks.sqlite3")
    assert specs["cache"].env["CACHE_PORT"] == "5004"


def test_start_order_puts_dependencies_first(tmp_path):
    order = [spec.name for spec in default_topology(SECRETS, tmp_path)]
    position = {name: index for index, name in enumerate(order)}
    for gateway in ("gateway-1", "gateway-2"):
        for dependency in ("cache", "database", "worker", "microservice-1", "microservice-2", "microservice-3"):
            assert position[dependency] < position[gateway]
        assert position[gateway] < position["load-balancer"]
    assert order[-1] == "load-balancer"
    services = [spec.service for spec in default_topology(SECRETS, tmp_path)]
    assert services == sorted(services, key=start_order().index)


@pytest.mark.parametrize(
    ("name", "service", "index"),
    [("gateway-2", "gateway", "2"), ("microservice-12", "microservice", "12"), ("load-balancer", "load-balancer", "")],
)
def test_service_and_index_of_an_instance_name(name, service, index):
    assert service_of(name) == service
    if index:
        assert index_of(name) == index

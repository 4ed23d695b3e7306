"""DNS discovery: the pool follows what a name resolves to, named by what each backend reports on /health."""

from __future__ import annotations

import http.server
import json

import pytest
from prometheus_client import CollectorRegistry

from services.kit.config import ConfigError
from services.kit.discovery import DnsDiscovery, DnsTarget, identify, resolve
from services.kit.knobs import Knobs
from services.kit.settings import PoolSettings
from services.kit.tier import BalancedTier

from ..support import InThread

TARGET = DnsTarget("tasks.gateway", 5000)


class Records:
    """The answers a DNS server gives for the name, changed by the test as a swarm would change them."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = set(addresses)
        self.failing = False

    def __call__(self, target: DnsTarget) -> set[str]:
        if self.failing:
            raise OSError("Temporary failure in name resolution")
        return set(self.addresses)


def _names(**by_address: str):  # the instance name each address reports on /health
    return lambda url: by_address[url.removeprefix("http://").rpartition(":")[0].strip("[]").replace(".", "_")]


def _discovery(records: Records, names) -> tuple[BalancedTier, DnsDiscovery]:
    registry = CollectorRegistry()
    tier = BalancedTier("gateways", [], PoolSettings(), Knobs([], registry), registry, probe=lambda b, p: None)
    discovery = DnsDiscovery(
        tier, TARGET, 1.0, lambda name, last: tier.remove_backend(name, allow_last=last), records, names
    )
    return tier, discovery


def _pool(tier: BalancedTier) -> dict[str, str]:
    return {backend.name: backend.url for backend in tier.pool.backends()}


def test_each_address_becomes_a_backend_named_as_it_reports():
    records = Records("10.0.1.5", "10.0.1.6")
    tier, discovery = _discovery(records, _names(**{"10_0_1_5": "gateway-1", "10_0_1_6": "gateway-2"}))
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.5:5000", "gateway-2": "http://10.0.1.6:5000"}


def test_a_new_record_is_added_and_a_vanished_one_taken_out():
    records = Records("10.0.1.5", "10.0.1.6")
    names = _names(**{"10_0_1_5": "gateway-1", "10_0_1_6": "gateway-2", "10_0_1_7": "gateway-3"})
    tier, discovery = _discovery(records, names)
    discovery.sync()
    records.addresses = {"10.0.1.5", "10.0.1.7"}  # scaled: slot 3 came, slot 2 went
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.5:5000", "gateway-3": "http://10.0.1.7:5000"}
    assert "weight.gateway-2" not in tier.knobs and "weight.gateway-3" in tier.knobs


def test_the_last_backend_stays_when_its_record_vanishes_and_health_checks_judge_it():
    records = Records("10.0.1.5")
    tier, discovery = _discovery(records, _names(**{"10_0_1_5": "gateway-1"}))
    discovery.sync()
    records.addresses = set()
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.5:5000"}


def test_a_slot_back_on_a_new_address_replaces_the_old_backend_even_the_last():
    records = Records("10.0.1.5")
    names = _names(**{"10_0_1_5": "gateway-1", "10_0_1_9": "gateway-1"})
    tier, discovery = _discovery(records, names)
    discovery.sync()
    records.addresses = {"10.0.1.5", "10.0.1.9"}  # the crashed task's record lingers while its successor runs
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.9:5000"}
    records.addresses = {"10.0.1.9"}
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.9:5000"}


def test_a_failed_lookup_keeps_the_pool_as_it_is():
    records = Records("10.0.1.5", "10.0.1.6")
    tier, discovery = _discovery(records, _names(**{"10_0_1_5": "gateway-1", "10_0_1_6": "gateway-2"}))
    discovery.sync()
    records.failing = True
    discovery.sync()
    assert set(_pool(tier)) == {"gateway-1", "gateway-2"}


def test_an_address_not_answering_yet_is_tried_again_next_round():
    records = Records("10.0.1.5")
    answering = {"10_0_1_5": None}

    def names(url: str) -> str:
        if answering["10_0_1_5"] is None:
            raise ConnectionRefusedError("connection refused")
        return answering["10_0_1_5"]

    tier, discovery = _discovery(records, names)
    discovery.sync()
    assert _pool(tier) == {}
    answering["10_0_1_5"] = "gateway-1"
    discovery.sync()
    assert _pool(tier) == {"gateway-1": "http://10.0.1.5:5000"}


def test_ipv6_records_get_bracketed_urls():
    assert DnsTarget("gateway", 5000).url("fd00::5") == "http://[fd00::5]:5000"


@pytest.mark.parametrize("text", ["tasks.gateway", ":5000", "tasks.gateway:", "gateway:http", "gateway:70000"])
def test_a_target_that_is_not_host_and_port_is_a_config_error_naming_the_variable(text):
    with pytest.raises(ConfigError, match="BALANCER_DISCOVER"):
        DnsTarget.parse(text, "BALANCER_DISCOVER")


def test_resolve_asks_the_system_resolver():
    assert "127.0.0.1" in resolve(DnsTarget("localhost", 5000)) or "::1" in resolve(DnsTarget("localhost", 5000))


def _health_server(body: dict) -> InThread:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return InThread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health))


def test_identify_reads_the_instance_name_from_health():
    server = _health_server({"status": "ok", "instance": "gateway-7"})
    try:
        assert identify(server.url) == "gateway-7"
    finally:
        server.stop()


def test_identify_refuses_a_name_a_pool_cannot_use():
    server = _health_server({"status": "ok", "instance": "gateway 7/../"})
    try:
        with pytest.raises(ValueError, match="no usable instance"):
            identify(server.url)
    finally:
        server.stop()

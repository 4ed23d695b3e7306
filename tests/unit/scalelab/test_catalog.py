"""The catalog is the one description of the stack: it agrees with the services, and everything derives from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scalelab import catalog
from scalelab.catalog import Knob, Pool, Service
from scalelab.generate import compose, scrape
from scalelab.topology import Secrets, default_topology
from services.__main__ import config_class_of, service_packages
from services.gateway.cache_aside import COALESCING
from services.kit.algorithms import ALGORITHMS
from services.kit.config import describe_config
from services.kit.shedding import MODES as SHEDDING

SECRETS = Secrets(jwt_secret="j" * 64, admin_token="admin-token")


def test_the_catalog_is_consistent() -> None:
    catalog.check()


def test_the_catalog_names_every_service_folder_and_nothing_else() -> None:
    assert sorted(svc.package for svc in catalog.lab_services()) == service_packages()


@pytest.mark.parametrize("svc", catalog.lab_services(), ids=lambda s: s.name)
def test_each_service_reads_its_port_where_the_catalog_says_with_the_classic_default(svc: Service) -> None:
    config = config_class_of(svc.package)
    assert config.__name__ == svc.config_class
    settings = {env: default for env, default, _doc in describe_config(config)}
    assert svc.port_env in settings
    # A service run on its own (python -m services PACKAGE) listens on its first classic port.
    assert settings[svc.port_env] == svc.ports[0]
    for variable in (*svc.links, *svc.data_files, *([svc.id_env] if svc.id_env else [])):
        assert variable in settings, f"{svc.config_class} reads no {variable}"
    # Run on their own, the services find each other where the catalog puts them.
    for variable, target in svc.links.items():
        assert settings[variable] == f"http://127.0.0.1:{catalog.service(target).ports[0]}", variable
    for balanced, pool in catalog.pool_holders():
        if pool.holder == svc.name:
            assert pool.members_env in settings, f"{svc.config_class} reads no {pool.members_env}"
            assert settings.get(pool.discover_env) == "", f"{svc.config_class} reads no {pool.discover_env}"
            members = dict(zip(catalog.instance_names(balanced), balanced.ports, strict=True))
            assert settings[pool.members_env] == [f"{name}=http://127.0.0.1:{port}" for name, port in members.items()]


def test_the_algorithm_choices_are_the_kits() -> None:
    assert tuple(ALGORITHMS) == catalog.ALGORITHMS


def test_the_coalescing_settings_are_the_gateways_own():
    assert COALESCING == catalog.COALESCING == catalog.find_knob("gateway", "coalescing").choices
    assert SHEDDING == catalog.SHEDDING == catalog.find_knob("gateway", "shedding").choices
    knob = catalog.find_knob("gateway", "coalescing")
    assert (knob.coerce(False), knob.coerce(True)) == ("off", "per_gateway")  # what the switch's values meant


def test_the_classic_ports_are_kept() -> None:
    assert catalog.standard_ports() == {
        "database": 5002,
        "cache": 5004,
        "worker": 5005,
        "microservice-1": 5001,
        "microservice-2": 5006,
        "microservice-3": 5007,
        "gateway-1": 5000,
        "gateway-2": 5003,
        "load-balancer": 8000,
    }


def test_an_unknown_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(catalog.CatalogError, match="no service named 'nosuch'; the stack has database, cache"):
        catalog.service("nosuch")
    with pytest.raises(catalog.CatalogError, match="gateway has no knob 'nosuch'; known: cache_enabled"):
        catalog.find_knob("gateway", "nosuch")


def test_a_contradiction_is_found() -> None:
    late = (catalog.service("gateway"), *catalog.SERVICES)
    with pytest.raises(catalog.CatalogError, match="gateway depends on 'cache', which is not listed before it"):
        catalog.check(late)
    clash = (*catalog.SERVICES, Service("extra", "service", (5000,), "x"))
    with pytest.raises(catalog.CatalogError, match="both use port 5000"):
        catalog.check(clash)


# ---------------------------------------------------------------------------- one new entry, seen everywhere

SEARCH = Service(
    "search",
    "service",
    (5150, 5151),
    "Data and async",
    package="search",
    config_class="SearchConfig",
    port_env="SEARCH_PORT",
    id_env="SEARCH_ID",
    threads=8,
    depends_on=("database",),
    links={"SEARCH_DATABASE_URL": "database"},
    scales=True,
    max_instances=4,
    pool=Pool("gateway", "searchers", "/pool/status", "/pool/backends", "GATEWAY_SEARCHERS"),
    knobs=(Knob("latency_ms", "number", 5.0, "Search latency", "ms", 0, 1000, 5),),
)


@pytest.fixture
def with_search(monkeypatch: pytest.MonkeyPatch) -> Service:
    """The catalog with a throw-away service, just before the gateways (which balance it)."""
    services = list(catalog.SERVICES)
    services.insert(services.index(catalog.service("gateway")), SEARCH)
    monkeypatch.setattr(catalog, "SERVICES", tuple(services))
    catalog.check()
    return SEARCH


def test_the_launcher_starts_a_new_service(with_search: Service, tmp_path: Path) -> None:
    specs = {spec.name: spec for spec in default_topology(SECRETS, tmp_path)}
    assert [specs[name].port for name in ("search-1", "search-2")] == [5150, 5151]
    env = specs["search-2"].env
    assert env["SCALELAB_SERVICE"] == "search"
    assert (env["SEARCH_PORT"], env["SEARCH_ID"], env["SCALELAB_THREADS"]) == ("5151", "2", "8")
    assert env["SEARCH_DATABASE_URL"] == "http://127.0.0.1:5002"
    # The gateways hold its pool: they start with both instances as members.
    assert (
        specs["gateway-1"].env["GATEWAY_SEARCHERS"] == "search-1=http://127.0.0.1:5150,search-2=http://127.0.0.1:5151"
    )
    order = [spec.name for spec in default_topology(SECRETS, tmp_path)]
    assert order.index("database") < order.index("search-1") < order.index("gateway-1")


def test_compose_runs_a_new_service(with_search: Service) -> None:
    services = compose.compose_document()["services"]
    search = services["search-1"]
    assert search["image"] == compose.SERVICES_IMAGE
    assert search["environment"]["SEARCH_DATABASE_URL"] == "http://database:5002"
    assert search["environment"]["SCALELAB_HEALTH_PORT"] == "5150"
    assert search["depends_on"] == {"database": {"condition": "service_healthy"}}
    assert "search-1=http://search-1:5150" in services["gateway-2"]["environment"]["GATEWAY_SEARCHERS"]
    assert "ports" not in search  # not published unless the catalog says so


def test_prometheus_scrapes_a_new_service(with_search: Service) -> None:
    targets = {name: (service, address) for name, service, address in scrape.compose_instances()}
    assert targets["search-1"] == ("search", "search-1:5150")
    assert targets["search-2"] == ("search", "search-2:5151")


def test_a_new_service_scales_and_fails_over(with_search: Service) -> None:
    from scalelab import failover

    assert "search" in catalog.scalable()
    assert failover.balanced("search-3")
    assert failover.holder_of("search-3") == "gateway"


def test_catalog_fields_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.service("gateway").ports = (1,)  # type: ignore[misc]


def test_the_page_shows_a_new_service(with_search: Service) -> None:

    from dash import html

    from dashboard.lab import page_knobs
    from dashboard.panels import topology
    from scalelab.stack import Tile

    rows = dict(topology.tiers())
    assert "search" in rows["Data and async"]
    tile = Tile("search-1", "search", "http://127.0.0.1:5150", "healthy", "running")
    drawn = json.dumps(topology._rows([tile]), cls=_ComponentEncoder)
    assert '"search-1"' in drawn and '"kill"' in drawn  # its tile, with its buttons
    scale = json.dumps(topology.card(), cls=_ComponentEncoder)
    assert '"service": "search", "direction": "out"' in scale  # it scales: + add / - remove
    knobs = page_knobs()
    assert knobs["search__latency_ms"].label == "Search latency (ms)"
    assert isinstance(topology.tile_card(tile), html.Div)


class _ComponentEncoder(json.JSONEncoder):
    """Dash components as the JSON the browser receives."""

    def default(self, o: object) -> object:
        return o.to_plotly_json() if hasattr(o, "to_plotly_json") else super().default(o)

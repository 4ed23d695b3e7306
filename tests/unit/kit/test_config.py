"""Configuration: defaults, then the environment, then overrides; parse errors name the variable."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.kit.config import ConfigError, describe_config, load_config, setting
from services.kit.settings import PoolSettings, ServiceSettings, parse_backends


@dataclass
class DemoConfig:
    port: int = setting(5000, "DEMO_PORT", "Port.")
    ratio: float = setting(0.5, "DEMO_RATIO", "A ratio.")
    enabled: bool = setting(True, "DEMO_ENABLED", "On or off.")
    name: str = setting("demo", "DEMO_NAME", "A name.")
    members: list[str] = setting(["a=http://127.0.0.1:1"], "DEMO_MEMBERS", "Comma separated.")


def test_defaults_without_environment():
    config = load_config(DemoConfig, environ={})
    assert config == DemoConfig(5000, 0.5, True, "demo", ["a=http://127.0.0.1:1"])


def test_environment_values_are_parsed_by_type():
    config = load_config(
        DemoConfig,
        environ={
            "DEMO_PORT": "6001",
            "DEMO_RATIO": "0.25",
            "DEMO_ENABLED": "off",
            "DEMO_NAME": "from-env",
            "DEMO_MEMBERS": "x=http://127.0.0.1:2, y=http://127.0.0.1:3",
        },
    )
    assert config.port == 6001
    assert config.ratio == 0.25
    assert config.enabled is False
    assert config.name == "from-env"
    assert config.members == ["x=http://127.0.0.1:2", "y=http://127.0.0.1:3"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" On ", True), ("0", False), ("False", False), ("no", False)],
)
def test_bool_spellings(raw, expected):
    assert load_config(DemoConfig, environ={"DEMO_ENABLED": raw}).enabled is expected


def test_list_parsing_drops_blanks_and_spaces():
    config = load_config(DemoConfig, environ={"DEMO_MEMBERS": " a , ,b,, c "})
    assert config.members == ["a", "b", "c"]


def test_empty_environment_value_keeps_the_default():
    config = load_config(DemoConfig, environ={"DEMO_PORT": "", "DEMO_NAME": ""})
    assert (config.port, config.name) == (5000, "demo")


def test_overrides_win_over_environment():
    config = load_config(DemoConfig, {"port": 7000, "members": []}, environ={"DEMO_PORT": "6001", "DEMO_MEMBERS": "z"})
    assert config.port == 7000
    assert config.members == []


def test_overrides_are_not_parsed_again():
    # an override is already a Python value: a bad environment value for the same field is never read
    assert load_config(DemoConfig, {"port": 1}, environ={"DEMO_PORT": "not-a-number"}).port == 1


@pytest.mark.parametrize(
    ("env", "raw"),
    [("DEMO_PORT", "50x"), ("DEMO_PORT", "5.5"), ("DEMO_RATIO", "half"), ("DEMO_ENABLED", "maybe")],
)
def test_unparsable_value_is_a_config_error_naming_the_variable(env, raw):
    with pytest.raises(ConfigError, match=rf"{env}='{raw}' is not a valid"):
        load_config(DemoConfig, environ={env: raw})


def test_unknown_override_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown setting.*DemoConfig: colour, size"):
        load_config(DemoConfig, {"size": 1, "colour": "red", "port": 1}, environ={})


def test_list_default_is_not_shared_between_configs():
    first = load_config(DemoConfig, environ={})
    first.members.append("b=http://127.0.0.1:9")
    second = load_config(DemoConfig, environ={})
    assert second.members == ["a=http://127.0.0.1:1"]


def test_environment_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("DEMO_NAME", "from-os-environ")
    assert load_config(DemoConfig).name == "from-os-environ"


def test_describe_config_lists_env_default_and_doc():
    rows = describe_config(DemoConfig)
    assert rows[0] == ("DEMO_PORT", 5000, "Port.")
    assert rows[-1] == ("DEMO_MEMBERS", ["a=http://127.0.0.1:1"], "Comma separated.")
    assert len(rows) == 5


# ------------------------------------------------------------------ shared settings


def test_service_settings_defaults():
    settings = load_config(ServiceSettings, environ={})
    assert settings.host == "0.0.0.0"
    assert settings.admin_token == ""
    assert settings.max_body_bytes == 1_048_576


def test_pool_settings_make_a_health_policy():
    settings = load_config(
        PoolSettings,
        environ={
            "SCALELAB_HEALTH_INTERVAL": "0.5",
            "SCALELAB_HEALTH_TIMEOUT": "0.1",
            "SCALELAB_HEALTH_FALL": "4",
            "SCALELAB_HEALTH_RISE": "3",
        },
    )
    policy = settings.health_policy()
    assert (policy.interval, policy.timeout, policy.fall, policy.rise) == (0.5, 0.1, 4, 3)


# ------------------------------------------------------------------ parse_backends


def test_parse_backends():
    assert parse_backends([" ms-1 = http://127.0.0.1:5001 ", "ms-2=http://127.0.0.1:5006"], "ENV") == [
        ("ms-1", "http://127.0.0.1:5001"),
        ("ms-2", "http://127.0.0.1:5006"),
    ]
    assert parse_backends([], "ENV") == []


@pytest.mark.parametrize(
    "entry",
    ["http://127.0.0.1:5001", "=http://127.0.0.1:5001", "ms-1=", "ms-1=127.0.0.1:5001", "ms-1=https://h:1"],
)
def test_parse_backends_refuses_bad_entries_naming_the_variable(entry):
    with pytest.raises(ConfigError, match=r"GATEWAY_MICROSERVICES: expected name=http://host:port"):
        parse_backends([entry], "GATEWAY_MICROSERVICES")

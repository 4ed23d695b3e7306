"""The Host and Origin decisions every service shares (pure functions of header values)."""

from __future__ import annotations

import pytest

from services.kit.origin import (
    ALLOWED_HOSTS_ENV,
    ANY_HOST,
    LOCAL_HOSTS,
    allowed_hosts,
    host_allowed,
    host_name,
    host_refusal,
    origin_allowed,
    origin_refusal,
    refusal,
)

GATEWAY = allowed_hosts("gateway-2")
LAB_ROOM = allowed_hosts("gateway-2", ["lab.example", "10.0.0.5:8000", "[FD00::5]"])
OPEN = allowed_hosts("gateway-2", [ANY_HOST])


class Headers(dict):
    """A case-insensitive header mapping, as Flask and aiohttp hand them over."""

    def __init__(self, **headers: str) -> None:
        super().__init__({name.lower(): value for name, value in headers.items()})

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


# ------------------------------------------------------------------ the allowed set


def test_the_default_set_is_this_machine_and_the_instance_name():
    assert allowed_hosts("gateway-2") == LOCAL_HOSTS | {"gateway-2"}
    assert allowed_hosts() == LOCAL_HOSTS
    assert allowed_hosts("  ") == LOCAL_HOSTS


def test_extra_hosts_are_read_without_port_case_or_blanks():
    assert allowed_hosts("gateway-2", ["lab.example", "10.0.0.5:8000", "[FD00::5]"]) == GATEWAY | {
        "lab.example",
        "10.0.0.5",
        "[fd00::5]",
    }
    assert allowed_hosts("", [" Lab.Example ", "", "lab.example."]) == LOCAL_HOSTS | {"lab.example"}
    assert ANY_HOST in OPEN


@pytest.mark.parametrize(
    "entry", ["http://lab.example", "lab.example/path", "user@lab.example", "::1", "[::1", "lab.example:x", "*.example"]
)
def test_an_entry_that_is_not_a_host_name_is_refused_naming_the_setting(entry):
    with pytest.raises(ValueError, match=ALLOWED_HOSTS_ENV):
        allowed_hosts("gateway-2", [entry])


# ------------------------------------------------------------------ Host


@pytest.mark.parametrize(
    ("authority", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8000", "localhost"),
        ("localhost.:8000", "localhost"),
        ("127.0.0.1:5000", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8000", "[::1]"),
        ("host:", "host"),
        ("", None),
        (":8000", None),
        ("host:80x", None),
        ("host:²", None),  # str.isdigit() says yes; it is no port
        ("[::1", None),
        ("[::1]x", None),
        ("::1", None),
    ],
)
def test_host_name(authority, name):
    assert host_name(authority) == name


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:5003", "[::1]", "[::1]:8000",
     "gateway-2", "gateway-2:5003"],
)  # fmt: skip
def test_the_services_own_names_are_allowed_with_or_without_a_port(host):
    assert host_allowed(host, GATEWAY)


@pytest.mark.parametrize(
    "host",
    [None, "", "evil.example", "evil.example:8000", "localhost.evil.example", "gateway-1", "127.0.0.2", "0.0.0.0",
     "[::2]", "::1", "localhost:abc", "localhost:8000:9000", "evil@localhost", "gateway-2 "],
)  # fmt: skip
def test_any_other_host_is_refused(host):
    assert not host_allowed(host, GATEWAY)


def test_listed_hosts_are_allowed_and_a_star_allows_every_one():
    assert host_allowed("lab.example:8000", LAB_ROOM)
    assert host_allowed("10.0.0.5", LAB_ROOM)
    assert host_allowed("[fd00::5]:8000", LAB_ROOM)
    assert not host_allowed("evil.example", LAB_ROOM)
    assert host_allowed("evil.example", OPEN)
    assert host_allowed(None, OPEN)


# ------------------------------------------------------------------ Origin and Referer


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_may_come_from_anywhere(method):
    assert origin_allowed(method, "http://evil.example", None, GATEWAY)
    assert origin_allowed(method, "null", None, GATEWAY)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PURGE"])
def test_a_state_changing_request_with_no_origin_is_allowed(method):
    assert origin_allowed(method, None, None, GATEWAY)  # curl, the scripts, the services
    assert origin_allowed(method, "", "", GATEWAY)


@pytest.mark.parametrize(
    ("origin", "referer"),
    [
        ("http://localhost:8050", None),
        ("https://127.0.0.1", None),
        ("http://[::1]:8050", None),
        ("http://gateway-2:5003", None),
        ("HTTP://LOCALHOST:8050", None),
        (None, "http://localhost:8050/page?x=1#y"),
        ("", "http://127.0.0.1:8050"),
        ("http://localhost:8050", "http://evil.example/"),  # the Origin decides when there is one
    ],
)
def test_a_state_changing_request_from_our_own_hosts_is_allowed(origin, referer):
    assert origin_allowed("POST", origin, referer, GATEWAY)


@pytest.mark.parametrize(
    ("origin", "referer"),
    [
        ("http://evil.example", None),
        ("https://evil.example:8000", None),
        ("http://localhost.evil.example", None),
        ("http://localhost@evil.example", None),
        ("http://evil.example@localhost", None),
        ("null", None),
        ("null", "http://localhost:8050/"),
        ("file://", None),
        ("chrome-extension://abcdef", None),
        ("localhost", None),
        ("http://localhost:80x", None),
        (None, "http://evil.example/page"),
        (None, "https://evil.example"),
        (None, "about:blank"),
    ],
)
def test_a_state_changing_request_from_another_site_is_refused(origin, referer):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert not origin_allowed(method, origin, referer, GATEWAY)


def test_listed_origins_are_allowed_and_a_star_allows_every_host_but_null():
    assert origin_allowed("POST", "https://lab.example", None, LAB_ROOM)
    assert not origin_allowed("POST", "https://evil.example", None, LAB_ROOM)
    assert origin_allowed("POST", "https://evil.example", None, OPEN)
    assert not origin_allowed("POST", "null", None, OPEN)


# ------------------------------------------------------------------ messages and the one-call check


def test_the_refusals_say_what_is_wrong_and_what_to_do():
    message = host_refusal("evil.example:8000", GATEWAY)
    assert "'evil.example:8000'" in message
    assert "gateway-2" in message and "localhost" in message
    assert ALLOWED_HOSTS_ENV in message
    message = origin_refusal("POST", "http://evil.example", None, GATEWAY)
    assert "cross-site POST" in message and "'http://evil.example'" in message and ALLOWED_HOSTS_ENV in message
    assert "Referer" in origin_refusal("DELETE", None, "http://evil.example/x", GATEWAY)
    assert "(none)" in host_refusal(None, GATEWAY)


def test_a_hostile_header_is_quoted_short():
    assert len(host_refusal("x" * 100_000, GATEWAY)) < 500
    assert len(origin_refusal("POST", "http://" + "x" * 100_000, None, GATEWAY)) < 500


def test_refusal_checks_the_host_then_the_origin_of_state_changing_requests():
    assert refusal("GET", Headers(Host="localhost:8000"), GATEWAY) is None
    assert refusal("GET", Headers(Host="localhost:8000", Origin="http://evil.example"), GATEWAY) is None
    assert refusal("POST", Headers(Host="localhost:8000"), GATEWAY) is None
    assert refusal("POST", Headers(Host="localhost", Origin="http://127.0.0.1:8050"), GATEWAY) is None
    assert "Host 'evil.example'" in (refusal("GET", Headers(Host="evil.example"), GATEWAY) or "")
    assert "Host (none)" in (refusal("GET", Headers(), GATEWAY) or "")
    assert "cross-site" in (refusal("POST", Headers(Host="localhost", Origin="null"), GATEWAY) or "")
    assert "Referer" in (refusal("PUT", Headers(Host="localhost", Referer="http://evil.example/"), GATEWAY) or "")

"""Check the name and URL of a gateway, as configured or as ``POST /lb/backends`` sends them.

A URL that parses but cannot be connected to (``http://host:99999``, ``http://[::1``, ``http://:80``)
is refused here with a message naming the field, rather than failing later in the proxy or the
health checks.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..kit import ApiError

__all__ = ["check_gateway", "check_gateway_name", "gateway_address"]

# Longest input quoted back in an error message.
QUOTE_LIMIT = 100

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
# http://host[:port] with an optional final slash: no user, path, query or fragment.
URL = re.compile(
    r"http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)(?::([0-9]{1,5}))?/?", re.ASCII
)
URL_EXAMPLE = "http://127.0.0.1:<port> or http://gateway-3:<port>"
DEFAULT_PORT = 80


def _quoted(text: str) -> str:
    return repr(text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "...")


def gateway_address(url: str) -> tuple[str, int]:
    """Return the host (without brackets) and port to connect to for gateway ``url``.

    :raise ValueError: ``url`` is not ``http://host[:port]`` with a usable host and a port from 1 to 65535.
    """
    match = URL.fullmatch(url)
    if match is None:
        raise ValueError(f"expected http://host:port with no user, path, query or fragment, e.g. {URL_EXAMPLE}")
    host, port_text = match.groups()
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address; e.g. {URL_EXAMPLE} or http://[::1]:<port>") from None
    port = DEFAULT_PORT if port_text is None else int(port_text)  # ASCII digits only: the pattern says so
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port_text} is out of range; a port lies from 1 to 65535, e.g. {URL_EXAMPLE}")
    return host, port


def check_gateway_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a usable gateway name (letters, digits, ``.``, ``_``, ``-``; 63 at most)."""
    if NAME.fullmatch(name) is None:
        raise ValueError(
            "expected letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit), e.g. gateway-3"
        )


def check_gateway(spec: dict[str, Any]) -> None:
    """Raise a 400 ApiError naming the field when the gateway's ``name`` or ``url`` cannot be used.

    Only string fields are checked here; the tier answers a missing or mistyped field itself.
    """
    for field, check in (("name", check_gateway_name), ("url", gateway_address)):
        value = spec.get(field)
        if not isinstance(value, str):
            continue
        try:
            check(value)
        except ValueError as exc:
            raise ApiError(400, f"backend {field} {_quoted(value)} cannot be used: {exc}", field=field) from None

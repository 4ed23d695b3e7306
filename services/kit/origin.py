"""Which Host and Origin a service answers to: the guard against DNS rebinding and cross-site requests.

A web page on another site can reach a lab service on 127.0.0.1 through the visitor's browser in
two ways. It can point a name of its own at 127.0.0.1 (DNS rebinding): the browser then sends that
name as ``Host``. Or it can post a form or a ``fetch()`` to ``http://127.0.0.1:<port>``: the browser
then sends the page's ``Origin``. A service that answers only to its own names, and refuses
state-changing requests from other sites, defeats both; curl, the lab's scripts and the services
themselves send their target's name as ``Host`` and no ``Origin``, so they pass.

The decisions are pure functions of header values, so the balancer and the Flask services
share them::

    allowed = allowed_hosts(settings.instance, settings.allowed_hosts)
    message = refusal(request.method, request.headers, allowed)
    if message is not None:
        raise ApiError(403, message)
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from functools import lru_cache

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "ANY_HOST",
    "LOCAL_HOSTS",
    "SAFE_METHODS",
    "allowed_hosts",
    "host_allowed",
    "host_name",
    "host_refusal",
    "origin_allowed",
    "origin_refusal",
    "own_addresses",
    "refusal",
]

# The setting that adds host names (it is read into each service's settings class).
ALLOWED_HOSTS_ENV = "SCALELAB_ALLOWED_HOSTS"
# In the allowed set: every host, for a lab room that opens its ports on purpose.
ANY_HOST = "*"
# Names of this machine, as ``host_name`` writes them.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Methods that change nothing (RFC 9110 section 9.2.1); every other method needs a same-site Origin.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Longest header value quoted back in a refusal, so a hostile header cannot bloat the answer.
QUOTE_LIMIT = 100
# Host decisions remembered: a client names the same Host on every request, and parsing it cost the
# balancer as much as the rest of the check (about 1 % of its CPU per request). Bounded, so a stream
# of made-up Hosts only evicts entries.
HOST_CACHE_SIZE = 256
# The host of an http(s) URL, as in an Origin or a Referer: everything up to the path, query or fragment.
_URL_AUTHORITY = re.compile(r"https?://([^/?#]*)", re.IGNORECASE)


def host_name(authority: str) -> str | None:
    """Return the host of ``authority`` (``host``, ``host:port``, ``[v6]:port``), lower case, without its port.

    Return None when it is not a host: empty, a port that is not digits, an unclosed ``[``.
    A trailing dot (``localhost.``) names the same host and is dropped.
    """
    if authority.startswith("["):
        end = authority.find("]") + 1
        if not end:
            return None
        name, rest = authority[:end], authority[end:]
        if rest and rest[0] != ":":
            return None
        port = rest[1:]
    else:
        name, _, port = authority.partition(":")
    # str.isdigit alone accepts "²" and other digits int() or a socket would refuse.
    if port and not (port.isascii() and port.isdigit()):
        return None
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    return name or None


def own_addresses(bind: str) -> frozenset[str]:
    """Return this container's own IP addresses, as ``host_name`` writes them, when it listens beyond loopback.

    Docker Swarm and Kubernetes hand a pool its backends as addresses (the A records of
    ``tasks.gateway`` or of a headless Service), so the pool, its health checks and Prometheus
    call an instance by its IP. An IP literal as ``Host`` is no DNS rebinding (that needs a name
    the attacker controls), so an instance may answer to its own. The runtime maps the
    container's host name to them in /etc/hosts; a process bound to loopback needs none.
    """
    if bind in ("127.0.0.1", "::1", "localhost"):
        return frozenset()
    try:
        found = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return frozenset()
    names = set()
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_loopback:
            names.add(f"[{ip}]" if ip.version == 6 else str(ip))
    return frozenset(names)


def allowed_hosts(instance: str = "", extra: Iterable[str] = (), addresses: Iterable[str] = ()) -> frozenset[str]:
    """Return the hosts a service answers to: this machine's names, its instance name, and ``extra``.

    :param instance: the instance name (``load-balancer``, ``gateway-2``): its name inside a compose network.
    :param extra: more names, as listed in SCALELAB_ALLOWED_HOSTS; ``*`` allows every host. A port is ignored.
    :param addresses: the instance's own IP addresses (:func:`own_addresses`), by which discovered backends are called.
    :raise ValueError: an entry is not a host name (a URL, a path, a bare IPv6 address), naming the setting.
    """
    allowed = set(LOCAL_HOSTS) | set(addresses)
    if instance.strip():
        allowed.add(instance.strip().lower())
    for entry in extra:
        entry = entry.strip()
        if not entry:
            continue
        if entry == ANY_HOST:
            allowed.add(ANY_HOST)
            continue
        name = host_name(entry)
        if name is None or any(char in name for char in "/@?#*\\ \t"):
            raise ValueError(
                f"{ALLOWED_HOSTS_ENV}: {entry!r} is not a host name; list names such as lab.example, 10.0.0.5 "
                f"or [fd00::5], comma separated, without scheme or path (or {ANY_HOST} for every host)"
            )
        allowed.add(name)
    return frozenset(allowed)


@lru_cache(maxsize=HOST_CACHE_SIZE)
def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Return whether a request with this ``Host`` header is for this service (``allowed`` from :func:`allowed_hosts`).

    A missing or empty Host is refused: every HTTP/1.1 client sends one, and a browser always does.
    """
    if ANY_HOST in allowed:
        return True
    if not host_header:
        return False
    return host_name(host_header) in allowed


def _source_host(url: str) -> str | None:
    match = _URL_AUTHORITY.match(url)
    if match is None or "@" in match.group(1):  # browsers never send userinfo here
        return None
    return host_name(match.group(1))


def origin_allowed(method: str, origin: str | None, referer: str | None, allowed: frozenset[str]) -> bool:
    """Return whether a request may come from the site its ``Origin`` (else its ``Referer``) names.

    Safe methods always may. A state-changing one (POST, PUT, DELETE, PATCH, any method not in
    SAFE_METHODS) may when it names no site at all, as curl and the scripts do, or a site whose
    host is allowed, whatever its scheme and port. ``Origin: null`` (a sandboxed page, a local
    file, a cross-site redirect) is refused, even where every host is allowed.
    """
    if method in SAFE_METHODS:
        return True
    source = origin or referer
    if not source:
        return True
    host = _source_host(source)
    if host is None:
        return False
    return ANY_HOST in allowed or host in allowed


def _quoted(value: str | None) -> str:
    if value is None:
        return "(none)"
    return repr(value if len(value) <= QUOTE_LIMIT else value[:QUOTE_LIMIT] + "...")


def _names(allowed: frozenset[str]) -> str:
    return ", ".join(sorted(allowed))


def host_refusal(host_header: str | None, allowed: frozenset[str]) -> str:
    """Return the message of the 403 for a request whose Host is not allowed: what is wrong and what to do."""
    return (
        f"Host {_quoted(host_header)} is not a name of this service (it answers to {_names(allowed)}): "
        f"reach it by one of those names, e.g. http://localhost:<port>, or add the name to "
        f"{ALLOWED_HOSTS_ENV} (comma separated; {ANY_HOST} allows every host)"
    )


def origin_refusal(method: str, origin: str | None, referer: str | None, allowed: frozenset[str]) -> str:
    """Return the message of the 403 for a state-changing request from another site: what is wrong and what to do."""
    header, value = ("Origin", origin) if origin else ("Referer", referer)
    return (
        f"refused a cross-site {method}: its {header} {_quoted(value)} is not a page of this lab "
        f"(allowed hosts: {_names(allowed)}); send it from the lab's own pages or with no {header} header "
        f"(as curl does), or add that host to {ALLOWED_HOSTS_ENV}"
    )


def refusal(method: str, headers: Mapping[str, str], allowed: frozenset[str]) -> str | None:
    """Return why a request must be refused with 403, or None when it may go on.

    ``headers`` is the request's case-insensitive header mapping (Flask's ``request.headers``,
    aiohttp's ``request.headers``), or a plain dict of the three; Origin and Referer are looked
    at only for state-changing methods.
    """
    host = headers.get("Host")
    if not host_allowed(host, allowed):
        return host_refusal(host, allowed)
    if method in SAFE_METHODS:
        return None
    origin, referer = headers.get("Origin"), headers.get("Referer")
    if origin_allowed(method, origin, referer, allowed):
        return None
    return origin_refusal(method, origin, referer, allowed)
